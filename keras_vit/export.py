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

    serving_default  input `images`: tf.string (batch,), encoded JPEG, PNG, GIF (first
                     frame), BMP or WebP images of any size and channel count. The graph
                     decodes each image to RGB (alpha dropped, grayscale repeated; EXIF
                     orientation not applied; luma for 1-channel models), then applies the
                     image processor's steps in Hugging Face's order: resize (antialiased,
                     rounded to 8 bits as PIL does), centre crop, rescale, normalise.
                     Undecodable bytes fail the request with INVALID_ARGUMENT.
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
The graph has no XLA ops (no `XlaCallModule`, nothing must-compile) and stores each weight
once.
"""

import contextlib
import functools
import math
import numbers
import os
import secrets
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_vit.atomic import make_dirs
from keras_vit.config import to_json_string
from keras_vit.models.base import VisionTransformer

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
MAX_VERSION = 2**63 - 1  # TF Serving reads version numbers as int64
VERIFY_ATOL = 1e-4

# PIL filter number -> tf.image.resize method (PIL 5, HAMMING, has no TensorFlow equivalent).
_RESAMPLE_METHODS = {0: "nearest", 1: "lanczos3", 2: "bilinear", 3: "bicubic", 4: "area"}


def export_saved_model(
    model,
    export_base,
    version=None,
    processor=None,
    overwrite=False,
    verify=True,
    sample_images=None,
    verbose=True,
):
    """Writes `model` as version `version` of a TF Serving model, atomically.

    The SavedModel, its warmup requests and the verification all happen in a temporary
    directory `<export_base>/.tmp-<version>` (not an integer, so TF Serving ignores it),
    renamed to `<export_base>/<version>` only once complete. Creating it with `os.mkdir`
    claims the version: a concurrent export with `version=None` takes the next one, with
    the same explicit version it fails at once. On any failure the temporary directory is
    removed and `export_base` is left as it was. With `overwrite`, the old version is
    renamed aside, the new one renamed in, then the old one deleted.
    Signatures and output names are listed in the module docstring.

    Args:
        model: a built `keras_vit` classification model (`ViTForImageClassification`,
            `DeiTForImageClassification`, `DeiTForImageClassificationWithTeacher`) or
            feature model (`ViTModel`, `DeiTModel`).
        export_base: str or path, TF Serving's `--model_base_path`; created if missing.
        version: int in [0, 2**63 - 1] (TF Serving's int64), or None for one more than
            the largest existing or claimed version (1 when there is none).
        processor: None for the `ViTImageProcessor` defaults (bilinear resize to
            `config.image_size`, rescale by 1/255, normalise with mean = std = 0.5), or an
            object with Hugging Face image processor attributes: `do_resize`, `size`
            ({"height", "width"} or {"shortest_edge"}), `resample` (PIL filter number 0-4),
            `do_center_crop`, `crop_size`, `do_rescale`, `rescale_factor`,
            `do_normalize`, `image_mean`, `image_std` (a number or one per channel), e.g.
            `keras_vit.processors.ViTImageProcessor` or `transformers.DeiTImageProcessor`.
            Missing attributes count as False / None.
        overwrite: bool, replace an existing `<export_base>/<version>`.
        verify: bool, reload the SavedModel before publishing it and check both signatures
            against the Keras model on `sample_images` (max |difference| <= 1e-4).
        sample_images: None (two synthetic PNGs are used) or a non-empty list of encoded
            images (bytes); they also make up the warmup requests.
        verbose: bool, print each step and its duration.

    Returns:
        `pathlib.Path` of the version directory.

    Raises:
        ValueError: before any heavy work, for a model that is not a classification or
            feature model (or has num_labels == 0), `config.num_channels` other than 1 or
            3, a bad `version`, an existing version without `overwrite=True` (naming its
            path), a version path that is a file or symlink (even with `overwrite=True`),
            a version being exported by another process, an `export_base` that is a
            file, processor settings that cannot be
            exported or do not give the model's image size, or sample images that are not
            decodable bytes. After the export, if the reloaded SavedModel disagrees with
            the Keras model.
        ImportError: without the `tensorflow-serving-api` package (`keras-vit[serving]`).

    >>> config = keras_vit.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                              intermediate_size=37, image_size=32, patch_size=8, num_labels=3)
    >>> path = export_saved_model(keras_vit.ViTForImageClassification(config), "/tmp/vit", verbose=False)
    >>> serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    >>> sorted(serve(images=tf.constant([open("cat.png", "rb").read()])))
    ['label', 'logits', 'probabilities', 'score']
    """
    outputs = _output_names(model)
    preprocessing = _Preprocessing(model, processor)
    samples = _sample_images(sample_images, model.config, preprocessing.output_hw)
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
    tmp, version = _claim(export_base, version)
    target = export_base / str(version)
    try:
        with log("preprocessing sample images"):
            pixel_values = preprocessing(tf.constant(samples))
        with log("tracing signatures"):
            archive = _archive(model, preprocessing, outputs)
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
    names = set(model.output)
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


def _size(value, name, allow_shortest_edge):
    """A size setting as {"height": h, "width": w} or {"shortest_edge": n} of positive ints."""
    get = getattr(value, "get", None)
    fields = {} if get is None else {k: get(k) for k in ("height", "width", "shortest_edge") if get(k) is not None}
    forms = [{"height", "width"}, {"shortest_edge"}] if allow_shortest_edge else [{"height", "width"}]
    valid = set(fields) in forms and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in fields.values()
    )
    if not valid:
        expected = " or {'shortest_edge': n}" if allow_shortest_edge else ""
        raise ValueError(f"Expected processor.{name} to be {{'height': h, 'width': w}}{expected}. Received: {value!r}")
    return fields


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _per_channel(value, name, channels, positive):
    values = [value] * channels if _is_real(value) else value
    valid = (
        isinstance(values, (list, tuple))
        and len(values) == channels
        and all(_is_real(v) and (v > 0 or not positive) for v in values)
    )
    if not valid:
        kind = "positive numbers" if positive else "numbers"
        raise ValueError(
            f"Expected processor.{name} to be a number or {channels} {kind} (config.num_channels={channels}). "
            f"Received: {name}={value!r}"
        )
    return tf.constant(values, tf.float32)


def _processor_settings(config, processor):
    """A function: setting name -> the processor's value (None if missing), or the default's."""
    if processor is not None:
        return lambda name: getattr(processor, name, None)
    # transformers' ViTImageProcessor defaults, at the model's image size.
    height, width = config.image_hw
    return dict(
        do_resize=True,
        size={"height": height, "width": width},
        resample=2,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5] * config.num_channels,
        image_std=[0.5] * config.num_channels,
    ).get


class _Preprocessing:
    """The image processor's steps as TensorFlow ops: encoded images -> `pixel_values`.

    Reads and checks the processor's settings on construction; calling it maps a tf.string
    tensor (batch,) to float32 pixel values (batch, ...) in the model's layout.
    """

    def __init__(self, model, processor):
        config = model.config
        self.channels = config.num_channels
        if self.channels not in (1, 3):
            raise ValueError(
                "Expected config.num_channels to be 1 (grayscale) or 3 (RGB) to decode images in the graph. "
                f"Received: num_channels={self.channels}"
            )
        self.channels_first = model.data_format == "channels_first"
        setting = _processor_settings(config, processor)
        self.size = self.method = self.crop = self.rescale_factor = self.mean = self.std = None
        if setting("do_resize"):
            self.size = _size(setting("size"), "size", allow_shortest_edge=True)
            resample = setting("resample")
            if isinstance(resample, bool) or resample not in _RESAMPLE_METHODS:
                raise ValueError(
                    f"Expected processor.resample to be a PIL filter in {sorted(_RESAMPLE_METHODS)} (0 nearest, "
                    f"1 lanczos, 2 bilinear, 3 bicubic, 4 box). Received: resample={resample!r}"
                )
            self.method = _RESAMPLE_METHODS[resample]
        if setting("do_center_crop"):
            crop = _size(setting("crop_size"), "crop_size", allow_shortest_edge=False)
            self.crop = (crop["height"], crop["width"])
        if self.crop:
            self.output_hw = self.crop
        elif self.size and "height" in self.size:
            self.output_hw = (self.size["height"], self.size["width"])
        else:
            raise ValueError(
                "Expected processor settings that give every image the same size: do_center_crop=True, or "
                "do_resize=True with size={'height': h, 'width': w}. Received: "
                f"do_resize={setting('do_resize')!r}, size={setting('size')!r}, "
                f"do_center_crop={setting('do_center_crop')!r}"
            )
        (height, width), (patch_h, patch_w) = self.output_hw, config.patch_hw
        if model.interpolate_pos_encoding and (height % patch_h or width % patch_w):
            raise ValueError(
                f"Expected the processor's output size to be a multiple of patch_size={config.patch_size}. "
                f"Received: (height, width)={self.output_hw}"
            )
        if not model.interpolate_pos_encoding and self.output_hw != config.image_hw:
            raise ValueError(
                f"Expected the processor's output size to equal the model's image_size={config.image_size}. "
                f"Received: (height, width)={self.output_hw}; build the model with interpolate_pos_encoding=True "
                "to serve other sizes."
            )
        if setting("do_rescale"):
            factor = setting("rescale_factor")
            if not (_is_real(factor) and factor > 0):
                raise ValueError(f"Expected processor.rescale_factor to be a positive number. Received: {factor!r}")
            self.rescale_factor = float(factor)
        if setting("do_normalize"):
            self.mean = _per_channel(setting("image_mean"), "image_mean", self.channels, positive=False)
            self.std = _per_channel(setting("image_std"), "image_std", self.channels, positive=True)

    def __call__(self, images):
        """tf.string (batch,) encoded images -> float32 pixel_values in the model's layout."""
        pixels = tf.map_fn(
            self._decode_and_resize,
            images,
            fn_output_signature=tf.TensorSpec((*self.output_hw, self.channels), tf.float32),
        )
        if self.rescale_factor is not None:
            pixels = pixels * self.rescale_factor
        if self.mean is not None:
            pixels = (pixels - self.mean) / self.std
        if self.channels_first:
            pixels = tf.transpose(pixels, (0, 3, 1, 2))
        return pixels

    def _decode_and_resize(self, encoded):
        # RGB decoding works for every format and channel count (alpha is dropped).
        image = tf.cast(tf.io.decode_image(encoded, channels=3, expand_animations=False), tf.float32)
        if self.channels == 1:
            image = tf.round(tf.image.rgb_to_grayscale(image))
        if self.size is not None:
            resized = tf.image.resize(image, self._resized_hw(tf.shape(image)), method=self.method, antialias=True)
            # PIL resizes 8-bit images to 8 bits.
            image = tf.clip_by_value(tf.round(resized), 0.0, 255.0)
        if self.crop is not None:
            image = _center_crop(image, *self.crop)
        return tf.ensure_shape(image, (*self.output_hw, self.channels))

    def _resized_hw(self, shape):
        """(height, width) after resizing, as Hugging Face computes it."""
        if "shortest_edge" not in self.size:
            return self.size["height"], self.size["width"]
        edge = self.size["shortest_edge"]
        height, width = shape[0], shape[1]
        short, long = tf.minimum(height, width), tf.maximum(height, width)
        new_long = tf.cast(edge * tf.cast(long, tf.float64) / tf.cast(short, tf.float64), tf.int32)
        return tf.where(width <= height, tf.stack([new_long, edge]), tf.stack([edge, new_long]))


def _center_crop(image, height, width):
    """Crops the centre; a side shorter than the crop is first zero-padded (more on top/left)."""
    shape = tf.shape(image)
    pad_h, pad_w = tf.maximum(height - shape[0], 0), tf.maximum(width - shape[1], 0)
    image = tf.pad(image, [[(pad_h + 1) // 2, pad_h // 2], [(pad_w + 1) // 2, pad_w // 2], [0, 0]])
    top, left = (tf.shape(image)[0] - height) // 2, (tf.shape(image)[1] - width) // 2
    return image[top : top + height, left : left + width]


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
def _serving_outputs(model, pixel_values, names):
    """The signature outputs (see the module docstring) of `model` on `pixel_values`."""
    outputs = {k: tf.cast(v, tf.float32) for k, v in model(pixel_values, training=False).items() if k in names}
    if "logits" in outputs:
        id2label = model.config.id2label
        vocabulary = tf.constant([id2label[i] for i in range(len(id2label))])
        outputs["probabilities"] = tf.nn.softmax(outputs["logits"], axis=-1)
        outputs["label"] = tf.gather(vocabulary, tf.argmax(outputs["probabilities"], axis=-1))
        outputs["score"] = tf.reduce_max(outputs["probabilities"], axis=-1)
    return outputs


def _archive(model, preprocessing, names):
    """An ExportArchive with both signatures, traced.

    The model is not `track`ed: the archive then saves exactly the variables the traced
    functions capture, each once (tracking it also saves Keras' variable wrappers, and
    walks the model's default serving signature, which the optional inputs break).
    """
    pixel_shape = (None, *model.input["pixel_values"].shape[1:])
    archive = keras.export.ExportArchive()
    endpoints = [
        archive.add_endpoint(
            SERVING_SIGNATURE,
            lambda images: _serving_outputs(model, preprocessing(images), names),
            input_signature=[tf.TensorSpec((None,), tf.string, name=IMAGES_INPUT)],
        ),
        archive.add_endpoint(
            PIXELS_SIGNATURE,
            lambda pixel_values: _serving_outputs(model, pixel_values, names),
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
    """Raises ValueError unless both reloaded signatures match the Keras model within VERIFY_ATOL."""
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
            if not error <= VERIFY_ATOL:
                raise ValueError(
                    f"Verification failed: output {name!r} of signature {signature!r} differs from the Keras model "
                    f"by {error:.3g} (> {VERIFY_ATOL}). Nothing was published."
                )


def _publish(tmp, target, overwrite):
    """Renames `tmp` to `target`; with `overwrite`, the old version is swapped out then removed."""
    if not (target.exists() or target.is_symlink()):
        os.rename(tmp, target)
        return
    if not overwrite:
        raise ValueError(f"Version {target.name} appeared at {target} during the export; not overwriting it.")
    _check_target(target, overwrite)
    old = target.with_name(f".old-{target.name}-{secrets.token_hex(4)}")
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old)


@contextlib.contextmanager
def _step(name, verbose):
    """Prints `name` and, once the block succeeds, its duration (when verbose)."""
    start = time.perf_counter()
    if verbose:
        print(f"export: {name}...", flush=True)
    yield
    if verbose:
        print(f"export: {name} done in {time.perf_counter() - start:.1f}s", flush=True)
