"""ViT models (Dosovitskiy et al. 2021), with the Hugging Face class names and outputs."""

import keras

from keras_vit.config import ViTConfig
from keras_vit.models.base import VisionTransformer
from keras_vit.models.encoder import encoder_outputs, model_inputs
from keras_vit.models.tasks import ImageClassifier, MaskedImageModeling


@keras.saving.register_keras_serializable(package="keras_vit")
class ViTModel(VisionTransformer):
    """The ViT encoder, the backbone of every ViT task model (Hugging Face `ViTModel`).

    Patch embedding + [CLS] token + position embeddings, `num_hidden_layers` pre-norm
    transformer blocks, a final LayerNorm and optionally the pooler (Dosovitskiy et al.
    2021, section 3.1, eq. 1-4). A functional `keras.Model`: freeze it with
    `backbone.trainable = False`, adapt it with `enable_lora(rank)`, or compose it into
    your own models.

    Args:
        config: a `ViTConfig` (or its dict).
        add_pooling_layer: bool, add the pooler (Dense + tanh on the [CLS] token).
        use_mask_token: bool, add a mask token and the `bool_masked_pos` input.
        use_head_mask: bool, add the `head_mask` input.
        output_hidden_states: bool, add `hidden_states` to the outputs.
        output_attentions: bool, add `attentions` to the outputs (explicit attention path).
        interpolate_pos_encoding: bool, accept any image size that is a multiple of
            `patch_size` (height and width become dynamic), resizing the position
            embeddings with PyTorch's bicubic kernel as Hugging Face does.
        data_format: "channels_last" (batch, height, width, channels) or "channels_first"
            (batch, channels, height, width), the Hugging Face layout.
        lora_rank: None, or an int to build with `enable_lora(lora_rank)` applied.
        gradient_checkpointing: bool, recompute each transformer block's branches in the
            backward pass instead of keeping their intermediates (Hugging Face's name;
            `TransformerBlock`, `keras.remat`): less memory for a training step, same values
            and gradients. Off by default; `gradient_checkpointing_enable()` turns it on.
        dtype: optional dtype policy, e.g. "mixed_bfloat16".
        name: optional model name.
        trainable: bool.

    Call arguments:
        inputs: `pixel_values`, float32 images normalised by the model's image processor
            (about [-1, 1] for ViT), (batch, height, width, channels); or a list in the order
            [pixel_values, bool_masked_pos, head_mask] (those the model was built with), or a
            dict with those names. `bool_masked_pos`: bool (batch, num_patches), 1 = masked.
            `head_mask`: float (num_attention_heads,), (num_hidden_layers,
            num_attention_heads) or (batch, num_hidden_layers, num_attention_heads), 1 keeps
            a head. Both can also be passed as keywords.
        training: bool, enables dropout and stochastic depth.

    Returns:
        dict: `last_hidden_state` (batch, 1 + num_patches, hidden_size) after the final
        LayerNorm; `pooler_output` (batch, pooler_output_size) with `add_pooling_layer`;
        `hidden_states` (tuple of num_hidden_layers + 1 tensors (batch, seq, hidden_size))
        and `attentions` (tuple of num_hidden_layers tensors (batch, heads, seq, seq)) when
        requested.

    Raises:
        TypeError: unknown keyword arguments at construction or call time; a call-time
            `output_attentions`, `output_hidden_states` or `interpolate_pos_encoding` that
            differs from the construction value, or a `head_mask` / `bool_masked_pos` the
            model was built without.
        ValueError: a bad config, config class or flag at construction; a wrong input dtype,
            rank, channel count, image size, batch size or mask shape at call time.

    >>> config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                    intermediate_size=37, image_size=32, patch_size=8)
    >>> model = ViTModel(config)
    >>> outputs = model(keras.ops.zeros((2, 32, 32, 3)))
    >>> tuple(outputs["last_hidden_state"].shape), tuple(outputs["pooler_output"].shape)
    ((2, 17, 32), (2, 32))
    """

    config_class = ViTConfig
    prediction_key = "last_hidden_state"

    def __init__(
        self,
        config,
        *,
        add_pooling_layer=True,
        use_mask_token=False,
        use_head_mask=False,
        output_hidden_states=False,
        output_attentions=False,
        interpolate_pos_encoding=False,
        data_format="channels_last",
        lora_rank=None,
        gradient_checkpointing=False,
        dtype=None,
        name=None,
        trainable=True,
        **kwargs,
    ):
        flags = dict(
            add_pooling_layer=add_pooling_layer,
            use_mask_token=use_mask_token,
            use_head_mask=use_head_mask,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            interpolate_pos_encoding=interpolate_pos_encoding,
            gradient_checkpointing=gradient_checkpointing,
        )
        config = self._check_construction(config, kwargs, data_format, flags, lora_rank)
        inputs = model_inputs(
            config,
            use_mask_token=use_mask_token,
            use_head_mask=use_head_mask,
            interpolate_pos_encoding=interpolate_pos_encoding,
            data_format=data_format,
        )
        outputs = encoder_outputs(
            config,
            {tensor.name: tensor for tensor in inputs},
            use_distillation_token=self.use_distillation_token,
            add_pooling_layer=add_pooling_layer,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            interpolate_pos_encoding=interpolate_pos_encoding,
            data_format=data_format,
            dtype=dtype,
            gradient_checkpointing=gradient_checkpointing,
        )
        self._init_graph(config, inputs, outputs, {**flags, "data_format": data_format}, dtype, name, trainable)
        if lora_rank is not None:
            self.enable_lora(lora_rank)


@keras.saving.register_keras_serializable(package="keras_vit")
class ViTForImageClassification(ImageClassifier):
    """ViT with a linear classifier on the final [CLS] token (Hugging Face `ViTForImageClassification`).

    Holds a `ViTModel` backbone (`model.backbone`, layer name `vit`, no pooler) and a Dense
    `classifier` (Dosovitskiy et al. 2021, section 3.1). Compiled without a loss, `fit` uses
    `keras_vit.losses.classification_loss` (Hugging Face's `problem_type` rule).

    Args:
        config: a `ViTConfig` (or its dict); `num_labels` sets the classifier width.
        use_head_mask, output_hidden_states, output_attentions, interpolate_pos_encoding,
            data_format, lora_rank, gradient_checkpointing, dtype, name, trainable: as
            `ViTModel`.

    Call arguments:
        inputs, training: as `ViTModel` (no `bool_masked_pos`).

    Returns:
        dict: `logits` (batch, num_labels), or the [CLS] features (batch, hidden_size) when
        num_labels == 0; `hidden_states` / `attentions` when requested.

    Raises:
        TypeError, ValueError: as `ViTModel`.

    >>> config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                    intermediate_size=37, image_size=32, patch_size=8, num_labels=3)
    >>> model = ViTForImageClassification(config)
    >>> tuple(model(keras.ops.zeros((2, 32, 32, 3)))["logits"].shape), model.backbone.name
    ((2, 3), 'vit')
    """

    config_class = ViTConfig
    backbone_class = ViTModel


@keras.saving.register_keras_serializable(package="keras_vit")
class ViTForMaskedImageModeling(MaskedImageModeling):
    """ViT with the SimMIM decoder (Hugging Face `ViTForMaskedImageModeling`; Xie et al. 2022).

    Holds a `ViTModel` backbone with a mask token (layer name `vit`) and a
    `MaskedImageModelingDecoder`. Compiled without a loss, `fit` minimises the SimMIM L1
    loss on the patches masked by `bool_masked_pos` (no labels needed).

    Args:
        config: a `ViTConfig` (or its dict).
        use_head_mask, output_hidden_states, output_attentions, interpolate_pos_encoding,
            data_format, lora_rank, gradient_checkpointing, dtype, name, trainable: as
            `ViTModel`.

    Call arguments:
        inputs: `pixel_values`, or [pixel_values, bool_masked_pos (, head_mask)], or a dict;
            `bool_masked_pos` is optional (None: nothing is masked).
        training: bool.

    Returns:
        dict: `reconstruction`, the predicted pixels in the input's layout and size (when
        patch_size == encoder_stride); `hidden_states` / `attentions` when requested.

    Raises:
        TypeError, ValueError: as `ViTModel`; ValueError when `bool_masked_pos` is given
            and patch_size != encoder_stride.

    >>> config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                    intermediate_size=37, image_size=32, patch_size=8, encoder_stride=8)
    >>> model = ViTForMaskedImageModeling(config)
    >>> mask = keras.ops.ones((2, 16), dtype="bool")
    >>> tuple(model([keras.ops.zeros((2, 32, 32, 3)), mask])["reconstruction"].shape)
    (2, 32, 32, 3)
    """

    config_class = ViTConfig
    backbone_class = ViTModel
