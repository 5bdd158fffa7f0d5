import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_vit  # noqa: E402
from tests.torchvision_ops import declare_missing_torchvision_ops  # noqa: E402

declare_missing_torchvision_ops()

ROOT = Path(__file__).resolve().parents[1]

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    image_size=32,
    patch_size=8,
    encoder_stride=8,
    num_labels=3,
)


def run_check(script, backend, *args, timeout=600):
    """Runs `tests/<script>` with `args` in a fresh process on Keras `backend`; returns its stdout.

    Fails the test with the end of the script's stderr when it exits non-zero.
    """
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / script), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def tiny_config(model_cls=keras_vit.ViTModel, **overrides):
    """The tiny config (hidden 32, 2 layers, 32 px, patch 8) of `model_cls`' config class."""
    return model_cls.config_class(**{**TINY, **overrides})


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def images():
    return np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
