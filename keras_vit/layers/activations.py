"""Activations by their Hugging Face names (`transformers.activations.ACT2FN`), in `keras.ops`."""

import math

import keras
from keras import ops

from keras_vit.layers.custom_gradient import custom_gradient
from keras_vit.layers.recomputation import after_gradient, recomputes

# Backends whose autodiff of `ops.gelu` keeps several (batch, seq, intermediate) temporaries
# for the backward pass; PyTorch's native GELU keeps only its input.
GELU_WITH_OWN_GRADIENT_BACKENDS = ("tensorflow", "jax")


def gelu(x):
    """Exact GELU, 0.5·x·(1 + erf(x/√2)) (Hendrycks & Gimpel 2016).

    On TensorFlow and JAX the value is x·Φ(x) and the gradient GELU's closed form,
    dy·(Φ(x) + x·φ(x)), so training keeps x and Φ(x) for the backward pass instead of the
    erf chain's temporaries, and on JAX and in XLA-compiled TensorFlow functions only x,
    recomputing Φ(x) in the backward pass (`recomputation.recomputes`); less peak memory
    for a training step, see `benchmarks/README.md`. Values within 1e-6 of
    `ops.gelu(x, approximate=False)`.
    """
    if keras.backend.backend() in GELU_WITH_OWN_GRADIENT_BACKENDS:
        return _gelu_closed_form_gradient(x)
    return ops.gelu(x, approximate=False)


def _normal_cdf(x):
    """Φ(x) = (1 + erf(x/√2))/2."""
    return 0.5 * (1.0 + ops.erf(x * math.sqrt(0.5)))


@custom_gradient
def _gelu_closed_form_gradient(x):
    cdf = _normal_cdf(x)  # kept unless recomputes()

    def grad(*args, upstream=None):
        upstream = args[0] if upstream is None else upstream
        if recomputes():
            (x_,) = after_gradient(upstream, x)
            cdf_ = _normal_cdf(x_)
        else:
            x_, cdf_ = x, cdf
        pdf = ops.exp(-0.5 * ops.square(x_)) * (1.0 / math.sqrt(2.0 * math.pi))  # φ(x)
        return upstream * (cdf_ + x_ * pdf)

    return x * cdf, grad


def gelu_tanh(x):
    """GELU with the tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`)."""
    return 0.5 * x * (1.0 + ops.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


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
