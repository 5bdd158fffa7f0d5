"""Value and gradients of a layer call with the current Keras backend's autodiff.

Used by the shared layer test (tests/layer_test_helper.py), in this process on TensorFlow and
in a fresh process per backend on JAX and PyTorch (tests/layer_check.py).
"""

import keras
import numpy as np
from keras import tree


def _first(output):
    return tree.flatten(output)[0]


def layer_value_and_gradients(layer, inputs, upstream, call_kwargs=None, jit_compile=False):
    """(first output, [gradients of ⟨upstream, first output⟩ w.r.t. each input, then each trainable weight]).

    Float inputs get gradients; others (bool masks) get None. The layer must be built.
    TensorFlow runs a GradientTape over the layer's variables, inside
    `tf.function(jit_compile=...)` when `jit_compile` is not None; JAX differentiates
    `layer.stateless_call` with `jax.vjp` (under `jax.jit` if `jit_compile`); PyTorch runs
    autograd on the variables. Returns numpy arrays in float32.
    """
    call_kwargs = call_kwargs or {}
    backend = keras.backend.backend()
    weights = layer.trainable_variables
    floats = [np.issubdtype(a.dtype, np.floating) for a in inputs]
    if backend == "tensorflow":
        import tensorflow as tf

        def run(tensors):
            with tf.GradientTape() as tape:
                tape.watch([t for t, f in zip(tensors, floats) if f])
                value = tf.cast(_first(layer(*tensors, **call_kwargs)), "float32")
                product = tf.reduce_sum(value * upstream)
            sources = [t for t, f in zip(tensors, floats) if f] + [w.value for w in weights]
            return value, tape.gradient(product, sources)

        if jit_compile is not None:
            run = tf.function(run, jit_compile=jit_compile)
        value, grads = run([tf.constant(a) for a in inputs])
    elif backend == "jax":
        import jax

        non_trainable = [v.value for v in layer.non_trainable_variables]

        def run(*args):
            float_inputs, trainable = args[: sum(floats)], args[sum(floats) :]
            float_iter = iter(float_inputs)
            tensors = [next(float_iter) if f else a for a, f in zip(inputs, floats)]
            out, _ = layer.stateless_call(list(trainable), non_trainable, *tensors, **call_kwargs)
            return _first(out).astype("float32")

        fn = jax.jit(run) if jit_compile else run
        value, pullback = jax.vjp(fn, *[a for a, f in zip(inputs, floats) if f], *[w.value for w in weights])
        grads = pullback(upstream)
    else:
        import torch

        tensors = [torch.from_numpy(a).requires_grad_() if f else torch.from_numpy(a) for a, f in zip(inputs, floats)]
        for w in weights:
            w.value.grad = None
        value = _first(layer(*tensors, **call_kwargs)).float()
        (value * torch.from_numpy(upstream)).sum().backward()
        grads = [t.grad for t, f in zip(tensors, floats) if f] + [w.value.grad for w in weights]
        value = value.detach()
    return _float32(value), [np.zeros(()) if g is None else _float32(g) for g in grads]  # None: not connected


def _float32(tensor):
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(tensor, "float32")))


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
