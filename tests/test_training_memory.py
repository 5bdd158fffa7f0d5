"""What a training step keeps per token and block, and what a deleted model leaves behind."""

import json

import keras
import pytest

from keras_vit.layers.custom_gradient import graphs_own_custom_gradients
from tests.conftest import run_check


def test_gradient_checkpointing_keeps_only_the_branch_inputs_on_jax():
    out = json.loads(run_check("training_memory_check.py", "jax", timeout=300).strip().splitlines()[-1])
    # Per token, in float32 hidden vectors. Without checkpointing the block keeps the layer
    # norms' inputs and outputs, q, k, v, the (4 heads · 65 tokens) probabilities, the MLP's
    # hidden layer and GELU's intermediates. With it: the two branches' inputs, the block's
    # output and per-token statistics (< 5).
    assert out["hidden_vectors_per_token"] > 30, out
    assert out["checkpointing"] < 5, out
    assert out["gradient_leaves"] == 13 and out["max_gradient"] > 1, out  # 12 weights and the tokens
    assert out["max_gradient_difference"] <= 1e-6 * out["max_gradient"], out


def test_torch_block_keeps_what_transformers_vit_layer_keeps():
    out = json.loads(run_check("torch_saved_tensors_check.py", "torch", timeout=300).strip().splitlines()[-1])
    # Hugging Face's ViTLayer with sdpa attention and keras_vit's block keep the same tensors,
    # but for one (batch, seq, hidden) copy of the attention context that Keras'
    # dot_product_attention makes contiguous for SDPA (weights counted in both).
    assert out["keras_vit"]["bytes"] <= out["transformers"]["bytes"] + out["hidden_bytes"], out
    # With gradient_checkpointing, the inputs of the two recomputed branches alone.
    assert out["keras_vit_checkpointing"]["bytes"] == 2 * out["hidden_bytes"], out


def test_checkpointed_blocks_free_their_tensorflow_graphs():
    # tf.custom_gradient registers every traced call's gradient globally for good, pinning the
    # graph and the variables it captures; keras.remat (gradient_checkpointing) is one per
    # block branch, also in predict functions (custom_gradient.graphs_own_custom_gradients).
    # Run in fresh processes: they count every graph alive there.
    out = json.loads(run_check("graph_release_check.py", "tensorflow", timeout=300).strip().splitlines()[-1])
    assert out == {"graphs_alive": 0, "graph_names": [], "gradients_added": []}
    unprotected = json.loads(run_check("graph_release_check.py", "tensorflow", "unprotected").strip().splitlines()[-1])
    assert unprotected["graphs_alive"] > 0 and unprotected["gradients_added"], unprotected


def test_deleted_trained_models_free_their_tensorflow_graphs():
    # Keras' TensorFlow train step registers a custom gradient of its own in every traced step.
    out = json.loads(run_check("graph_release_check.py", "tensorflow", "train", timeout=300).strip().splitlines()[-1])
    assert out == {"graphs_alive": 0, "graph_names": [], "gradients_added": []}


@keras.ops.custom_gradient
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
        with graphs_own_custom_gradients(), graphs_own_custom_gradients():
            y = _triple_with_gradient_five(x * x)
        return tf.gradients(y, x)[0]

    # 5 · d(x²)/dx = 10x from the custom gradient; autodiff would give 3 · 2x = 12 at x = 2.
    assert float(gradient(tf.constant(2.0))) == 20.0
