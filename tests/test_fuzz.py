"""Property tests: the processor and the exported bytes signature never crash on odd input.

Every generated input either gives finite pixel values / predictions of the right shape or the error
its rule names (ValueError from the processor, InvalidArgument from the SavedModel); nothing else.
"""

import io
import re

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import keras_vit
from keras_vit.export import export_saved_model
from tests.conftest import tiny_config

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
MODES = ["L", "LA", "P", "RGB", "RGBA", "CMYK", "1", "I;16", "I", "F"]
WIDE = ("I;16", "I", "F")  # PIL modes with more than 8 bits, which the processor refuses to clip


def _encode(array, fmt="PNG"):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def _processor_error(image, as_array):
    """The start of the error `ViTImageProcessor(size=16, do_convert_rgb=True)` must raise, or None."""
    if not as_array:
        return f"Expected images to be an 8-bit image. Received: PIL mode {image.mode!r}" if image.mode in WIDE else None
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] not in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        return "Expected images to have 1, 3 or 4 channels on its first or last axis."
    if array.dtype == bool:
        return "Expected images to be a uint8, integer or float array. Received: dtype bool"
    if array.dtype.kind == "f" and 0 <= array.min() and array.max() <= 1:
        return "Expected float images in [0, 255] because do_rescale=True."
    if array.dtype.kind == "f" and not np.allclose(array, array.astype(int)):
        return "Expected float images in [0, 1], or whole numbers in [0, 255], to resize with PIL."
    return None


@FUZZ
@given(
    height=st.integers(1, 64),
    width=st.integers(1, 64),
    mode=st.sampled_from(MODES),
    as_array=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_processor_gives_pixels_or_the_error_its_rule_names(height, width, mode, as_array, seed):
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)
    processor = keras_vit.ViTImageProcessor(size=16, do_convert_rgb=True)
    expected = _processor_error(image, as_array)
    if expected:
        with pytest.raises(ValueError) as info:
            processor(np.asarray(image) if as_array else image)
        assert type(info.value) is ValueError and str(info.value).startswith(expected), str(info.value)
        return
    out = processor(np.asarray(image) if as_array else image)["pixel_values"]
    assert out.shape == (1, 16, 16, 3) and out.dtype == np.float32
    assert np.isfinite(out).all() and -1.0 - 1e-6 <= out.min() and out.max() <= 1.0 + 1e-6


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("dtype", ["uint8", "int16", "float16", "float32", "float64", "bool"])
def test_processor_array_dtypes_and_channels(dtype, channels):
    array = (np.random.default_rng(0).uniform(0, 1, (9, 7, channels)) * (255 if dtype in ("uint8", "int16") else 1)).astype(dtype)
    processor = keras_vit.ViTImageProcessor(size=8, do_rescale=dtype in ("uint8", "int16"))
    if channels in (2, 5):
        with pytest.raises(ValueError, match=re.escape(f"Expected images to have 1, 3 or 4 channels on its first or "
                                                       f"last axis. Received: shape (9, 7, {channels}).")):
            processor(array)
    elif dtype == "bool":
        with pytest.raises(ValueError, match="Expected images to be a uint8, integer or float array. Received: dtype bool"):
            processor(array)
    elif channels in (1, 4):  # grey or RGBA: converted only when asked (do_convert_rgb, as in transformers)
        with pytest.raises(ValueError, match=re.escape(f"Expected images to have 3 channels (RGB). Received: an array "
                                                       f"of shape (9, 7, {channels}) with channels={channels}. Pass "
                                                       "do_convert_rgb=True to convert it to RGB.")):
            processor(array)
    else:
        out = processor(array)["pixel_values"]
        assert out.shape == (1, 8, 8, 3) and out.dtype == np.float32 and np.isfinite(out).all()
        assert -1.0 - 1e-6 <= out.min() and out.max() <= 1.0 + 1e-6
        if dtype.startswith("float"):  # [0, 1] floats rescaled again would be near-black
            with pytest.raises(ValueError, match=re.escape("Expected float images in [0, 255] because do_rescale=True")):
                keras_vit.ViTImageProcessor(size=8, do_rescale=True)(array)


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    model = keras_vit.ViTForImageClassification(tiny_config())
    path = export_saved_model(model, tmp_path_factory.mktemp("fuzz"), verbose=False)
    return tf.saved_model.load(str(path)).signatures["serving_default"]


VALID = _encode(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8))


# What TensorFlow's decoders and the export's header checks say about bytes that are no image.
DECODE_ERRORS = r"Input is empty|Unknown image file format|Invalid (PNG|JPEG|GIF|BMP|WebP)|Number of channels|Expected"


@FUZZ
@given(data=st.one_of(st.binary(max_size=256), st.integers(0, len(VALID) - 1).map(lambda n: VALID[:n])))
def test_bytes_signature_rejects_garbage_with_invalid_argument(serve, data):
    with pytest.raises(tf.errors.InvalidArgumentError, match=DECODE_ERRORS):
        serve(images=tf.constant([data]))


@FUZZ
@given(height=st.integers(1, 80), width=st.integers(1, 80), fmt=st.sampled_from(["PNG", "JPEG", "BMP", "GIF"]))
def test_bytes_signature_serves_any_size_and_format(serve, height, width, fmt):
    array = np.random.default_rng(height * 100 + width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = serve(images=tf.constant([_encode(array, fmt)]))
    probabilities = out["probabilities"].numpy()
    assert probabilities.shape == (1, 3) and np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(), 1.0, atol=1e-5)
