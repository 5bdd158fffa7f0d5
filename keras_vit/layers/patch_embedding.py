"""Patch, [CLS], distillation, mask and position embeddings of ViT and DeiT."""

import keras
from keras import ops

from keras_vit.layers.position_interpolation import resample_position_embeddings


@keras.saving.register_keras_serializable(package="keras_vit")
class PatchEmbedding(keras.layers.Layer):
    """Turns images into the token sequence a ViT/DeiT encoder reads.

    Splits the image into non-overlapping patches, projects each with a strided
    convolution, optionally replaces masked patches by a learned mask token (SimMIM),
    prepends the [CLS] token (and DeiT's distillation token), adds learned absolute position
    embeddings and applies dropout. Matches Hugging Face `ViTEmbeddings` / `DeiTEmbeddings`.

    With `interpolate_pos_encoding=True` the position embeddings are resized bicubically to
    the input's patch grid (PyTorch's kernel, see `position_interpolation`), so images of
    other resolutions can be used (Dosovitskiy et al. 2021, section 3.2).

    Args:
        image_size: (height, width) in pixels the position embeddings are learned for.
        patch_size: (height, width) of one patch in pixels; must divide `image_size`.
        hidden_size: int, embedding width.
        use_distillation_token: bool, add DeiT's distillation token after [CLS].
        use_mask_token: bool, create the mask token used with `bool_masked_pos`.
        dropout: float in [0, 1), dropout rate on the output.
        initializer_range: float, std of the truncated-normal initializers.

    Call arguments:
        pixel_values: float tensor (batch, height, width, channels), channels last, any
            range (the model's processor normalises it).
        bool_masked_pos: optional bool/int tensor (batch, num_patches); true entries are
            replaced by the mask token. Requires `use_mask_token=True`.
        interpolate_pos_encoding: bool, resize position embeddings to the input size.
        training: bool, enables dropout.

    Returns:
        tensor (batch, num_prefix_tokens + num_patches, hidden_size) in the compute dtype,
        with num_prefix_tokens = 1 (ViT) or 2 (DeiT).

    Raises:
        ValueError: bad arguments; an input whose size differs from `image_size` without
            `interpolate_pos_encoding`, or is not a multiple of `patch_size` with it;
            `bool_masked_pos` without `use_mask_token` or of the wrong shape.

    >>> layer = PatchEmbedding((32, 32), (8, 8), hidden_size=16)
    >>> tuple(layer(keras.ops.zeros((2, 32, 32, 3))).shape)
    (2, 17, 16)
    """

    def __init__(
        self,
        image_size,
        patch_size,
        hidden_size,
        use_distillation_token=False,
        use_mask_token=False,
        dropout=0.0,
        initializer_range=0.02,
        **kwargs,
    ):
        super().__init__(autocast=False, **kwargs)
        image_size, patch_size = tuple(image_size), tuple(patch_size)
        if len(image_size) != 2 or len(patch_size) != 2:
            raise ValueError(
                f"Expected image_size and patch_size as (height, width). Received: "
                f"image_size={image_size}, patch_size={patch_size}"
            )
        if image_size[0] % patch_size[0] or image_size[1] % patch_size[1]:
            raise ValueError(
                f"Expected patch_size to divide image_size. Received: image_size={image_size}, patch_size={patch_size}"
            )
        if not 0 <= dropout < 1:
            raise ValueError(f"Expected dropout in [0, 1). Received: dropout={dropout}")
        self.image_size = image_size
        self.patch_size = patch_size
        self.hidden_size = hidden_size
        self.use_distillation_token = use_distillation_token
        self.use_mask_token = use_mask_token
        self.dropout = dropout
        self.initializer_range = initializer_range
        self.grid_size = (image_size[0] // patch_size[0], image_size[1] // patch_size[1])
        self.num_prefix_tokens = 2 if use_distillation_token else 1
        self.projection = keras.layers.Conv2D(
            hidden_size,
            kernel_size=patch_size,
            strides=patch_size,
            padding="valid",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range),
            dtype=self.dtype_policy,
            name="projection",
        )
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy, name="dropout")

    def build(self, input_shape):
        self.projection.build(input_shape)
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        self.cls_token = self.add_weight(name="cls_token", shape=(1, 1, self.hidden_size), initializer=init)
        self.distillation_token = None
        if self.use_distillation_token:
            self.distillation_token = self.add_weight(
                name="distillation_token", shape=(1, 1, self.hidden_size), initializer=init
            )
        self.mask_token = None
        if self.use_mask_token:
            self.mask_token = self.add_weight(name="mask_token", shape=(1, 1, self.hidden_size), initializer="zeros")
        num_positions = self.grid_size[0] * self.grid_size[1] + self.num_prefix_tokens
        self.position_embeddings = self.add_weight(
            name="position_embeddings", shape=(1, num_positions, self.hidden_size), initializer=init
        )

    def check_image_size(self, height, width, interpolate_pos_encoding):
        """Raises ValueError if (height, width) in pixels cannot be embedded; None skips the check."""
        if height is None or width is None:
            return
        if interpolate_pos_encoding:
            if height % self.patch_size[0] or width % self.patch_size[1]:
                raise ValueError(
                    f"Expected image height and width to be multiples of patch_size={self.patch_size}. "
                    f"Received: height={height}, width={width}"
                )
        elif (height, width) != self.image_size:
            raise ValueError(
                f"Expected images of size {self.image_size} (height, width); set interpolate_pos_encoding=True "
                f"for other sizes. Received: height={height}, width={width}"
            )

    def call(self, pixel_values, bool_masked_pos=None, interpolate_pos_encoding=False, training=None):
        self.check_image_size(pixel_values.shape[1], pixel_values.shape[2], interpolate_pos_encoding)
        dtype = self.compute_dtype
        patches = self.projection(pixel_values)
        grid = ops.shape(patches)
        batch = grid[0]
        embeddings = ops.reshape(patches, (batch, -1, self.hidden_size))
        if bool_masked_pos is not None:
            if self.mask_token is None:
                raise ValueError(
                    "Received bool_masked_pos, but this layer has no mask token. Build it with use_mask_token=True."
                )
            num_patches = patches.shape[1] * patches.shape[2] if None not in patches.shape[1:3] else None
            if len(bool_masked_pos.shape) != 2 or None not in (num_patches, bool_masked_pos.shape[1]) and (
                bool_masked_pos.shape[1] != num_patches
            ):
                raise ValueError(
                    f"Expected bool_masked_pos of shape (batch, {num_patches}), one entry per patch. "
                    f"Received: shape={tuple(bool_masked_pos.shape)}"
                )
            mask = ops.expand_dims(ops.cast(bool_masked_pos, dtype), -1)
            embeddings = embeddings * (1.0 - mask) + ops.cast(self.mask_token, dtype) * mask
        prefix = [self.cls_token] + ([self.distillation_token] if self.distillation_token is not None else [])
        prefix = [ops.broadcast_to(ops.cast(t, dtype), (batch, 1, self.hidden_size)) for t in prefix]
        embeddings = ops.concatenate(prefix + [embeddings], axis=1)
        new_grid = (patches.shape[1], patches.shape[2])
        if interpolate_pos_encoding and new_grid != self.grid_size:
            if None in new_grid:
                new_grid = (grid[1], grid[2])
            positions = resample_position_embeddings(
                self.position_embeddings, self.grid_size, new_grid, self.num_prefix_tokens
            )
        else:
            positions = self.position_embeddings
        embeddings = embeddings + ops.cast(positions, dtype)
        return self.dropout_layer(embeddings, training=training)

    def compute_output_shape(self, input_shape, *args, **kwargs):
        height, width = input_shape[1], input_shape[2]
        if height is None or width is None:
            seq = None
        else:
            seq = (height // self.patch_size[0]) * (width // self.patch_size[1]) + self.num_prefix_tokens
        return (input_shape[0], seq, self.hidden_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            image_size=self.image_size,
            patch_size=self.patch_size,
            hidden_size=self.hidden_size,
            use_distillation_token=self.use_distillation_token,
            use_mask_token=self.use_mask_token,
            dropout=self.dropout,
            initializer_range=self.initializer_range,
        )
        return config
