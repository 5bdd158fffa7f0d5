"""The losses the Hugging Face models compute when given labels, in `keras.ops`.

Used by the models when they are compiled without a `loss` (as the Hugging Face TF models
did): `classification_loss` for the classifiers, `simmim_loss` for masked image modeling.
"""

from keras import ops


def weighted_mean(per_example, sample_weight):
    """Mean of a (batch,) tensor, weighted by an optional (batch,) sample_weight."""
    if sample_weight is None:
        return ops.mean(per_example)
    sample_weight = ops.cast(ops.reshape(sample_weight, (-1,)), per_example.dtype)
    return ops.sum(per_example * sample_weight) / ops.maximum(ops.sum(sample_weight), 1e-12)


def classification_loss(labels, logits, sample_weight=None):
    """Hugging Face's `problem_type` rule for classifier losses.

    - one output (`num_labels == 1`): mean squared error (regression);
    - integer labels (batch,) or (batch, 1): softmax cross-entropy;
    - float labels (batch, num_labels): sigmoid cross-entropy (multi-label).

    Args:
        labels: tensor as above.
        logits: float tensor (batch, num_labels).
        sample_weight: optional tensor (batch,).

    Returns:
        float32 scalar.

    Raises:
        ValueError: if float labels do not have the shape of the logits.
    """
    logits = ops.cast(logits, "float32")
    num_labels = logits.shape[-1]
    if num_labels == 1:
        labels = ops.cast(ops.reshape(labels, (-1,)), "float32")
        per_example = ops.square(ops.reshape(logits, (-1,)) - labels)
    elif "int" in str(labels.dtype) or len(labels.shape) == 1 or labels.shape[-1] == 1:
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        per_example = ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    else:
        if labels.shape[-1] != num_labels:
            raise ValueError(
                f"Expected multi-label float labels of shape (batch, {num_labels}). Received: shape={labels.shape}"
            )
        per_example = ops.mean(
            ops.binary_crossentropy(ops.cast(labels, "float32"), logits, from_logits=True), axis=-1
        )
    return weighted_mean(per_example, sample_weight)


def simmim_loss(pixel_values, reconstruction, bool_masked_pos, patch_size, sample_weight=None):
    """SimMIM L1 loss on masked patches (Xie et al. 2022, eq. 1; Hugging Face ViTForMaskedImageModeling).

    sum(|pixel_values − reconstruction| · mask) / (sum(mask) + 1e-5) / channels, with the
    per-patch mask upsampled to pixels.

    Args:
        pixel_values: float tensor (batch, height, width, channels), channels last.
        reconstruction: float tensor of the same shape.
        bool_masked_pos: bool/int tensor (batch, rows·cols), rows = height / patch_size[0].
        patch_size: (height, width) of one patch.
        sample_weight: optional tensor (batch,), weights each image's masked pixels.

    Returns:
        float32 scalar.
    """
    pixel_values = ops.cast(pixel_values, "float32")
    reconstruction = ops.cast(reconstruction, "float32")
    shape = ops.shape(pixel_values)
    rows, cols = shape[1] // patch_size[0], shape[2] // patch_size[1]
    mask = ops.reshape(ops.cast(bool_masked_pos, "float32"), (shape[0], rows, cols))
    mask = ops.repeat(ops.repeat(mask, patch_size[0], axis=1), patch_size[1], axis=2)[..., None]
    if sample_weight is not None:
        mask = mask * ops.cast(ops.reshape(sample_weight, (-1, 1, 1, 1)), "float32")
    error = ops.abs(pixel_values - reconstruction) * mask
    return ops.sum(error) / (ops.sum(mask) + 1e-5) / ops.cast(pixel_values.shape[-1], "float32")
