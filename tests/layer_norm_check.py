"""Run under each Keras backend by test_layers.py: LayerNormalization's and `layer_norm_dense`'s values and gradients.

Saves value and the gradients with respect to x, gamma and beta of keras_vit's
`LayerNormalization` for fixed inputs, and those of `layer_norm_dense` (a layer norm into a
Dense projection) with respect to x, gamma, beta, kernel and bias, with whether it took the
fused gradient that recomputes the layer norm; on TensorFlow eagerly and inside
`tf.function(jit_compile=True)`. On JAX it also saves how many tensors of the input's full
size the backward passes keep (`jax.ad_checkpoint.print_saved_residuals`): for keras_vit's
layer, `keras.layers.LayerNormalization`, `layer_norm_dense` and its composition.
Usage: KERAS_BACKEND=jax python tests/layer_norm_check.py OUT.npz
"""

import sys

import keras
import numpy as np

from keras_vit.layers import layer_normalization
from keras_vit.layers.layer_normalization import LayerNormalization, layer_norm_dense
from tests.gradients import counted_calls, jax_saved_residual_types, value_and_gradients

SHAPE = (3, 17, 64)
ROWS = (SHAPE[0] * SHAPE[1], SHAPE[2])  # the tokens layer_norm_dense projects
UNITS = 24


def inputs():
    """x (3, 17, 64) with mean 1 and std 3, gamma, beta (64,), upstream gradient like x."""
    rng = np.random.default_rng(0)
    x = (rng.normal(size=SHAPE) * 3 + 1).astype("float32")
    gamma, beta = (rng.normal(size=SHAPE[-1:]).astype("float32") for _ in range(2))
    return x, gamma, beta, rng.normal(size=SHAPE).astype("float32")


def applied(layer):
    """fn(x, gamma, beta) running `layer` with the given weights (stateless)."""
    layer.build(SHAPE)
    return lambda x, gamma, beta: layer.stateless_call([gamma, beta], [], x)[0]


def full_size_residuals(layer, x, gamma, beta):
    """Number of tensors of x's size that JAX keeps for the backward pass of `layer`."""
    full = "f32[" + ",".join(map(str, SHAPE)) + "]"
    return jax_saved_residual_types(applied(layer), x, gamma, beta).count(full)


def dense_inputs():
    """x (51, 64) as `inputs`' x, gamma, beta (64,), kernel (64, 24), bias (24,), upstream (51, 24)."""
    x, gamma, beta, _ = inputs()
    rng = np.random.default_rng(1)
    shapes = ((ROWS[1], UNITS), (UNITS,), (ROWS[0], UNITS))
    kernel, bias, upstream = (rng.normal(size=shape).astype("float32") for shape in shapes)
    return x.reshape(ROWS), gamma, beta, kernel, bias, upstream


def normalized_projection(fused=True):
    """fn(x, gamma, beta, kernel, bias) = Dense(LayerNorm(x)) with those weights (stateless).

    Through `layer_norm_dense` if `fused`, else as the composition `dense(norm(x))`.
    """
    norm, dense = LayerNormalization(epsilon=1e-6), keras.layers.Dense(UNITS)
    norm.build(ROWS)
    dense.build(ROWS)

    def fn(x, gamma, beta, kernel, bias):
        with keras.StatelessScope([(norm.gamma, gamma), (norm.beta, beta), (dense.kernel, kernel), (dense.bias, bias)]):
            return layer_norm_dense(norm, dense, x) if fused else dense(norm(x))

    return fn


def layer_norm_dense_results(prefix, jit_compile=False):
    """`layer_norm_dense`'s value and gradients, and whether it took its fused gradient."""
    with counted_calls(layer_normalization, "_layer_norm_matmul") as calls:
        *arrays, upstream = dense_inputs()
        value, grads = value_and_gradients(normalized_projection(), *arrays, upstream=upstream, jit_compile=jit_compile)
    names = ("d_x", "d_gamma", "d_beta", "d_kernel", "d_bias")
    results = {f"{prefix}_{name}": grad for name, grad in zip(names, grads)}
    return {f"{prefix}_value": value, **results, f"{prefix}_fused": bool(calls)}


def main(path):
    x, gamma, beta, upstream = inputs()
    value, grads = value_and_gradients(applied(LayerNormalization(epsilon=1e-6)), x, gamma, beta, upstream=upstream)
    results = dict(value=value, d_x=grads[0], d_gamma=grads[1], d_beta=grads[2], **layer_norm_dense_results("dense"))
    backend = keras.backend.backend()
    if backend == "tensorflow":
        results.update(layer_norm_dense_results("dense_xla", jit_compile=True))
    if backend == "jax":
        results["residuals"] = full_size_residuals(LayerNormalization(epsilon=1e-6), x, gamma, beta)
        results["keras_residuals"] = full_size_residuals(keras.layers.LayerNormalization(epsilon=1e-6), x, gamma, beta)
        rows = "f32[" + ",".join(map(str, ROWS)) + "]"
        arrays = dense_inputs()[:-1]
        for name, fused in (("dense_residuals", True), ("composed_dense_residuals", False)):
            results[name] = jax_saved_residual_types(normalized_projection(fused), *arrays).count(rows)
    np.savez(path, **results)


if __name__ == "__main__":
    main(sys.argv[1])
