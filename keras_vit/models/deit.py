"""DeiT models (Touvron et al. 2021): ViT with a distillation token, Hugging Face class names."""

import keras

from keras_vit.config import DeiTConfig
from keras_vit.models.tasks import ImageClassifier, ImageClassifierWithTeacher, MaskedImageModeling
from keras_vit.models.vit import ViTModel


@keras.saving.register_keras_serializable(package="keras_vit")
class DeiTModel(ViTModel):
    """The DeiT encoder (Hugging Face `DeiTModel`): ViT with a distillation token.

    Tokens are [CLS], distillation, then patches (Touvron et al. 2021, section 4), so
    `last_hidden_state` is (batch, 2 + num_patches, hidden_size). Arguments, call
    arguments, outputs and errors as `ViTModel`, with a `DeiTConfig`.

    >>> config = DeiTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                     intermediate_size=37, image_size=32, patch_size=8)
    >>> tuple(DeiTModel(config)(keras.ops.zeros((2, 32, 32, 3)))["last_hidden_state"].shape)
    (2, 18, 32)
    """

    config_class = DeiTConfig
    use_distillation_token = True


@keras.saving.register_keras_serializable(package="keras_vit")
class DeiTForImageClassification(ImageClassifier):
    """DeiT with a classifier on the [CLS] token only (Hugging Face `DeiTForImageClassification`).

    Holds a `DeiTModel` backbone (`model.backbone`, layer name `deit`). Arguments, outputs
    and errors as `ViTForImageClassification`, with a `DeiTConfig`.

    >>> config = DeiTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                     intermediate_size=37, image_size=32, patch_size=8, num_labels=3)
    >>> tuple(DeiTForImageClassification(config)(keras.ops.zeros((2, 32, 32, 3)))["logits"].shape)
    (2, 3)
    """

    config_class = DeiTConfig
    backbone_class = DeiTModel


@keras.saving.register_keras_serializable(package="keras_vit")
class DeiTForImageClassificationWithTeacher(ImageClassifierWithTeacher):
    """DeiT with class and distillation heads (Hugging Face `DeiTForImageClassificationWithTeacher`).

    Holds a `DeiTModel` backbone (layer name `deit`) and a `DistillationHead`. Outputs a
    dict with `cls_logits`, `distillation_logits` and `logits` (their average, the
    inference prediction; Touvron et al. 2021, section 4), each (batch, num_labels).
    `compile` keys per-output losses and metrics by those names. Compiled without a loss,
    `fit` averages the cross-entropy of both heads against the labels (training without a
    teacher; `keras_vit.distillation.DistillationTrainer` trains with one). Arguments and
    errors as `ViTForImageClassification`, with a `DeiTConfig` (num_labels >= 1).

    >>> config = DeiTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                     intermediate_size=37, image_size=32, patch_size=8, num_labels=3)
    >>> sorted(DeiTForImageClassificationWithTeacher(config)(keras.ops.zeros((2, 32, 32, 3))))
    ['cls_logits', 'distillation_logits', 'logits']
    """

    config_class = DeiTConfig
    backbone_class = DeiTModel


@keras.saving.register_keras_serializable(package="keras_vit")
class DeiTForMaskedImageModeling(MaskedImageModeling):
    """DeiT with the SimMIM decoder (Hugging Face `DeiTForMaskedImageModeling`).

    Holds a `DeiTModel` backbone with a mask token (layer name `deit`); the decoder reads
    the patch tokens (the [CLS] and distillation tokens are dropped). Arguments, outputs and
    errors as `ViTForMaskedImageModeling`, with a `DeiTConfig`.

    >>> config = DeiTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                     intermediate_size=37, image_size=32, patch_size=8, encoder_stride=8)
    >>> tuple(DeiTForMaskedImageModeling(config)(keras.ops.zeros((2, 32, 32, 3)))["reconstruction"].shape)
    (2, 32, 32, 3)
    """

    config_class = DeiTConfig
    backbone_class = DeiTModel
