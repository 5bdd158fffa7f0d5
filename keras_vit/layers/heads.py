"""Layers that read the encoder output: pooler, DeiT distillation head, SimMIM decoder."""

import keras
from keras import ops

from keras_vit.layers.activations import get_activation


def _kernel_init(initializer_range):
    return keras.initializers.TruncatedNormal(stddev=initializer_range)


@keras.saving.register_keras_serializable(package="keras_vit")
class Pooler(keras.layers.Layer):
    """Dense + activation on the first ([CLS]) token, as Hugging Face `ViTPooler`.

    Args:
        units: int, output width (`pooler_output_size`).
        activation: str, activation name (`pooler_act`, default "tanh").
        initializer_range: float, std of the truncated-normal kernel initializer.

    Call arguments:
        hidden_states: tensor (batch, seq, hidden).

    Returns:
        tensor (batch, units).

    >>> tuple(Pooler(8)(keras.ops.ones((2, 5, 16))).shape)
    (2, 8)
    """

    def __init__(self, units, activation="tanh", initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.activation_fn = get_activation(activation)
        self.units = units
        self.activation = activation
        self.initializer_range = initializer_range
        self.dense = keras.layers.Dense(
            units, kernel_initializer=_kernel_init(initializer_range), dtype=self.dtype_policy, name="dense"
        )

    def build(self, input_shape):
        self.dense.build((input_shape[0], input_shape[-1]))

    def call(self, hidden_states):
        return self.activation_fn(self.dense(hidden_states[:, 0]))

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, activation=self.activation, initializer_range=self.initializer_range)
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class DistillationHead(keras.layers.Layer):
    """DeiT's two classifiers: one on [CLS] (token 0), one on the distillation token (token 1).

    Touvron et al. 2021, section 4: at inference the prediction is the average of the two
    heads' logits. Matches Hugging Face `DeiTForImageClassificationWithTeacher`.

    Args:
        num_labels: int >= 1, classes.
        initializer_range: float, std of the truncated-normal kernel initializers.

    Call arguments:
        hidden_states: tensor (batch, seq >= 2, hidden).

    Returns:
        dict of tensors (batch, num_labels): `cls_logits`, `distillation_logits` and
        `logits` = (cls_logits + distillation_logits) / 2.

    >>> tuple(DistillationHead(3)(keras.ops.ones((2, 6, 16)))["logits"].shape)
    (2, 3)
    """

    def __init__(self, num_labels, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        if num_labels < 1:
            raise ValueError(f"Expected num_labels >= 1 for a distillation head. Received: num_labels={num_labels}")
        self.num_labels = num_labels
        self.initializer_range = initializer_range
        init = _kernel_init(initializer_range)
        self.cls_classifier = keras.layers.Dense(
            num_labels, kernel_initializer=init, dtype=self.dtype_policy, name="cls_classifier"
        )
        self.distillation_classifier = keras.layers.Dense(
            num_labels, kernel_initializer=init, dtype=self.dtype_policy, name="distillation_classifier"
        )

    def build(self, input_shape):
        self.cls_classifier.build((input_shape[0], input_shape[-1]))
        self.distillation_classifier.build((input_shape[0], input_shape[-1]))

    def call(self, hidden_states):
        cls_logits = self.cls_classifier(hidden_states[:, 0])
        distillation_logits = self.distillation_classifier(hidden_states[:, 1])
        return {
            "logits": (cls_logits + distillation_logits) / 2.0,
            "cls_logits": cls_logits,
            "distillation_logits": distillation_logits,
        }

    def get_config(self):
        config = super().get_config()
        config.update(num_labels=self.num_labels, initializer_range=self.initializer_range)
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class MaskedImageModelingDecoder(keras.layers.Layer):
    """SimMIM decoder: 1x1 convolution to encoder_stride²·channels, then pixel shuffle.

    Xie et al. 2022 (SimMIM), section 3.3; Hugging Face `ViTForMaskedImageModeling`. The
    pixel shuffle uses PyTorch's `PixelShuffle` channel order (channel c·r² + i·r + j goes
    to pixel (h·r + i, w·r + j) of output channel c), so converted checkpoints line up.

    Args:
        encoder_stride: int, upsampling factor r.
        num_channels: int, channels of the reconstructed image.
        patch_size: (height, width) of one patch of the encoder.
        initializer_range: float, std of the truncated-normal kernel initializer.

    Call arguments:
        hidden_states: tensor (batch, num_prefix_tokens + rows·cols, hidden).
        pixel_values: the encoder's input (batch, height, width, channels), channels last;
            only its size is read: rows = height / patch_size[0], cols = width / patch_size[1].
        num_prefix_tokens: int, leading non-patch tokens to drop (1 ViT, 2 DeiT).

    Returns:
        tensor (batch, rows·r, cols·r, num_channels), channels last.
    """

    def __init__(self, encoder_stride, num_channels, patch_size, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        if encoder_stride <= 0 or num_channels <= 0:
            raise ValueError(
                "Expected encoder_stride and num_channels > 0. Received: "
                f"encoder_stride={encoder_stride}, num_channels={num_channels}"
            )
        self.encoder_stride = encoder_stride
        self.num_channels = num_channels
        self.patch_size = tuple(patch_size)
        self.initializer_range = initializer_range
        self.conv = keras.layers.Conv2D(
            encoder_stride**2 * num_channels,
            kernel_size=1,
            kernel_initializer=_kernel_init(initializer_range),
            dtype=self.dtype_policy,
            name="conv",
        )

    def build(self, input_shape, *args, **kwargs):
        self.conv.build((input_shape[0], None, None, input_shape[-1]))

    def call(self, hidden_states, pixel_values, num_prefix_tokens=1):
        batch = ops.shape(hidden_states)[0]
        image = ops.shape(pixel_values)
        rows, cols = image[1] // self.patch_size[0], image[2] // self.patch_size[1]
        r, c = self.encoder_stride, self.num_channels
        patches = hidden_states[:, num_prefix_tokens:]
        features = ops.reshape(patches, (batch, rows, cols, hidden_states.shape[-1]))
        pixels = ops.reshape(self.conv(features), (batch, rows, cols, c, r, r))
        pixels = ops.transpose(pixels, (0, 1, 4, 2, 5, 3))
        return ops.reshape(pixels, (batch, rows * r, cols * r, c))

    def get_config(self):
        config = super().get_config()
        config.update(
            encoder_stride=self.encoder_stride,
            num_channels=self.num_channels,
            patch_size=self.patch_size,
            initializer_range=self.initializer_range,
        )
        return config
