"""The models, the image processors and the preprocessing layer take the same two layouts, and say so."""

import re

import numpy as np
import pytest

import keras_vit
from keras_vit.data_format import DATA_FORMATS
from keras_vit.layers import ImagePreprocessing
from tests.conftest import tiny_config

MAKERS = {
    "model": lambda fmt: keras_vit.ViTModel(tiny_config(), data_format=fmt),
    "processor": lambda fmt: keras_vit.ViTImageProcessor(data_format=fmt),
    "layer": lambda fmt: ImagePreprocessing(data_format=fmt),
}


@pytest.mark.parametrize("maker", list(MAKERS))
def test_every_data_format_is_accepted_and_others_are_named(maker):
    for fmt in DATA_FORMATS:
        MAKERS[maker](fmt)
    message = f"Expected data_format to be one of {DATA_FORMATS}. Received: data_format='NHWC'"
    with pytest.raises(ValueError, match=re.escape(message)):
        MAKERS[maker]("NHWC")


def test_channels_first_model_equals_channels_last_on_transposed_pixels(images):
    last = keras_vit.ViTModel(tiny_config(), data_format="channels_last")
    first = keras_vit.ViTModel(tiny_config(), data_format="channels_first")
    first.set_weights(last.get_weights())
    expected = last(images)["last_hidden_state"]
    got = first(np.transpose(images, (0, 3, 1, 2)))["last_hidden_state"]
    np.testing.assert_allclose(got, expected, atol=1e-5)
