"""Run under each Keras backend by test_layers.py: GELU's value and gradient, saved for comparison.

Usage: KERAS_BACKEND=jax python tests/gelu_gradient_check.py OUT.npz
"""

import sys

import keras
import numpy as np

from keras_vit.layers.activations import get_activation


def value_and_gradient(x):
    gelu = get_activation("gelu")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            value = gelu(tensor)
        return value.numpy(), tape.gradient(value, tensor).numpy()
    if backend == "jax":
        import jax

        value, pullback = jax.vjp(gelu, x)
        return np.asarray(value), np.asarray(pullback(np.ones_like(x))[0])
    import torch

    tensor = torch.from_numpy(x).requires_grad_()
    value = gelu(tensor)
    value.sum().backward()
    return value.detach().numpy(), tensor.grad.numpy()


def main(path):
    value, gradient = value_and_gradient(np.linspace(-8, 8, 1601).astype("float32"))
    np.savez(path, value=value, gradient=gradient)


if __name__ == "__main__":
    main(sys.argv[1])
