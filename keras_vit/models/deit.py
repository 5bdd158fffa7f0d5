"""DeiT models (Touvron et al. 2021): ViT with a distillation token, Hugging Face class names."""

import keras

from keras_vit.config import DeiTConfig
from keras_vit.losses import classification_loss
from keras_vit.models.backbone import VisionTransformer
from keras_vit.models.tasks import COMMON_ARGS, distillation_head, reconstruction_head
from keras_vit.models.vit import ViTForImageClassification, ViTForMaskedImageModeling, ViTModel


class _DeiT:
    config_class = DeiTConfig
    use_distillation_token = True


@keras.saving.register_keras_serializable(package="keras_vit")
class DeiTModel(_DeiT, ViTModel):
    __doc__ = (
        """The bare DeiT encoder (Hugging Face `DeiTModel`): ViT with a distillation token.

    Tokens are [CLS], distillation, then patches; `last_hidden_state` is
    (batch, 2 + num_patches, hidden_size). Outputs as `ViTModel`.
"""
        + COMMON_ARGS.format(config="DeiTConfig")
    )


@keras.saving.register_keras_serializable(package="keras_vit")
class DeiTForImageClassification(_DeiT, ViTForImageClassification):
    __doc__ = (
        """DeiT with a classifier on the [CLS] token only (Hugging Face `DeiTForImageClassification`).
"""
        + COMMON_ARGS.format(config="DeiTConfig")
    )


@keras.saving.register_keras_serializable(package="keras_vit")
class DeiTForImageClassificationWithTeacher(_DeiT, VisionTransformer):
    __doc__ = (
        """DeiT with class and distillation heads (Hugging Face `DeiTForImageClassificationWithTeacher`).

    Outputs a dict with `cls_logits`, `distillation_logits` and `logits` (their average,
    the inference prediction; Touvron et al. 2021, section 5), each (batch, num_labels).
    Compiled without a loss, `fit` averages the cross-entropy of both heads against the
    labels (training without a teacher).
"""
        + COMMON_ARGS.format(config="DeiTConfig")
    )

    def __init__(self, config, **kwargs):
        self._build(config, head=distillation_head, **kwargs)

    def builtin_loss(self, x, y, y_pred, sample_weight):
        """Mean of the class-head and distillation-head losses against the labels."""
        if y is None:
            raise ValueError(f"{type(self).__name__}.fit needs labels (y). Received y=None.")
        return 0.5 * (
            classification_loss(y, y_pred["cls_logits"], sample_weight)
            + classification_loss(y, y_pred["distillation_logits"], sample_weight)
        )


@keras.saving.register_keras_serializable(package="keras_vit")
class DeiTForMaskedImageModeling(_DeiT, ViTForMaskedImageModeling):
    __doc__ = (
        """DeiT with the SimMIM decoder (Hugging Face `DeiTForMaskedImageModeling`).

    The decoder reads the patch tokens (the [CLS] and distillation tokens are dropped).
"""
        + COMMON_ARGS.format(config="DeiTConfig")
    )

    def __init__(self, config, **kwargs):
        self._build(config, head=reconstruction_head(2), use_mask_token=True, **kwargs)
