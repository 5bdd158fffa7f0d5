"""Bad model inputs and call keywords: each is refused with the error type and a message naming the value."""

import numpy as np
import pytest

import keras_vit
from tests.conftest import tiny_config

RNG = np.random.default_rng(5)
IMAGES = RNG.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
MASK = np.zeros((2, 16), bool)
HEADS = np.ones((2, 4), "float32")


@pytest.fixture(scope="module")
def model():
    """A MIM model with every optional input, so each input's checks are reachable."""
    return keras_vit.ViTForMaskedImageModeling(tiny_config(), use_head_mask=True)


@pytest.fixture(scope="module")
def plain():
    return keras_vit.ViTModel(tiny_config())


VALUE_ERRORS = [
    (np.zeros((32, 32, 3), "float32"), r"rank 4.*shape=\(32, 32, 3\)"),
    (np.zeros((1, 1, 32, 32, 3), "float32"), r"rank 4.*shape=\(1, 1, 32, 32, 3\)"),
    (np.zeros((2, 32, 32, 1), "float32"), r"3 channels.*shape=\(2, 32, 32, 1\)"),
    (np.zeros((2, 32, 32, 4), "float32"), r"3 channels.*shape=\(2, 32, 32, 4\)"),
    (np.zeros((2, 3, 32, 32), "float32"), r"3 channels.*shape=\(2, 3, 32, 32\)"),
    (np.zeros((2, 40, 32, 3), "float32"), r"size \(32, 32\).*height=40, width=32"),
    (np.zeros((2, 32, 24, 3), "float32"), r"size \(32, 32\).*height=32, width=24"),
    (np.zeros((0, 32, 32, 3), "float32"), r"at least one image.*shape=\(0, 32, 32, 3\)"),
    (np.zeros((2, 32, 32, 3), "uint8"), r"pixel_values of dtype float.*dtype=uint8"),
    (np.zeros((2, 32, 32, 3), "int32"), r"pixel_values of dtype float.*dtype=int32"),
    (np.zeros((2, 32, 32, 3), bool), r"pixel_values of dtype float.*dtype=bool"),
    (np.array([["a"]]), r"pixel_values of dtype float"),
    ({"pixel_values": IMAGES, "mask": MASK}, r"unknown keys: \['mask'\]"),
    ({"pixel": IMAGES}, r"unknown keys: \['pixel'\]"),
    ({"bool_masked_pos": MASK}, r"Expected pixel_values.*Received None"),
    ([None, MASK], r"Expected pixel_values.*Received None"),
    ([], r"list of 1 to 3 inputs.*Received 0"),
    ([IMAGES, MASK, HEADS, HEADS], r"list of 1 to 3 inputs.*Received 4"),
    ([IMAGES, np.zeros((2, 15), bool)], r"bool_masked_pos of shape \(batch, 16\).*shape=\(2, 15\)"),
    ([IMAGES, np.zeros((3, 16), bool)], r"batch size of pixel_values.*shape=\(3, 16\)"),
    ([IMAGES, np.zeros((2, 4, 4), bool)], r"bool_masked_pos of shape \(batch, num_patches\).*shape=\(2, 4, 4\)"),
    ([IMAGES, np.zeros((2, 16), "float32")], r"bool_masked_pos of dtype bool or int.*dtype=float32"),
    ([IMAGES, None, np.ones(3, "float32")], r"head_mask of shape \(4,\), \(2, 4\) or \(batch, 2, 4\).*shape=\(3,\)"),
    ([IMAGES, None, np.ones((3, 4), "float32")], r"head_mask of shape.*shape=\(3, 4\)"),
    ([IMAGES, None, np.ones((2, 2, 5), "float32")], r"head_mask of shape.*shape=\(2, 2, 5\)"),
    ([IMAGES, None, np.array(["x"] * 4)], r"head_mask of dtype float or int"),
]


@pytest.mark.parametrize("inputs, message", VALUE_ERRORS)
def test_bad_inputs_raise_value_errors_naming_them(model, inputs, message):
    with pytest.raises(ValueError, match=message):
        model(inputs)


TYPE_ERRORS = [
    (dict(output_attentions=True), r"output_attentions=True at call time.*ViTModel\(config, output_attentions=True\)"),
    (dict(output_hidden_states=True), r"output_hidden_states=True at call time"),
    (dict(interpolate_pos_encoding=True), r"interpolate_pos_encoding=True at call time"),
    (dict(head_mask=HEADS), r"without a head_mask input.*use_head_mask=True"),
    (dict(bool_masked_pos=MASK), r"without a bool_masked_pos input.*use_mask_token=True"),
    (dict(return_dict=True), r"unexpected call keyword argument\(s\) \['return_dict'\]"),
    (dict(labels=np.zeros(2)), r"unexpected call keyword argument\(s\) \['labels'\]"),
    (dict(pixel_mask=MASK), r"unexpected call keyword argument\(s\) \['pixel_mask'\]"),
]


@pytest.mark.parametrize(
    "inputs",
    [{"pixel_values": IMAGES, "head_mask": HEADS}, [IMAGES, HEADS]],
    ids=["dict key", "list entry"],
)
def test_head_mask_without_the_input_names_the_flag(plain, inputs):
    with pytest.raises(ValueError, match=r"Build the model with use_head_mask=True to pass head_mask"):
        plain(inputs)
    masked_image_model = keras_vit.ViTForMaskedImageModeling(tiny_config())
    message = r"Received 3\. Build the model with use_head_mask=True to pass head_mask"
    with pytest.raises(ValueError, match=message):
        masked_image_model([IMAGES, MASK, HEADS])


@pytest.mark.parametrize("kwargs, message", TYPE_ERRORS, ids=lambda x: next(iter(x)) if isinstance(x, dict) else "")
def test_bad_call_keywords_raise_type_errors_naming_them(plain, kwargs, message):
    with pytest.raises(TypeError, match=message):
        plain(IMAGES, **kwargs)


CONSTRUCTION_ERRORS = [
    (keras_vit.ViTModel, dict(output_attention=True), TypeError, r"\['output_attention'\]"),
    (keras_vit.ViTModel, dict(hidden_size=64), TypeError, r"\['hidden_size'\].*config fields"),
    (keras_vit.ViTForImageClassification, dict(add_pooling_layer=True), TypeError, r"\['add_pooling_layer'\]"),
    (keras_vit.ViTForImageClassification, dict(data_format="NCHW"), ValueError, r"data_format='NCHW'"),
    (keras_vit.ViTForImageClassification, dict(use_head_mask=1), ValueError, r"use_head_mask=1"),
    (keras_vit.ViTForImageClassification, dict(lora_rank=0), ValueError, r"rank=0"),
    (keras_vit.ViTForImageClassification, dict(lora_rank=2.5), ValueError, r"rank=2.5"),
]


@pytest.mark.parametrize("cls, kwargs, error, message", CONSTRUCTION_ERRORS)
def test_bad_construction_arguments_are_named(cls, kwargs, error, message):
    with pytest.raises(error, match=message):
        cls(tiny_config(cls), **kwargs)


@pytest.mark.parametrize(
    "cls, config_cls",
    [(keras_vit.ViTForImageClassification, keras_vit.DeiTConfig), (keras_vit.DeiTModel, keras_vit.ViTConfig)],
)
def test_config_of_the_other_model_type_is_refused(cls, config_cls):
    config = config_cls(**tiny_config().to_dict() | {"model_type": config_cls.model_type})
    with pytest.raises(ValueError, match=rf"Expected config to be a {cls.config_class.__name__}.*Received: {config_cls.__name__}"):
        cls(config)
