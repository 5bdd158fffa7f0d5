"""ImagePreprocessing: the processor's steps as a Keras layer (parity, backends, tf.data, models, limits)."""

import json
import struct
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf
import transformers
from PIL import Image
from sklearn.datasets import load_sample_images

import keras_vit
from keras_vit.layers import ImagePreprocessing
from keras_vit.preprocessor_config import MAX_RESIZED_PIXELS, ImageTooLargeError, PreprocessorConfig
from keras_vit.processors import DeiTImageProcessor, ViTImageProcessor
from tests.conftest import run_check, tiny_config
from tests.layer_test_helper import run_layer_test


@pytest.fixture(scope="module")
def photos():
    """scikit-learn's two sample photos (china.jpg, flower.jpg), uint8 (427, 640, 3)."""
    return load_sample_images().images


def bomb_png(width, height):
    """A 1-bit grayscale PNG of zeros declaring width x height: tiny file, huge decoded size."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# === Layer conventions ===
def test_shared_layer_checks(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (2, 40, 48, 3)).astype("float32")
    kwargs = dict(size={"shortest_edge": 36}, resample=3, do_center_crop=True, crop_size=32, image_mean=0.4)
    run_layer_test(ImagePreprocessing, kwargs, {"images": images}, (2, 32, 32, 3), tmp_path=tmp_path)


def test_get_config_is_exactly_the_init_arguments():
    layer = ImagePreprocessing(size=(30, 20), image_std=[0.2, 0.3, 0.4], data_format="channels_first", name="prep")
    config = layer.get_config()
    own = {k: v for k, v in config.items() if k not in ("name", "trainable", "dtype")}
    assert own == {**PreprocessorConfig(size=(30, 20), image_std=[0.2, 0.3, 0.4]).to_dict(), "data_format": "channels_first"}
    assert ImagePreprocessing.from_config(config).get_config() == config


def test_output_hw_and_compute_output_shape():
    assert ImagePreprocessing().output_hw == (224, 224)
    assert ImagePreprocessing(size=256, do_center_crop=True, crop_size=(224, 200)).output_hw == (224, 200)
    edge = ImagePreprocessing(size={"shortest_edge": 32})
    assert edge.output_hw is None
    assert edge.compute_output_shape((None, 48, 64, 3)) == (None, 32, 42, 3)
    assert edge.compute_output_shape((None, None, None, 3)) == (None, None, None, 3)
    assert ImagePreprocessing(size=8, data_format="channels_first").compute_output_shape((2, 9, 9, 1)) == (2, 1, 8, 8)
    assert edge(np.zeros((1, 48, 64, 3), "uint8")).shape == (1, 32, 42, 3)


# === Parity with the PIL processor ===
# resample -> (max, mean) |layer - processor| in 0-255 grey levels after resizing, measured on
# the two sample photos resized to 224 x 224 and 150 x 300 and a 107 x 160 crop of each
# upsampled 4x (TensorFlow backend). Nearest: PIL and keras pick a neighbouring source pixel
# at ~5% of positions. Box: TensorFlow's "area" is not PIL's box filter on fractional scales.
PARITY_BOUNDS = {0: (255, 1.3), 1: (17, 0.25), 2: (1, 0.21), 3: (9, 0.22), 4: (68, 2.6)}


@pytest.mark.parametrize("resample", sorted(PARITY_BOUNDS), ids=lambda r: f"resample={r}")
def test_resize_parity_with_the_pil_processor(resample, photos):
    cases = [(p, s) for p in photos for s in (224, (150, 300))] + [(p[100:207, 200:360], (428, 640)) for p in photos]
    worst, means = 0.0, []
    for image, size in cases:
        processor = ViTImageProcessor(size=size, resample=resample, do_rescale=False, do_normalize=False)
        ours = np.asarray(processor.to_layer()(image[None]))[0]
        difference = np.abs(ours - processor(image)["pixel_values"][0])
        worst, means = max(worst, float(difference.max())), means + [float(difference.mean())]
    max_bound, mean_bound = PARITY_BOUNDS[resample]
    assert worst <= max_bound and max(means) <= mean_bound, (worst, max(means))
    if resample == 2:
        assert worst == 1.0  # bilinear: within one grey level, and not identical


@pytest.mark.parametrize("cls", [ViTImageProcessor, DeiTImageProcessor], ids=lambda c: c.__name__)
def test_full_pipeline_matches_processor_and_transformers(cls, photos):
    kwargs = dict(size={"shortest_edge": 250}, do_center_crop=True, crop_size=(201, 223), image_mean=[0.485, 0.456, 0.406])
    processor = cls(**kwargs)
    layer = processor.to_layer()
    ours = np.asarray(layer(np.stack(photos)))
    theirs = processor(list(photos))["pixel_values"]
    hf = np.asarray(getattr(transformers, f"{cls.__name__}Pil")(**kwargs)(list(photos), return_tensors="np")["pixel_values"])
    assert ours.shape == theirs.shape == (2, 201, 223, 3)
    levels = np.abs(ours - theirs) * 255 * np.array(processor.image_std)
    assert levels.max() <= 9.01 and levels.mean() < 0.25  # bicubic (DeiT) or bilinear (ViT) bounds above
    np.testing.assert_allclose(theirs, hf.transpose(0, 2, 3, 1), atol=1e-5)


def test_without_resize_equals_the_processor(photos):
    processor = ViTImageProcessor(do_resize=False, do_center_crop=True, crop_size=(500, 301), image_std=[0.2, 0.3, 0.4])
    np.testing.assert_allclose(
        np.asarray(processor.to_layer()(photos[0][None])), processor(photos[0])["pixel_values"], atol=1e-6
    )


def test_uint8_and_float_inputs_agree_and_channels_first(photos):
    layer = ImagePreprocessing(size=(40, 56))
    from_uint8 = np.asarray(layer(photos[1][None]))
    from_float = np.asarray(layer(photos[1][None].astype("float32")))
    np.testing.assert_array_equal(from_uint8, from_float)
    assert from_uint8.dtype == np.float32 and from_uint8.min() >= -1 and from_uint8.max() <= 1
    single = np.asarray(layer(photos[1]))
    np.testing.assert_array_equal(single, from_uint8[0])
    first = np.asarray(ImagePreprocessing(size=(40, 56), data_format="channels_first")(photos[1][None]))
    np.testing.assert_array_equal(first, from_uint8.transpose(0, 3, 1, 2))


def test_grayscale_images_with_one_mean():
    images = np.random.default_rng(1).integers(0, 256, (2, 20, 20, 1), dtype=np.uint8)
    out = np.asarray(ImagePreprocessing(size=10, image_mean=[0.5], image_std=[0.25])(images))
    assert out.shape == (2, 10, 10, 1)
    with pytest.raises(ValueError, match=r"Expected images with 3 channels, one per image_mean value. .*\(2, 20, 20, 2\)"):
        ImagePreprocessing(size=10)(np.zeros((2, 20, 20, 2), "uint8"))


# === Constructors ===
def test_from_processor_to_layer_and_from_pretrained(tmp_path):
    processor = DeiTImageProcessor(size=(40, 44), crop_size=32, image_mean=[0.485, 0.456, 0.406])
    layer = processor.to_layer(name="prep")
    assert layer.name == "prep" and layer.spec == processor.spec and layer.output_hw == (32, 32)
    hf = transformers.DeiTImageProcessorPil(size={"height": 40, "width": 44}, crop_size=32, resample=1)
    assert ImagePreprocessing.from_processor(hf).spec == PreprocessorConfig(
        size=(40, 44), crop_size=32, do_center_crop=True, resample=1
    )
    hf.save_pretrained(tmp_path)
    loaded = ImagePreprocessing.from_pretrained(tmp_path, data_format="channels_first")
    assert loaded.spec == ImagePreprocessing.from_processor(hf).spec and loaded.data_format == "channels_first"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No file at .*empty/preprocessor_config.json"):
        ImagePreprocessing.from_pretrained(tmp_path / "empty")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(size=0), r"Expected size to be a positive int.*Received: size=0"),
        (dict(resample=5), r"resample=5 \(hamming\)"),
        (dict(resample=True), "Expected resample to be a PIL filter.*Received: resample=True"),
        (dict(image_std=[1, 0, 1]), r"image_std to be a number or 3 positive numbers.*image_std=\[1, 0, 1\]"),
        (dict(rescale_factor=float("nan")), "rescale_factor to be a positive number. Received: rescale_factor=nan"),
        (dict(data_format="NHWC"), "Expected data_format to be one of .*Received: data_format='NHWC'"),
        (dict(do_center_crop=True), "Expected crop_size when do_center_crop=True"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImagePreprocessing(**kwargs)


def test_bad_rank():
    with pytest.raises(ValueError, match=r"Expected images of shape \(batch, height, width, channels\).*\(8, 8\)"):
        ImagePreprocessing(size=4)(np.zeros((8, 8), "uint8"))


# === Resource limits, in the layer and the processor ===
def test_extreme_aspect_ratio_is_refused_before_resizing():
    thin = np.zeros((1, 20000, 3), "uint8")
    message = rf"resize to at most {MAX_RESIZED_PIXELS} pixels. Received: 20000 x 1 resizes to 4480000 x 224"
    with pytest.raises(ImageTooLargeError, match=message):
        ViTImageProcessor(size={"shortest_edge": 224}, do_center_crop=True, crop_size=224)(
            thin, input_data_format="channels_last"
        )
    with pytest.raises(ImageTooLargeError, match="resize to at most"):
        ImagePreprocessing(size={"shortest_edge": 224}, do_center_crop=True, crop_size=224)(thin[None])
    # A fixed size needs no limit: the same image resizes to 224 x 224.
    assert ViTImageProcessor(input_data_format="channels_last")(thin)["pixel_values"].shape == (1, 224, 224, 3)


def test_processor_refuses_a_decompression_bomb_from_its_header(tmp_path):
    (tmp_path / "bomb.png").write_bytes(bomb_png(14000, 14000))
    assert (tmp_path / "bomb.png").stat().st_size < 40_000
    with pytest.raises(ImageTooLargeError, match=r"bomb.png': it is over PIL's decompression-bomb limit.*196000000 pix"):
        ViTImageProcessor()(tmp_path / "bomb.png")
    # Between PIL's warning and error thresholds (PIL only warns), the processor refuses too.
    (tmp_path / "big.png").write_bytes(bomb_png(10000, 10000))
    with pytest.raises(ImageTooLargeError, match=r"at most 89478485 pixels. Received: 10000 x 10000 = 100000000 pix"):
        ViTImageProcessor()(tmp_path / "big.png")


# === Where the layer runs ===
def test_in_tf_data_map_on_image_dataset_from_directory(tmp_path, photos):
    for label, photo in enumerate(photos):
        (tmp_path / f"class{label}").mkdir()
        for i in range(3):
            Image.fromarray(photo[i * 50 : i * 50 + 300, i * 90 : i * 90 + 400]).save(tmp_path / f"class{label}" / f"{i}.jpg")
    dataset = keras.utils.image_dataset_from_directory(tmp_path, image_size=(90, 120), batch_size=4, shuffle=False)
    layer = ImagePreprocessing(size={"shortest_edge": 40}, do_center_crop=True, crop_size=32, resample=3)
    mapped = dataset.map(lambda images, labels: (layer(images), labels))
    assert mapped.element_spec[0].shape.as_list() == [None, 32, 32, 3]
    for (images, _), (pixels, _) in zip(dataset, mapped):
        assert images.dtype == tf.float32 and pixels.shape[1:] == (32, 32, 3)
        np.testing.assert_array_equal(pixels.numpy(), np.asarray(layer(images.numpy())))
    # Images of any size in one pipeline (a ragged source, one image at a time).
    sizes = tf.data.Dataset.from_generator(
        lambda: (photos[i][: 200 + 30 * i, : 300 - 20 * i] for i in range(2)),
        output_signature=tf.TensorSpec((None, None, 3), tf.uint8),
    )
    for image, pixels in zip(sizes, sizes.map(layer)):
        np.testing.assert_array_equal(pixels.numpy(), np.asarray(layer(image.numpy())))


def _composed(model, layer):
    images = keras.Input((None, None, 3), dtype="uint8", name="images")
    return keras.Model(images, model(layer(images)))


def test_inside_a_functional_model_and_keras_round_trip(tmp_path, photos):
    model = keras_vit.ViTForImageClassification(tiny_config(keras_vit.ViTForImageClassification))
    layer = ImagePreprocessing(size=32)
    composed = _composed(model, layer)
    batch = np.stack([photos[0][:300, :400], photos[1][:300, :400]])
    logits = np.asarray(composed.predict(batch, verbose=0)["logits"])
    np.testing.assert_allclose(logits, np.asarray(model(layer(batch))["logits"]), atol=1e-6)
    composed.save(tmp_path / "composed.keras")
    loaded = keras.saving.load_model(tmp_path / "composed.keras")
    assert [type(l).__name__ for l in loaded.layers] == ["InputLayer", "ImagePreprocessing", "ViTForImageClassification"]
    np.testing.assert_allclose(np.asarray(loaded.predict(batch, verbose=0)["logits"]), logits, atol=1e-6)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends_give_tensorflow_pixels(backend, tmp_path, photos):
    configs = [
        dict(size=(40, 56)),
        dict(size={"shortest_edge": 36}, resample=3, do_center_crop=True, crop_size=32, data_format="channels_first"),
        dict(do_resize=False, do_center_crop=True, crop_size=(90, 300), image_mean=[0.1, 0.2, 0.3]),
        dict(size=(300, 500), resample=0),
    ]
    arrays = {"configs": json.dumps([ImagePreprocessing(**c).get_config() for c in configs])}
    for i, config in enumerate(configs):
        arrays[f"input_{i}"] = np.stack([photos[0][:120, :200], photos[1][:120, :200]])
        arrays[f"output_{i}"] = np.asarray(ImagePreprocessing(**config)(arrays[f"input_{i}"]))
    np.savez(tmp_path / "cases.npz", **arrays)
    stdout = run_check("preprocessing_backend_check.py", backend, tmp_path / "cases.npz")
    difference = float(stdout.strip().rsplit("=", 1)[1])
    assert difference <= 2 / 255 + 1e-6, f"{backend}: max |Δ| vs TensorFlow = {difference} (> one grey level)"
