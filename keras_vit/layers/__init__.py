"""Keras 3 layers of ViT and DeiT: every `call` is written with `keras.ops` and Keras layers.

No backend framework is imported here, but TensorFlow where TensorFlow alone is concerned:
`custom_gradient` (freeing traced graphs) and `preprocessing`'s `tf.data` path.
"""

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
