"""A `keras.layers.Dense` applied to tokens, with its bias fused into the matmul on PyTorch."""

import keras
from keras import ops

# Backends on which `project` runs an unquantized `Dense` with a bias as one `addmm`
# (`torch.addmm(bias, tokens, kernel)`, what `torch.nn.functional.linear` runs), as Hugging
# Face's `nn.Linear` layers do: Keras' `Dense` there adds the bias in a second pass over the
# (rows, units) output, into a newly allocated tensor. With `attention._split_heads`' unstack,
# a DeiT-S/16 step on PyTorch at 384 px batch 8 took 4.70 s against 5.11 s (224 px batch 16:
# 2.70 s against 2.82 s), where transformers took 4.71 s and 2.88 s (benchmarks/README.md).
FUSED_BIAS_BACKENDS = ("torch",)


def project(dense, tokens):
    """`dense(tokens)` for tokens (rows, in), in one matmul with the bias where it can.

    On the backends in `FUSED_BIAS_BACKENDS`, for a built, unquantized `dense` with a bias and
    no activation, this is `torch.addmm(bias, tokens, kernel)` with the layer's kernel (LoRA
    factors included) and bias cast to its compute dtype: the same function as `dense(tokens)`
    to float32 rounding, whose backward pass computes the bias gradient as the sum of the
    incoming gradient's rows, as Keras' composition does. Elsewhere, for inputs that are not
    2-D or not of the layer's compute dtype, it calls `dense(tokens)`.

    Args:
        dense: a `keras.layers.Dense`.
        tokens: float tensor (rows, dense's input width) of `dense`'s compute dtype.

    Returns:
        (rows, dense.units) tensor of `dense`'s compute dtype.

    >>> dense = keras.layers.Dense(2, kernel_initializer="ones", bias_initializer="ones")
    >>> keras.ops.convert_to_numpy(project(dense, keras.ops.ones((1, 3)))).tolist()
    [[4.0, 4.0]]
    """
    if not fuses_bias(dense, tokens):
        return dense(tokens)
    import torch

    compute_dtype = dense.compute_dtype
    return torch.addmm(ops.cast(dense.bias, compute_dtype), tokens, ops.cast(dense.kernel, compute_dtype))


def fuses_bias(dense, tokens):
    """Whether `project(dense, tokens)` runs one `addmm` (see `project`)."""
    return (
        keras.backend.backend() in FUSED_BIAS_BACKENDS
        and multiplies_by_kernel(dense)
        and dense.bias is not None
        and len(tokens.shape) == 2
        and keras.backend.standardize_dtype(tokens.dtype) == dense.compute_dtype
    )


def multiplies_by_kernel(dense):
    """Whether `dense` computes `inputs @ dense.kernel (+ bias)`: built, unquantized, no activation."""
    return dense.built and dense.quantization_mode is None and dense.activation is keras.activations.linear
