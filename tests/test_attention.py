"""MultiHeadSelfAttention's switch between Keras' dot_product_attention and the explicit path.

Values and gradients of both paths, in float32 and mixed_bfloat16 on every backend: the
shared layer test (tests/layer_test_helper.py, tests/test_layers.py).
"""

import keras
import numpy as np
import pytest
from keras.src.backend.common import global_state

from keras_vit.layers.attention import MultiHeadSelfAttention

TOKENS = np.random.default_rng(2).normal(size=(2, 5, 16)).astype("float32")


@pytest.fixture
def flash_setting():
    """Restores Keras' global flash attention setting (None: not set) after the test."""
    yield
    global_state.set_global_attribute("flash_attention", None)


def test_attention_dropout_active_only_in_training():
    layer = MultiHeadSelfAttention(16, 4, attention_dropout=0.5)
    inference = keras.ops.convert_to_numpy(layer(TOKENS))
    explicit = keras.ops.convert_to_numpy(layer(TOKENS, return_attention_scores=True)[0])
    np.testing.assert_allclose(inference, explicit, atol=1e-6)
    trained = keras.ops.convert_to_numpy(layer(TOKENS, training=True))
    assert np.abs(trained - inference).max() > 1e-3


def test_flash_attention_argument_follows_keras_multi_head_attention(flash_setting):
    for argument in (None, True, False):
        layer = MultiHeadSelfAttention(16, 4, flash_attention=argument)
        assert layer.get_config()["flash_attention"] is argument
        assert MultiHeadSelfAttention.from_config(layer.get_config()).flash_attention is argument
        assert layer._flash_attention == keras.layers.MultiHeadAttention(4, 4, flash_attention=argument)._flash_attention
    # Keras' global switch: disable_flash_attention() turns None off, enable_flash_attention()
    # restores None (dot_product_attention decides); True stays True. As Keras' `or`, an
    # argument False counts as not set.
    keras.config.disable_flash_attention()
    assert MultiHeadSelfAttention(16, 4)._flash_attention is False
    assert MultiHeadSelfAttention(16, 4, flash_attention=True)._flash_attention is True
    keras.config.enable_flash_attention()
    assert MultiHeadSelfAttention(16, 4)._flash_attention is None
    assert MultiHeadSelfAttention(16, 4, flash_attention=False)._flash_attention is None
    with pytest.raises(ValueError, match="flash_attention=1"):
        MultiHeadSelfAttention(16, 4, flash_attention=1)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow has no flash attention")
def test_flash_attention_on_tensorflow_raises_keras_error_and_explicit_path_still_runs(flash_setting):
    layer = MultiHeadSelfAttention(16, 4, flash_attention=True)
    with pytest.raises(ValueError, match="Flash attention is not supported in tensorflow backend"):
        layer(TOKENS)
    # Probabilities take the explicit path, which has no flash kernel to ask for.
    out, probs = layer(TOKENS, return_attention_scores=True)
    reference = MultiHeadSelfAttention(16, 4)
    reference(TOKENS)
    reference.set_weights(layer.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), keras.ops.convert_to_numpy(reference(TOKENS)), atol=1e-6)
    assert tuple(probs.shape) == (2, 4, 5, 5)
