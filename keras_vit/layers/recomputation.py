"""Recomputation inside a custom gradient that stays in the backward pass."""

import keras
from keras import ops

# Backends on which the layer norm and GELU gradients recompute x̂ and Φ(x) from their input
# instead of keeping them: JAX, whose XLA fuses the recomputation into the gradient's kernels.
# TensorFlow on CPU runs graphs op by op without XLA, where the recomputation's temporaries
# cost more than the saved tensors: a DeiT-S/16 step at 224 px batch 16 took 5.06 s, 3.20 GiB
# against 4.43 s, 2.84 GiB keeping them (benchmarks/README.md).
RECOMPUTING_BACKENDS = ("jax",)


def recomputes():
    """Whether the current Keras backend is in `RECOMPUTING_BACKENDS`."""
    return keras.backend.backend() in RECOMPUTING_BACKENDS


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
