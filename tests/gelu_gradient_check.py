"""Run under each Keras backend by test_layers.py: GELU's value and gradient, saved for comparison.

Usage: KERAS_BACKEND=jax python tests/gelu_gradient_check.py OUT.npz
"""

import sys

import numpy as np

from keras_vit.layers.activations import get_activation
from tests.gradients import value_and_gradients


def main(path):
    value, (gradient,) = value_and_gradients(get_activation("gelu"), np.linspace(-8, 8, 1601).astype("float32"))
    np.savez(path, value=value, gradient=gradient)


if __name__ == "__main__":
    main(sys.argv[1])
