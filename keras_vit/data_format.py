"""The image layouts keras_vit takes, with Keras' and Hugging Face's names for them.

`"channels_last"`: (batch, height, width, channels), Keras' default. `"channels_first"`:
(batch, channels, height, width), the layout of Hugging Face's `pixel_values`. The models, the
image processors and the `ImagePreprocessing` layer check their `data_format` against this tuple.
"""

DATA_FORMATS = ("channels_last", "channels_first")
