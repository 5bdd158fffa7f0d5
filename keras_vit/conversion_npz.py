"""Google's ViT `.npz` files (the ViT paper's, AugReg's and big_vision's Flax parameters) in and out.

The files flatten Flax parameter trees into `/`-joined names with JAX layouts:
`embedding/kernel` (patch, patch, channels, width), `cls`, `Transformer/posembed_input/
pos_embedding` (big_vision: `pos_embedding`), and per block `Transformer/encoderblock_{i}/
MultiHeadDotProductAttention_1/query/kernel` (width, heads, head width), `.../out/kernel`
(heads, head width, width), `LayerNorm_0` / `LayerNorm_2` and `MlpBlock_3/Dense_{0,1}`
(big_vision names them `MultiHeadDotProductAttention_0`, `LayerNorm_1`, `MlpBlock_0`, and
its scanned models stack every block in one `Transformer/encoderblock/` tree). This module is
their adapter to the Hugging Face state dict that `keras_vit.conversion` loads, as timm's
`_load_weights` reads them; names may sit under `opt/target/` or `params/`.

Models pooled without a class token (big_vision's default `pool_type="gap"`), with a MAP
head, a `pre_logits` representation layer or fixed sin-cos position embeddings (not stored)
are refused with an error naming what the file lacks or holds.
"""

import math

import numpy as np

from keras_vit.conversion import ENCODER_PREFIXES, to_hf_state_dict
from keras_vit.conversion_timm import TIMM_LAYER_NORM_EPS

_PREFIXES = ("opt/target/", "params/img/", "params/")
_PARTS = ("query", "key", "value")


def _linear_to_hf(kernel):
    return np.transpose(kernel)


def _heads_to_hf(kernel):
    """(width, heads, head width) -> PyTorch Linear (heads * head width, width)."""
    return np.reshape(kernel, (kernel.shape[0], -1)).T


def _out_to_hf(kernel):
    """(heads, head width, width) -> PyTorch Linear (width, heads * head width)."""
    return np.reshape(kernel, (-1, kernel.shape[-1])).T


def _bias_to_hf(bias):
    return np.reshape(bias, -1)


def _conv_to_hf(kernel):
    return np.transpose(kernel, (3, 2, 0, 1))


def _same(x):
    return x


class _Names:
    """Where a file puts its parameters: the prefix, big_vision's or the ViT paper's block names."""

    def __init__(self, state):
        self.prefix = next((p for p in _PREFIXES if f"{p}embedding/kernel" in state), "")
        scanned = f"{self.prefix}Transformer/encoderblock/LayerNorm_0/scale" in state
        self.big_vision = scanned or self.prefix.startswith("params/") or f"{self.prefix}pos_embedding" in state
        self.scanned = scanned
        self.attention, self.norm2, self.mlp = (0, 1, 0) if self.big_vision else (1, 2, 3)
        self.position = "pos_embedding" if self.big_vision else "Transformer/posembed_input/pos_embedding"

    def block(self, i):
        return f"{self.prefix}Transformer/encoderblock{'' if self.scanned else f'_{i}'}/"

    def table(self, i):
        """(npz name, Hugging Face name, npz -> PyTorch layout) for block `i`."""
        block, hf = self.block(i), f"encoder.layer.{i}."
        mha = f"{block}MultiHeadDotProductAttention_{self.attention}/"
        rows = [
            (f"{block}LayerNorm_0/scale", f"{hf}layernorm_before.weight", _same),
            (f"{block}LayerNorm_0/bias", f"{hf}layernorm_before.bias", _same),
            (f"{mha}out/kernel", f"{hf}attention.output.dense.weight", _out_to_hf),
            (f"{mha}out/bias", f"{hf}attention.output.dense.bias", _same),
            (f"{block}LayerNorm_{self.norm2}/scale", f"{hf}layernorm_after.weight", _same),
            (f"{block}LayerNorm_{self.norm2}/bias", f"{hf}layernorm_after.bias", _same),
            (f"{block}MlpBlock_{self.mlp}/Dense_0/kernel", f"{hf}intermediate.dense.weight", _linear_to_hf),
            (f"{block}MlpBlock_{self.mlp}/Dense_0/bias", f"{hf}intermediate.dense.bias", _same),
            (f"{block}MlpBlock_{self.mlp}/Dense_1/kernel", f"{hf}output.dense.weight", _linear_to_hf),
            (f"{block}MlpBlock_{self.mlp}/Dense_1/bias", f"{hf}output.dense.bias", _same),
        ]
        for part in _PARTS:
            rows.append((f"{mha}{part}/kernel", f"{hf}attention.attention.{part}.weight", _heads_to_hf))
            rows.append((f"{mha}{part}/bias", f"{hf}attention.attention.{part}.bias", _bias_to_hf))
        return rows

    def top(self):
        p = self.prefix
        return [
            (f"{p}embedding/kernel", "embeddings.patch_embeddings.projection.weight", _conv_to_hf),
            (f"{p}embedding/bias", "embeddings.patch_embeddings.projection.bias", _same),
            (f"{p}cls", "embeddings.cls_token", _same),
            (f"{p}{self.position}", "embeddings.position_embeddings", _same),
            (f"{p}Transformer/encoder_norm/scale", "layernorm.weight", _same),
            (f"{p}Transformer/encoder_norm/bias", "layernorm.bias", _same),
            (f"{p}head/kernel", "classifier.weight", _linear_to_hf),
            (f"{p}head/bias", "classifier.bias", _same),
        ]

    def depth(self, state):
        if self.scanned:
            return np.shape(state[f"{self.block(0)}LayerNorm_0/scale"])[0]
        return sum(1 for name in state if name.startswith(f"{self.prefix}Transformer/encoderblock_") and name.endswith("LayerNorm_0/scale"))


def read_npz(path):
    """The arrays of an `.npz` file (never unpickled: `allow_pickle=False`), name -> array.

    Raises:
        ValueError: naming the file when it is not a readable `.npz` archive.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"Could not read {path} as an .npz file of arrays: {e}") from None


def _check_supported(state, names):
    p = names.prefix
    problems = []
    if f"{p}embedding/kernel" not in state:
        problems.append("no embedding/kernel (not a ViT parameter file)")
    if f"{p}cls" not in state:
        problems.append("no class token 'cls' (global average pooling, pool_type='gap')")
    if f"{p}{names.position}" not in state:
        problems.append(f"no stored position embeddings {names.position!r} (fixed sin-cos ones)")
    for part, meaning in (("MAPHead_0/", "a MAP head"), ("pre_logits/", "a pre_logits representation layer")):
        if any(name.startswith(p + part) for name in state):
            problems.append(meaning)
    if problems:
        raise ValueError(
            "Expected a Google ViT .npz with a class token, stored position embeddings and a linear head. Received "
            f"a file with {'; '.join(problems)}, which keras_vit's models do not run."
        )


def npz_to_hf(state):
    """A Google ViT `.npz` parameter dict as the Hugging Face state dict `keras_vit.conversion` loads.

    Raises:
        ValueError: for a model keras_vit does not run (see the module docstring), or
            parameters with no keras_vit weight, named.
    """
    names = _Names(state)
    _check_supported(state, names)
    hf, used = {}, set()
    rows = [(n, h, f, None) for n, h, f in names.top()]
    for i in range(names.depth(state)):
        rows += [(n, h, f, i if names.scanned else None) for n, h, f in names.table(i)]
    for name, hf_name, to_hf, index in rows:
        if name in state:
            array = np.asarray(state[name], dtype="float32")
            hf[hf_name] = to_hf(array if index is None else array[index])
            used.add(name)
    unused = sorted(set(state) - used)
    if unused:
        raise ValueError(f"Expected Google ViT parameter names. Received names with no keras_vit weight: {unused[:20]}")
    return hf


def config_from_npz(state):
    """Config fields and model class name of a Google ViT `.npz` parameter dict, from its shapes.

    Returns:
        (dict of `ViTConfig` fields, class name): patch size, channels and width from
        `embedding/kernel`, heads from the query kernel (width, heads, head width), depth,
        MLP width, the image size from the position-embedding grid, `num_labels` from
        `head` (`ViTForImageClassification`; without a head `ViTModel`).

    Raises:
        ValueError: for a model keras_vit does not run, or position embeddings that are
            not a square grid.
    """
    names = _Names(state)
    _check_supported(state, names)
    p, block = names.prefix, names.block(0)
    patch_h, patch_w, channels, width = np.shape(state[f"{p}embedding/kernel"])
    query = np.shape(state[f"{block}MultiHeadDotProductAttention_{names.attention}/query/kernel"])[-3:]
    grid = np.shape(state[f"{p}{names.position}"])[-2] - 1
    side = math.isqrt(grid)
    if side * side != grid:
        raise ValueError(f"Expected position embeddings of a square patch grid. Received: {grid} patch positions")
    num_labels = np.shape(state[f"{p}head/kernel"])[-1] if f"{p}head/kernel" in state else 0
    fields = dict(
        model_type="vit",
        hidden_size=int(width),
        num_hidden_layers=int(names.depth(state)),
        num_attention_heads=int(query[-2]),
        intermediate_size=int(np.shape(state[f"{block}MlpBlock_{names.mlp}/Dense_0/kernel"])[-1]),
        hidden_act="gelu",
        layer_norm_eps=TIMM_LAYER_NORM_EPS,
        image_size=[side * int(patch_h), side * int(patch_w)] if patch_h != patch_w else side * int(patch_h),
        patch_size=[int(patch_h), int(patch_w)] if patch_h != patch_w else int(patch_h),
        num_channels=int(channels),
        qkv_bias=True,
        num_labels=int(num_labels),
    )
    return fields, "ViTForImageClassification" if num_labels else "ViTModel"


def to_npz_arrays(model):
    """The model's weights as a Google ViT `.npz` parameter dict (the ViT paper's names).

    Raises:
        ValueError: for a model without query/key/value biases (Flax's attention has them)
            or with a distillation token (Google's ViT has none).
    """
    config = model.config
    if not config.qkv_bias:
        raise ValueError("Expected qkv_bias=True: Google's ViT attention has query/key/value biases. Received: qkv_bias=False")
    hf = {}
    for name, array in to_hf_state_dict(model).items():
        for prefix in ENCODER_PREFIXES:
            name = name.removeprefix(prefix)
        hf[name.replace("cls_classifier.", "classifier.")] = array
    if "embeddings.distillation_token" in hf:
        raise ValueError(f"Expected a ViT without a distillation token: Google's ViT has none. Received: {type(model).__name__}")
    names = _Names({"embedding/kernel": None})
    heads = config.num_attention_heads
    head_width = config.hidden_size // heads
    from_hf = {
        _conv_to_hf: lambda w: np.transpose(w, (2, 3, 1, 0)),
        _linear_to_hf: np.transpose,
        _heads_to_hf: lambda w: w.T.reshape(w.shape[1], heads, head_width),
        _out_to_hf: lambda w: w.T.reshape(heads, head_width, w.shape[0]),
        _bias_to_hf: lambda b: b.reshape(heads, head_width),
        _same: lambda x: x,
    }
    rows = names.top() + [row for i in range(config.num_hidden_layers) for row in names.table(i)]
    return {name: np.ascontiguousarray(from_hf[to_hf](hf[hf_name])) for name, hf_name, to_hf in rows if hf_name in hf}


def save_npz(model, path):
    """Writes the model's weights to `path` as a Google ViT `.npz` (timm's `_load_weights` reads it); returns `path`."""
    from keras_vit.atomic import atomic_path

    arrays = to_npz_arrays(model)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return path
