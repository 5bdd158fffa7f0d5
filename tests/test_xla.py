"""TensorFlow under XLA: a transformer block's values and gradients equal the eager ones."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vit.layers.attention import MultiHeadSelfAttention
from keras_vit.layers.transformer_block import TransformerBlock

# What these tests observe is the CPU case: with a GPU, Keras' own "auto" already compiles with XLA.
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow" or bool(tf.config.list_physical_devices("GPU")),
    reason="TensorFlow's XLA on a machine without a GPU",
)


@pytest.fixture
def xla_traces(monkeypatch):
    """Names of the `MultiHeadSelfAttention`s whose call was traced inside an XLA-compiled function."""
    from tensorflow.python.ops import control_flow_util

    calls = []
    original = MultiHeadSelfAttention.call

    def call(self, *args, **kwargs):
        if not tf.executing_eagerly() and control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()):
            calls.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MultiHeadSelfAttention, "call", call)
    return calls


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "gradient_checkpointing"])
@pytest.mark.parametrize("variant", ["qkv_bias", "no_qkv_bias", "lora"])
def test_block_gradients_under_xla_equal_eager_gradients(variant, checkpointing, xla_traces):
    block = TransformerBlock(32, 4, 37, qkv_bias=variant != "no_qkv_bias", gradient_checkpointing=checkpointing)
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
    assert not xla_traces
    xla_value, xla_grads = tf.function(value_and_gradients, jit_compile=True)(tokens)
    assert set(xla_traces) == {"attention"}  # twice with checkpointing: the backward pass retraces the branch
    np.testing.assert_allclose(xla_value.numpy(), eager_value.numpy(), atol=1e-5)
    weights = {"qkv_bias": 12, "no_qkv_bias": 11, "lora": 8}[variant]  # LoRA: the 4 projections' factors
    assert len(xla_grads) == 1 + len(block.trainable_variables) == 1 + weights
    for xla_grad, eager_grad, name in zip(xla_grads, eager_grads, ["tokens"] + [v.path for v in block.trainable_variables]):
        np.testing.assert_allclose(xla_grad.numpy(), eager_grad.numpy(), atol=1e-5, err_msg=name)
