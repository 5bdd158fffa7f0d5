"""Fused (`keras.ops.dot_product_attention`) and explicit attention compute the same function."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vit.layers.attention import FUSED_BACKENDS, MultiHeadSelfAttention, explicit_attention, fused_attention
from tests.conftest import run_check


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_fused_and_explicit_paths_agree(backend):
    stdout = run_check("attention_check.py", backend)
    out = json.loads(stdout.strip().splitlines()[-1])
    assert set(out["diffs"]) == {
        "functions",
        "layer rate=0.0 training=False",
        "layer rate=0.0 training=True",
        "layer rate=0.1 training=False",
    }
    for name, diff in out["diffs"].items():
        assert diff <= 1e-5, f"{backend} {name}: max |Δ| = {diff}"
    # Three calls without probabilities or active dropout go through the fused kernel on
    # FUSED_BACKENDS and never elsewhere.
    assert out["fused_calls"] == (3 if backend in FUSED_BACKENDS else 0)


def test_explicit_gradient_equals_fused_gradient():
    rng = np.random.default_rng(1)
    qkv = [tf.Variable(rng.normal(size=(2, 17, 4, 8)).astype("float32")) for _ in range(3)]
    grads = []
    for fn in (lambda q, k, v: explicit_attention(q, k, v)[0], fused_attention):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(fn(*qkv) * np.arange(8, dtype="float32"))
        grads.append([g.numpy() for g in tape.gradient(loss, qkv)])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_attention_dropout_active_only_in_training():
    layer = MultiHeadSelfAttention(16, 4, attention_dropout=0.5)
    tokens = np.random.default_rng(2).normal(size=(2, 5, 16)).astype("float32")
    inference = keras.ops.convert_to_numpy(layer(tokens))
    explicit = keras.ops.convert_to_numpy(layer(tokens, return_attention_scores=True)[0])
    np.testing.assert_allclose(inference, explicit, atol=1e-6)
    trained = keras.ops.convert_to_numpy(layer(tokens, training=True))
    assert np.abs(trained - inference).max() > 1e-3
