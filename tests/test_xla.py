"""TensorFlow under XLA: gradients recompute (as on JAX)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vit.layers import activations, attention, layer_normalization
from keras_vit.layers.recomputation import recomputes
from keras_vit.layers.transformer_block import TransformerBlock

# What these tests observe is the CPU case: with a GPU, Keras' own "auto" already compiles with XLA.
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow" or bool(tf.config.list_physical_devices("GPU")),
    reason="TensorFlow's XLA on a machine without a GPU",
)


def _counted(monkeypatch, module, name, calls=None):
    """Replaces `module.name` by a wrapper that appends `name` to `calls` (returned) on every call."""
    calls = [] if calls is None else calls
    original = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *args: calls.append(name) or original(*args))
    return calls


@pytest.fixture
def fused_calls(monkeypatch):
    """Traces of a layer call that takes the fused attention path, by the function that ran it.

    `fused_attention`, or `_attention_recomputing_qkv` where the layer is given its input norm.
    """
    calls = _counted(monkeypatch, attention, "fused_attention")
    return _counted(monkeypatch, attention, "_attention_recomputing_qkv", calls)


@pytest.fixture
def recomputing_mlp_calls(monkeypatch):
    """Counts traces of the MLP's GELU and second projection that recompute GELU(x)."""
    return _counted(monkeypatch, activations, "_gelu_matmul_recomputing")


@pytest.fixture
def fused_layer_norm_calls(monkeypatch):
    """Counts traces of a layer norm and the projection after it that recompute the layer norm."""
    return _counted(monkeypatch, layer_normalization, "_layer_norm_matmul")


def test_recomputes_only_while_tracing_for_xla():
    def flag():
        return tf.constant(recomputes())

    xla = tf.function(flag, jit_compile=True)
    assert not recomputes()
    assert not tf.function(flag)().numpy()
    assert xla().numpy()
    assert tf.function(lambda: xla())().numpy()  # an XLA function called from a plain graph


@pytest.mark.parametrize("variant", ["qkv_bias", "no_qkv_bias", "lora"])
def test_block_gradients_under_xla_equal_eager_gradients(variant, fused_calls, recomputing_mlp_calls, fused_layer_norm_calls):
    block = TransformerBlock(32, 4, 37, qkv_bias=variant != "no_qkv_bias")
    rng = np.random.default_rng(0)
    tokens = tf.constant(rng.normal(size=(2, 17, 32)).astype("float32"))
    upstream = tf.constant(rng.normal(size=(2, 17, 32)).astype("float32"))
    block(tokens)
    for variable in block.trainable_variables:  # γ ≠ 1, β ≠ 0
        variable.assign(variable + rng.normal(scale=0.1, size=variable.shape).astype("float32"))
    if variant == "lora":
        block.enable_lora(3)
        for variable in block.trainable_variables:  # lora_kernel_b ≠ 0
            variable.assign(rng.normal(scale=0.1, size=variable.shape).astype("float32"))

    def value_and_gradients(tokens):
        with tf.GradientTape() as tape:
            tape.watch(tokens)
            value = block(tokens)
        return value, tape.gradient(value, [tokens] + block.trainable_variables, output_gradients=upstream)

    eager_value, eager_grads = value_and_gradients(tokens)
    # Eagerly: explicit attention, saved x̂, layer norm outputs, Φ(x) and GELU(x).
    assert not fused_calls and not recomputing_mlp_calls and not fused_layer_norm_calls
    xla_value, xla_grads = tf.function(value_and_gradients, jit_compile=True)(tokens)
    # Under XLA: the layer norm, qkv projection and attention as one gradient that recomputes
    # the normalised tokens, q, k, v and the probabilities; GELU(x), and the second layer
    # norm's output into fc1.
    assert fused_calls == ["_attention_recomputing_qkv"] and len(recomputing_mlp_calls) == 1
    assert len(fused_layer_norm_calls) == 1
    np.testing.assert_allclose(xla_value.numpy(), eager_value.numpy(), atol=1e-5)
    weights = {"qkv_bias": 12, "no_qkv_bias": 11, "lora": 8}[variant]  # LoRA: the 4 projections' factors
    assert len(xla_grads) == 1 + len(block.trainable_variables) == 1 + weights
    for xla_grad, eager_grad, name in zip(xla_grads, eager_grads, ["tokens"] + [v.path for v in block.trainable_variables]):
        np.testing.assert_allclose(xla_grad.numpy(), eager_grad.numpy(), atol=1e-5, err_msg=name)
