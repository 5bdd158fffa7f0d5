"""Fused and explicit attention compute the same function and gradients on every backend."""

import json

import keras
import numpy as np
import pytest

from keras_vit.layers.attention import MultiHeadSelfAttention
from tests.conftest import run_check


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_fused_and_explicit_paths_agree(backend):
    stdout = run_check("attention_check.py", backend)
    out = json.loads(stdout.strip().splitlines()[-1])
    assert set(out["diffs"]) == {
        "functions",
        "gradient d_query",
        "gradient d_key",
        "gradient d_value",
        "layer rate=0.0 training=False",
        "layer rate=0.0 training=True",
        "layer rate=0.1 training=False",
    }
    for name, diff in out["diffs"].items():
        assert diff <= 1e-5, f"{backend} {name}: max |Δ| = {diff}"
    # Three eager calls without probabilities or active dropout go through the fused kernel
    # on torch (SDPA) and JAX; eager TensorFlow keeps the explicit path (XLA: test_xla.py).
    assert out["fused_calls"] == (0 if backend == "tensorflow" else 3)
    if backend == "jax":
        # The explicit path keeps the softmax's (seq, seq) tensors for the backward pass; the
        # fused path keeps none (it recomputes them from a per-query log-sum-exp).
        assert out["seq_by_seq_residuals"] == {"fused": 0, "explicit": 2}


def test_attention_dropout_active_only_in_training():
    layer = MultiHeadSelfAttention(16, 4, attention_dropout=0.5)
    tokens = np.random.default_rng(2).normal(size=(2, 5, 16)).astype("float32")
    inference = keras.ops.convert_to_numpy(layer(tokens))
    explicit = keras.ops.convert_to_numpy(layer(tokens, return_attention_scores=True)[0])
    np.testing.assert_allclose(inference, explicit, atol=1e-6)
    trained = keras.ops.convert_to_numpy(layer(tokens, training=True))
    assert np.abs(trained - inference).max() > 1e-3
