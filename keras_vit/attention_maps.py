"""Where a ViT/DeiT looks: per-layer attention, attention rollout, and a PNG overlay of the [CLS] map.

>>> import keras_vit, tempfile
>>> config = keras_vit.DeiTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
...                               intermediate_size=37, image_size=32, patch_size=8, num_labels=3)
>>> model = keras_vit.DeiTForImageClassificationWithTeacher(config)
>>> image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
>>> pixel_values = (image[None] / 255.0 - 0.5) / 0.5                # ViTImageProcessor's defaults
>>> attentions = attention_maps(model, pixel_values)               # num_layers x (batch, heads, seq, seq)
>>> rollout = attention_rollout(attentions)                         # (batch, seq, seq)
>>> cls_map = cls_attention_map(rollout, model.config.grid_size, num_prefix_tokens=2)  # DeiT: 2 tokens
>>> tuple(cls_map.shape)
(1, 4, 4)
>>> path = save_attention_overlay(image, cls_map[0], tempfile.mkdtemp() + "/attention.png")
"""

from pathlib import Path

import numpy as np
from keras import ops
from PIL import Image

from keras_vit.atomic import atomic_path
from keras_vit.models.base import VisionTransformer

HEAD_FUSIONS = ("mean", "max", "min")


def attention_maps(model, pixel_values):
    """Runs `model` on `pixel_values` and returns its attention probabilities, layer by layer.

    A model built without `output_attentions=True` is rebuilt with it from its config and
    given the same weights, on every call; build the model with `output_attentions=True`
    to skip that when mapping many batches.

    Args:
        model: a keras_vit model (any `VisionTransformer`).
        pixel_values: float32 (batch, height, width, channels) (or the model's
            data_format), normalised as the model's image processor does.

    Returns:
        tuple of num_hidden_layers float32 tensors (batch, heads, seq, seq), rows summing to
        1; seq = num_prefix_tokens ([CLS], and DeiT's distillation token) + num_patches.

    Raises:
        ValueError: `model` is not a keras_vit model, or the inputs are (as the model raises).
    """
    if not isinstance(model, VisionTransformer):
        raise ValueError(f"Expected a keras_vit model (a VisionTransformer). Received: {type(model).__name__}")
    if not model.output_attentions:
        weights = model.get_weights()
        model = type(model).from_config({**model.get_config(), "output_attentions": True})
        model.set_weights(weights)
    return tuple(model(pixel_values, training=False)["attentions"])


def attention_rollout(attentions, head_fusion="mean", discard_ratio=0.0):
    """Attention rollout (Abnar & Zuidema 2020, section 3): attention flow from the inputs to each token.

    Per layer: fuse the heads (mean, max or min); optionally zero the `discard_ratio`
    fraction of smallest fused weights of each image (weights tied with the largest
    discarded one go too; the idea of jacobgil/vit-explain); add the identity for the residual connection and renormalise the
    rows; then multiply the layers, last on the left: R = Â_L · … · Â_1.

    Args:
        attentions: sequence of num_layers tensors (batch, heads, seq, seq), from
            `attention_maps`.
        head_fusion: "mean", "max" or "min".
        discard_ratio: float in [0, 1).

    Returns:
        float32 tensor (batch, seq, seq) whose rows sum to 1; row i is how much each input
        token flows into token i at the last layer.

    Raises:
        ValueError: no layers, a tensor that is not (batch, heads, seq, seq), an unknown
            head_fusion or a discard_ratio outside [0, 1).

    >>> import keras
    >>> keras.ops.convert_to_numpy(attention_rollout([keras.ops.full((1, 2, 3, 3), 1 / 3)]))[0, 0]  # (A + I) / 2
    array([0.6666667 , 0.16666667, 0.16666667], dtype=float32)
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"Expected head_fusion to be one of {HEAD_FUSIONS}. Received: head_fusion={head_fusion!r}")
    if not 0 <= discard_ratio < 1:
        raise ValueError(f"Expected discard_ratio in [0, 1). Received: discard_ratio={discard_ratio}")
    if not attentions:
        raise ValueError("Expected at least one layer of attentions. Received: an empty sequence")
    rollout = None
    for attention in attentions:
        shape = tuple(attention.shape)
        if len(shape) != 4 or shape[2] != shape[3]:
            raise ValueError(f"Expected attentions of shape (batch, heads, seq, seq). Received: shape={shape}")
        fused = getattr(ops, head_fusion)(ops.cast(attention, "float32"), axis=1)
        seq = shape[2]
        discarded = int(seq * seq * discard_ratio)
        if discarded:
            flat = ops.reshape(fused, (-1, seq * seq))
            threshold = ops.sort(flat, axis=-1)[:, discarded - 1 : discarded]
            fused = ops.reshape(ops.where(flat > threshold, flat, 0.0), (-1, seq, seq))
        layer = fused + ops.eye(seq, dtype="float32")
        layer = layer / ops.sum(layer, axis=-1, keepdims=True)
        rollout = layer if rollout is None else ops.matmul(layer, rollout)
    return rollout


def cls_attention_map(rollout, grid_size, num_prefix_tokens):
    """The [CLS] token's row of a rollout over the patches, as an image-shaped grid.

    Args:
        rollout: tensor (batch, seq, seq), from `attention_rollout` (or one layer's fused
            attention).
        grid_size: (rows, cols) of the patch grid, e.g. `model.config.grid_size`.
        num_prefix_tokens: tokens before the patches: 1 for ViT ([CLS]), 2 for DeiT
            ([CLS], distillation).

    Returns:
        float32 tensor (batch, rows, cols): attention of [CLS] on each patch (not renormalised).

    Raises:
        ValueError: seq is not num_prefix_tokens + rows · cols.
    """
    rows, cols = grid_size
    seq = rollout.shape[-1]
    if seq != num_prefix_tokens + rows * cols:
        raise ValueError(
            "Expected seq = num_prefix_tokens + rows * cols. Received: "
            f"seq={seq}, num_prefix_tokens={num_prefix_tokens}, grid_size={tuple(grid_size)}"
        )
    return ops.reshape(ops.cast(rollout[:, 0, num_prefix_tokens:], "float32"), (-1, rows, cols))


def save_attention_overlay(image, attention_map, path, alpha=0.5, cmap="jet"):
    """Writes `image` blended with a colour-mapped `attention_map` as a PNG of the image's size.

    The map is min-max scaled to [0, 1], resized bilinearly to the image, coloured with the
    matplotlib colormap `cmap` and blended: (1 − alpha)·image + alpha·colour. The file is
    written to a temporary sibling and renamed onto `path`, so it is never half-written.
    Needs matplotlib (`pip install keras-vit[plot]`).

    Args:
        image: array (height, width, 3) or (height, width) (grey): uint8 in [0, 255] or float
            in [0, 1] (the original picture, not the normalised pixel_values).
        attention_map: array (rows, cols), e.g. `cls_attention_map(...)[i]`.
        path: str or path of the PNG file; parent directories are created.
        alpha: float in [0, 1], opacity of the colour map.
        cmap: str, matplotlib colormap name.

    Returns:
        `pathlib.Path` of the written file.

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: an image or map of the wrong rank, or alpha outside [0, 1].
    """
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            "save_attention_overlay needs matplotlib; install it with `pip install keras-vit[plot]`."
        ) from error
    image = np.asarray(image)
    attention_map = np.asarray(ops.convert_to_numpy(attention_map), dtype="float32")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"Expected image of shape (height, width, 3) or (height, width). Received: shape={image.shape}"
        )
    if attention_map.ndim != 2:
        raise ValueError(f"Expected attention_map of shape (rows, cols). Received: shape={attention_map.shape}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"Expected alpha in [0, 1]. Received: alpha={alpha}")
    image = image / 255.0 if image.dtype == np.uint8 else np.clip(image.astype("float32"), 0.0, 1.0)
    low, high = attention_map.min(), attention_map.max()
    scaled = (attention_map - low) / (high - low) if high > low else np.zeros_like(attention_map)
    height, width = image.shape[:2]
    resized = np.asarray(Image.fromarray(scaled).resize((width, height), Image.BILINEAR))
    colour = matplotlib.colormaps[cmap](np.clip(resized, 0.0, 1.0))[..., :3]
    blended = np.round(255 * ((1 - alpha) * image + alpha * colour)).astype("uint8")
    with atomic_path(path) as tmp:
        Image.fromarray(blended).save(tmp, format="PNG")
    return Path(path)
