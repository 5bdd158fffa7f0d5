"""Activations by their Hugging Face names (`transformers.activations.ACT2FN`), in `keras.ops`."""

from keras import ops


def gelu(x):
    """Exact GELU, 0.5·x·(1 + erf(x/√2)) (Hendrycks & Gimpel 2016): Keras' `ops.gelu(x, approximate=False)`."""
    return ops.gelu(x, approximate=False)


def gelu_tanh(x):
    """GELU's tanh approximation, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (`gelu_new`,
    `gelu_pytorch_tanh`, `gelu_fast`): Keras' `ops.gelu(x, approximate=True)`."""
    return ops.gelu(x, approximate=True)


def quick_gelu(x):
    """x·σ(1.702·x), the GELU approximation of CLIP."""
    return x * ops.sigmoid(1.702 * x)


def linear(x):
    return x


ACTIVATIONS = {
    "gelu": gelu,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu_fast": gelu_tanh,
    "quick_gelu": quick_gelu,
    "relu": ops.relu,
    "silu": ops.silu,
    "swish": ops.silu,
    "tanh": ops.tanh,
    "sigmoid": ops.sigmoid,
    "linear": linear,
}


def get_activation(name):
    """Returns the activation function for a Hugging Face activation name.

    Raises:
        ValueError: if `name` is not a key of `ACTIVATIONS`.
    """
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"Expected an activation name, one of {sorted(ACTIVATIONS)}. Received: {name!r}")
    return ACTIVATIONS[name]
