"""Property tests: the processor and the exported bytes signature never crash on odd input.

Every generated input either gives finite pixel values / predictions of the right shape or a
clear error (ValueError from the processor, InvalidArgument from the SavedModel).
"""

import io

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import keras_vit
from keras_vit.export import export_saved_model
from tests.conftest import tiny_config

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
MODES = ["L", "LA", "P", "RGB", "RGBA", "CMYK", "1", "I;16", "I", "F"]


def _encode(array, fmt="PNG"):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


@FUZZ
@given(
    height=st.integers(1, 64),
    width=st.integers(1, 64),
    mode=st.sampled_from(MODES),
    as_array=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_processor_gives_pixels_or_value_error(height, width, mode, as_array, seed):
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)
    processor = keras_vit.ViTImageProcessor(size=16, do_convert_rgb=True)
    try:
        out = processor(np.asarray(image) if as_array else image)["pixel_values"]
    except ValueError as error:
        assert str(error)  # a message, not a crash
        return
    assert out.shape == (1, 16, 16, 3) and out.dtype == np.float32
    assert np.isfinite(out).all() and -1.0 - 1e-6 <= out.min() and out.max() <= 1.0 + 1e-6


@FUZZ
@given(dtype=st.sampled_from(["uint8", "int16", "float16", "float32", "float64", "bool"]), channels=st.sampled_from([1, 2, 3, 4, 5]))
def test_processor_array_dtypes_and_channels(dtype, channels):
    array = (np.random.default_rng(0).uniform(0, 1, (9, 7, channels)) * (255 if dtype in ("uint8", "int16") else 1)).astype(dtype)
    processor = keras_vit.ViTImageProcessor(size=8, do_rescale=dtype in ("uint8", "int16"))
    try:
        out = processor(array)["pixel_values"]
    except ValueError as error:
        assert str(error)
        return
    assert out.shape == (1, 8, 8, 3) and np.isfinite(out).all()


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    model = keras_vit.ViTForImageClassification(tiny_config())
    path = export_saved_model(model, tmp_path_factory.mktemp("fuzz"), verbose=False)
    return tf.saved_model.load(str(path)).signatures["serving_default"]


VALID = _encode(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8))


@FUZZ
@given(data=st.one_of(st.binary(max_size=256), st.integers(0, len(VALID) - 1).map(lambda n: VALID[:n])))
def test_bytes_signature_rejects_garbage_without_crashing(serve, data):
    try:
        out = serve(images=tf.constant([data]))
    except tf.errors.InvalidArgumentError:
        return
    assert out["probabilities"].shape == (1, 3) and np.isfinite(out["probabilities"].numpy()).all()


@FUZZ
@given(height=st.integers(1, 80), width=st.integers(1, 80), fmt=st.sampled_from(["PNG", "JPEG", "BMP", "GIF"]))
def test_bytes_signature_serves_any_size_and_format(serve, height, width, fmt):
    array = np.random.default_rng(height * 100 + width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = serve(images=tf.constant([_encode(array, fmt)]))
    probabilities = out["probabilities"].numpy()
    assert probabilities.shape == (1, 3) and np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(), 1.0, atol=1e-5)
