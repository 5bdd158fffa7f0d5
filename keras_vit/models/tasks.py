"""What the seven model classes share: graph assembly from flags, output heads, built-in losses."""

import keras
from keras import ops

from keras_vit.layers.heads import DistillationHead, MaskedImageModelingDecoder
from keras_vit.losses import classification_loss, simmim_loss

COMMON_ARGS = """
    Args:
        config: a {config} (or its dict).
        output_hidden_states: bool, add `hidden_states` to the outputs.
        output_attentions: bool, add `attentions` to the outputs.
        interpolate_pos_encoding: bool, accept any image size that is a multiple of
            `patch_size` (height and width become dynamic) by resizing the position
            embeddings bicubically.
        data_format: "channels_last" (batch, height, width, channels) or "channels_first"
            (batch, channels, height, width), the Hugging Face layout.
        dtype: optional dtype policy, e.g. "mixed_bfloat16".

    Call arguments:
        inputs: `pixel_values` float32 (normalised by the model's image processor, about
            [-1, 1] for ViT), or a list [pixel_values, bool_masked_pos, head_mask], or a dict
            with those keys. `bool_masked_pos`: bool (batch, num_patches), needs a mask token.
            `head_mask`: float (num_heads,) or (num_hidden_layers, num_heads), 1 keeps a head.

    Raises:
        ValueError: bad config or flags at construction; wrong input rank, channel count,
            image size, or mask shape at call time.
"""


def base_head(config, encoded, pixel_values, data_format, dtype):
    return {k: v for k, v in encoded.items() if k in ("last_hidden_state", "pooler_output")}


def classifier_head(config, encoded, pixel_values, data_format, dtype):
    first_token = encoded["last_hidden_state"][:, 0]
    if config.num_labels == 0:
        return {"logits": first_token}
    classifier = keras.layers.Dense(
        config.num_labels,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=config.initializer_range),
        dtype=dtype,
        name="classifier",
    )
    return {"logits": classifier(first_token)}


def distillation_head(config, encoded, pixel_values, data_format, dtype):
    return DistillationHead(config.num_labels, initializer_range=config.initializer_range, dtype=dtype, name="head")(
        encoded["last_hidden_state"]
    )


def reconstruction_head(num_prefix_tokens):
    def head(config, encoded, pixel_values, data_format, dtype):
        decoder = MaskedImageModelingDecoder(
            config.encoder_stride,
            config.num_channels,
            config.patch_hw,
            initializer_range=config.initializer_range,
            dtype=dtype,
            name="decoder",
        )
        reconstruction = decoder(encoded["last_hidden_state"], pixel_values, num_prefix_tokens=num_prefix_tokens)
        if data_format == "channels_first":
            reconstruction = keras.layers.Permute((3, 1, 2), dtype=dtype, name="to_channels_first")(reconstruction)
        return {"reconstruction": reconstruction}

    return head


class ClassifierLoss:
    def builtin_loss(self, x, y, y_pred, sample_weight):
        """Cross-entropy for integer labels, MSE when num_labels == 1, sigmoid CE for multi-label."""
        if y is None:
            raise ValueError(f"{type(self).__name__}.fit needs labels (y). Received y=None.")
        return classification_loss(y, y_pred["logits"], sample_weight)


class MaskedImageModelingLoss:
    prediction_key = "reconstruction"

    def builtin_loss(self, x, y, y_pred, sample_weight):
        """SimMIM L1 loss on the masked patches of the input (labels are not used)."""
        if x["bool_masked_pos"] is None:
            raise ValueError(
                f"{type(self).__name__}.fit needs bool_masked_pos in its inputs to compute the SimMIM loss."
            )
        pixel_values, reconstruction = x["pixel_values"], y_pred["reconstruction"]
        if self.data_format == "channels_first":
            pixel_values = ops.transpose(pixel_values, (0, 2, 3, 1))
            reconstruction = ops.transpose(reconstruction, (0, 2, 3, 1))
        return simmim_loss(pixel_values, reconstruction, x["bool_masked_pos"], self.config.patch_hw, sample_weight)

    def standardize_inputs(self, inputs):
        inputs = super().standardize_inputs(inputs)
        if inputs["bool_masked_pos"] is not None and self.config.patch_hw != (
            self.config.encoder_stride,
            self.config.encoder_stride,
        ):
            raise ValueError(
                "Expected patch_size == encoder_stride when bool_masked_pos is given, so that the reconstruction "
                f"has the input's size. Received: patch_size={self.config.patch_size}, "
                f"encoder_stride={self.config.encoder_stride}"
            )
        return inputs


