"""What a training step keeps per token and block, and what a deleted model leaves behind."""

import json

import keras
import numpy as np
import pytest

from keras_vit.layers.custom_gradient import custom_gradient, graphs_own_custom_gradients
from keras_vit.layers.recomputation import after_gradient
from tests import torch_saved_tensors_check
from tests.conftest import run_check


def test_transformer_block_keeps_only_what_its_backward_pass_reads():
    out = json.loads(run_check("training_memory_check.py", "jax", timeout=300).strip().splitlines()[-1])
    # Per token and block, in float32 hidden vectors: the qkv projection (3), the attention
    # context twice (2: the output projection's input, and the attention's own for its
    # rowsum(dO ∘ O), attention.CONTEXT_ROWSUM_BACKENDS), the inputs of both layer norms (2)
    # and the MLP's hidden layer before GELU (4). No (seq, seq) probabilities (4 heads · 65
    # tokens = 4 more per block), no x̂, no Φ(x), no GELU(x) (4 more: activations.gelu_matmul),
    # no layer norm outputs (2 more: layer_normalization.layer_norm_dense), no transposed
    # copies: recomputations stay in the backward pass (keras_vit/layers/recomputation.py).
    # Before that it was 27.06; 16 before the rowsum(dO ∘ O), 17 before gelu_matmul, 12.94
    # before layer_norm_dense.
    assert out["hidden_vectors_per_token_per_block"] <= 11.1, out
    # Recomputing q, k and v from the block's input (attention._attention_recomputing_qkv, as
    # on XLA-compiled TensorFlow) keeps 3 fewer; the gradients of all 2 · 12 weights and of
    # the tokens stay those of the projection kept.
    assert out["recomputing_qkv"] <= out["hidden_vectors_per_token_per_block"] - 2.9, out
    assert out["gradient_leaves"] == 25 and out["max_gradient"] > 1, out
    assert out["max_gradient_difference"] <= 1e-6 * out["max_gradient"], out


def test_torch_block_keeps_no_more_than_transformers_vit_layer():
    out = json.loads(run_check("torch_saved_tensors_check.py", "torch", timeout=300).strip().splitlines()[-1])
    # Hugging Face's ViTLayer with sdpa attention keeps the MLP's hidden layer before and after
    # GELU; keras_vit's keeps it before GELU only, recomputing GELU(x) for the second projection's
    # kernel gradient (activations.gelu_matmul). Otherwise the same saved tensors. Through
    # keras.ops.dot_product_attention (contiguous q, k, v), the output projection kept one more
    # (batch·seq, hidden) copy of the attention output: 0.58 MiB more here. Keras' custom
    # gradient keeps every input of `gelu_matmul`, so fc2's float32 bias (hidden,) too.
    bias_bytes = 4 * torch_saved_tensors_check.HIDDEN
    assert out["keras_vit"]["bytes"] <= out["transformers"]["bytes"] - out["intermediate_bytes"] + bias_bytes, out


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


def test_deleted_models_free_their_tensorflow_graphs():
    # tf.custom_gradient registers every traced call's gradient globally for good, pinning the
    # graph and the variables it captures (custom_gradient.graphs_own_custom_gradients). Run in
    # a fresh process: it counts every graph alive there.
    out = json.loads(run_check("graph_release_check.py", "tensorflow", timeout=300).strip().splitlines()[-1])
    assert out == {"graphs_alive": 0, "graph_names": [], "gradients_added": []}


@custom_gradient
def _triple_with_gradient_five(x):
    # A gradient unlike autodiff's (3), so the test sees which one ran.
    return 3.0 * x, lambda *args, upstream=None: 5.0 * (args[0] if upstream is None else upstream)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's gradient registry")
def test_gradients_taken_after_nested_blocks_use_the_custom_gradient():
    import tensorflow as tf

    @tf.function
    def gradient(x):
        # The op's own block and an enclosing one (a model's step) both end before
        # tf.gradients looks the gradient up by its registered name.
        with graphs_own_custom_gradients():
            y = _triple_with_gradient_five(x * x)
        return tf.gradients(y, x)[0]

    # 5 · d(x²)/dx = 10x from the custom gradient; autodiff would give 3 · 2x = 12 at x = 2.
    assert float(gradient(tf.constant(2.0))) == 20.0
