"""The models compute the same function on the JAX and PyTorch backends as on TensorFlow."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import keras_vit
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]


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
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "backend_check.py"), str(reference)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    diff = float(result.stdout.strip().rsplit("=", 1)[1])
    assert diff <= 1e-4, f"{backend}: max |Δ| vs TensorFlow = {diff}"
