"""Decompression bombs of every format TensorFlow decodes: refused before decoding, by the
serving graph and the PIL processor, with bounded memory (peak RSS measured in a fresh process)."""

import json

import pytest

from tests.bombs import BOMBS
from tests.conftest import run_check

GROWTH_BOUND_MIB = 64  # a refused bomb; each declares >= 89,478,485 pixels (>= 256 MiB as RGB)


@pytest.fixture(scope="module")
def results():
    return json.loads(run_check("bomb_check.py", "tensorflow", timeout=300))


@pytest.mark.parametrize("name", sorted(BOMBS))
@pytest.mark.parametrize("kind", ["graph", "pil"])
def test_bombs_are_refused_before_decoding(results, name, kind):
    result = results[f"{name}/{kind}"]
    if (name, kind) == ("gif_of_many_frames", "pil"):  # PIL decodes the first frame only: not a bomb
        assert result["error"] is None and result["growth_mib"] < GROWTH_BOUND_MIB, result
        return
    assert result["error"] is not None, result
    if kind == "graph":
        expected = "size can be read before decoding" if name == "jpeg_xl" else "max_image_pixels, decompression-bomb"
        assert "images[0]" in result["error"] and expected in result["error"], result["error"]
    else:
        expected = "readable image file" if name == "jpeg_xl" else "decompression-bomb limit"
        assert expected in result["error"], result["error"]
    assert result["growth_mib"] < GROWTH_BOUND_MIB, result


def test_the_measurement_sees_a_decoded_image(results):
    for kind in ("graph", "pil"):  # 4000 x 4000 RGB: 46 MiB decoded
        assert results[f"control/{kind}"]["error"] is None
        assert results[f"control/{kind}"]["held_mib"] > 40, results[f"control/{kind}"]
