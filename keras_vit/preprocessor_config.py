"""Image preprocessing settings (`preprocessor_config.json`), parsed and validated once.

`PreprocessorConfig` holds the settings of a Hugging Face ViT/DeiT image processor that
decide the pixels: resize, centre crop, rescale, normalise. Both executors read it: the
PIL/NumPy `keras_vit.processors.ViTImageProcessor` and the `keras.ops` layer
`keras_vit.layers.ImagePreprocessing` (which the TF Serving export also runs). This module
also holds the resource limits both of them enforce (`MAX_IMAGE_PIXELS`,
`MAX_RESIZED_PIXELS`) and their error, `ImageTooLargeError`, and the reader of a checkpoint's
settings (`read_preprocessor_settings`: `preprocessor_config.json`, else the `pretrained_cfg`
of a timm `config.json`).
"""

import copy
import math
import numbers
from pathlib import Path

from keras_vit.hub import CONFIG_NAME, PREPROCESSOR_CONFIG_NAME, read_json_file

# transformers' IMAGENET_STANDARD_MEAN / _STD, the ViT defaults.
IMAGENET_STANDARD_MEAN = (0.5, 0.5, 0.5)
IMAGENET_STANDARD_STD = (0.5, 0.5, 0.5)
# PIL's filter numbers (`PIL.Image.Resampling`), the values of `resample`.
RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
# PIL's decompression-bomb threshold (`PIL.Image.MAX_IMAGE_PIXELS`): images declaring more
# pixels are refused before they are decoded.
MAX_IMAGE_PIXELS = int(1024 * 1024 * 1024 // 4 // 3)
# The largest image a resize may produce (4096 x 4096). `{"shortest_edge": n}` keeps the
# aspect ratio, so a 1 x 20000 image would otherwise become n x 20000n pixels.
MAX_RESIZED_PIXELS = 4096 * 4096


class ImageTooLargeError(ValueError):
    """An image (as decoded, or as resized) has more pixels than the limit allows."""


def check_image_pixels(height, width, limit=MAX_IMAGE_PIXELS, name="image"):
    """Raises `ImageTooLargeError` if a `height` x `width` image has more than `limit` pixels."""
    if height * width > limit:
        raise ImageTooLargeError(
            f"Expected {name} to have at most {limit} pixels (decompression-bomb limit). "
            f"Received: {width} x {height} = {width * height} pixels"
        )


def _is_number(value):
    """A finite int or float (not a bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_positive_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _size_dict(value, name, allow_shortest_edge):
    """Returns `value` (int, (height, width) or a transformers size dict) as a size dict of ints."""
    if _is_positive_int(value):
        value = {"height": value, "width": value}
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        value = {"height": value[0], "width": value[1]}
    elif hasattr(value, "get") and not isinstance(value, dict):  # transformers' SizeDict
        value = {k: value.get(k) for k in ("height", "width", "shortest_edge") if value.get(k) is not None}
    keys = [{"height", "width"}, {"shortest_edge"}] if allow_shortest_edge else [{"height", "width"}]
    if not (isinstance(value, dict) and set(value) in keys and all(map(_is_positive_int, value.values()))):
        forms = "a positive int, (height, width) or {'height': h, 'width': w}"
        if allow_shortest_edge:
            forms += " or {'shortest_edge': n}"
        raise ValueError(f"Expected {name} to be {forms}. Received: {name}={value!r}")
    return {k: int(v) for k, v in value.items()}


def _per_channel(value, name, positive):
    """Returns `value` (a number, or 3 or 1 numbers) as a list of floats (3 for a number)."""
    values = [value] * 3 if _is_number(value) else value
    if not (
        isinstance(values, (list, tuple))
        and len(values) in (1, 3)
        and all(_is_number(v) and (v > 0 or not positive) for v in values)
    ):
        kind = "positive numbers" if positive else "numbers"
        raise ValueError(
            f"Expected {name} to be a number or 3 {kind} (R, G, B; 1 for grayscale). Received: {name}={value!r}"
        )
    return [float(v) for v in values]


class PreprocessorConfig:
    """The validated resize / crop / rescale / normalise settings of an image processor.

    Field names, forms and defaults are those of `transformers.ViTImageProcessor` (and of
    `preprocessor_config.json`). The steps run in this order: resize to `size`, centre-crop
    `crop_size` (zero-padding shorter sides), multiply by `rescale_factor`, then
    `(x - image_mean) / image_std` per channel.

    Args:
        do_resize: bool.
        size: int, (height, width), `{"height": h, "width": w}` or `{"shortest_edge": n}`
            (keep the aspect ratio, shorter side to n); needed when `do_resize`.
        resample: int, PIL filter number (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic,
            4 box, 5 hamming), or a `PIL.Image.Resampling`.
        do_center_crop: bool.
        crop_size: int, (height, width) or `{"height": h, "width": w}`; needed when
            `do_center_crop`.
        do_rescale: bool.
        rescale_factor: positive number.
        do_normalize: bool.
        image_mean: a number, or 3 numbers (R, G, B), or 1 (grayscale).
        image_std: a positive number, or 3 (or 1) positive numbers.

    Raises:
        ValueError: naming the bad argument and its value.

    >>> PreprocessorConfig(size={"shortest_edge": 256}).resized_hw(480, 640)
    (256, 341)
    """

    FIELDS = (
        "do_resize",
        "size",
        "resample",
        "do_center_crop",
        "crop_size",
        "do_rescale",
        "rescale_factor",
        "do_normalize",
        "image_mean",
        "image_std",
    )

    def __init__(
        self,
        *,
        do_resize=True,
        size=224,
        resample=2,
        do_center_crop=False,
        crop_size=None,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=IMAGENET_STANDARD_MEAN,
        image_std=IMAGENET_STANDARD_STD,
    ):
        for name, value in [
            ("do_resize", do_resize),
            ("do_center_crop", do_center_crop),
            ("do_rescale", do_rescale),
            ("do_normalize", do_normalize),
        ]:
            if not isinstance(value, bool):
                raise ValueError(f"Expected {name} to be a bool. Received: {name}={value!r}")
        if not (isinstance(resample, numbers.Integral) and not isinstance(resample, bool) and resample in RESAMPLE_NAMES):
            raise ValueError(
                f"Expected resample to be a PIL filter, one of {sorted(RESAMPLE_NAMES)}. Received: resample={resample!r}"
            )
        if not (_is_number(rescale_factor) and rescale_factor > 0):
            raise ValueError(
                f"Expected rescale_factor to be a positive number. Received: rescale_factor={rescale_factor!r}"
            )
        if do_resize and size is None:
            raise ValueError("Expected size when do_resize=True. Received: size=None")
        if do_center_crop and crop_size is None:
            raise ValueError("Expected crop_size when do_center_crop=True. Received: crop_size=None")
        self.do_resize = do_resize
        self.size = None if size is None else _size_dict(size, "size", allow_shortest_edge=True)
        self.resample = int(resample)
        self.do_center_crop = do_center_crop
        self.crop_size = None if crop_size is None else _size_dict(crop_size, "crop_size", allow_shortest_edge=False)
        self.do_rescale = do_rescale
        self.rescale_factor = float(rescale_factor)
        self.do_normalize = do_normalize
        self.image_mean = _per_channel(image_mean, "image_mean", positive=False)
        self.image_std = _per_channel(image_std, "image_std", positive=True)

    @classmethod
    def from_dict(cls, config_dict):
        """From a `preprocessor_config.json` dict; keys other than `FIELDS` are ignored."""
        if not isinstance(config_dict, dict):
            raise ValueError(f"Expected a dict of processor arguments. Received: {type(config_dict).__name__}")
        return cls(**{k: v for k, v in config_dict.items() if k in cls.FIELDS})

    @classmethod
    def from_processor(cls, processor):
        """From any object with image processor attributes (this library's or transformers').

        A missing or None `do_*` flag counts as False; other missing or None settings take
        their defaults.
        """
        values = {name: getattr(processor, name, None) for name in cls.FIELDS}
        values = {k: bool(v) if k.startswith("do_") else v for k, v in values.items()}
        return cls(**{k: v for k, v in values.items() if v is not None or k in ("size", "crop_size")})

    def to_dict(self):
        """The fields, JSON-ready (sizes as dicts, resample as an int)."""
        return {name: copy.deepcopy(getattr(self, name)) for name in self.FIELDS}

    def resized_hw(self, height, width):
        """(height, width) of a `height` x `width` image after the resize step, as transformers computes it."""
        if not self.do_resize:
            return height, width
        if "shortest_edge" not in self.size:
            return self.size["height"], self.size["width"]
        short, long = sorted((height, width))
        new_short, new_long = self.size["shortest_edge"], int(self.size["shortest_edge"] * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)

    def check_resize(self, height, width, limit=MAX_RESIZED_PIXELS, name="image"):
        """Raises `ImageTooLargeError` if resizing a `height` x `width` image gives more than `limit` pixels."""
        new_height, new_width = self.resized_hw(height, width)
        if new_height * new_width > limit:
            raise ImageTooLargeError(
                f"Expected {name} to resize to at most {limit} pixels. Received: {width} x {height} resizes to "
                f"{new_width} x {new_height} = {new_width * new_height} pixels with size={self.size} "
                "(an extreme aspect ratio); crop it first"
            )

    @property
    def output_hw(self):
        """(height, width) of every output image, or None when it depends on the input size."""
        if self.do_center_crop:
            return self.crop_size["height"], self.crop_size["width"]
        if self.do_resize and "height" in self.size:
            return self.size["height"], self.size["width"]
        return None

    def __eq__(self, other):
        return type(other) is type(self) and other.to_dict() == self.to_dict()

    def __repr__(self):
        return f"{type(self).__name__}({self.to_dict()})"


# timm's interpolation names -> PIL filter numbers (`PreprocessorConfig.resample`).
_TIMM_RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


def from_timm_pretrained_cfg(pretrained_cfg):
    """The `PreprocessorConfig` of timm's evaluation transform for a `pretrained_cfg` dict.

    timm (`timm.data.create_transform(is_training=False)`) resizes to `floor(size /
    crop_pct)` (the shorter side for `crop_mode="center"`, both sides for `"squash"`) with
    `interpolation`, centre-crops `input_size`, scales to [0, 1] and normalises with
    `mean` / `std`.

    Raises:
        ValueError: naming an `interpolation` or `crop_mode` with no counterpart here.
    """
    if not isinstance(pretrained_cfg, dict):
        raise ValueError(f"Expected timm's pretrained_cfg to be a dict. Received: {pretrained_cfg!r:.200}")
    _, height, width = pretrained_cfg.get("input_size", (3, 224, 224))
    crop_pct = pretrained_cfg.get("crop_pct", 0.875)
    interpolation = pretrained_cfg.get("interpolation", "bicubic")
    crop_mode = pretrained_cfg.get("crop_mode", "center")
    if interpolation not in _TIMM_RESAMPLE:
        raise ValueError(
            f"Expected interpolation among {sorted(_TIMM_RESAMPLE)}. Received: interpolation={interpolation!r}"
        )
    if crop_mode not in ("center", "squash"):
        raise ValueError(f"Expected crop_mode 'center' or 'squash'. Received: crop_mode={crop_mode!r}")
    scaled = (math.floor(height / crop_pct), math.floor(width / crop_pct))
    if crop_mode == "center" and scaled[0] == scaled[1]:
        size = {"shortest_edge": scaled[0]}
    else:
        size = {"height": scaled[0], "width": scaled[1]}
    return PreprocessorConfig(
        size=size,
        resample=_TIMM_RESAMPLE[interpolation],
        do_center_crop=True,
        crop_size={"height": height, "width": width},
        image_mean=pretrained_cfg.get("mean", (0.485, 0.456, 0.406)),
        image_std=pretrained_cfg.get("std", (0.229, 0.224, 0.225)),
    )


def read_preprocessor_settings(directory):
    """The preprocessing settings (as in `preprocessor_config.json`) of a checkpoint directory.

    Reads `preprocessor_config.json`; a timm checkpoint has none, and its `config.json`'s
    `pretrained_cfg` gives them (`from_timm_pretrained_cfg`).

    Raises:
        FileNotFoundError: if the directory has neither.
        ValueError: if a file is not JSON, or a timm setting has no counterpart.
    """
    path = Path(directory) / PREPROCESSOR_CONFIG_NAME
    if path.is_file():
        return read_json_file(path)  # the callers' from_dict checks that it is a JSON object
    config_path = Path(directory) / CONFIG_NAME
    config = read_json_file(config_path) if config_path.is_file() else None
    if isinstance(config, dict) and "pretrained_cfg" in config:
        return from_timm_pretrained_cfg(config["pretrained_cfg"]).to_dict()
    raise FileNotFoundError(
        f"Expected {PREPROCESSOR_CONFIG_NAME} (or a timm config.json with pretrained_cfg) in the checkpoint. "
        f"No file at {str(path)!r}"
    )
