"""timm's ViT/DeiT state dicts (`blocks.0.attn.qkv.weight`, `cls_token`, `head_dist`) in and out.

timm (`timm/models/vision_transformer.py`, `deit.py`) and the original DeiT releases (the
same names inside `{"model": ...}`) store a `VisionTransformer` with PyTorch layouts. This
module is their adapter to the Hugging Face state dict that `keras_vit.conversion` maps:

- one table renames timm's modules to Hugging Face's, per block (`blocks.{i}.mlp.fc1` ->
  `encoder.layer.{i}.intermediate.dense`);
- timm's fused `qkv` is split into query/key/value rows (our `qkv` kernel fuses them again);
- `head` is the `classifier`, or with `head_dist` the `cls_classifier` beside the
  `distillation_classifier` (`DeiTForImageClassificationWithTeacher`); timm has no pooler;
- variants this library's model cannot run (global average pooling with `fc_norm`, no
  class token, register tokens, layer scale, q/k norm, a pre-norm, attention pooling) are
  refused with an error naming the tensors that show them.

timm's state dict does not say how many attention heads split the width, so the config
built from the shapes takes them from timm's named widths (`NUM_HEADS_BY_WIDTH`), from a
timm `config.json`'s `model_args`, or from the caller.
"""

import logging
import math
import re

import numpy as np

from keras_vit.conversion import ENCODER_PREFIXES, to_hf_state_dict

logger = logging.getLogger("keras_vit")

# timm's LayerNorm epsilon (`partial(nn.LayerNorm, eps=1e-6)`).
TIMM_LAYER_NORM_EPS = 1e-6
# Heads of timm's named ViT widths (vit_tiny 192/3, vit_small 384/6, vit_medium 512/8,
# vit_base 768/12, vit_large 1024/16, vit_huge 1280/16, vit_giant 1408/16).
NUM_HEADS_BY_WIDTH = {192: 3, 256: 4, 384: 6, 512: 8, 640: 10, 768: 12, 1024: 16, 1280: 16, 1408: 16}

# timm name -> Hugging Face name; `{i}` is the block index.
_NAMES = (
    ("cls_token", "embeddings.cls_token"),
    ("dist_token", "embeddings.distillation_token"),
    ("pos_embed", "embeddings.position_embeddings"),
    ("patch_embed.proj.weight", "embeddings.patch_embeddings.projection.weight"),
    ("patch_embed.proj.bias", "embeddings.patch_embeddings.projection.bias"),
    ("blocks.{i}.norm1.weight", "encoder.layer.{i}.layernorm_before.weight"),
    ("blocks.{i}.norm1.bias", "encoder.layer.{i}.layernorm_before.bias"),
    ("blocks.{i}.attn.proj.weight", "encoder.layer.{i}.attention.output.dense.weight"),
    ("blocks.{i}.attn.proj.bias", "encoder.layer.{i}.attention.output.dense.bias"),
    ("blocks.{i}.norm2.weight", "encoder.layer.{i}.layernorm_after.weight"),
    ("blocks.{i}.norm2.bias", "encoder.layer.{i}.layernorm_after.bias"),
    ("blocks.{i}.mlp.fc1.weight", "encoder.layer.{i}.intermediate.dense.weight"),
    ("blocks.{i}.mlp.fc1.bias", "encoder.layer.{i}.intermediate.dense.bias"),
    ("blocks.{i}.mlp.fc2.weight", "encoder.layer.{i}.output.dense.weight"),
    ("blocks.{i}.mlp.fc2.bias", "encoder.layer.{i}.output.dense.bias"),
    ("norm.weight", "layernorm.weight"),
    ("norm.bias", "layernorm.bias"),
    ("head.weight", "classifier.weight"),
    ("head.bias", "classifier.bias"),
    ("head_dist.weight", "distillation_classifier.weight"),
    ("head_dist.bias", "distillation_classifier.bias"),
)
# timm's fused projection <-> Hugging Face's three (rows of the PyTorch weight: q, k, v).
_QKV = ("blocks.{i}.attn.qkv.{kind}", "encoder.layer.{i}.attention.attention.{part}.{kind}")
_PARTS = ("query", "key", "value")
# Tensors of timm variants the model cannot run, and what they mean.
_UNSUPPORTED = (
    ("fc_norm.", "global average pooling with fc_norm (global_pool='avg')"),
    ("reg_token", "register tokens (reg_tokens > 0)"),
    (".ls1.", "layer scale (init_values)"),
    (".ls2.", "layer scale (init_values)"),
    (".q_norm.", "q/k normalisation (qk_norm=True)"),
    (".k_norm.", "q/k normalisation (qk_norm=True)"),
    ("norm_pre.", "a pre-norm after the embeddings (pre_norm=True)"),
    ("attn_pool.", "attention pooling (global_pool='map')"),
    (".attn.norm.", "a norm inside attention (scale_attn_norm=True)"),
    (".mlp.norm.", "a norm inside the MLP (scale_mlp_norm=True)"),
)


def _pattern(template):
    return re.compile("^" + re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)") + "$")


_TO_HF = [(_pattern(timm), hf) for timm, hf in _NAMES]
_TO_TIMM = [(_pattern(hf), timm) for timm, hf in _NAMES]
_QKV_TIMM = re.compile(r"^blocks\.(?P<i>\d+)\.attn\.qkv\.(?P<kind>weight|bias)$")
_QKV_HF = re.compile(r"^encoder\.layer\.(?P<i>\d+)\.attention\.attention\.(?P<part>query|key|value)\.(?P<kind>weight|bias)$")


def is_timm_state_dict(state_dict):
    """True if `state_dict` names its tensors as timm's ViT (`patch_embed.proj.weight`, `blocks.N.`)."""
    return "patch_embed.proj.weight" in state_dict or any(name.startswith("blocks.0.") for name in state_dict)


def _rename(name, table):
    for pattern, template in table:
        match = pattern.match(name)
        if match:
            return template.format(**match.groupdict())
    return None


def timm_to_hf(state_dict):
    """A timm ViT/DeiT state dict as the Hugging Face state dict `keras_vit.conversion` loads.

    Args:
        state_dict: dict name -> array, timm names and PyTorch layouts.

    Returns:
        dict name -> array, Hugging Face names (no `vit.`/`deit.` prefix), same layouts.

    Raises:
        ValueError: naming the tensors of a timm variant the model cannot run (see the
            module docstring), or tensors with no Hugging Face counterpart.
    """
    unsupported = sorted({meaning for name in state_dict for part, meaning in _UNSUPPORTED if part in f".{name}"})
    if "cls_token" not in state_dict and "patch_embed.proj.weight" in state_dict:
        unsupported.insert(0, "no class token (class_token=False)")
    if unsupported:
        raise ValueError(
            "Expected a timm ViT/DeiT with a class token, a LayerNorm'd class-token head and plain blocks. "
            f"Received a checkpoint with {', '.join(unsupported)}, which keras_vit's models do not run."
        )
    hf, unknown = {}, []
    distilled = "head_dist.weight" in state_dict
    for name, array in state_dict.items():
        qkv = _QKV_TIMM.match(name)
        if qkv:
            for part, rows in zip(_PARTS, np.split(np.asarray(array), 3, axis=0)):
                hf[_QKV[1].format(i=qkv["i"], part=part, kind=qkv["kind"])] = rows
            continue
        new = _rename(name, _TO_HF)
        if new is None:
            unknown.append(name)
            continue
        if distilled and new.startswith("classifier."):
            new = "cls_" + new
        hf[new] = array
    if unknown:
        raise ValueError(f"Expected timm ViT/DeiT tensor names. Received names with no keras_vit weight: {sorted(unknown)}")
    return hf


def hf_to_timm(state_dict):
    """A Hugging Face ViT/DeiT state dict (with or without `vit.`/`deit.`) as timm's state dict.

    The pooler, the masked-image-modeling decoder and mask token have no place in timm's
    `VisionTransformer`: they are left out, with a warning.
    """
    timm, dropped, qkv = {}, [], {}
    for name, array in state_dict.items():
        for prefix in ENCODER_PREFIXES:
            name = name.removeprefix(prefix)
        name = name.replace("cls_classifier.", "classifier.")
        match = _QKV_HF.match(name)
        if match:
            qkv.setdefault((match["i"], match["kind"]), {})[match["part"]] = array
            continue
        new = _rename(name, _TO_TIMM)
        if new is None:
            dropped.append(name)
        else:
            timm[new] = array
    for (i, kind), parts in qkv.items():
        timm[_QKV[0].format(i=i, kind=kind)] = np.concatenate([parts[p] for p in _PARTS], axis=0)
    if dropped:
        logger.warning("timm's VisionTransformer has no place for these weights; not written: %s", sorted(dropped))
    return timm


def _num_heads(width, num_attention_heads, hub_config):
    if num_attention_heads is not None:
        return num_attention_heads
    model_args = (hub_config or {}).get("model_args") or {}
    if isinstance(model_args.get("num_heads"), int):
        return model_args["num_heads"]
    if width in NUM_HEADS_BY_WIDTH:
        return NUM_HEADS_BY_WIDTH[width]
    raise ValueError(
        f"Cannot tell the number of attention heads of a timm checkpoint of width {width} (timm's state dict does "
        f"not store it; known widths: {NUM_HEADS_BY_WIDTH}). Pass num_attention_heads=... to from_pretrained "
        "(--num-attention-heads on the command line)."
    )


def config_from_timm(state_dict, hub_config=None, num_attention_heads=None):
    """Config fields and model class name of a timm ViT/DeiT state dict, read from its shapes.

    Args:
        state_dict: dict name -> array, timm names (`timm_to_hf` checks the variant).
        hub_config: the `config.json` of a timm Hub checkpoint (`architecture`,
            `num_classes`, `model_args`, `pretrained_cfg`), or None.
        num_attention_heads: int or None; None takes them from `hub_config` or from
            `NUM_HEADS_BY_WIDTH`.

    Returns:
        (dict of `ViTConfig`/`DeiTConfig` fields with `model_type`, class name): depth,
        width, MLP width, patch size, channels and qkv bias from the tensors' shapes, the
        image size from the position-embedding grid, `num_labels` from `head`; a
        `dist_token` gives `DeiTForImageClassificationWithTeacher`.

    Raises:
        ValueError: when the heads are unknown (see `NUM_HEADS_BY_WIDTH`), or the
            position embeddings are not a square grid.
    """
    hub_config = hub_config or {}
    width, channels, patch_h, patch_w = np.shape(state_dict["patch_embed.proj.weight"])
    depth = 1 + max(int(m["i"]) for m in map(_QKV_TIMM.match, state_dict) if m)
    distilled = "dist_token" in state_dict
    prefix = 1 + distilled
    positions = np.shape(state_dict["pos_embed"])[1]
    grid = positions - prefix
    side = math.isqrt(grid)
    if side * side != grid:
        if math.isqrt(positions) ** 2 == positions:
            raise ValueError(
                "Expected timm position embeddings for the class token too. Received: one per patch only "
                f"({positions}; no_embed_class=True, as DeiT III), which keras_vit's models do not run."
            )
        raise ValueError(f"Expected timm position embeddings of a square patch grid. Received: {grid} patch positions")
    num_labels = np.shape(state_dict["head.weight"])[0] if "head.weight" in state_dict else 0
    fields = dict(
        model_type="deit" if distilled or str(hub_config.get("architecture", "")).startswith("deit") else "vit",
        hidden_size=int(width),
        num_hidden_layers=depth,
        num_attention_heads=_num_heads(int(width), num_attention_heads, hub_config),
        intermediate_size=int(np.shape(state_dict["blocks.0.mlp.fc1.weight"])[0]),
        hidden_act="gelu",
        layer_norm_eps=TIMM_LAYER_NORM_EPS,
        image_size=[side * int(patch_h), side * int(patch_w)] if patch_h != patch_w else side * int(patch_h),
        patch_size=[int(patch_h), int(patch_w)] if patch_h != patch_w else int(patch_h),
        num_channels=int(channels),
        qkv_bias="blocks.0.attn.qkv.bias" in state_dict,
        num_labels=int(num_labels),
    )
    if distilled:
        architecture = "DeiTForImageClassificationWithTeacher"
    elif num_labels:
        architecture = f"{'DeiT' if fields['model_type'] == 'deit' else 'ViT'}ForImageClassification"
    else:
        architecture = f"{'DeiT' if fields['model_type'] == 'deit' else 'ViT'}Model"
    return fields, architecture


def timm_model_args(config):
    """The `timm.create_model` keyword arguments that build `config`'s ViT (`model_args` of timm's config.json)."""
    return dict(
        img_size=config.image_size,
        patch_size=config.patch_size,
        in_chans=config.num_channels,
        embed_dim=config.hidden_size,
        depth=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        mlp_ratio=config.intermediate_size / config.hidden_size,
        qkv_bias=config.qkv_bias,
    )


def to_timm_state_dict(model):
    """The model's weights as timm's `VisionTransformer` (or distilled DeiT) state dict (name -> float32 array)."""
    return hf_to_timm(to_hf_state_dict(model))
