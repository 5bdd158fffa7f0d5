"""Published ViT and DeiT sizes, one table.

Each entry names a Hugging Face Hub checkpoint id (without organisation) and the fields
that differ from the `ViTConfig` defaults. Sizes follow Dosovitskiy et al. 2021, Table 1
(Base/Large/Huge), Steiner et al. 2021 "How to train your ViT" (Tiny/Small) and
Touvron et al. 2021, Table 1 (DeiT tiny/small/base).
"""

_WIDTHS = {
    # name: (hidden_size, num_hidden_layers, num_attention_heads, intermediate_size)
    "tiny": (192, 12, 3, 768),
    "small": (384, 12, 6, 1536),
    "base": (768, 12, 12, 3072),
    "large": (1024, 24, 16, 4096),
    "huge": (1280, 32, 16, 5120),
}

# preset name: (model_type, width, patch_size, image_size)
_TABLE = {
    "vit-tiny-patch16-224": ("vit", "tiny", 16, 224),
    "vit-tiny-patch16-384": ("vit", "tiny", 16, 384),
    "vit-small-patch16-224": ("vit", "small", 16, 224),
    "vit-small-patch16-384": ("vit", "small", 16, 384),
    "vit-small-patch32-224": ("vit", "small", 32, 224),
    "vit-small-patch32-384": ("vit", "small", 32, 384),
    "vit-base-patch16-224": ("vit", "base", 16, 224),
    "vit-base-patch16-384": ("vit", "base", 16, 384),
    "vit-base-patch32-224": ("vit", "base", 32, 224),
    "vit-base-patch32-384": ("vit", "base", 32, 384),
    "vit-large-patch16-224": ("vit", "large", 16, 224),
    "vit-large-patch16-384": ("vit", "large", 16, 384),
    "vit-large-patch32-224": ("vit", "large", 32, 224),
    "vit-large-patch32-384": ("vit", "large", 32, 384),
    "vit-huge-patch14-224": ("vit", "huge", 14, 224),
    "deit-tiny-patch16-224": ("deit", "tiny", 16, 224),
    "deit-small-patch16-224": ("deit", "small", 16, 224),
    "deit-base-patch16-224": ("deit", "base", 16, 224),
    "deit-base-patch16-384": ("deit", "base", 16, 384),
    "deit-tiny-distilled-patch16-224": ("deit", "tiny", 16, 224),
    "deit-small-distilled-patch16-224": ("deit", "small", 16, 224),
    "deit-base-distilled-patch16-224": ("deit", "base", 16, 224),
    "deit-base-distilled-patch16-384": ("deit", "base", 16, 384),
}

PRESETS = tuple(_TABLE)


def preset_fields(name, model_type=None):
    """Returns the config fields of preset `name`.

    Args:
        name: str, a key of `PRESETS`, e.g. `"vit-base-patch16-224"`.
        model_type: optional str (`"vit"` or `"deit"`) the preset must belong to.

    Raises:
        ValueError: naming `name` and the valid choices.
    """
    choices = [k for k, v in _TABLE.items() if model_type in (None, v[0])]
    if name not in choices:
        raise ValueError(f"Expected a preset name, one of {choices}. Received: name={name!r}")
    _, width, patch_size, image_size = _TABLE[name]
    hidden_size, layers, heads, intermediate = _WIDTHS[width]
    return {
        "hidden_size": hidden_size,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": intermediate,
        "patch_size": patch_size,
        "image_size": image_size,
        "encoder_stride": patch_size,
    }
