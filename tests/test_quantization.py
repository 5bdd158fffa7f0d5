"""int8 quantization (`model.quantize("int8")`) survives `.keras` save/load and SavedModel export."""

import gc

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vit
from keras_vit.export import export_saved_model
from tests.conftest import tiny_config


@pytest.fixture(autouse=True, scope="module")
def _frozen_heap():
    # quantize() and loading call Keras' Layer.__delattr__, which runs gc.collect() for each
    # replaced kernel; late in the suite each collection walked every object earlier tests
    # left (24-50 s per test instead of 4 s). Frozen objects are skipped by collections.
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


def _quantized(cls):
    model = cls(tiny_config(cls))
    model.quantize("int8")
    return model


def _int8_kernels(model):
    return sorted(v.path for v in model.weights if v.path.endswith("kernel") and v.dtype == "int8")


def _outputs(model, images):
    return {k: keras.ops.convert_to_numpy(v) for k, v in model(images).items()}


def _assert_same_outputs(model, expected, images):
    got = _outputs(model, images)
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])


@pytest.mark.parametrize("cls", keras_vit.MODEL_CLASSES, ids=lambda c: c.__name__)
def test_quantized_model_round_trips_through_keras_file(cls, images, tmp_path):
    model = _quantized(cls)
    kernels = _int8_kernels(model)
    # Every Dense is int8: qkv, output, fc1, fc2 of both blocks, plus the task's dense heads.
    assert sum(k.endswith(("qkv/kernel", "output/kernel", "fc1/kernel", "fc2/kernel")) for k in kernels) == 8
    expected = _outputs(model, images)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert type(loaded) is cls
    assert _int8_kernels(loaded) == kernels
    _assert_same_outputs(loaded, expected, images)


def test_reloaded_quantized_model_saves_again_without_safe_mode(images, tmp_path):
    model = _quantized(keras_vit.DeiTForImageClassificationWithTeacher)
    expected = _outputs(model, images)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=False)
    _assert_same_outputs(loaded, expected, images)
    loaded.save(tmp_path / "again.keras")
    _assert_same_outputs(keras.saving.load_model(tmp_path / "again.keras"), expected, images)


def test_quantized_logits_stay_close_to_float32(images):
    cls = keras_vit.ViTForImageClassification
    model = cls(tiny_config(cls))
    reference = _outputs(model, images)["logits"]
    model.quantize("int8")
    quantized = _outputs(model, images)["logits"]
    assert 0 < np.abs(quantized - reference).max() < 0.05


def test_float32_config_keeps_a_plain_policy():
    model = keras_vit.ViTModel(tiny_config())
    assert model.get_config()["dtype"]["class_name"] == "DTypePolicy"


@pytest.mark.parametrize("cls", [keras_vit.ViTForImageClassification, keras_vit.DeiTModel], ids=lambda c: c.__name__)
def test_quantized_model_exports_int8_variables(cls, tmp_path):
    model = _quantized(cls)
    # export verifies both signatures against the quantized Keras model before publishing.
    path = export_saved_model(model, tmp_path, verbose=False)
    dtypes = tf.train.load_checkpoint(str(path / "variables" / "variables")).get_variable_to_dtype_map()
    assert sum(dtype == tf.int8 for dtype in dtypes.values()) == len(_int8_kernels(model))
