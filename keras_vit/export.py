"""Export a ViT/DeiT model as a TensorFlow Serving SavedModel (`export_saved_model`).

Layout written (TF Serving's model base path; versions are integer subdirectories):

    <export_base>/<version>/saved_model.pb
    <export_base>/<version>/variables/variables.{index,data-*}
    <export_base>/<version>/assets.extra/tf_serving_warmup_requests
    <export_base>/<version>/assets.extra/labels.json  (classifiers: id2label, {"0": name, ...})

A version directory appears in one `rename` once everything in it is written and checked,
so a polling server never sees a partial export. The version is claimed first, by creating
`<export_base>/.tmp-<version>` with `os.mkdir` (which one process alone can do), so two
exports never pick the same version.

Signatures (tag "serve"):

    serving_default  input `images`: tf.string (batch >= 1,), encoded JPEG, PNG, GIF
                     (first frame), BMP or still WebP images of any size and channel
                     count. The graph reads each image's size from its headers and
                     refuses, before decoding, one with more than `max_image_pixels`
                     pixels (default PIL's decompression-bomb limit, 89,478,485; a GIF
                     counts its screen plus each frame's size, for every frame), and one
                     whose size it cannot read (JPEG XL, animated WebP, an empty string,
                     other formats; the message names the image's place in the batch); decodes it to RGB (alpha
                     dropped, grayscale repeated; luma for 1-channel models); applies its
                     JPEG EXIF orientation as the PIL processor does; refuses one that
                     would resize to more than `MAX_RESIZED_PIXELS` (4096 x 4096, e.g.
                     1 x 20000 with size={"shortest_edge": 224}); then runs the
                     `keras_vit.layers.ImagePreprocessing` layer (resize antialiased and
                     rounded to 8 bits as PIL does, centre crop, rescale, normalise).
                     Undecodable bytes, or one image over a limit, fail the whole request
                     with INVALID_ARGUMENT (the message gives the size and the limit).
    predict_pixels   input `pixel_values`: float32 in the model's layout, (batch, height,
                     width, channels) or (batch, channels, height, width) for
                     `data_format="channels_first"`, already preprocessed.

Outputs (same for both signatures, float32 unless noted):

    classification models    `logits` (batch, num_labels); `probabilities` (batch,
                             num_labels), softmax of logits; `label` tf.string (batch,),
                             `config.id2label` of the argmax; `score` (batch,), the largest
                             probability. `DeiTForImageClassificationWithTeacher`: `logits`
                             is the average of its heads, also exported as `cls_logits` and
                             `distillation_logits`.
    ViTModel / DeiTModel     `last_hidden_state` (batch, seq, hidden_size); `pooler_output`
                             (batch, pooler_output_size) when the model has a pooler.

No output is named `output_0` or ends in `_bytes` (TF Serving's REST API would base64 it).
The graph has no `XlaCallModule` op and stores each weight once. By default nothing in it
must be compiled by XLA, so a stock TF Serving runs it; with `jit_compile=True` the model
part of both signatures (everything after the images are decoded and preprocessed, and
before `label` is looked up) is a `tf.function(jit_compile=True)`, which TF Serving runs only
when started with `XLA_SERVER_FLAG`.
"""

import contextlib
import functools
import os
import secrets
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_vit.atomic import exchange, make_dirs
from keras_vit.config import to_json_string
from keras_vit.image_decoding import decode_image
from keras_vit.layers.preprocessing import ImagePreprocessing
from keras_vit.models.base import VisionTransformer
from keras_vit.preprocessor_config import MAX_IMAGE_PIXELS, MAX_RESIZED_PIXELS

SERVING_SIGNATURE = "serving_default"
PIXELS_SIGNATURE = "predict_pixels"
IMAGES_INPUT = "images"
PIXELS_INPUT = "pixel_values"
CLASSIFICATION_OUTPUTS = ("logits", "probabilities", "label", "score")
TEACHER_OUTPUTS = ("cls_logits", "distillation_logits")
FEATURE_OUTPUTS = ("last_hidden_state", "pooler_output")
WARMUP_FILE = Path("assets.extra", "tf_serving_warmup_requests")
LABELS_FILE = Path("assets.extra", "labels.json")  # id2label as JSON, {"0": name, ...}; TF Serving ignores it
CLAIM_PREFIX = ".tmp-"  # <export_base>/.tmp-<version>: the version's claim, and where it is written
OLD_PREFIX = ".old-"  # <export_base>/.old-<version>-<token>: an overwritten version, until it is removed
MAX_VERSION = 2**63 - 1  # TF Serving reads version numbers as int64
VERIFY_ATOL = 1e-4
# bfloat16 keeps 8 significant bits and int8 layers requantize their inputs: the graph and Keras
# round in different places, which moves outputs by more than float32 rounding.
VERIFY_ATOL_LOW_PRECISION = 0.05
SERVING_DTYPES = ("float32", "bfloat16", "mixed_bfloat16")
XLA_SERVER_FLAG = "--xla_cpu_compilation_enabled=true"  # TF Serving's flag to run jit_compile exports


def export_saved_model(
    model,
    export_base,
    version=None,
    processor=None,
    overwrite=False,
    verify=True,
    sample_images=None,
    verbose=True,
    max_image_pixels=MAX_IMAGE_PIXELS,
    jit_compile=False,
    dtype=None,
):
    """Writes `model` as version `version` of a TF Serving model, atomically.

    The SavedModel, its warmup requests and the verification all happen in a temporary
    directory `<export_base>/.tmp-<version>` (not an integer, so TF Serving ignores it),
    renamed to `<export_base>/<version>` only once complete. Creating it with `os.mkdir`
    claims the version: a concurrent export with `version=None` takes the next one, with
    the same explicit version it fails at once. On any failure the temporary directory is
    removed and `export_base` is left as it was. With `overwrite`, the old and new
    version directories are swapped in one `renameat2(RENAME_EXCHANGE)` (Linux), so a
    server or a crash sees the old version or the new one, never none; then the old one
    is deleted.
    Signatures and output names are listed in the module docstring.

    Args:
        model: a built `keras_vit` classification model (`ViTForImageClassification`,
            `DeiTForImageClassification`, `DeiTForImageClassificationWithTeacher`) or
            feature model (`ViTModel`, `DeiTModel`); or a model composed of an
            `ImagePreprocessing` layer and one of those,
            `keras.Model(images, vit_model(layer(images)))`, whose layer is then the
            preprocessing (pass no `processor`) and whose keras_vit model is exported.
        export_base: str or path, TF Serving's `--model_base_path`; created if missing.
        version: int in [0, 2**63 - 1] (TF Serving's int64), or None for one more than
            the largest existing or claimed version (1 when there is none).
        processor: None for the `ViTImageProcessor` defaults (bilinear resize to
            `config.image_size`, rescale by 1/255, normalise with mean = std = 0.5), or an
            object with Hugging Face image processor attributes: `do_resize`, `size`
            ({"height", "width"} or {"shortest_edge"}), `resample` (PIL filter number 0-4),
            `do_center_crop`, `crop_size`, `do_rescale`, `rescale_factor`,
            `do_normalize`, `image_mean`, `image_std` (a number or one per channel), e.g.
            `keras_vit.processors.ViTImageProcessor` or `transformers.DeiTImageProcessor`;
            read with `ImagePreprocessing.from_processor`. Missing flags count as False.
        overwrite: bool, replace an existing `<export_base>/<version>`.
        verify: bool, reload the SavedModel before publishing it and check both signatures
            against the Keras model on `sample_images` (max |difference| <= `VERIFY_ATOL`,
            `VERIFY_ATOL_LOW_PRECISION` for a model computing in bfloat16 or quantized).
        sample_images: None (two synthetic PNGs are used) or a non-empty list of encoded
            images (bytes); they also make up the warmup requests.
        verbose: bool, print each step and its duration.
        max_image_pixels: int >= 1, the most pixels the bytes signature decodes per
            image, checked from the headers before decoding
            (`keras_vit.image_decoding.declared_pixels`: width x height; for a GIF the
            screen plus each frame, summed over its frames).
        jit_compile: bool, run the model part of both signatures as one XLA-compiled
            function (`tf.function(jit_compile=True)`; compiled once per batch size, at
            warm-up or on the first request of that size). Faster on CPU (see
            `benchmarks/serving_latency.py`), and what makes an int8 model faster than
            float32 (`benchmarks/quantization.py --jit-compile`), but TF Serving then needs
            the flag `--xla_cpu_compilation_enabled=true`; without it every request fails.
        dtype: None to serve the model in its own dtype policy, or one of `SERVING_DTYPES`
            to serve a copy of it in that Keras dtype policy: `"bfloat16"` stores and
            computes in bfloat16 (half the variables' size; fast on CPUs with AVX-512 BF16 or
            AMX), `"mixed_bfloat16"` keeps float32 variables. Inputs and outputs stay
            float32. Verification then allows `VERIFY_ATOL_LOW_PRECISION` (the reloaded
            graph against the Keras model in the same policy); the drift against float32 is
            in `benchmarks/serving_latency.py`.

    Returns:
        `pathlib.Path` of the version directory.

    Raises:
        ValueError: before any heavy work, for a model that is not a classification or
            feature model (or has num_labels == 0), `config.num_channels` other than 1 or
            3, a `processor` given with a model that contains `ImagePreprocessing`, a bad
            `version`, `max_image_pixels`, `jit_compile` or `dtype`, a `dtype` for a
            quantized model, an existing version without `overwrite=True`
            (naming its path), a version path that is a file or symlink (even with
            `overwrite=True`), a version being exported by another process, an `export_base`
            that is a file, processor settings that cannot be
            exported or do not give the model's image size, or sample images that are not
            decodable bytes. After the export, if the reloaded SavedModel disagrees with
            the Keras model.
        ImportError: without the `tensorflow-serving-api` package (`keras-vit[serving]`).

    >>> import keras_vit, tempfile
    >>> config = keras_vit.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                              intermediate_size=37, image_size=32, patch_size=8, num_labels=3)
    >>> base = tempfile.mkdtemp()
    >>> path = export_saved_model(keras_vit.ViTForImageClassification(config), base, verbose=False)
    >>> path.name
    '1'
    >>> serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    >>> png = tf.io.encode_png(np.zeros((40, 50, 3), np.uint8))  # any size: resized in the graph
    >>> outputs = serve(images=tf.stack([png, png]))
    >>> sorted(outputs), tuple(outputs["probabilities"].shape)
    (['label', 'logits', 'probabilities', 'score'], (2, 3))
    """
    model, layer = split_preprocessing(model)
    outputs = _output_names(model)
    _check_dtype(model, dtype)
    layer = _preprocessing_layer(model, processor, layer)
    if isinstance(max_image_pixels, bool) or not isinstance(max_image_pixels, int) or max_image_pixels < 1:
        raise ValueError(
            f"Expected max_image_pixels to be a positive int. Received: max_image_pixels={max_image_pixels!r}"
        )
    if not isinstance(jit_compile, bool):
        raise ValueError(f"Expected jit_compile to be True or False. Received: jit_compile={jit_compile!r}")
    preprocessing = functools.partial(
        _preprocess_images, layer=layer, channels=model.config.num_channels, max_image_pixels=max_image_pixels
    )
    samples = _sample_images(sample_images, model.config, layer.output_hw)
    _serving_apis()  # fail early without tensorflow-serving-api
    export_base = Path(export_base)
    if export_base.exists() and not export_base.is_dir():
        raise ValueError(f"Expected export_base to be a directory. Received a file: {export_base}")
    if version is not None:
        _check_version(version)
        _check_target(export_base / str(version), overwrite)

    log = functools.partial(_step, verbose=verbose)
    created = [p for p in (export_base, *export_base.parents) if not p.exists()]
    make_dirs(export_base)
    _recover_versions(export_base)
    tmp, version = _claim(export_base, version)
    target = export_base / str(version)
    try:
        if dtype is not None:
            with log(f"copying the model to dtype {dtype}"):
                model = _copy_in_dtype(model, dtype)
        with log("preprocessing sample images"):
            pixel_values = preprocessing(tf.constant(samples))
        with log("tracing signatures"):
            archive = _archive(model, preprocessing, outputs, jit_compile)
        with log(f"saving to {tmp}"):
            archive.write_out(tmp, verbose=False)
        with log("writing warmup requests"):
            _write_warmup(
                tmp / WARMUP_FILE,
                {SERVING_SIGNATURE: (IMAGES_INPUT, samples), PIXELS_SIGNATURE: (PIXELS_INPUT, pixel_values.numpy())},
            )
            if "label" in outputs:
                id2label = {str(i): model.config.id2label[i] for i in range(model.config.num_labels)}
                (tmp / LABELS_FILE).write_text(to_json_string(id2label, "id2label"), encoding="utf-8")
        if verify:
            with log("verifying the reloaded SavedModel"):
                _verify(tmp, model, outputs, samples, pixel_values)
        with log(f"publishing {target}"):
            _publish(tmp, target, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.exists():  # failed: remove the directories made for it
            for path in created:
                with contextlib.suppress(OSError):
                    path.rmdir()
    return target


# === Checks, before any heavy work ===
def _output_names(model):
    """The signature output names for `model`; raises ValueError for other models."""
    if not isinstance(model, VisionTransformer):
        raise ValueError(f"Expected a keras_vit model. Received: {type(model).__name__}")
    names = set(model.output_names)
    if "logits" in names:
        if model.config.num_labels == 0:
            raise ValueError(
                f"Expected a classifier with num_labels >= 1. Received {type(model).__name__} with num_labels=0, "
                "whose logits are features; export ViTModel or DeiTModel instead."
            )
        return CLASSIFICATION_OUTPUTS + tuple(n for n in TEACHER_OUTPUTS if n in names)
    if "last_hidden_state" in names:
        return tuple(n for n in FEATURE_OUTPUTS if n in names)
    raise ValueError(
        "Expected a classification model (outputs `logits`) or a feature model (outputs `last_hidden_state`). "
        f"Received: {type(model).__name__} with outputs {sorted(names)}"
    )


def _check_dtype(model, dtype):
    if dtype is not None and dtype not in SERVING_DTYPES:
        raise ValueError(f"Expected dtype to be None or one of {SERVING_DTYPES}. Received: dtype={dtype!r}")
    if dtype is not None and _is_quantized(model):
        raise ValueError(
            f"Expected dtype=None for a quantized model (its quantized weights keep their own dtype). Received: "
            f"dtype={dtype!r}"
        )


def _is_quantized(model):
    return any(layer.quantization_mode is not None for layer in model._flatten_layers())


def _copy_in_dtype(model, dtype):
    """A copy of `model` (same config and weights) in the Keras dtype policy `dtype`."""
    copy = type(model).from_config({**model.get_config(), "dtype": dtype})
    copy.set_weights(model.get_weights())
    return copy


def _serving_apis():
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
    except ImportError as e:
        raise ImportError(
            "Exporting for TF Serving needs the tensorflow-serving-api package: pip install 'keras-vit[serving]'"
        ) from e
    return prediction_log_pb2, predict_pb2


def _next_version(export_base):
    """One more than the largest version (directory, file or claim `.tmp-<version>`) in `export_base`."""
    names = [p.name.removeprefix(CLAIM_PREFIX) for p in export_base.glob("*")]
    return max((int(n) for n in names if n.isascii() and n.isdigit()), default=0) + 1


def _check_version(version):
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= MAX_VERSION:
        raise ValueError(
            f"Expected version to be an int in [0, {MAX_VERSION}] (TF Serving's int64) or None. "
            f"Received: version={version!r}"
        )


def _check_target(target, overwrite):
    """Raises ValueError for a version path that is not a directory, or exists without `overwrite`."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ValueError(
            f"Expected the version path {target} to be a directory or absent. Received: a "
            f"{'symlink' if target.is_symlink() else 'file'}; remove it first (overwrite=True replaces only "
            "version directories)."
        )
    if target.exists() and not overwrite:
        raise ValueError(f"Version {target.name} already exists at {target}. Pass overwrite=True to replace it.")


def _claim(export_base, version):
    """Claims a version by creating `<export_base>/.tmp-<version>`; returns (that directory, version).

    `os.mkdir` succeeds for one process only. With `version=None` the next free version is
    taken (also skipping one published since it was counted).

    Raises:
        ValueError: if the given `version` is claimed by another export, or the next
            version would exceed MAX_VERSION.
    """
    while True:
        candidate = _next_version(export_base) if version is None else version
        _check_version(candidate)
        claim = export_base / f"{CLAIM_PREFIX}{candidate}"
        try:
            os.mkdir(claim)
        except FileExistsError:
            if version is not None:
                raise ValueError(
                    f"Version {version} is being exported by another process: {claim} exists (remove it if no "
                    "export is running)."
                ) from None
            continue
        if version is None and (export_base / str(candidate)).exists():
            os.rmdir(claim)
            continue
        return claim, candidate


def split_preprocessing(model):
    """(keras_vit model, the `ImagePreprocessing` layer composed before it, or None).

    `model` is a keras_vit model, or `keras.Model(images, vit_model(layer(images)))`.

    Raises:
        ValueError: for any other model.
    """
    if isinstance(model, VisionTransformer):
        return model, None
    if isinstance(model, keras.Model):
        inner = [layer for layer in model.layers if isinstance(layer, VisionTransformer)]
        preprocessing = [layer for layer in model.layers if isinstance(layer, ImagePreprocessing)]
        if len(inner) == 1 and len(preprocessing) <= 1:
            return inner[0], (preprocessing or [None])[0]
    raise ValueError(
        "Expected a keras_vit model, or a model composed of at most one ImagePreprocessing layer and one keras_vit "
        f"model (keras.Model(images, vit_model(layer(images)))). Received: {type(model).__name__}"
    )


def _preprocessing_layer(model, processor, layer):
    """The checked `ImagePreprocessing` the bytes signature runs before `model`.

    `layer` (from a composed model), else one built from `processor`, else the
    `ViTImageProcessor` defaults at the model's image size.
    """
    config = model.config
    channels = config.num_channels
    if channels not in (1, 3):
        raise ValueError(
            "Expected config.num_channels to be 1 (grayscale) or 3 (RGB) to decode images in the graph. "
            f"Received: num_channels={channels}"
        )
    if layer is not None and processor is not None:
        raise ValueError(
            "Expected processor=None for a model that already contains ImagePreprocessing (its layer is the "
            f"preprocessing). Received: processor={processor!r}"
        )
    if layer is None and processor is None:
        layer = ImagePreprocessing(
            size=config.image_hw, image_mean=[0.5] * channels, image_std=[0.5] * channels,
            data_format=model.data_format,
        )
    elif layer is None:
        layer = ImagePreprocessing.from_processor(processor, data_format=model.data_format)
    spec = layer.spec
    if layer.data_format != model.data_format:
        raise ValueError(
            f"Expected the ImagePreprocessing layer's data_format to be the model's, {model.data_format!r}. "
            f"Received: data_format={layer.data_format!r}"
        )
    if layer.output_hw is None:
        raise ValueError(
            "Expected processor settings that give every image the same size: do_center_crop=True, or "
            f"do_resize=True with size={{'height': h, 'width': w}}. Received: do_resize={spec.do_resize!r}, "
            f"size={spec.size!r}, do_center_crop={spec.do_center_crop!r}"
        )
    if spec.do_normalize and len(spec.image_mean) not in (1, channels):
        raise ValueError(
            f"Expected processor.image_mean and image_std to have 1 or {channels} values (config.num_channels="
            f"{channels}). Received: image_mean={spec.image_mean}, image_std={spec.image_std}"
        )
    (height, width), (patch_h, patch_w) = layer.output_hw, config.patch_hw
    if model.interpolate_pos_encoding and (height % patch_h or width % patch_w):
        raise ValueError(
            f"Expected the processor's output size to be a multiple of patch_size={config.patch_size}. "
            f"Received: (height, width)={layer.output_hw}"
        )
    if not model.interpolate_pos_encoding and layer.output_hw != config.image_hw:
        raise ValueError(
            f"Expected the processor's output size to equal the model's image_size={config.image_size}. "
            f"Received: (height, width)={layer.output_hw}; build the model with interpolate_pos_encoding=True "
            "to serve other sizes."
        )
    return layer


def _preprocess_images(images, layer, channels, max_image_pixels):
    """tf.string (batch,) encoded images -> float32 pixel_values in the model's layout.

    An empty batch fails (`InvalidArgumentError`), as does an image that is empty,
    unreadable or cut short, naming its index ("image i of the batch (counting from 0)"). Each image is checked against
    `max_image_pixels` from its headers, decoded with its EXIF
    orientation (`keras_vit.image_decoding.decode_image`), converted to luma for 1-channel
    models, checked against `MAX_RESIZED_PIXELS` after resizing, then run through `layer`.
    """
    output_shape = layer.compute_output_shape((1, None, None, channels))[1:]

    def preprocess(index_and_image):
        index, encoded = index_and_image
        name = tf.strings.format("image {} of the batch (counting from 0)", index)
        image = tf.cast(decode_image(encoded, max_image_pixels, name=name), tf.float32)
        if channels == 1:
            image = tf.round(tf.image.rgb_to_grayscale(image))
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        new_height, new_width = layer.resized_hw(height, width)
        pixels = tf.cast(new_height, tf.int64) * tf.cast(new_width, tf.int64)
        message = tf.strings.format(
            f"Expected the image to resize to at most {MAX_RESIZED_PIXELS} pixels. Received: {{}} x {{}} resizes to "
            "{} x {} = {} pixels (an extreme aspect ratio with size shortest_edge)",
            (width, height, new_width, new_height, pixels),
        )
        with tf.control_dependencies([tf.debugging.Assert(pixels <= MAX_RESIZED_PIXELS, [message])]):
            image = tf.identity(image)
        return layer(image[None])[0]

    count = tf.size(images)
    message = f"Expected at least one image in {IMAGES_INPUT}. Received: an empty batch, shape (0,)"
    with tf.control_dependencies([tf.debugging.Assert(count > 0, [message])]):
        indices = tf.range(count, dtype=tf.int64)
    return tf.map_fn(preprocess, (indices, images), fn_output_signature=tf.TensorSpec(output_shape, tf.float32))


def _sample_images(sample_images, config, output_hw):
    """Checked sample images: a list of encoded images, synthetic PNGs when None."""
    if sample_images is None:
        rng = np.random.default_rng(0)
        # Larger than the model input, so that the resize path is exercised.
        shape = (output_hw[0] + output_hw[0] // 4, output_hw[1] + output_hw[1] // 8, config.num_channels)
        return [tf.io.encode_png(rng.integers(0, 256, shape, dtype=np.uint8)).numpy() for _ in range(2)]
    if not isinstance(sample_images, (list, tuple)) or not sample_images:
        raise ValueError(
            f"Expected sample_images to be a non-empty list of encoded images. Received: {sample_images!r}"
        )
    for i, image in enumerate(sample_images):
        if not isinstance(image, bytes):
            raise ValueError(f"Expected sample_images[{i}] to be bytes (an encoded image). Received: {type(image)}")
        try:
            tf.io.decode_image(image, expand_animations=False)
        except tf.errors.InvalidArgumentError:
            raise ValueError(
                f"Expected sample_images[{i}] to be a JPEG, PNG, GIF, BMP or WebP image. Decoding failed."
            ) from None
    return list(sample_images)


# === Export steps ===
def _numeric_outputs(model, pixel_values, names):
    """The float32 signature outputs of `model` on `pixel_values`: all but `label`."""
    outputs = {k: tf.cast(v, tf.float32) for k, v in model(pixel_values, training=False).items() if k in names}
    if "logits" in outputs:
        outputs["probabilities"] = tf.nn.softmax(outputs["logits"], axis=-1)
        outputs["score"] = tf.reduce_max(outputs["probabilities"], axis=-1)
    return outputs


def _serving_outputs(model, pixel_values, names):
    """The signature outputs (see the module docstring) of `model` on `pixel_values`."""
    return _with_label(model, _numeric_outputs(model, pixel_values, names))


def _with_label(model, outputs):
    """`outputs` with `label`, `config.id2label` of the argmax, for a classifier."""
    if "logits" in outputs:
        id2label = model.config.id2label
        vocabulary = tf.constant([id2label[i] for i in range(len(id2label))])
        outputs["label"] = tf.gather(vocabulary, tf.argmax(outputs["probabilities"], axis=-1))
    return outputs


def _archive(model, preprocessing, names, jit_compile=False):
    """An ExportArchive with both signatures, traced.

    The model is not `track`ed: the archive then saves exactly the variables the traced
    functions capture, each once (tracking it also saves Keras' variable wrappers). With
    `jit_compile`, both signatures call one `tf.function(jit_compile=True)` for the model.
    """
    pixel_shape = (None, *model.inputs[0].shape[1:])  # pixel_values comes first
    numeric_outputs = functools.partial(_numeric_outputs, model, names=names)
    if jit_compile:
        numeric_outputs = tf.function(numeric_outputs, jit_compile=True)

    def serve(pixel_values):
        return _with_label(model, numeric_outputs(pixel_values))

    archive = keras.export.ExportArchive()
    endpoints = [
        archive.add_endpoint(
            SERVING_SIGNATURE,
            lambda images: serve(preprocessing(images)),
            input_signature=[tf.TensorSpec((None,), tf.string, name=IMAGES_INPUT)],
        ),
        archive.add_endpoint(
            PIXELS_SIGNATURE,
            serve,
            input_signature=[tf.TensorSpec(pixel_shape, tf.float32, name=PIXELS_INPUT)],
        ),
    ]
    for endpoint in endpoints:
        endpoint.get_concrete_function()
    return archive


def _write_warmup(path, requests):
    """Writes one PredictionLog record per signature: {signature: (input name, value)}."""
    prediction_log_pb2, predict_pb2 = _serving_apis()
    path.parent.mkdir()
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, (input_name, value) in requests.items():
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = signature
            request.inputs[input_name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def _verify(path, model, names, samples, pixel_values):
    """Raises ValueError unless both reloaded signatures match the Keras model.

    Within VERIFY_ATOL, or VERIFY_ATOL_LOW_PRECISION for a model computing in bfloat16 or
    with quantized layers.
    """
    low_precision = _is_quantized(model) or any(
        layer.compute_dtype == "bfloat16" for layer in model._flatten_layers()
    )
    atol = VERIFY_ATOL_LOW_PRECISION if low_precision else VERIFY_ATOL
    expected = _serving_outputs(model, pixel_values, names)
    loaded = tf.saved_model.load(str(path))
    results = {
        SERVING_SIGNATURE: loaded.signatures[SERVING_SIGNATURE](**{IMAGES_INPUT: tf.constant(samples)}),
        PIXELS_SIGNATURE: loaded.signatures[PIXELS_SIGNATURE](**{PIXELS_INPUT: pixel_values}),
    }
    for signature, result in results.items():
        if sorted(result) != sorted(names):
            raise ValueError(f"Expected {signature} outputs {sorted(names)}. Received: {sorted(result)}")
        for name in names:
            if result[name].dtype == tf.string:
                continue
            error = float(np.max(np.abs(result[name].numpy() - expected[name].numpy())))
            if not error <= atol:
                raise ValueError(
                    f"Verification failed: output {name!r} of signature {signature!r} differs from the Keras model "
                    f"by {error:.3g} (> {atol}). Nothing was published."
                )


def _publish(tmp, target, overwrite):
    """Renames `tmp` to `target`; with `overwrite`, swaps the two directories in one step
    (`keras_vit.atomic.exchange`), so that the version never disappears, and the old one,
    now at `tmp`, is removed by the caller. Where the system cannot swap, the old version
    is renamed aside to `.old-<version>-<token>` first (`_recover_versions` restores or
    removes such a leftover on the next export)."""
    if not (target.exists() or target.is_symlink()):
        os.rename(tmp, target)
        return
    if not overwrite:
        raise ValueError(f"Version {target.name} appeared at {target} during the export; not overwriting it.")
    _check_target(target, overwrite)
    if exchange(tmp, target):
        return
    old = target.with_name(f"{OLD_PREFIX}{target.name}-{secrets.token_hex(4)}")
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old)


def _recover_versions(export_base):
    """Puts back an old version that a crashed `_publish` left renamed aside (its version
    directory missing), or removes it when the new version was published."""
    for old in export_base.glob(f"{OLD_PREFIX}*"):
        version = old.name[len(OLD_PREFIX) :].rsplit("-", 1)[0]
        target = export_base / version
        if version.isdigit() and old.is_dir() and not old.is_symlink():
            if target.exists() or target.is_symlink():
                shutil.rmtree(old)
            else:
                os.rename(old, target)


@contextlib.contextmanager
def _step(name, verbose):
    """Prints `name` and, once the block succeeds, its duration (when verbose)."""
    start = time.perf_counter()
    if verbose:
        print(f"export: {name}...", flush=True)
    yield
    if verbose:
        print(f"export: {name} done in {time.perf_counter() - start:.1f}s", flush=True)
