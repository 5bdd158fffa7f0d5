"""Run under each Keras backend by test_layers.py: GELU's and `gelu_matmul`'s values and gradients.

Saves GELU's value and gradient on a grid, and `gelu_matmul`'s value and gradients for fixed
inputs, with whether it took its gradient that recomputes GELU(x). On TensorFlow `gelu_matmul`
runs eagerly and inside `tf.function(jit_compile=True)`, where it recomputes. On JAX it also
saves the types of the tensors its backward pass keeps, and those of
`ops.matmul(gelu(x), kernel)`'s.
Usage: KERAS_BACKEND=jax python tests/gelu_gradient_check.py OUT.npz
"""

import sys

import keras
import numpy as np

from keras_vit.layers import activations
from keras_vit.layers.activations import gelu, gelu_matmul, get_activation
from tests.gradients import counted_calls, jax_saved_residual_types, value_and_gradients


def matmul_inputs():
    """x (24, 40) in [-4, 4], kernel (40, 8), bias (8,), upstream gradient (24, 8)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-4, 4, size=(24, 40)).astype("float32")
    kernel, bias, upstream = (rng.normal(size=shape).astype("float32") for shape in ((40, 8), (8,), (24, 8)))
    return x, kernel, bias, upstream


def gelu_matmul_results(prefix, jit_compile=False):
    """`gelu_matmul`'s value and gradients, and whether it took its recomputing gradient."""
    with counted_calls(activations, "_gelu_matmul_recomputing") as calls:
        x, kernel, bias, upstream = matmul_inputs()
        value, (d_x, d_kernel, d_bias) = value_and_gradients(
            gelu_matmul, x, kernel, bias, upstream=upstream, jit_compile=jit_compile
        )
    return {
        f"{prefix}_value": value,
        f"{prefix}_d_x": d_x,
        f"{prefix}_d_kernel": d_kernel,
        f"{prefix}_d_bias": d_bias,
        f"{prefix}_recomputed": bool(calls),
    }


def main(path):
    value, (gradient,) = value_and_gradients(get_activation("gelu"), np.linspace(-8, 8, 1601).astype("float32"))
    results = dict(value=value, gradient=gradient, **gelu_matmul_results("matmul"))
    backend = keras.backend.backend()
    if backend == "tensorflow":
        results.update(gelu_matmul_results("matmul_xla", jit_compile=True))
    if backend == "jax":
        x, kernel, _, _ = matmul_inputs()
        results["residuals"] = jax_saved_residual_types(gelu_matmul, x, kernel)
        results["composed_residuals"] = jax_saved_residual_types(lambda x, k: keras.ops.matmul(gelu(x), k), x, kernel)
    np.savez(path, **results)


if __name__ == "__main__":
    main(sys.argv[1])
