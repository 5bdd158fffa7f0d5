"""keras_vit: Vision Transformers (ViT) and DeiT for Keras 3, from Hugging Face checkpoints to TF Serving."""

from keras_vit import attention_maps, distillation, layers, losses, optimizers
from keras_vit.config import DeiTConfig, ViTConfig
from keras_vit.models import (
    MODEL_CLASSES,
    DeiTForImageClassification,
    DeiTForImageClassificationWithTeacher,
    DeiTForMaskedImageModeling,
    DeiTModel,
    ViTForImageClassification,
    ViTForMaskedImageModeling,
    ViTModel,
)
from keras_vit.presets import PRESETS
from keras_vit.processors import DeiTImageProcessor, ViTImageProcessor

__version__ = "0.1.0"

__all__ = [
    "DeiTConfig",
    "DeiTForImageClassification",
    "DeiTForImageClassificationWithTeacher",
    "DeiTForMaskedImageModeling",
    "DeiTImageProcessor",
    "DeiTModel",
    "MODEL_CLASSES",
    "PRESETS",
    "ViTConfig",
    "ViTForImageClassification",
    "ViTForMaskedImageModeling",
    "ViTImageProcessor",
    "ViTModel",
    "__version__",
    "attention_maps",
    "distillation",
    "layers",
    "losses",
    "optimizers",
]
