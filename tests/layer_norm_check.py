"""Run under each Keras backend by test_layers.py: LayerNormalization's value and gradients.

Saves value and the gradients with respect to x, gamma and beta of keras_vit's
`LayerNormalization` for fixed inputs. On JAX it also saves how many tensors of the
input's full size the backward pass keeps (`jax.ad_checkpoint.print_saved_residuals`), for
keras_vit's layer and for `keras.layers.LayerNormalization`.
Usage: KERAS_BACKEND=jax python tests/layer_norm_check.py OUT.npz
"""

import sys

import keras
import numpy as np

from keras_vit.layers.layer_normalization import LayerNormalization
from tests.gradients import jax_saved_residual_types, value_and_gradients

SHAPE = (3, 17, 64)


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


def main(path):
    x, gamma, beta, upstream = inputs()
    value, grads = value_and_gradients(applied(LayerNormalization(epsilon=1e-6)), x, gamma, beta, upstream=upstream)
    results = dict(value=value, d_x=grads[0], d_gamma=grads[1], d_beta=grads[2])
    if keras.backend.backend() == "jax":
        results["residuals"] = full_size_residuals(LayerNormalization(epsilon=1e-6), x, gamma, beta)
        results["keras_residuals"] = full_size_residuals(keras.layers.LayerNormalization(epsilon=1e-6), x, gamma, beta)
    np.savez(path, **results)


if __name__ == "__main__":
    main(sys.argv[1])
