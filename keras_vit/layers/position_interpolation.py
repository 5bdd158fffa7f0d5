"""Bicubic resampling of a grid of position embeddings, matching PyTorch exactly.

`torch.nn.functional.interpolate(mode="bicubic", align_corners=False)` uses the Keys cubic
kernel with a = -0.75 and clamps source indices at the border; TensorFlow and JAX bicubic
resizes use a = -0.5 and differ by ~1e-2. Hugging Face ViT/DeiT interpolate position
embeddings with the PyTorch kernel, so this module re-implements it with `keras.ops`: the
resize is separable, so it is two small interpolation matrices applied with one einsum.
The output size may be a symbolic tensor (dynamic image sizes in a graph).
"""

from keras import ops

_A = -0.75  # PyTorch's cubic convolution coefficient.


def _near(t):
    """Kernel weight for |distance| = t <= 1."""
    return ((_A + 2.0) * t - (_A + 3.0)) * t * t + 1.0


def _far(t):
    """Kernel weight for 1 < |distance| = t < 2."""
    return ((_A * t - 5.0 * _A) * t + 8.0 * _A) * t - 4.0 * _A


def bicubic_matrix(in_size, out_size):
    """Returns the (out_size, in_size) float32 matrix of a 1-D PyTorch bicubic resize.

    Args:
        in_size: int, source length.
        out_size: int or scalar int tensor, target length.
    """
    scale = ops.cast(in_size, "float32") / ops.cast(out_size, "float32")
    src = (ops.arange(out_size, dtype="float32") + 0.5) * scale - 0.5
    base = ops.floor(src)
    t = src - base
    weights = (_far(t + 1.0), _near(t), _near(1.0 - t), _far(2.0 - t))
    matrix = 0.0
    for offset, weight in zip((-1, 0, 1, 2), weights):
        index = ops.cast(ops.clip(base + offset, 0, in_size - 1), "int32")
        matrix = matrix + ops.one_hot(index, in_size, dtype="float32") * weight[:, None]
    return matrix


def resample_grid(grid, out_height, out_width):
    """Resizes a (rows, cols, channels) grid to (out_height, out_width, channels), in float32.

    Equals `torch.nn.functional.interpolate(grid.permute(2, 0, 1)[None], size=(out_height,
    out_width), mode="bicubic", align_corners=False)` up to float32 rounding.
    """
    grid = ops.cast(grid, "float32")
    rows, cols = grid.shape[0], grid.shape[1]
    return ops.einsum(
        "ph,hwc,qw->pqc", bicubic_matrix(rows, out_height), grid, bicubic_matrix(cols, out_width)
    )


def resample_position_embeddings(position_embeddings, grid_size, new_grid_size, num_prefix_tokens):
    """Resamples (1, prefix + rows·cols, dim) position embeddings to a new patch grid.

    The prefix tokens ([CLS], distillation) are kept apart and unchanged; the patch part is
    resized bicubically in float32 (timm `resample_abs_pos_embed`, Hugging Face
    `interpolate_pos_encoding`).

    Args:
        position_embeddings: tensor (1, num_prefix_tokens + rows·cols, dim).
        grid_size: (rows, cols) of the stored grid.
        new_grid_size: (new_rows, new_cols), ints or scalar tensors.
        num_prefix_tokens: int, leading tokens that are not patches.

    Returns:
        float32 tensor (1, num_prefix_tokens + new_rows·new_cols, dim).
    """
    dim = position_embeddings.shape[-1]
    prefix = ops.cast(position_embeddings[:, :num_prefix_tokens], "float32")
    grid = ops.reshape(position_embeddings[0, num_prefix_tokens:], (grid_size[0], grid_size[1], dim))
    patches = resample_grid(grid, new_grid_size[0], new_grid_size[1])
    return ops.concatenate([prefix, ops.reshape(patches, (1, -1, dim))], axis=1)
