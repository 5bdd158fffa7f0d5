import json
import os
import pathlib

import numpy as np
import pytest
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.datasets import load_sample_images

from keras_vit import DeiTConfig, ViTConfig
from keras_vit import processors
from keras_vit.processors import DeiTImageProcessor, ViTImageProcessor

# The PIL backend of transformers' processors (what ViT/DeiTImageProcessor resolve to without torchvision).
HF = {ViTImageProcessor: transformers.ViTImageProcessorPil, DeiTImageProcessor: transformers.DeiTImageProcessorPil}
PROCESSORS = list(HF)
ATOL = 1e-5
IMAGENET_DEFAULT = dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])


def hf_pixels(hf_processor, images, **call_kwargs):
    """transformers' pixel_values, transposed from (batch, 3, h, w) to our (batch, h, w, 3)."""
    pixel_values = hf_processor(images, return_tensors="np", **call_kwargs)["pixel_values"]
    return np.asarray(pixel_values).transpose(0, 2, 3, 1)


def max_delta(cls, images, hf_images=None, **kwargs):
    """max |ours - transformers| for the same inputs and arguments; checks shape and dtype."""
    ours = cls(**kwargs)(images)["pixel_values"]
    theirs = hf_pixels(HF[cls](**kwargs), images if hf_images is None else hf_images)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    return float(np.abs(ours - theirs).max())


@pytest.fixture(scope="module")
def photos():
    """The two real photographs of scikit-learn (china.jpg, flower.jpg), uint8 (427, 640, 3)."""
    return load_sample_images().images


def random_uint8(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def transparent_palette(pixels):
    """A palette ("P") image whose colour index 0 is transparent."""
    image = Image.fromarray(pixels[::4, ::4]).convert("P")
    image.info["transparency"] = 0
    return image


# === Parity with transformers ===
# case name -> (images, images for transformers or None for the same, processor arguments)
PARITY_CASES = {
    "photos_pil_list": (lambda p: [Image.fromarray(x) for x in p], None, {}),
    "photos_uint8_hwc_batch": (lambda p: np.stack(p), None, {}),
    "photo_uint8_chw": (lambda p: p[1].transpose(2, 0, 1), None, {}),
    "photo_int64": (lambda p: p[0].astype(np.int64), None, {}),
    "photo_float_0_1": (lambda p: p[0] / 255.0, None, dict(do_rescale=False)),
    "photo_float_whole_0_255": (lambda p: p[1].astype(np.float32), None, {}),
    "grayscale_pil": (lambda p: Image.fromarray(p[0]).convert("L"), None, dict(do_convert_rgb=True)),
    "grayscale_2d_array": (lambda p: p[0][..., 1], lambda p: p[0][..., 1:2], dict(do_convert_rgb=True)),
    "rgba_pil": (lambda p: Image.fromarray(random_uint8((37, 53, 4))), None, dict(do_convert_rgb=True)),
    "rgba_uint8_array": (lambda p: random_uint8((37, 53, 4)), None, dict(do_convert_rgb=True)),
    "rgba_float_array": (lambda p: random_uint8((30, 20, 4)) / 255, None, dict(do_rescale=False, do_convert_rgb=True)),
    "palette_pil": (lambda p: Image.fromarray(p[1]).convert("P"), None, dict(do_convert_rgb=True)),
    "palette_transparent_pil": (lambda p: transparent_palette(p[1]), None, dict(do_convert_rgb=True)),
    "la_pil": (lambda p: Image.fromarray(random_uint8((20, 30, 4))).convert("LA"), None, dict(do_convert_rgb=True)),
    "bilevel_pil": (lambda p: Image.fromarray(p[0]).convert("1"), None, dict(do_convert_rgb=True)),
    "cmyk_pil": (lambda p: Image.fromarray(p[0]).convert("CMYK"), None, dict(do_convert_rgb=True)),
    "non_square_tiny": (lambda p: random_uint8((5, 97, 3)), None, {}),
    "smaller_than_crop": (lambda p: p[0][:99, :151], None, dict(do_resize=False, do_center_crop=True, crop_size=224)),
    "resized_narrower_than_crop": (lambda p: p[1], None, dict(size=(300, 201), do_center_crop=True, crop_size=224)),
    "shortest_edge_odd_crop": (
        lambda p: p[1],
        None,
        dict(size={"shortest_edge": 250}, do_center_crop=True, crop_size=(201, 223), **IMAGENET_DEFAULT),
    ),
    "mixed_list": (lambda p: [Image.fromarray(p[0]), p[1], random_uint8((3, 40, 30))], None, {}),
}


@pytest.mark.parametrize("cls", PROCESSORS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("case", list(PARITY_CASES))
def test_pixel_values_equal_transformers(cls, case, photos):
    images, hf_images, kwargs = PARITY_CASES[case]
    hf_images = None if hf_images is None else hf_images(photos)
    assert max_delta(cls, images(photos), hf_images, **kwargs) <= ATOL


def write_files(directory, photos):
    """Image files of several kinds (name -> path) for the path tests."""
    china = Image.fromarray(photos[0])
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: rotated 90 degrees
    images = {
        "jpeg": (china, {}),
        "png": (Image.fromarray(photos[1]), {}),
        "rotated_jpeg": (Image.fromarray(photos[1][:200, :300]), dict(exif=exif)),
        "rgba_png": (Image.fromarray(random_uint8((40, 50, 4))), {}),
        "gray_png": (china.convert("L"), {}),
        "palette_transparent_png": (transparent_palette(photos[1]), dict(transparency=0)),
    }
    paths = {}
    for name, (image, save_kwargs) in images.items():
        paths[name] = directory / f"{name}.{'jpg' if name.endswith('jpeg') else 'png'}"
        image.save(paths[name], **save_kwargs)
    return paths


@pytest.mark.parametrize("cls", PROCESSORS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("do_convert_rgb", [None, True])
def test_file_paths_equal_transformers(cls, do_convert_rgb, photos, tmp_path):
    paths = write_files(tmp_path, photos)
    ours = cls(do_convert_rgb=do_convert_rgb)(list(paths.values()))["pixel_values"]  # pathlib.Path
    theirs = hf_pixels(HF[cls](do_convert_rgb=do_convert_rgb), [str(p) for p in paths.values()])
    assert ours.shape == (len(paths), 224, 224, 3)
    assert np.abs(ours - theirs).max() <= ATOL
    single = cls()(str(paths["jpeg"]))["pixel_values"]
    np.testing.assert_array_equal(single[0], ours[0])
    # EXIF orientation 6 is applied: the 200 x 300 JPEG is read as 300 x 200.
    assert cls(do_resize=False, do_center_crop=False)(paths["rotated_jpeg"])["pixel_values"].shape == (1, 300, 200, 3)


@settings(max_examples=30, deadline=None)
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    channels=st.sampled_from([1, 3, 4]),
    channels_first=st.booleans(),
    as_float=st.booleans(),
    size=st.integers(1, 24),
    crop=st.integers(1, 30),
    resample=st.sampled_from([0, 1, 2, 3, 4, 5]),
)
def test_random_arrays_equal_transformers(height, width, channels, channels_first, as_float, size, crop, resample):
    image = random_uint8((height, width, channels), seed=height * width)
    image = image / 255.0 if as_float else image
    image = image.transpose(2, 0, 1) if channels_first else image
    layout = "channels_first" if channels_first else "channels_last"
    kwargs = dict(
        size=size, resample=resample, do_center_crop=True, crop_size=crop, do_convert_rgb=True, do_rescale=not as_float
    )
    ours = DeiTImageProcessor(input_data_format=layout, **kwargs)(image)["pixel_values"]
    theirs = hf_pixels(transformers.DeiTImageProcessorPil(**kwargs), image, input_data_format=layout)
    assert ours.shape == (1, crop, crop, 3)
    assert np.abs(ours - theirs).max() <= ATOL


# === Outputs ===
def test_defaults_and_output_range():
    vit, deit = ViTImageProcessor(), DeiTImageProcessor()
    for ours, theirs in [(vit.to_dict(), HF[ViTImageProcessor]()), (deit.to_dict(), HF[DeiTImageProcessor]())]:
        theirs = json.loads(theirs.to_json_string())  # as written to preprocessor_config.json
        shared = set(theirs) - {"image_processor_type"}
        assert {k: ours[k] for k in shared} == {k: theirs[k] for k in shared}
    assert vit.data_format == "channels_last" and not vit.do_center_crop and vit.resample == Image.Resampling.BILINEAR
    assert deit.size == {"height": 256, "width": 256} and deit.crop_size == {"height": 224, "width": 224}
    black_and_white = np.zeros((20, 30, 3), np.uint8)
    black_and_white[:, 15:] = 255
    pixels = vit(black_and_white)["pixel_values"]
    assert pixels.shape == (1, 224, 224, 3) and pixels.dtype == np.float32
    assert pixels.min() == -1.0 and pixels.max() == 1.0


def test_channels_first_output_and_overrides(photos):
    processor = ViTImageProcessor()
    last = processor(photos[0], size=(32, 48))["pixel_values"]
    first = processor(photos[0], size=(32, 48), data_format="channels_first", return_tensors="np")["pixel_values"]
    assert last.shape == (1, 32, 48, 3) and first.shape == (1, 3, 32, 48)
    np.testing.assert_array_equal(first.transpose(0, 2, 3, 1), last)
    assert processor.size == {"height": 224, "width": 224}  # overrides do not stick
    theirs = transformers.ViTImageProcessorPil(size=(32, 48))(photos[0], return_tensors="np")["pixel_values"]
    assert np.abs(first - np.asarray(theirs)).max() <= ATOL


def test_no_normalize_no_rescale_keeps_pixels():
    image = random_uint8((8, 6, 3))
    pixels = ViTImageProcessor(do_resize=False, do_rescale=False, do_normalize=False)(image)["pixel_values"]
    np.testing.assert_array_equal(pixels[0], image.astype(np.float32))


@pytest.mark.parametrize("cls", PROCESSORS, ids=lambda c: c.__name__)
def test_from_config_sizes(cls):
    config = (DeiTConfig if cls is DeiTImageProcessor else ViTConfig)(image_size=[32, 48], patch_size=16)
    processor = cls.from_config(config, do_convert_rgb=True)
    assert processor(np.zeros((10, 10), np.uint8))["pixel_values"].shape == (1, 32, 48, 3)
    if cls is DeiTImageProcessor:
        assert processor.size == {"height": 36, "width": 54} and processor.crop_size == {"height": 32, "width": 48}
        assert DeiTImageProcessor.from_config(DeiTConfig()).to_dict() == DeiTImageProcessor().to_dict()
    else:
        assert processor.size == {"height": 32, "width": 48} and not processor.do_center_crop
    with pytest.raises(ValueError, match=r"num_channels=3 \(RGB\). Received: num_channels=1"):
        cls.from_config(ViTConfig(num_channels=1))


# === preprocessor_config.json ===
@pytest.mark.parametrize("cls", PROCESSORS, ids=lambda c: c.__name__)
def test_reads_preprocessor_config_written_by_transformers(cls, photos, tmp_path):
    HF[cls](size=(200, 240), resample=1, **IMAGENET_DEFAULT).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "preprocessor_config.json").read_text())["image_processor_type"] == cls.__name__
    ours = cls.from_pretrained(tmp_path)
    assert ours.size == {"height": 200, "width": 240} and ours.resample == 1
    assert ours.image_mean == IMAGENET_DEFAULT["image_mean"] and ours.data_format == "channels_last"
    theirs = hf_pixels(HF[cls].from_pretrained(tmp_path), photos[0])
    assert np.abs(ours(photos[0])["pixel_values"] - theirs).max() <= ATOL


def test_reads_legacy_feature_extractor_config(tmp_path):
    legacy = dict(feature_extractor_type="DeiTFeatureExtractor", size=256, crop_size=224, resample=3)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**legacy, **IMAGENET_DEFAULT}))
    ours = DeiTImageProcessor.from_pretrained(str(tmp_path))
    assert ours.to_dict() == DeiTImageProcessor(**IMAGENET_DEFAULT).to_dict()
    theirs = transformers.DeiTImageProcessorPil.from_pretrained(tmp_path)
    image = random_uint8((70, 90, 3))
    assert np.abs(ours(image)["pixel_values"] - hf_pixels(theirs, image)).max() <= ATOL


@pytest.mark.parametrize("cls", PROCESSORS, ids=lambda c: c.__name__)
def test_save_pretrained_round_trip_and_transformers_reads_it(cls, tmp_path):
    processor = cls(
        size={"shortest_edge": 40},
        do_center_crop=True,
        crop_size=(30, 20),
        do_convert_rgb=True,
        image_mean=0.4,
        data_format="channels_first",
        input_data_format="channels_last",
    )
    path = processor.save_pretrained(tmp_path / "new_dir")
    assert path == os.path.join(tmp_path / "new_dir", "preprocessor_config.json")
    assert os.listdir(tmp_path / "new_dir") == ["preprocessor_config.json"]
    loaded = cls.from_pretrained(tmp_path / "new_dir")
    assert loaded.to_dict() == processor.to_dict() == cls.from_dict(json.loads(open(path).read())).to_dict()
    assert loaded.image_mean == [0.4, 0.4, 0.4] and loaded.data_format == "channels_first"
    theirs = transformers.AutoImageProcessor.from_pretrained(tmp_path / "new_dir", backend="pil")
    assert type(theirs) is HF[cls]
    image = random_uint8((60, 50, 3))
    ours = loaded(image)["pixel_values"]
    assert ours.shape == (1, 3, 30, 20)
    assert np.abs(ours - np.asarray(theirs(image, return_tensors="np")["pixel_values"])).max() <= ATOL


def test_save_pretrained_is_atomic(tmp_path, monkeypatch):
    ViTImageProcessor().save_pretrained(tmp_path)
    before = (tmp_path / "preprocessor_config.json").read_text()

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        ViTImageProcessor(size=32).save_pretrained(tmp_path)
    assert os.listdir(tmp_path) == ["preprocessor_config.json"]
    assert (tmp_path / "preprocessor_config.json").read_text() == before


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No file at .*preprocessor_config.json"):
        ViTImageProcessor.from_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="preprocessor_config.json to hold JSON. Parsing failed"):
        ViTImageProcessor.from_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="Expected a dict of processor arguments. Received: list"):
        ViTImageProcessor.from_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text('{"size": {"longest_edge": 3}}')
    with pytest.raises(ValueError, match=r"Received: size=\{'longest_edge': 3\}"):
        ViTImageProcessor.from_pretrained(tmp_path)


# === Errors ===
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(size=0), r"Expected size to be a positive int, \(height, width\) .*Received: size=0"),
        (dict(size=(224,)), r"Received: size=\(224,\)"),
        (dict(crop_size={"shortest_edge": 3}, do_center_crop=True), r"Expected crop_size to be .*\{'height': h, "),
        (dict(do_center_crop=True), "Expected crop_size when do_center_crop=True. Received: crop_size=None"),
        (dict(size=None), "Expected size when do_resize=True. Received: size=None"),
        (dict(resample=9), r"Expected resample to be a PIL filter, one of \[0, 1, 2, 3, 4, 5.*Received: resample=9"),
        (dict(rescale_factor=0), "Expected rescale_factor to be a positive number. Received: rescale_factor=0"),
        (dict(image_mean=[0.5, 0.5]), r"image_mean to be a number or 3 numbers .*: image_mean=\[0.5, 0.5\]"),
        (dict(rescale_factor=float("inf")), "Expected rescale_factor to be a positive number. Received: .*=inf"),
        (dict(image_std=[1, 0, 1]), r"image_std to be a number or 3 positive numbers .*image_std=\[1, 0, 1\]"),
        (dict(do_resize="yes"), "Expected do_resize to be a bool. Received: do_resize='yes'"),
        (dict(do_convert_rgb=1), "Expected do_convert_rgb to be a bool or None. Received: do_convert_rgb=1"),
        (dict(data_format="NHWC"), r"data_format to be one of \('channels_last', 'channels_first'\). .*='NHWC'"),
        (dict(input_data_format="HWC"), "Expected input_data_format to be None or one of .*Received: .*='HWC'"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ViTImageProcessor(**kwargs)


def test_bad_call_arguments():
    image = random_uint8((8, 8, 3))
    with pytest.raises(ValueError, match="return_tensors to be None or 'np'. Received: return_tensors='pt'"):
        ViTImageProcessor()(image, return_tensors="pt")
    with pytest.raises(ValueError, match=r"Expected overrides among \[.*'do_resize'.*\]. Received unknown: \['sise'\]"):
        ViTImageProcessor()(image, sise=3)
    with pytest.raises(ValueError, match="Expected resample to be a PIL filter"):
        ViTImageProcessor()(image, resample=-1)
    with pytest.raises(ValueError, match=r"end up the same size.*Received sizes \[\(8, 8, 3\), \(9, 8, 3\)\]"):
        ViTImageProcessor(do_resize=False)([image, random_uint8((9, 8, 3))])


def test_every_image_is_checked_before_any_is_resized(monkeypatch):
    def fail(*args):
        raise AssertionError("resized before the inputs were checked")

    monkeypatch.setattr(processors, "_resize", fail)
    with pytest.raises(ValueError, match=r"Expected images\[1\] to have 3 channels"):
        ViTImageProcessor()([random_uint8((8, 8, 3)), random_uint8((8, 8, 4))])


@pytest.mark.parametrize(
    "images, kwargs, message",
    [
        ([], {}, r"Expected at least one image. Received: images=\[\]"),
        (np.zeros((0, 8, 8, 3), np.uint8), {}, r"one image. Received: images=array\(\[\], shape=\(0, 8, 8, 3\)"),
        (42, {}, "Expected images to be a PIL image, a path to an image file or a NumPy array. Received: int"),
        ([random_uint8((8, 8, 3)), {"a": 1}], {}, r"Expected images\[1\] to be a PIL image.*Received: dict"),
        (np.zeros(8, np.uint8), {}, r"images to be an array of shape \(height, width\).*Received: shape \(8,\)"),
        ([np.zeros((1, 8, 8, 3), np.uint8)], {}, r"images\[0\] to be an array of .*Received: shape \(1, 8, 8, 3\)"),
        (np.zeros((5, 8, 7), np.uint8), {}, r"1, 3 or 4 channels on its first or last axis. Received: shape \(5, 8,"),
        (np.zeros((0, 8, 3), np.uint8), {}, r"Expected images to have at least one pixel. Received: shape \(0, 8, 3\)"),
        (random_uint8((8, 8, 4)), {}, r"3 channels \(RGB\). Received: an array .*channels=4. Pass do_convert_rgb="),
        (random_uint8((8, 8)), {}, r"3 channels \(RGB\). Received: an array of shape \(8, 8\) with channels=1. Pass"),
        (random_uint8((8, 8, 2)), dict(input_data_format="channels_last", do_convert_rgb=True), r"channels=2.$"),
        (np.zeros((8, 8, 3), bool), {}, "Expected images to be a uint8, integer or float array. Received: dtype bool"),
        (np.full((8, 8, 3), 256), {}, r"integer pixels in \[0, 255\]. Received: values in \[256, 256\] \(int64\)"),
        (np.full((8, 8, 3), np.nan), {}, "Expected images to hold finite pixel values. Received: NaN or infinity"),
        (np.full((8, 8, 3), 0.5), {}, r"in \[0, 255\] because do_rescale=True. .*Pass do_rescale=False for images"),
        (np.full((8, 8, 3), 2.5), {}, r"Expected float images in \[0, 1\], or whole numbers in \[0, 255\], to resize"),
        (np.full((8, 8, 4), 2.0), dict(do_convert_rgb=True), r"float RGBA images in \[0, 1\] to composite"),
    ],
)
def test_bad_images(images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ViTImageProcessor(**kwargs)(images)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA"])
def test_pil_modes_without_rgb_conversion_are_refused(mode):
    image = Image.fromarray(random_uint8((8, 8, 3))).convert(mode)
    with pytest.raises(ValueError, match=f"Received: a PIL image of mode '{mode}' with channels=.. Pass do_convert"):
        ViTImageProcessor()(image)
    assert ViTImageProcessor(do_convert_rgb=True)(image)["pixel_values"].shape == (1, 224, 224, 3)


def test_16_bit_images_are_refused(tmp_path):
    image = Image.fromarray((np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000))
    assert image.mode == "I;16"
    image.save(tmp_path / "deep.png")
    for source in (image, tmp_path / "deep.png"):
        with pytest.raises(ValueError, match="8-bit image. Received: PIL mode 'I;16'; converting it to RGB would clip"):
            ViTImageProcessor(do_convert_rgb=True)(source)


def test_file_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="Expected images to be an image file. No file at '.*missing.png'"):
        ViTImageProcessor()(tmp_path / "missing.png")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"images\[0\] to be a readable image file. Could not decode .*notes.txt"):
        ViTImageProcessor()([str(tmp_path / "notes.txt")])
    Image.fromarray(random_uint8((64, 64, 3))).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="Could not decode '.*cut.jpg': image file is truncated"):
        ViTImageProcessor()(tmp_path / "cut.jpg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match="Refusing to decode '.*full.jpg': it is over PIL's decompression-bomb lim"):
        ViTImageProcessor()(pathlib.Path(tmp_path / "full.jpg"))
