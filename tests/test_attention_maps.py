import sys

import keras
import numpy as np
import pytest
from PIL import Image

import keras_vit
from keras_vit.attention_maps import attention_maps, attention_rollout, cls_attention_map, save_attention_overlay
from tests.conftest import tiny_config

DEIT = keras_vit.DeiTForImageClassificationWithTeacher
# Two layers, two heads, two tokens, one image. Layer 1 fuses (mean) to 0.5 everywhere, so
# (A + I) / 2 = [[.75, .25], [.25, .75]]; layer 2 fuses to [[.2, .8], [.6, .4]], so [[.6, .4], [.3, .7]].
LAYER_1 = np.array([[[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]]])
LAYER_2 = np.array([[[[0.2, 0.8], [0.6, 0.4]], [[0.2, 0.8], [0.6, 0.4]]]])


def test_attention_maps_rebuilds_a_model_without_attentions(images):
    model = DEIT(tiny_config(DEIT))
    with_attentions = DEIT(tiny_config(DEIT), output_attentions=True)
    with_attentions.set_weights(model.get_weights())
    expected = with_attentions(images)["attentions"]
    for got in (attention_maps(model, images), attention_maps(with_attentions, images)):
        assert len(got) == 2
        for layer, reference in zip(got, expected):
            assert tuple(layer.shape) == (2, 4, 18, 18)  # [CLS], distillation, 16 patches
            np.testing.assert_allclose(np.asarray(layer), np.asarray(reference), atol=1e-6)
            np.testing.assert_allclose(np.asarray(layer).sum(-1), 1.0, atol=1e-5)


def test_rollout_by_hand():
    got = np.asarray(attention_rollout([LAYER_1, LAYER_2]))
    # R = Â_2 · Â_1 = [[.6, .4], [.3, .7]] · [[.75, .25], [.25, .75]]
    np.testing.assert_allclose(got, [[[0.55, 0.45], [0.4, 0.6]]], atol=1e-6)
    np.testing.assert_allclose(np.asarray(attention_rollout([LAYER_1])), [[[0.75, 0.25], [0.25, 0.75]]], atol=1e-6)


def test_rollout_head_fusion_by_hand():
    # max: [[1, 1], [.5, .5]] + I = [[2, 1], [.5, 1.5]], rows / 3 and / 2.
    got = np.asarray(attention_rollout([LAYER_1], head_fusion="max"))
    np.testing.assert_allclose(got, [[[2 / 3, 1 / 3], [0.25, 0.75]]], atol=1e-6)
    # min: [[0, 0], [.5, .5]] + I = [[1, 0], [.5, 1.5]], rows / 1 and / 2.
    got = np.asarray(attention_rollout([LAYER_1], head_fusion="min"))
    np.testing.assert_allclose(got, [[[1.0, 0.0], [0.25, 0.75]]], atol=1e-6)


def test_rollout_discard_ratio_by_hand():
    # 1 of 4 weights discarded (the 0.1): [[.9, 0], [.3, .7]] + I = [[1.9, 0], [.3, 1.7]], rows / 1.9 and / 2.
    attention = np.array([[[[0.9, 0.1], [0.3, 0.7]]]])
    got = np.asarray(attention_rollout([attention], discard_ratio=0.25))
    np.testing.assert_allclose(got, [[[1.0, 0.0], [0.15, 0.85]]], atol=1e-6)


@pytest.mark.parametrize("head_fusion, discard_ratio", [("mean", 0.0), ("max", 0.5), ("min", 0.9)])
def test_rollout_rows_sum_to_one_on_a_model(images, head_fusion, discard_ratio):
    attentions = attention_maps(DEIT(tiny_config(DEIT), output_attentions=True), images)
    rollout = np.asarray(attention_rollout(attentions, head_fusion=head_fusion, discard_ratio=discard_ratio))
    assert rollout.shape == (2, 18, 18) and rollout.min() >= 0
    np.testing.assert_allclose(rollout.sum(-1), 1.0, atol=1e-5)


def test_cls_attention_map_takes_the_cls_row_over_the_patches():
    rollout = np.arange(2 * 6 * 6, dtype="float32").reshape(2, 6, 6)
    got = np.asarray(cls_attention_map(rollout, (2, 2), num_prefix_tokens=2))
    np.testing.assert_array_equal(got, [[[2, 3], [4, 5]], [[38, 39], [40, 41]]])
    with pytest.raises(ValueError, match=r"seq=6, num_prefix_tokens=1, grid_size=\(2, 2\)"):
        cls_attention_map(rollout, (2, 2), num_prefix_tokens=1)


def test_overlay_png_has_the_image_size_and_blends(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3)).astype("uint8")
    attention = np.zeros((4, 6), "float32")
    attention[0, 0] = 1.0
    path = save_attention_overlay(image, attention, tmp_path / "plots" / "overlay.png")
    assert path == tmp_path / "plots" / "overlay.png"
    assert [p.name for p in path.parent.iterdir()] == ["overlay.png"]  # no temporary file left
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (48, 32) and png.mode == "RGB"
        got = np.asarray(png).astype(int)
    # alpha 0.5 blend with jet: 0 is dark blue (0, 0, 0.5), 1 is dark red (0.5, 0, 0).
    np.testing.assert_allclose(got[0, 0], np.round(0.5 * image[0, 0] + 0.5 * 255 * np.array([0.5, 0, 0])), atol=1)
    np.testing.assert_allclose(got[-1, -1], np.round(0.5 * image[-1, -1] + 0.5 * 255 * np.array([0, 0, 0.5])), atol=1)
    save_attention_overlay(image.astype("float32") / 255, attention, path, alpha=0.0)
    with Image.open(path) as png:
        np.testing.assert_allclose(np.asarray(png).astype(int), image, atol=1)


def test_overlay_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "overlay.png"
    path.write_bytes(b"previous")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        save_attention_overlay(np.zeros((8, 8, 3), "uint8"), np.ones((2, 2)), path)
    assert path.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["overlay.png"]


def test_overlay_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install keras-vit\[plot\]"):
        save_attention_overlay(np.zeros((8, 8, 3), "uint8"), np.ones((2, 2)), tmp_path / "x.png")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: attention_rollout([LAYER_1], head_fusion="median"), "Received: head_fusion='median'"),
        (lambda: attention_rollout([LAYER_1], discard_ratio=1.0), "Received: discard_ratio=1.0"),
        (lambda: attention_rollout([]), "at least one layer"),
        (lambda: attention_rollout([LAYER_1[0]]), r"\(batch, heads, seq, seq\). Received: shape=\(2, 2, 2\)"),
        (lambda: attention_maps(keras.Sequential([keras.layers.Dense(2)]), np.zeros((1, 2))), "Received: Sequential"),
        (
            lambda: save_attention_overlay(np.zeros((8, 8, 4)), np.ones((2, 2)), "x.png"),
            r"\(height, width, 3\) or \(height, width\). Received: shape=\(8, 8, 4\)",
        ),
        (
            lambda: save_attention_overlay(np.zeros((8, 8)), np.ones((1, 2, 2)), "x.png"),
            r"\(rows, cols\). Received: shape=\(1, 2, 2\)",
        ),
        (lambda: save_attention_overlay(np.zeros((8, 8)), np.ones((2, 2)), "x.png", alpha=2), "Received: alpha=2"),
    ],
)
def test_bad_arguments_are_named(call, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=message):
        call()
    assert not list(tmp_path.iterdir())
