"""ViT models (Dosovitskiy et al. 2021), with the Hugging Face class names and outputs."""

import keras

from keras_vit.config import ViTConfig
from keras_vit.models.backbone import VisionTransformer
from keras_vit.models.tasks import (
    COMMON_ARGS,
    ClassifierLoss,
    MaskedImageModelingLoss,
    base_head,
    classifier_head,
    reconstruction_head,
)


@keras.saving.register_keras_serializable(package="keras_vit")
class ViTModel(VisionTransformer):
    __doc__ = (
        """The bare ViT encoder (Hugging Face `ViTModel`).

    Outputs a dict: `last_hidden_state` (batch, 1 + num_patches, hidden_size) after the final
    LayerNorm; `pooler_output` (batch, pooler_output_size) with `add_pooling_layer`;
    `hidden_states` / `attentions` tuples when requested.

    Extra args:
        add_pooling_layer: bool, add the pooler on the [CLS] token.
        use_mask_token: bool, add a mask token so `bool_masked_pos` can be given.
"""
        + COMMON_ARGS.format(config="ViTConfig")
    )

    config_class = ViTConfig
    prediction_key = "last_hidden_state"

    def __init__(self, config, add_pooling_layer=True, use_mask_token=False, **kwargs):
        self._build(
            config, head=base_head, add_pooling_layer=add_pooling_layer, use_mask_token=use_mask_token, **kwargs
        )
        self.add_pooling_layer = add_pooling_layer
        self.use_mask_token = use_mask_token

    def flag_config(self):
        return {"add_pooling_layer": self.add_pooling_layer, "use_mask_token": self.use_mask_token, **super().flag_config()}


@keras.saving.register_keras_serializable(package="keras_vit")
class ViTForImageClassification(ClassifierLoss, VisionTransformer):
    __doc__ = (
        """ViT with a linear classifier on the final [CLS] token (Hugging Face `ViTForImageClassification`).

    Outputs a dict with `logits` (batch, num_labels) (the [CLS] features when
    num_labels == 0). Compiled without a loss, `fit` uses the built-in loss
    (`keras_vit.losses.classification_loss`).
"""
        + COMMON_ARGS.format(config="ViTConfig")
    )

    config_class = ViTConfig

    def __init__(self, config, **kwargs):
        self._build(config, head=classifier_head, **kwargs)


@keras.saving.register_keras_serializable(package="keras_vit")
class ViTForMaskedImageModeling(MaskedImageModelingLoss, VisionTransformer):
    __doc__ = (
        """ViT with the SimMIM decoder (Hugging Face `ViTForMaskedImageModeling`).

    Outputs a dict with `reconstruction`, the predicted pixels in the input's layout and
    size (when patch_size == encoder_stride). Compiled without a loss, `fit` minimises the
    SimMIM L1 loss on the patches masked by `bool_masked_pos` (no labels needed).
"""
        + COMMON_ARGS.format(config="ViTConfig")
    )

    config_class = ViTConfig

    def __init__(self, config, **kwargs):
        self._build(config, head=reconstruction_head(1), use_mask_token=True, **kwargs)
