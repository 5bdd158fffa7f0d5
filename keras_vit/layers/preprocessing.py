"""`ImagePreprocessing`: a ViT/DeiT image processor's resize, crop, rescale and normalise as a Keras layer."""

import keras
from keras import ops

from keras_vit.data_format import DATA_FORMATS
from keras_vit.hub import resolve_checkpoint
from keras_vit.preprocessor_config import (
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    MAX_RESIZED_PIXELS,
    RESAMPLE_NAMES,
    PreprocessorConfig,
    read_preprocessor_settings,
)

# PIL filter number -> keras.ops.image.resize interpolation, and the backends that have it.
# PIL 5 (hamming) has no equivalent.
_INTERPOLATIONS = {0: "nearest", 1: "lanczos3", 2: "bilinear", 3: "bicubic", 4: "area"}
_BACKENDS = {"lanczos3": ("tensorflow", "jax"), "area": ("tensorflow",)}


@keras.saving.register_keras_serializable(package="keras_vit")
class ImagePreprocessing(keras.layers.Layer):
    """Resizes, centre-crops, rescales and normalises a batch of images, as a ViT image processor.

    The steps and settings of `keras_vit.processors.ViTImageProcessor` /
    `DeiTImageProcessor` (and transformers' ViT/DeiT image processors), read from the same
    `keras_vit.preprocessor_config.PreprocessorConfig`, in `keras.ops` so that the layer runs
    on TensorFlow, JAX and PyTorch, inside a model or (TensorFlow backend) in
    `tf.data.Dataset.map`:

    1. resize to `size` with `keras.ops.image.resize(..., antialias=True)` and the processor's
       filter (0 nearest, 1 lanczos3: TensorFlow and JAX, 2 bilinear, 3 bicubic, 4 area:
       TensorFlow), then round and clip to 0-255, as PIL resizes 8-bit images;
    2. centre-crop `crop_size`, zero-padding sides that are shorter (more on top/left);
    3. multiply by `rescale_factor`; 4. `(x - image_mean) / image_std` per channel.

    Closeness to the PIL processor (`ViTImageProcessor`), measured on scikit-learn's two
    sample photos (427 x 640 JPEGs) resized to 224 x 224 and 150 x 300, and a 107 x 160 crop
    of each upsampled 4x, as max / worst-image mean |difference| in 0-255 grey levels after
    the resize (TensorFlow backend; `tests/test_preprocessing.py` asserts these bounds):

    | resample | max | mean | why |
    | --- | --- | --- | --- |
    | 2 bilinear | 1 | 0.21 | rounding only |
    | 3 bicubic | 9 | 0.21 | PIL rounds to 8 bits between its two passes; worst on 4x upsampling at sharp edges |
    | 1 lanczos | 17 | 0.23 | as bicubic (TensorFlow/JAX only) |
    | 0 nearest | 205 | 1.17 | the two pick a neighbouring source pixel at ~5% of positions |
    | 4 box | 68 | 2.51 | TensorFlow's "area" is not PIL's box filter at fractional scales (exact at whole ones) |

    Without resizing the output equals the processor's to float32 precision. JAX and
    PyTorch give TensorFlow's pixels within one grey level.

    Args:
        do_resize, size, resample, do_center_crop, crop_size, do_rescale, rescale_factor,
            do_normalize, image_mean, image_std: as in `ViTImageProcessor` (defaults too:
            bilinear resize to 224 x 224, rescale by 1/255, mean = std = 0.5).
            `size={"shortest_edge": n}` gives outputs whose size depends on the input's
            unless `do_center_crop`.
        data_format: `"channels_last"` or `"channels_first"`, layout of the output (inputs
            are always channels-last).
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        images: (batch, height, width, channels) or one (height, width, channels) image,
            uint8 or float in [0, 255] (what `keras.utils.image_dataset_from_directory`
            yields), any height and width; channels as many as `image_mean` has values (or
            any, with a single value).

    Returns:
        float (the layer's compute dtype, float32 by default) tensor of shape (batch,
        out_height, out_width, channels), `out_height, out_width = self.output_hw`, or
        (batch, channels, out_height, out_width) with `data_format="channels_first"`;
        values in [-1, 1] with the defaults.

    Raises:
        ValueError: for bad settings (naming the argument), a `resample` filter this
            backend has no equivalent for, images that are not rank 3 or 4 or whose
            channels do not match `image_mean`.
        keras_vit.preprocessor_config.ImageTooLargeError: when the resize would produce
            more than `MAX_RESIZED_PIXELS` pixels (shapes known when called).

    >>> layer = ImagePreprocessing(size=32)
    >>> tuple(layer(keras.ops.zeros((2, 48, 64, 3), "uint8")).shape)
    (2, 32, 32, 3)

    Reference: transformers' `ViTImageProcessor`; keras-hub's `ImageConverter`.
    """

    def __init__(
        self,
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
        data_format="channels_last",
        **kwargs,
    ):
        super().__init__(**kwargs)
        # TensorFlow's antialiased resize (ScaleAndTranslate) has no XLA kernel: Keras'
        # jit_compile="auto" then leaves XLA off for a model that holds this layer.
        self.supports_jit = False
        self.spec = PreprocessorConfig.from_dict(locals())  # the arguments named in its FIELDS
        if data_format not in DATA_FORMATS:
            raise ValueError(
                f"Expected data_format to be one of {DATA_FORMATS}. Received: data_format={data_format!r}"
            )
        self.data_format = data_format
        self.interpolation = None
        if do_resize:
            self.interpolation = _INTERPOLATIONS.get(self.spec.resample)
            backends = _BACKENDS.get(self.interpolation, (keras.backend.backend(),))
            if self.interpolation is None or keras.backend.backend() not in backends:
                raise ValueError(
                    f"Expected resample to be a filter that keras.ops.image.resize has on the "
                    f"{keras.backend.backend()} backend. Received: resample={self.spec.resample} "
                    f"({RESAMPLE_NAMES[self.spec.resample]})"
                )

    # === Constructors ===
    @classmethod
    def from_processor(cls, processor, **kwargs):
        """From `ViTImageProcessor`, `DeiTImageProcessor` or any object with their attributes
        (e.g. a transformers image processor); `kwargs` go to the constructor."""
        return cls(**{**PreprocessorConfig.from_processor(processor).to_dict(), **kwargs})

    @classmethod
    def from_pretrained(cls, path_or_repo_id, revision=None, cache_dir=None, local_files_only=False, **kwargs):
        """From the `preprocessor_config.json` of a checkpoint directory or Hub repo id.

        A timm checkpoint's `config.json` `pretrained_cfg` stands in for it
        (`keras_vit.preprocessor_config.read_preprocessor_settings`).

        Raises:
            FileNotFoundError: if the directory or both files are missing.
            ValueError: if the file is not a JSON object or holds a bad setting.
        """
        directory = resolve_checkpoint(
            path_or_repo_id, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only
        )
        return cls(**{**PreprocessorConfig.from_dict(read_preprocessor_settings(directory)).to_dict(), **kwargs})

    # === Shapes ===
    @property
    def output_hw(self):
        """(height, width) of every output image, or None when it depends on the input's size."""
        return self.spec.output_hw

    def resized_hw(self, height, width):
        """(height, width) after the resize step, for ints or (TensorFlow graph) scalar tensors."""
        if isinstance(height, int) and isinstance(width, int):
            return self.spec.resized_hw(height, width)
        if not self.spec.do_resize:
            return height, width
        if "shortest_edge" not in self.spec.size:
            return self.spec.size["height"], self.spec.size["width"]
        edge = self.spec.size["shortest_edge"]
        height, width = ops.cast(height, "int64"), ops.cast(width, "int64")
        new_long = ops.floor_divide(edge * ops.maximum(height, width), ops.minimum(height, width))
        portrait = ops.less_equal(width, height)
        return ops.where(portrait, new_long, edge), ops.where(portrait, edge, new_long)

    def compute_output_shape(self, input_shape):
        *batch, height, width, channels = input_shape
        if self.output_hw is not None:
            height, width = self.output_hw
        elif None not in (height, width):
            height, width = self.spec.resized_hw(height, width)
        else:
            height = width = None
        if self.data_format == "channels_first":
            return (*batch, channels, height, width)
        return (*batch, height, width, channels)

    # === Call ===
    def call(self, images):
        if len(images.shape) not in (3, 4):
            raise ValueError(
                "Expected images of shape (batch, height, width, channels) or (height, width, channels). "
                f"Received: shape={images.shape}"
            )
        channels = images.shape[-1]
        if channels is not None and len(self.spec.image_mean) not in (1, channels) and self.spec.do_normalize:
            raise ValueError(
                f"Expected images with {len(self.spec.image_mean)} channels, one per image_mean value. "
                f"Received: shape={images.shape}"
            )
        single = len(images.shape) == 3
        x = ops.cast(images[None] if single else images, "float32")
        if self.spec.do_resize:
            x = self._resize(x)
        if self.spec.do_center_crop:
            x = _center_crop(x, self.spec.crop_size["height"], self.spec.crop_size["width"], channels)
        if self.spec.do_rescale:
            x = x * self.spec.rescale_factor
        if self.spec.do_normalize:
            x = (x - ops.array(self.spec.image_mean, "float32")) / ops.array(self.spec.image_std, "float32")
        if self.data_format == "channels_first":
            x = ops.transpose(x, (0, 3, 1, 2))
        x = ops.cast(x, self.compute_dtype)
        return x[0] if single else x

    def _resize(self, x):
        height, width = _static_or_dynamic_hw(x)
        new_height, new_width = self.resized_hw(height, width)
        if isinstance(new_height, int) and isinstance(new_width, int):
            self.spec.check_resize(height, width, limit=MAX_RESIZED_PIXELS, name="images")
            x = ops.image.resize(
                x, (new_height, new_width), interpolation=self.interpolation, antialias=True,
                data_format="channels_last",
            )
        else:
            x = _resize_dynamic(x, new_height, new_width, self.interpolation)
        # PIL resizes 8-bit images to 8 bits.
        return ops.clip(ops.round(x), 0.0, 255.0)

    def get_config(self):
        return {**super().get_config(), **self.spec.to_dict(), "data_format": self.data_format}


def _static_or_dynamic_hw(x):
    """(height, width) of a batch: Python ints when known, else scalar tensors (TensorFlow graphs)."""
    shape = ops.shape(x)
    return shape[1], shape[2]


def _resize_dynamic(x, height, width, interpolation):
    """Resize to a size only known when a TensorFlow graph runs (images of any size in a
    `tf.data` map or the served bytes signature).

    `keras.ops.image.resize` checks `size` in Python, so it needs ints; this calls the op it
    wraps on the TensorFlow backend, with the same arguments. Only TensorFlow graphs have
    sizes unknown while tracing (JAX and PyTorch shapes are concrete).
    """
    import tensorflow as tf

    size = tf.cast(tf.stack([height, width]), tf.int32)
    return tf.image.resize(x, size, method=interpolation, antialias=True)


def _center_crop(x, height, width, channels):
    """Crops the centre of a batch; a side shorter than the crop is first zero-padded (more on top/left)."""
    in_height, in_width = _static_or_dynamic_hw(x)
    static = isinstance(in_height, int) and isinstance(in_width, int)
    maximum = max if static else ops.maximum
    pad_h, pad_w = maximum(height - in_height, 0), maximum(width - in_width, 0)
    if not static or pad_h or pad_w:
        x = ops.pad(x, [[0, 0], [(pad_h + 1) // 2, pad_h // 2], [(pad_w + 1) // 2, pad_w // 2], [0, 0]])
    top, left = (in_height + pad_h - height) // 2, (in_width + pad_w - width) // 2
    x = x[:, top : top + height, left : left + width, :]
    if not static and channels is not None:
        x = ops.reshape(x, (-1, height, width, channels))
    return x
