"""Every mapping between Hugging Face ViT/DeiT weight names and keras_vit weights, in one place.

The canonical foreign form is the Hugging Face PyTorch state dict with its on-disk (4.x,
still written by 5.x) names, e.g. `vit.encoder.layer.0.attention.attention.query.weight`,
and PyTorch layouts (Linear (out, in), Conv2d (out, in, kh, kw)). `keras_vit.checkpoints`
turns every file format into that form; this module maps it to and from a model:

- the encoder prefix (`vit.` / `deit.`) is optional on load, as in Hugging Face, and the
  transformers 5 module names (`layers.0.attention.q_proj`, `mlp.fc1`) are accepted too;
- query/key/value are concatenated into the fused `qkv` kernel (and split on save);
- Linear and Conv2d kernels are transposed to Keras layouts;
- position embeddings are resampled bicubically in float32, prefix tokens kept apart,
  when the checkpoint's grid differs from the config's (timm `resample_abs_pos_embed`);
- head weights (pooler, classifier, DeiT heads, SimMIM decoder, mask token) that the
  checkpoint lacks are left initialised, with a warning, as Hugging Face does.
"""

import logging
import math
import re

import keras
import numpy as np

from keras_vit.layers.position_interpolation import resample_position_embeddings

logger = logging.getLogger("keras_vit")

ENCODER_PREFIXES = ("vit.", "deit.")
# Weights a checkpoint may lack or carry extra: they are initialised or ignored with a warning.
HEAD_KEYS = ("pooler.", "classifier.", "cls_classifier.", "distillation_classifier.", "decoder.", "embeddings.mask_token")


def _linear(weight):
    return weight.T


def _conv(weight):
    return np.transpose(weight, (2, 3, 1, 0))


def _conv_back(kernel):
    return np.transpose(kernel, (3, 2, 0, 1))


def _same(x):
    return x


class _Entry:
    """One Keras variable and the Hugging Face tensors it is made of."""

    def __init__(self, variable, names, to_keras=_same, to_hf=_same):
        self.variable = variable
        self.names = names
        self.to_keras = to_keras  # callable(*hf_arrays) -> keras array
        self.to_hf = to_hf  # callable(keras array) -> tuple of hf arrays


def _split3(array, transform):
    return tuple(transform(part) for part in np.split(array, 3, axis=-1))


def _entries(model):
    """Lists (variable, hf names, transforms) for every weight of `model`."""
    weights = {w.path: w for w in model.weights}
    entries = []

    def add(path, names, to_keras=_same, to_hf=None):
        if path in weights:
            names = names if isinstance(names, tuple) else (names,)
            entries.append(_Entry(weights[path], names, to_keras, to_hf or (lambda x, f=to_keras: (f(x),))))

    def dense(path, name):
        add(f"{path}/kernel", f"{name}.weight", _linear)
        add(f"{path}/bias", f"{name}.bias")

    def layernorm(path, name):
        add(f"{path}/gamma", f"{name}.weight")
        add(f"{path}/beta", f"{name}.bias")

    for token in ("cls_token", "distillation_token", "mask_token", "position_embeddings"):
        add(f"embeddings/{token}", f"embeddings.{token}")
    add("embeddings/projection/kernel", "embeddings.patch_embeddings.projection.weight", _conv, lambda k: (_conv_back(k),))
    add("embeddings/projection/bias", "embeddings.patch_embeddings.projection.bias")
    for i in range(model.config.num_hidden_layers):
        ours, theirs = f"encoder_layer_{i}", f"encoder.layer.{i}"
        qkv = tuple(f"{theirs}.attention.attention.{n}" for n in ("query", "key", "value"))
        add(
            f"{ours}/attention/qkv/kernel",
            tuple(f"{n}.weight" for n in qkv),
            lambda q, k, v: np.concatenate([q.T, k.T, v.T], axis=1),
            lambda kernel: _split3(kernel, _linear),
        )
        add(
            f"{ours}/attention/qkv/bias",
            tuple(f"{n}.bias" for n in qkv),
            lambda q, k, v: np.concatenate([q, k, v]),
            lambda bias: _split3(bias, _same),
        )
        dense(f"{ours}/attention/output", f"{theirs}.attention.output.dense")
        dense(f"{ours}/fc1", f"{theirs}.intermediate.dense")
        dense(f"{ours}/fc2", f"{theirs}.output.dense")
        layernorm(f"{ours}/layernorm_before", f"{theirs}.layernorm_before")
        layernorm(f"{ours}/layernorm_after", f"{theirs}.layernorm_after")
    layernorm("layernorm", "layernorm")
    dense("pooler/dense", "pooler.dense")
    dense("classifier", "classifier")
    dense("head/cls_classifier", "cls_classifier")
    dense("head/distillation_classifier", "distillation_classifier")
    add("decoder/conv/kernel", "decoder.0.weight", _conv, lambda k: (_conv_back(k),))
    add("decoder/conv/bias", "decoder.0.bias")
    return entries


def _is_head(name):
    return name.startswith(HEAD_KEYS)


# transformers 5 module names (in-memory `state_dict()`) -> on-disk names.
_V5_RENAMES = (
    (re.compile(r"^layers\.(\d+)\.attention\.([qkv])_proj\."), None),
    (re.compile(r"^layers\.(\d+)\.attention\.o_proj\."), r"encoder.layer.\1.attention.output.dense."),
    (re.compile(r"^layers\.(\d+)\.mlp\.fc1\."), r"encoder.layer.\1.intermediate.dense."),
    (re.compile(r"^layers\.(\d+)\.mlp\.fc2\."), r"encoder.layer.\1.output.dense."),
    (re.compile(r"^layers\.(\d+)\."), r"encoder.layer.\1."),
)
_QKV = {"q": "query", "k": "key", "v": "value"}


def canonical_name(name):
    """Drops the `vit.`/`deit.` prefix and maps transformers 5 module names to on-disk names."""
    for prefix in ENCODER_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    for pattern, replacement in _V5_RENAMES:
        match = pattern.match(name)
        if match:
            if replacement is None:
                replacement = rf"encoder.layer.\1.attention.attention.{_QKV[match.group(2)]}."
            return pattern.sub(replacement, name)
    return name


def _backbone(model):
    """The encoder of a task model (its `backbone`), or the model itself for a backbone."""
    return getattr(model, "backbone", model)


def tf_era_qkv_bias(config, state_dict):
    """The config to build for a `tf_model.h5` state dict: `qkv_bias=True` if it has q/k/v biases.

    transformers 4.x's TF ViT/DeiT classes ignored `qkv_bias=False` and always created (and
    used) query/key/value biases, so their `tf_model.h5` files carry bias tensors whatever
    `config.json` says. Loading them as `qkv_bias=True` reproduces the original TF outputs.
    """
    has_bias = any(canonical_name(name).endswith("attention.attention.query.bias") for name in state_dict)
    if config.qkv_bias or not has_bias:
        return config
    logger.warning(
        "config.json says qkv_bias=False, but the tf_model.h5 (written by transformers' TF classes, which always "
        "used query/key/value biases) has them: loading with qkv_bias=True to reproduce its outputs."
    )
    return config.replace(qkv_bias=True)


def _resample_positions(model, array):
    """Resamples checkpoint position embeddings to the model's grid when they differ."""
    embeddings = _backbone(model).get_layer("embeddings")
    prefix = embeddings.num_prefix_tokens
    old = array.shape[1] - prefix
    rows, cols = embeddings.grid_size
    if old == rows * cols or array.ndim != 3:
        return array
    side = math.isqrt(old)
    if side * side != old:
        raise ValueError(
            f"Cannot resample position embeddings of {old} patches (not a square grid) to {rows}x{cols}."
        )
    logger.warning("Resampling position embeddings from a %dx%d to a %dx%d patch grid.", side, side, rows, cols)
    return np.asarray(resample_position_embeddings(array.astype("float32"), (side, side), (rows, cols), prefix))


def load_hf_state_dict(model, state_dict, ignore_mismatched_sizes=False):
    """Assigns a Hugging Face ViT/DeiT state dict to `model`'s weights.

    Args:
        model: a keras_vit model.
        state_dict: dict name -> numpy array, Hugging Face PyTorch names and layouts.
        ignore_mismatched_sizes: bool, leave head weights of another shape (e.g. a new
            num_labels) initialised instead of raising.

    Returns:
        dict with lists `initialized` (head weights left as initialised), `ignored`
        (checkpoint head tensors the model has no place for) and `resized` (head weights
        skipped for their shape).

    Raises:
        ValueError: listing missing, unexpected or mis-shaped tensors that are not head
            weights (or head weights of another shape without `ignore_mismatched_sizes`).
    """
    state = {canonical_name(k): v for k, v in state_dict.items()}
    used, missing, mismatched, initialized, resized = set(), [], [], [], []
    updates = []
    for entry in _entries(model):
        absent = [n for n in entry.names if n not in state]
        if absent:
            (initialized if all(_is_head(n) for n in absent) else missing).extend(absent)
            continue
        used.update(entry.names)
        arrays = [np.asarray(state[n], dtype="float32") for n in entry.names]
        if entry.names == ("embeddings.position_embeddings",):
            arrays = [_resample_positions(model, arrays[0])]
        value = entry.to_keras(*arrays)
        if tuple(value.shape) != tuple(entry.variable.shape):
            if ignore_mismatched_sizes and _is_head(entry.names[0]):
                resized.extend(entry.names)
                continue
            mismatched.append(f"{'+'.join(entry.names)}: checkpoint {value.shape}, model {tuple(entry.variable.shape)}")
            continue
        updates.append((entry.variable, value))
    unexpected = sorted(set(state) - used)
    ignored = [n for n in unexpected if _is_head(n)]
    unexpected = [n for n in unexpected if not _is_head(n)]
    problems = []
    if missing:
        problems.append(f"missing tensors: {sorted(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {unexpected}")
    if mismatched:
        hint = " (pass ignore_mismatched_sizes=True to re-initialise a head of another size)"
        problems.append(f"mis-shaped tensors{hint}: {mismatched}")
    if problems:
        raise ValueError(f"The checkpoint does not fit {type(model).__name__}: " + "; ".join(problems))
    for variable, value in updates:
        variable.assign(value)
    if initialized or resized:
        logger.warning(
            "Some weights of %s were not in the checkpoint (or had another shape) and are newly initialised: %s. "
            "Train the model before using it for predictions.",
            type(model).__name__,
            sorted(initialized + resized),
        )
    if ignored:
        logger.warning("Checkpoint tensors not used by %s: %s", type(model).__name__, ignored)
    return {"initialized": sorted(initialized), "ignored": ignored, "resized": resized}


def _float_kernel(dense):
    """The float32 kernel a LoRA-adapted or int8-quantized Keras `Dense` multiplies by.

    int8: the stored kernel divided by its per-output-channel `kernel_scale` (Keras'
    dequantization). LoRA: W + (lora_alpha / rank) · A · B, what peft's `merge_and_unload`
    writes.

    Raises:
        ValueError: for a quantization mode other than int8 (int4, float8, GPTQ, AWQ).
    """
    mode = dense.quantization_mode
    if mode not in (None, "int8"):
        raise ValueError(
            f"Expected the Dense layers to be unquantized or int8-quantized to write Hugging Face weights. "
            f"Received: quantization_mode={mode!r} on {dense.path}. Save with `model.save(...)` (.keras) instead."
        )
    kernel = np.asarray(dense._kernel.numpy(), dtype="float32")
    if mode == "int8":
        kernel = kernel / np.asarray(dense.kernel_scale.numpy(), dtype="float32")
    if dense.lora_enabled:
        low_rank = np.asarray(dense.lora_kernel_a.numpy(), "float32") @ np.asarray(dense.lora_kernel_b.numpy(), "float32")
        kernel = kernel + np.float32(dense.lora_alpha / dense.lora_rank) * low_rank
    return kernel


def to_hf_state_dict(model):
    """Returns the model's weights as a Hugging Face PyTorch state dict (name -> float32 array).

    Task models prefix encoder weights with their backbone's layer name (`vit.` / `deit.`),
    as Hugging Face saves them. Kernels of LoRA-adapted layers are written merged and those
    of int8-quantized layers dequantized (`_float_kernel`), so transformers and
    `from_pretrained` compute what the model computes.

    Raises:
        ValueError: if a layer is quantized in another mode than int8.
    """
    backbone = _backbone(model)
    prefix = "" if backbone is model else f"{backbone.name}."
    adapted = {
        layer._kernel.path: layer
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.Dense) and (layer.lora_enabled or layer.quantization_mode is not None)
    }
    state = {}
    for entry in _entries(model):
        layer = adapted.get(entry.variable.path)
        value = _float_kernel(layer) if layer is not None else np.asarray(entry.variable.numpy(), dtype="float32")
        for name, array in zip(entry.names, entry.to_hf(value)):
            state[name if _is_head(name) and name != "embeddings.mask_token" else prefix + name] = np.ascontiguousarray(array)
    return state
