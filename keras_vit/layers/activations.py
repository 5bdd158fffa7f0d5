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


def _gelu_derivative(x, cdf):
    """GELU'(x) = Φ(x) + x·φ(x), given Φ(x)."""
    pdf = ops.exp(-0.5 * ops.square(x)) * (1.0 / math.sqrt(2.0 * math.pi))  # φ(x)
    return cdf + x * pdf


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
        return upstream * _gelu_derivative(x_, cdf_)

    return x * cdf, grad


def gelu_matmul(x, kernel, bias=None):
    """`gelu(x) @ kernel + bias`, keeping only `x` and `kernel` for the backward pass where it can.

    The second MLP projection's kernel gradient reads GELU's output, (rows, intermediate), as
    large as GELU's input, which GELU's own gradient keeps. Here the backward pass recomputes
    GELU(x) from `x` instead, so a training step keeps one (rows, intermediate) tensor per
    block instead of two (selective activation recomputation, Korthikanti et al. 2022; 4 of
    17 hidden vectors per token and block): on JAX and in XLA-compiled TensorFlow functions
    (`recomputation.recomputes`), after the incoming gradient (`recomputation.after_gradient`),
    and on PyTorch with its native GELU kernels (`gelu_backward`), where the bias joins the
    matmul (`torch.addmm`, as in `projection.project`). TensorFlow without XLA computes
    `ops.matmul(gelu(x), kernel) + bias`, as `gelu` keeps Φ(x) there. Values and gradients
    equal those of that composition to float32 rounding. DeiT-S/16 training steps peak lower
    by 0.17-0.29 GiB (`benchmarks/README.md`).

    Args:
        x: (rows, intermediate) float tensor, GELU's input.
        kernel: (intermediate, out) tensor of x's dtype.
        bias: optional (out,) tensor of x's dtype.

    Returns:
        (rows, out) tensor of x's dtype.

    >>> x = keras.ops.convert_to_tensor([[0.0, 1.0]])
    >>> round(float(keras.ops.convert_to_numpy(gelu_matmul(x, keras.ops.ones((2, 1))))[0, 0]), 4)  # GELU(0) + GELU(1)
    0.8413
    """
    if keras.backend.backend() == "torch" or recomputes():  # recomputes(): JAX, XLA-compiled TensorFlow
        return _gelu_matmul_recomputing(x, kernel, bias)
    return _plus_bias(ops.matmul(gelu(x), kernel), bias)


def _gelu_matmul_recomputing(x, kernel, bias):
    if keras.backend.backend() == "torch":
        zero = ops.zeros(kernel.shape[-1:], kernel.dtype)
        return _gelu_matmul_torch(x, kernel, zero if bias is None else bias)
    return _plus_bias(_gelu_matmul_closed_form(x, kernel), bias)


def _plus_bias(outputs, bias):
    return outputs if bias is None else outputs + bias


@custom_gradient
def _gelu_matmul_closed_form(x, kernel):
    def grad(*args, upstream=None):
        upstream = args[0] if upstream is None else upstream
        (x_,) = after_gradient(upstream, x)
        cdf = _normal_cdf(x_)
        d_kernel = ops.matmul(ops.transpose(x_ * cdf), upstream)
        return ops.matmul(upstream, ops.transpose(kernel)) * _gelu_derivative(x_, cdf), d_kernel

    return ops.matmul(x * _normal_cdf(x), kernel), grad


@custom_gradient
def _gelu_matmul_torch(x, kernel, bias):
    # PyTorch runs the backward pass after the forward pass by construction. Its native GELU
    # kernels make one temporary each, where the closed form makes five: with glibc's default
    # malloc those extra (rows, intermediate) temporaries left a DeiT-S/16 step at 224 px batch
    # 16 peaking 0.27 GiB above keeping GELU(x) (probe, benchmarks/README.md).
    import torch

    def grad(*args, upstream=None):
        upstream = args[0] if upstream is None else upstream
        d_kernel = ops.matmul(ops.transpose(ops.gelu(x, approximate=False)), upstream)
        d_x = torch.ops.aten.gelu_backward(ops.matmul(upstream, ops.transpose(kernel)), x)
        return d_x, d_kernel, ops.sum(upstream, axis=0)

    return torch.addmm(bias, ops.gelu(x, approximate=False), kernel), grad


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
