"""Recomputation inside a custom gradient that stays in the backward pass."""

import keras
from keras import ops

# Backends on which the layer norm and GELU gradients recompute x̂ and Φ(x) from their input,
# and attention recomputes its probabilities, instead of keeping them: JAX, whose XLA fuses the
# recomputation into the gradient's kernels. TensorFlow does so inside XLA-compiled functions
# only (`recomputes`): its CPU graphs otherwise run op by op, where the recomputation's
# temporaries cost more than the saved tensors (a DeiT-S/16 step at 224 px batch 16 took
# 5.06 s, 3.20 GiB against 4.43 s, 2.84 GiB keeping them; benchmarks/README.md).
RECOMPUTING_BACKENDS = ("jax",)


def recomputes():
    """Whether gradients traced here recompute forward intermediates.

    True on the backends in `RECOMPUTING_BACKENDS`, and on TensorFlow while tracing an
    XLA-compiled function (`compile(jit_compile=True)`, Keras' default on GPUs, or
    `tf.function(jit_compile=True)`): there a DeiT-S/16 training step at 224 px batch 16
    peaked at 2.61 GiB against 2.98 GiB keeping the tensors, at the same speed
    (benchmarks/README.md).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow_traces_for_xla()
    return backend in RECOMPUTING_BACKENDS


def _tensorflow_traces_for_xla():
    """Whether the current TensorFlow graph is traced for XLA (`tf.function(jit_compile=True)`).

    TensorFlow marks such traces with an XLA control-flow context; it has no public API for
    reading it (`tf.function` itself reads it through `control_flow_util`).
    """
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util

    return not tf.executing_eagerly() and control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def after_gradient(upstream, *tensors):
    """Returns `tensors` unchanged in value but computed after the incoming gradient.

    A custom gradient that recomputes a forward intermediate (attention probabilities, a
    layer norm's x̂, GELU's Φ(x)) from saved inputs saves memory only if the recomputation
    runs in the backward pass. Written plainly it depends on forward tensors alone, so XLA
    merges it with the identical forward ops (common-subexpression elimination) or
    schedules it right after them, and its output stays alive from the forward to the
    backward pass: on JAX a DeiT-S/16 training step at 384 px then kept every layer's
    (batch, heads, seq, seq) probabilities (`benchmarks/README.md`). Each tensor here gets
    0·Σ upstream added: a scalar that XLA cannot fold (x·0 is NaN for non-finite x), so the
    recomputation waits for the gradient. A non-finite upstream gradient therefore turns
    all of the op's input gradients into NaN, not only some: the step is lost either way.

    Args:
        upstream: the incoming gradient, any shape and float dtype.
        *tensors: float tensors saved by the forward pass.

    Returns:
        A tuple of tensors equal to `tensors`, with their shapes and dtypes.

    >>> (same,) = after_gradient(keras.ops.ones((3,)), keras.ops.convert_to_tensor([1.5, -2.0]))
    >>> keras.ops.convert_to_numpy(same).tolist()
    [1.5, -2.0]
    """
    zero = 0.0 * ops.sum(ops.cast(upstream, "float32"))
    return tuple(tensor + ops.cast(zero, tensor.dtype) for tensor in tensors)
