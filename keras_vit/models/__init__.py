"""ViT and DeiT functional models with Hugging Face class names and outputs."""

from keras_vit.models.deit import (
    DeiTForImageClassification,
    DeiTForImageClassificationWithTeacher,
    DeiTForMaskedImageModeling,
    DeiTModel,
)
from keras_vit.models.vit import ViTForImageClassification, ViTForMaskedImageModeling, ViTModel

MODEL_CLASSES = (
    ViTModel,
    ViTForImageClassification,
    ViTForMaskedImageModeling,
    DeiTModel,
    DeiTForImageClassification,
    DeiTForImageClassificationWithTeacher,
    DeiTForMaskedImageModeling,
)

__all__ = [cls.__name__ for cls in MODEL_CLASSES] + ["MODEL_CLASSES"]
