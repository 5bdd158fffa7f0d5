"""Value and gradients of a function of numpy arrays with the current Keras backend's autodiff.

Used by the `*_check.py` scripts that tests run under each backend in a fresh process.
"""

import contextlib

import keras
import numpy as np


def value_and_gradients(fn, *arrays, upstream=None, jit_compile=False):
    """Returns (fn(*arrays), [d⟨upstream, fn⟩ / d array for each array]) as numpy arrays.

    `upstream` defaults to ones (the gradient of fn's sum). TensorFlow runs a GradientTape,
    inside `tf.function(jit_compile=True)` if `jit_compile`; JAX `jax.vjp`, PyTorch autograd.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        def run(tensors):
            with tf.GradientTape() as tape:
                tape.watch(tensors)
                value = fn(*tensors)
            weights = tf.ones_like(value) if upstream is None else tf.constant(upstream)
            return value, tape.gradient(value, tensors, output_gradients=weights)

        value, grads = (tf.function(run, jit_compile=True) if jit_compile else run)([tf.constant(a) for a in arrays])
        return value.numpy(), [g.numpy() for g in grads]
    if backend == "jax":
        import jax

        value, pullback = jax.vjp(fn, *arrays)
        weights = np.ones_like(value) if upstream is None else upstream
        return np.asarray(value), [np.asarray(g) for g in pullback(weights)]
    import torch

    tensors = [torch.from_numpy(a).requires_grad_() for a in arrays]
    value = fn(*tensors)
    value.backward(torch.ones_like(value) if upstream is None else torch.from_numpy(upstream))
    return value.detach().numpy(), [t.grad.numpy() for t in tensors]


def jax_saved_residual_types(fn, *arrays):
    """The types (e.g. 'f32[2,4,17,17]') of the tensors JAX keeps for fn's backward pass.

    Parsed from `jax.ad_checkpoint.print_saved_residuals` (JAX backend only).
    """
    import contextlib
    import io

    import jax

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        jax.ad_checkpoint.print_saved_residuals(fn, *arrays)
    return [line.split(" ")[0] for line in printed.getvalue().splitlines() if line.strip()]


@contextlib.contextmanager
def counted_calls(module, name):
    """Replaces `module.name` by a wrapper that appends to the yielded list on every call; restores it after."""
    calls = []
    original = getattr(module, name)
    setattr(module, name, lambda *args: calls.append(1) or original(*args))
    try:
        yield calls
    finally:
        setattr(module, name, original)
