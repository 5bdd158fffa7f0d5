"""Keras 3 layers of ViT and DeiT, written with `keras.ops` only."""

from keras_vit.layers.attention import MultiHeadSelfAttention
from keras_vit.layers.drop_path import DropPath
from keras_vit.layers.heads import DistillationHead, MaskedImageModelingDecoder, Pooler
from keras_vit.layers.layer_normalization import LayerNormalization
from keras_vit.layers.patch_embedding import PatchEmbedding
from keras_vit.layers.preprocessing import ImagePreprocessing
from keras_vit.layers.transformer_block import TransformerBlock

__all__ = [
    "DropPath",
    "DistillationHead",
    "ImagePreprocessing",
    "LayerNormalization",
    "MaskedImageModelingDecoder",
    "MultiHeadSelfAttention",
    "PatchEmbedding",
    "Pooler",
    "TransformerBlock",
]
