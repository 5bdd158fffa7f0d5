"""Task models: a backbone sub-model plus a head (classifier, DeiT heads, SimMIM decoder), with built-in losses."""

import keras
from keras import ops

from keras_vit.layers.heads import DistillationHead, MaskedImageModelingDecoder
from keras_vit.losses import check_labels, classification_loss, simmim_loss
from keras_vit.models.base import VisionTransformer
from keras_vit.models.encoder import model_inputs


class TaskModel(VisionTransformer):
    """A backbone (`backbone_class`, layer name `config.model_type`) followed by `head`.

    Subclasses set `backbone_class` and `config_class` and define `head`.
    """

    backbone_class = None

    def __init__(
        self,
        config,
        *,
        use_head_mask=False,
        output_hidden_states=False,
        output_attentions=False,
        interpolate_pos_encoding=False,
        data_format="channels_last",
        lora_rank=None,
        dtype=None,
        name=None,
        trainable=True,
        **kwargs,
    ):
        flags = dict(
            use_head_mask=use_head_mask,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            interpolate_pos_encoding=interpolate_pos_encoding,
        )
        config = self._check_construction(config, kwargs, data_format, flags, lora_rank)
        backbone = self.backbone_class(
            config,
            add_pooling_layer=False,
            use_mask_token=self.use_mask_token,
            data_format=data_format,
            dtype=dtype,
            name=config.model_type,
            **flags,
        )
        inputs = model_inputs(
            config,
            use_mask_token=self.use_mask_token,
            use_head_mask=use_head_mask,
            interpolate_pos_encoding=interpolate_pos_encoding,
            data_format=data_format,
        )
        encoded = backbone(inputs[0] if len(inputs) == 1 else inputs)
        outputs = self.head(config, encoded, inputs[0], data_format, dtype)
        for key in ("hidden_states", "attentions"):
            if key in encoded:
                outputs[key] = encoded[key]
        self._init_graph(config, inputs, outputs, {**flags, "data_format": data_format}, dtype, name, trainable)
        self.backbone = backbone
        if lora_rank is not None:
            self.enable_lora(lora_rank)

    def head(self, config, encoded, pixel_values, data_format, dtype):
        """Returns the dict of task outputs computed from the backbone's outputs `encoded`."""
        raise NotImplementedError


class LabelledTaskModel(TaskModel):
    """A task whose built-in loss is `classification_loss` of its heads against the labels."""

    def checks_labels(self):
        return self.loss is None

    def check_labels(self, labels):
        if self.checks_labels():
            # num_labels=0 (Hugging Face's identity classifier): the logits are the [CLS] token.
            check_labels(labels, self.config.num_labels or self.config.hidden_size, self.config.problem_type)


class ImageClassifier(LabelledTaskModel):
    """A linear classifier on the final [CLS] token; built-in loss `classification_loss`."""

    def head(self, config, encoded, pixel_values, data_format, dtype):
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

    def builtin_loss(self, x, y, y_pred, sample_weight):
        """Hugging Face's classifier loss by `config.problem_type` (inferred when None): MSE for
        regression, softmax cross-entropy for class ids (or soft labels with
        problem_type="single_label_classification"), sigmoid cross-entropy for multi-label."""
        if y is None:
            raise ValueError(f"{type(self).__name__}.fit needs labels (y). Received y=None.")
        return classification_loss(y, y_pred["logits"], sample_weight, problem_type=self.config.problem_type)


class ImageClassifierWithTeacher(LabelledTaskModel):
    """DeiT's two heads (`DistillationHead`); built-in loss: both heads against the labels."""

    def head(self, config, encoded, pixel_values, data_format, dtype):
        return DistillationHead(
            config.num_labels, initializer_range=config.initializer_range, dtype=dtype, name="head"
        )(encoded["last_hidden_state"])

    def builtin_loss(self, x, y, y_pred, sample_weight):
        """Mean of the class-head and distillation-head losses against the labels."""
        if y is None:
            raise ValueError(f"{type(self).__name__}.fit needs labels (y). Received y=None.")
        problem_type = self.config.problem_type
        return 0.5 * (
            classification_loss(y, y_pred["cls_logits"], sample_weight, problem_type=problem_type)
            + classification_loss(y, y_pred["distillation_logits"], sample_weight, problem_type=problem_type)
        )


class MaskedImageModeling(TaskModel):
    """The SimMIM decoder on the patch tokens; built-in loss `simmim_loss` (no labels)."""

    prediction_key = "reconstruction"
    use_mask_token = True

    def head(self, config, encoded, pixel_values, data_format, dtype):
        if data_format == "channels_first":
            pixel_values = keras.layers.Permute((2, 3, 1), dtype=dtype, name="to_channels_last")(pixel_values)
        decoder = MaskedImageModelingDecoder(
            config.encoder_stride,
            config.num_channels,
            config.patch_hw,
            initializer_range=config.initializer_range,
            dtype=dtype,
            name="decoder",
        )
        num_prefix_tokens = 2 if self.backbone_class.use_distillation_token else 1
        reconstruction = decoder(encoded["last_hidden_state"], pixel_values, num_prefix_tokens=num_prefix_tokens)
        if data_format == "channels_first":
            reconstruction = keras.layers.Permute((3, 1, 2), dtype=dtype, name="to_channels_first")(reconstruction)
        return {"reconstruction": reconstruction}

    def _inputs_dict(self, x):
        inputs, _ = self.standardize_inputs(x)
        return dict(zip(self.input_names, inputs))

    def builtin_loss(self, x, y, y_pred, sample_weight):
        """SimMIM L1 loss on the masked patches of the input (labels are not used)."""
        x = self._inputs_dict(x)
        if x["bool_masked_pos"] is None:
            raise ValueError(
                f"{type(self).__name__}.fit needs bool_masked_pos in its inputs to compute the SimMIM loss."
            )
        pixel_values, reconstruction = x["pixel_values"], y_pred["reconstruction"]
        if self.data_format == "channels_first":
            pixel_values = ops.transpose(pixel_values, (0, 2, 3, 1))
            reconstruction = ops.transpose(reconstruction, (0, 2, 3, 1))
        return simmim_loss(pixel_values, reconstruction, x["bool_masked_pos"], self.config.patch_hw, sample_weight)

    def standardize_inputs(self, inputs, **call_kwargs):
        inputs, keras_kwargs = super().standardize_inputs(inputs, **call_kwargs)
        if inputs[1] is not None and self.config.patch_hw != (self.config.encoder_stride,) * 2:
            raise ValueError(
                "Expected patch_size == encoder_stride when bool_masked_pos is given, so that the reconstruction "
                f"has the input's size. Received: patch_size={self.config.patch_size}, "
                f"encoder_stride={self.config.encoder_stride}"
            )
        return inputs, keras_kwargs
