"""The models compute the same function on the JAX and PyTorch backends as on TensorFlow."""

import numpy as np
import pytest

import keras_vit
from tests.conftest import run_check, tiny_config


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    arrays = {"images": images}
    for cls in keras_vit.MODEL_CLASSES:
        model = cls(tiny_config(cls), output_attentions=True)
        for i, weight in enumerate(model.get_weights()):
            arrays[f"{cls.__name__}/{i}"] = weight
        out = model(images)
        for name, value in out.items():
            arrays[f"{cls.__name__}:{name}"] = np.asarray(value[0] if name == "attentions" else value)
    path = tmp_path_factory.mktemp("backends") / "reference.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_backend_matches_tensorflow(backend, reference):
    stdout = run_check("backend_check.py", backend, reference)
    diff = float(stdout.strip().rsplit("=", 1)[1])
    assert diff <= 1e-4, f"{backend}: max |Δ| vs TensorFlow = {diff}"
