"""Image processors: images in, `pixel_values` for a ViT/DeiT model out.

`ViTImageProcessor` and `DeiTImageProcessor` take the arguments, defaults and
`preprocessor_config.json` of Hugging Face's ViT/DeiT image processors and reproduce the
pixels of their PIL backend (`transformers.ViTImageProcessorPil` /
`DeiTImageProcessorPil`, which `ViTImageProcessor` / `DeiTImageProcessor` resolve to when
torchvision is not installed): PIL decodes and resizes, NumPy crops, rescales and
normalises, in the same order and precision.

The settings that decide the pixels are parsed and validated once, into a
`keras_vit.preprocessor_config.PreprocessorConfig` (`processor.spec`), which the Keras layer
`keras_vit.layers.ImagePreprocessing` also runs (`processor.to_layer()`).

One difference: `pixel_values` are channels-last, (batch, height, width, channels), the
layout of this library's models. Hugging Face returns channels-first; pass
`data_format="channels_first"` to get that layout.
"""

import copy
import inspect
import io
import os

import numpy as np
from PIL import Image, ImageMode

from keras_vit import exif
from keras_vit.atomic import write_text_atomically
from keras_vit.config import to_json_string
from keras_vit.data_format import DATA_FORMATS
from keras_vit.hub import PREPROCESSOR_CONFIG_NAME, resolve_checkpoint
from keras_vit.layers.preprocessing import ImagePreprocessing
from keras_vit.preprocessor_config import (
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    MAX_RESIZED_PIXELS,
    ImageTooLargeError,
    PreprocessorConfig,
    read_preprocessor_settings,
)


# === Loading: every input to one (height, width, 3) array ===
def _check_8_bit(image, name):
    if ImageMode.getmode(image.mode).typestr[1:] not in ("u1", "b1"):
        raise ValueError(
            f"Expected {name} to be an 8-bit image. Received: PIL mode {image.mode!r}; converting it to RGB "
            "would clip values above 255. Scale it to 8 bits first, e.g. Image.fromarray((np.asarray(image) >> 8)"
            ".astype('uint8')) for 16-bit data."
        )


def load_image(path, name="image"):
    """Decodes an image file as transformers' `load_image` does: EXIF orientation applied, then RGB.

    The orientation is read by the rules of `keras_vit.exif` (JPEG APP1, PNG eXIf, WebP
    EXIF; the serving graph reads it the same way), not from XMP or comments.

    Returns a `PIL.Image.Image` of mode "RGB". Raises `FileNotFoundError` for a missing file,
    `ImageTooLargeError` (a `ValueError`) over the pixel limit, and `ValueError` for a file
    that is not a decodable 8-bit image.

    The size in the header is checked against PIL's decompression-bomb limit
    (`PIL.Image.MAX_IMAGE_PIXELS`, by default `MAX_IMAGE_PIXELS`) before any pixel is decoded.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Expected {name} to be an image file. No file at {path!r}")
    with open(path, "rb") as f:
        data = f.read()
    try:
        with Image.open(io.BytesIO(data)) as image:
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and image.width * image.height > limit:
                raise ImageTooLargeError(
                    f"Refusing to decode {path!r}: it is over PIL's decompression-bomb limit. Expected {name} to "
                    f"have at most {limit} pixels. Received: {image.width} x {image.height} = "
                    f"{image.width * image.height} pixels"
                )
            image.load()
            _check_8_bit(image, f"{name} ({path!r})")
            return _transpose(image, exif.orientation(data)).convert("RGB")
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"Refusing to decode {path!r}: it is over PIL's decompression-bomb limit. {e}") from None
    except OSError as e:
        raise ValueError(f"Expected {name} to be a readable image file. Could not decode {path!r}: {e}") from None


# EXIF orientation -> the PIL transpose that makes the image upright (PIL.ImageOps.exif_transpose's table).
_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _transpose(image, orientation):
    return image.transpose(_TRANSPOSES[orientation]) if orientation in _TRANSPOSES else image


def _pil_to_array(image, do_convert_rgb):
    """A PIL image as a (height, width) or (height, width, channels) array, as transformers reads it."""
    if not do_convert_rgb:
        return np.array(image)
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        # Transparent pixels are composited onto white (transformers' `convert_to_rgb`).
        image = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image)
    return np.array(image.convert("RGB"))


def _channels_last(array, name, input_data_format):
    """A non-empty 2-D or 3-D array as (height, width, channels).

    With `input_data_format=None` the channel axis is the first or last one holding 1, 3 or 4
    (grayscale, RGB, RGBA); the first when both do, as in transformers.
    """
    if array.ndim == 2:
        array = array[..., None]
    elif array.ndim != 3:
        raise ValueError(
            f"Expected {name} to be an array of shape (height, width), (height, width, channels) or "
            f"(channels, height, width). Received: shape {array.shape}"
        )
    elif input_data_format == "channels_first" or (input_data_format is None and array.shape[0] in (1, 3, 4)):
        array = np.moveaxis(array, 0, -1)
    elif input_data_format is None and array.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"Expected {name} to have 1, 3 or 4 channels on its first or last axis. Received: shape "
            f"{array.shape}. Pass input_data_format to name the channel axis."
        )
    if not (array.shape[0] and array.shape[1]):
        raise ValueError(f"Expected {name} to have at least one pixel. Received: shape {array.shape}")
    return array


def _array_pixels(array, name):
    """Integer arrays as uint8 (values must be 0..255); float arrays must be finite."""
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.integer):
        if array.min() < 0 or array.max() > 255:
            raise ValueError(
                f"Expected {name} to hold integer pixels in [0, 255]. Received: values in "
                f"[{array.min()}, {array.max()}] ({array.dtype})"
            )
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"Expected {name} to hold finite pixel values. Received: NaN or infinity")
        return array
    raise ValueError(f"Expected {name} to be a uint8, integer or float array. Received: dtype {array.dtype}")


def _to_rgb(image, do_convert_rgb):
    """Grayscale repeated to 3 channels, RGBA composited onto white (transformers' `convert_to_rgb`)."""
    channels = image.shape[-1]
    if not do_convert_rgb or channels not in (1, 4):
        return image
    if channels == 1:
        return np.repeat(image, 3, axis=-1)
    white = 255 if image.dtype == np.uint8 else 1.0
    alpha = image[..., 3:] / white
    composite = alpha * image[..., :3] + (1 - alpha) * white
    return np.round(composite).astype(np.uint8) if white == 255 else composite.astype(image.dtype)


def _is_whole(image):
    return np.allclose(image, image.astype(int))


def _check_float_range(image, name, do_rescale, do_resize, composite):
    """Float pixels must be in the range the later steps expect (transformers fails or double-scales)."""
    low, high = float(image.min()), float(image.max())
    in_unit_range = 0 <= low and high <= 1
    if do_rescale and in_unit_range:
        raise ValueError(
            f"Expected float {name} in [0, 255] because do_rescale=True. Received: values in [{low}, {high}], "
            "which would be rescaled twice. Pass do_rescale=False for images already in [0, 1]."
        )
    if composite and not in_unit_range:
        raise ValueError(
            f"Expected float RGBA {name} in [0, 1] to composite onto white. Received: values in [{low}, {high}]"
        )
    if do_resize and not in_unit_range and not (0 <= low and high <= 255 and _is_whole(image)):
        raise ValueError(
            f"Expected float {name} in [0, 1], or whole numbers in [0, 255], to resize with PIL. "
            f"Received: values in [{low}, {high}]"
        )


def _flatten(images):
    """(name, image) pairs of a single image, a list of them or a 4-D batch array."""
    if not (isinstance(images, (list, tuple)) or (isinstance(images, np.ndarray) and images.ndim == 4)):
        return [("images", images)]
    if not len(images):
        raise ValueError(f"Expected at least one image. Received: images={images!r}")
    return [(f"images[{i}]", image) for i, image in enumerate(images)]


# === Pixel operations (transformers' `image_transforms`, channels-last) ===
def _rescale(image, factor):
    return (image.astype(np.float64) * factor).astype(np.float32)


def _resize(image, spec):
    """Resizes with PIL; a float image in [0, 1] goes through 8 bits, as in transformers."""
    height, width = spec.resized_hw(*image.shape[:2])
    scaled = image.dtype != np.uint8 and not _is_whole(image)
    pixels = (_rescale(image, 255) if scaled else image).astype(np.uint8)
    resized = np.array(Image.fromarray(pixels).resize((width, height), resample=spec.resample))
    return _rescale(resized, 1 / 255) if scaled else resized


def _center_crop(image, height, width):
    """Crops the centre; a side shorter than the crop is first zero-padded (more on top/left)."""
    pad_h, pad_w = max(height - image.shape[0], 0), max(width - image.shape[1], 0)
    image = np.pad(image, (((pad_h + 1) // 2, pad_h // 2), ((pad_w + 1) // 2, pad_w // 2), (0, 0)))
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return image[top : top + height, left : left + width]


def _normalize(image, mean, std):
    if not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)
    return (image - np.array(mean, dtype=image.dtype)) / np.array(std, dtype=image.dtype)


class ViTImageProcessor:
    """Turns images into the `pixel_values` of a ViT model, as Hugging Face's ViT image processor.

    Each image is decoded (PIL), optionally converted to RGB, resized (PIL), optionally
    centre-cropped, rescaled (`* rescale_factor`) and normalised (`(x - image_mean) /
    image_std`), then the batch is stacked. Defaults are those of
    `transformers.ViTImageProcessor`: resize to 224 x 224 bilinearly, rescale by 1/255,
    normalise with mean = std = 0.5, so pixel values are in [-1, 1].

    Unlike transformers, `data_format` defaults to `"channels_last"` (the layout of this
    library's models); transformers returns channels-first.

    Every argument can also be passed to `__call__` to override it for that call.

    Args:
        do_resize: bool, resize to `size`.
        size: int, (height, width), `{"height": h, "width": w}`, or `{"shortest_edge": n}`
            (keep the aspect ratio, shorter side to n).
        resample: int or `PIL.Image.Resampling`, the PIL filter (2: bilinear, 3: bicubic).
        do_center_crop: bool, crop the centre `crop_size` after resizing (zero-padding
            sides that are shorter).
        crop_size: int, (height, width) or `{"height": h, "width": w}`; needed when
            `do_center_crop`.
        do_rescale: bool, multiply pixels by `rescale_factor`.
        rescale_factor: float > 0, 1/255 maps uint8 pixels to [0, 1].
        do_normalize: bool, subtract `image_mean` and divide by `image_std` per channel.
        image_mean: float or 3 floats (R, G, B).
        image_std: float or 3 positive floats (R, G, B).
        do_convert_rgb: bool or None (off, as in transformers), convert grayscale, palette
            and RGBA images to RGB, compositing transparency onto white. Without it, inputs
            must already have 3 channels; file paths are always read as RGB.
        data_format: `"channels_last"` or `"channels_first"`, layout of `pixel_values`.
        input_data_format: None, `"channels_last"` or `"channels_first"`, layout of 3-D
            array inputs; None infers it (channels-first when both ends could be channels).

    Call arguments:
        images: one image or a list of them (or a 4-D array, a batch). An image is a
            `PIL.Image.Image`, a path to an image file (str or `os.PathLike`), or an array
            of shape (height, width), (height, width, channels) or (channels, height,
            width): uint8 (or integers) in [0, 255], or float in [0, 1] with
            `do_rescale=False`. Channels: 3 (RGB), or 1 / 4 with `do_convert_rgb=True`.
        return_tensors: None or `"np"`; both return NumPy arrays.
        **overrides: any constructor argument, for this call only.

    Returns:
        dict with `"pixel_values"`: float32 array of shape (batch, height, width, 3)
        (or (batch, 3, height, width) with `data_format="channels_first"`), height and
        width those of `crop_size` (or `size` without cropping); values
        `(pixel * rescale_factor - image_mean) / image_std`, in [-1, 1] by default.

    Raises:
        ValueError: naming the argument or image and what was expected: for bad
            arguments; an empty list; an unsupported input type; an array of another rank,
            channel count or dtype, with NaN, or with values out of range (float pixels in
            [0, 1] with `do_rescale=True` would be rescaled twice and are refused); a file
            that is not a decodable image or is truncated; a 16- or 32-bit image
            (converting it to RGB would clip); images that end up with different sizes.
        keras_vit.preprocessor_config.ImageTooLargeError: (a ValueError) for a file whose
            header declares more than `PIL.Image.MAX_IMAGE_PIXELS` pixels (checked before
            decoding), or an image that `size={"shortest_edge": n}` would resize to more
            than `MAX_RESIZED_PIXELS` (4096 x 4096) pixels (checked before resizing any).
        FileNotFoundError: for a path with no file.

    >>> processor = ViTImageProcessor()
    >>> processor(np.zeros((300, 400, 3), "uint8"))["pixel_values"].shape
    (1, 224, 224, 3)

    Reference: `transformers.ViTImageProcessor` (PIL backend, `ViTImageProcessorPil`).
    """

    image_processor_type = "ViTImageProcessor"

    def __init__(
        self,
        *,
        do_resize=True,
        size=224,
        resample=Image.Resampling.BILINEAR,
        do_center_crop=False,
        crop_size=None,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=IMAGENET_STANDARD_MEAN,
        image_std=IMAGENET_STANDARD_STD,
        do_convert_rgb=None,
        data_format="channels_last",
        input_data_format=None,
    ):
        self.spec = PreprocessorConfig.from_dict(locals())  # the arguments named in its FIELDS
        if not isinstance(do_convert_rgb, (bool, type(None))):
            raise ValueError(
                f"Expected do_convert_rgb to be a bool or None. Received: do_convert_rgb={do_convert_rgb!r}"
            )
        if data_format not in DATA_FORMATS:
            raise ValueError(
                f"Expected data_format to be one of {DATA_FORMATS}. Received: data_format={data_format!r}"
            )
        if input_data_format not in (None, *DATA_FORMATS):
            raise ValueError(
                f"Expected input_data_format to be None or one of {DATA_FORMATS}. "
                f"Received: input_data_format={input_data_format!r}"
            )
        self.do_convert_rgb = do_convert_rgb
        self.data_format = data_format
        self.input_data_format = input_data_format

    # === Processing ===
    def __call__(self, images, return_tensors=None, **overrides):
        """Returns `{"pixel_values": float32 array}` for `images`; see the class docstring."""
        if return_tensors not in (None, "np"):
            raise ValueError(f"Expected return_tensors to be None or 'np'. Received: return_tensors={return_tensors!r}")
        unknown = sorted(set(overrides) - set(_ARG_NAMES))
        if unknown:
            raise ValueError(f"Expected overrides among {list(_ARG_NAMES)}. Received unknown: {unknown}")
        settings = type(self)(**{**self.to_dict(), **overrides}) if overrides else self
        named = _flatten(images)
        arrays = [settings._load(image, name) for name, image in named]
        if settings.do_resize:
            for (name, _), array in zip(named, arrays):
                settings.spec.check_resize(*array.shape[:2], limit=MAX_RESIZED_PIXELS, name=name)
        pixel_values = [settings._transform(array) for array in arrays]
        shapes = sorted({p.shape for p in pixel_values})
        if len(shapes) > 1:
            raise ValueError(
                f"Expected all images to end up the same size, to stack them. Received sizes {shapes}; "
                "set do_resize=True or do_center_crop=True."
            )
        pixel_values = np.stack(pixel_values).astype(np.float32)
        if settings.data_format == "channels_first":
            pixel_values = pixel_values.transpose(0, 3, 1, 2)
        return {"pixel_values": pixel_values}

    def _load(self, image, name):
        """Reads and checks one image: a (height, width, 3) uint8 or float array."""
        if isinstance(image, (str, os.PathLike)):
            image = load_image(image, name)
        if isinstance(image, Image.Image):
            _check_8_bit(image, name)
            array = _channels_last(_pil_to_array(image, self.do_convert_rgb), name, "channels_last")
            source = f"a PIL image of mode {image.mode!r}"
        elif isinstance(image, np.ndarray):
            array = _array_pixels(_channels_last(image, name, self.input_data_format), name)
            source = f"an array of shape {image.shape}"
        else:
            raise ValueError(
                f"Expected {name} to be a PIL image, a path to an image file or a NumPy array. "
                f"Received: {type(image).__name__}"
            )
        channels = array.shape[-1]
        if np.issubdtype(array.dtype, np.floating):
            composite = self.do_convert_rgb and channels == 4
            _check_float_range(array, name, self.do_rescale, self.do_resize, composite)
        array = _to_rgb(array, self.do_convert_rgb)
        if array.shape[-1] != 3:
            convertible = isinstance(image, Image.Image) or channels in (1, 4)
            hint = " Pass do_convert_rgb=True to convert it to RGB." if convertible else ""
            raise ValueError(
                f"Expected {name} to have 3 channels (RGB). Received: {source} with channels={channels}.{hint}"
            )
        return array

    def _transform(self, image):
        """Resize, crop, rescale, normalise one (height, width, 3) image."""
        if self.do_resize:
            image = _resize(image, self.spec)
        if self.do_center_crop:
            image = _center_crop(image, self.crop_size["height"], self.crop_size["width"])
        if self.do_rescale:
            image = _rescale(image, self.rescale_factor)
        if self.do_normalize:
            image = _normalize(image, self.image_mean, self.image_std)
        return image

    # === Configuration ===
    @classmethod
    def from_config(cls, config, **kwargs):
        """A processor producing `config.image_size` pixels (ViTConfig or DeiTConfig).

        Only the sizes come from `config`; for a published checkpoint, `from_pretrained`
        reads its exact settings (facebook/deit-* normalise with the ImageNet mean/std).

        Raises:
            ValueError: if `config.num_channels` is not 3 (this processor makes RGB).
        """
        if config.num_channels != 3:
            raise ValueError(
                f"Expected a config with num_channels=3 (RGB). Received: num_channels={config.num_channels}"
            )
        return cls(**{**cls._sizes_for(*config.image_hw), **kwargs})

    @staticmethod
    def _sizes_for(height, width):
        return {"size": (height, width)}

    def to_dict(self):
        """The constructor arguments (sizes as dicts, resample as an int), JSON-ready."""
        return {name: copy.deepcopy(getattr(self, name)) for name in _ARG_NAMES}

    @classmethod
    def from_dict(cls, config_dict):
        """Builds a processor from a `preprocessor_config.json` dict, ignoring keys it does not take
        (`image_processor_type`, `feature_extractor_type`, ...)."""
        if not isinstance(config_dict, dict):
            raise ValueError(f"Expected a dict of processor arguments. Received: {type(config_dict).__name__}")
        return cls(**{k: v for k, v in config_dict.items() if k in _ARG_NAMES})

    def save_pretrained(self, directory):
        """Writes `directory/preprocessor_config.json` atomically; returns its path.

        The file also names `image_processor_type`, so transformers' `AutoImageProcessor`
        reads it (transformers ignores `data_format` and returns channels-first). It is
        serialised first, then written to a temporary sibling (mode 0o666 & ~umask, fsynced)
        renamed into place; other files of `directory` stay.

        Raises:
            ValueError: naming a setting JSON cannot hold, or if `directory` is a file;
                nothing on disk changes.
        """
        text = to_json_string({"image_processor_type": self.image_processor_type, **self.to_dict()}, "processor")
        path = os.path.join(directory, PREPROCESSOR_CONFIG_NAME)
        write_text_atomically(path, text)
        return path

    @classmethod
    def from_pretrained(cls, path_or_repo_id, **kwargs):
        """Reads `preprocessor_config.json` of a checkpoint directory or Hub repo id.

        A timm checkpoint has none: the `pretrained_cfg` of its `config.json` gives timm's
        evaluation transform (`keras_vit.preprocessor_config.from_timm_pretrained_cfg`).
        `kwargs` go to `keras_vit.hub.resolve_checkpoint` (revision, cache_dir, ...).

        Raises:
            FileNotFoundError: if the directory or both files are missing.
            ValueError: if the file is not a JSON object or holds a bad argument.
        """
        return cls.from_dict(read_preprocessor_settings(resolve_checkpoint(path_or_repo_id, **kwargs)))

    def to_layer(self, **kwargs):
        """This processor's resize / crop / rescale / normalise as a Keras layer.

        Returns `keras_vit.layers.ImagePreprocessing.from_processor(self, **kwargs)`; see it
        for what the layer takes and how close its pixels are to this processor's.
        """
        return ImagePreprocessing.from_processor(self, **kwargs)

    def __repr__(self):
        return f"{type(self).__name__}({self.to_dict()})"


def _spec_field(name):
    return property(lambda self: getattr(self.spec, name), doc=f"`{name}`, read from `self.spec` (read-only).")


for _name in PreprocessorConfig.FIELDS:
    setattr(ViTImageProcessor, _name, _spec_field(_name))
_ARG_NAMES = tuple(inspect.signature(ViTImageProcessor.__init__).parameters)[1:]


class DeiTImageProcessor(ViTImageProcessor):
    """Turns images into the `pixel_values` of a DeiT model, as Hugging Face's DeiT image processor.

    `ViTImageProcessor` with the defaults of `transformers.DeiTImageProcessor`: resize to
    256 x 256 bicubically, then centre-crop 224 x 224. Everything else (arguments, call,
    outputs, errors, channels-last default) is as in `ViTImageProcessor`.

    >>> DeiTImageProcessor()(np.zeros((300, 400, 3), "uint8"))["pixel_values"].shape
    (1, 224, 224, 3)

    Reference: `transformers.DeiTImageProcessor` (PIL backend, `DeiTImageProcessorPil`).
    """

    image_processor_type = "DeiTImageProcessor"

    def __init__(self, *, size=256, resample=Image.Resampling.BICUBIC, do_center_crop=True, crop_size=224, **kwargs):
        super().__init__(size=size, resample=resample, do_center_crop=do_center_crop, crop_size=crop_size, **kwargs)

    @staticmethod
    def _sizes_for(height, width):
        # Resize by 256/224 then crop to the model's size, the ratio of the defaults.
        return {"size": (height * 256 // 224, width * 256 // 224), "crop_size": (height, width)}
