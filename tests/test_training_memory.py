"""What a training step keeps per token and block on JAX, from XLA's compiled memory plan."""

import json

import keras
import numpy as np

from keras_vit.layers.recomputation import after_gradient
from tests.conftest import run_check


def test_transformer_block_keeps_only_what_its_backward_pass_reads():
    out = json.loads(run_check("training_memory_check.py", "jax", timeout=300).strip().splitlines()[-1])
    # Per token and block, in float32 hidden vectors: the qkv projection (3), the attention
    # context (1), the inputs of both layer norms (2), their outputs (2) and the MLP's hidden
    # layer before and after GELU (4 + 4). No (seq, seq) probabilities (4 heads · 65 tokens =
    # 4 more per block), no x̂, no Φ(x), no transposed copies: recomputations stay in the
    # backward pass (keras_vit/layers/recomputation.py). Before that it was 27.06.
    assert out["hidden_vectors_per_token_per_block"] <= 16.0, out


def test_after_gradient_returns_the_same_values():
    x = np.linspace(-3, 3, 12, dtype="float32").reshape(3, 4)
    upstream = np.full((5,), 2.0, "float32")
    same, same_bf16 = after_gradient(upstream, x, keras.ops.cast(x, "bfloat16"))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(same), x)
    assert keras.backend.standardize_dtype(same_bf16.dtype) == "bfloat16"
    rounded = keras.ops.cast(keras.ops.cast(x, "bfloat16"), "float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.ops.cast(same_bf16, "float32")), rounded)
    # Documented: a non-finite upstream gradient makes every recomputed value NaN.
    (poisoned,) = after_gradient(np.array([1.0, np.inf], "float32"), x)
    assert np.isnan(keras.ops.convert_to_numpy(poisoned)).all()
