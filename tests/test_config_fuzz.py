"""Property tests of the configs: valid ones survive JSON with their invariants; each invalid field value raises
ValueError naming that field and the value, exactly when the documented rule says it is invalid."""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_vit import DeiTConfig, ViTConfig
from keras_vit.layers.activations import ACTIVATIONS
from keras_vit.losses import PROBLEM_TYPES

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEFAULT = ViTConfig()  # hidden_size 768, 12 heads, image_size 224, patch_size 16


@st.composite
def valid_configs(draw):
    heads = draw(st.integers(1, 16))
    patch = draw(st.integers(1, 32))
    grid = draw(st.tuples(st.integers(1, 16), st.integers(1, 16)))
    labels = draw(st.lists(st.text(min_size=1, max_size=8), max_size=20, unique=True))
    return draw(st.sampled_from([ViTConfig, DeiTConfig]))(
        hidden_size=heads * draw(st.integers(1, 64)),
        num_attention_heads=heads,
        num_hidden_layers=draw(st.integers(1, 48)),
        intermediate_size=draw(st.integers(1, 8192)),
        hidden_act=draw(st.sampled_from(sorted(ACTIVATIONS))),
        hidden_dropout_prob=draw(st.floats(0, 0.99)),
        attention_probs_dropout_prob=draw(st.floats(0, 0.99)),
        layer_norm_eps=draw(st.floats(1e-12, 1e-3)),
        image_size=draw(st.sampled_from([[grid[0] * patch, grid[1] * patch], grid[0] * patch])),
        patch_size=patch,
        num_channels=draw(st.integers(1, 8)),
        qkv_bias=draw(st.booleans()),
        id2label=dict(enumerate(labels)),
    )


@FUZZ
@given(valid_configs())
def test_valid_configs_round_trip_through_json_with_their_invariants(config):
    text = config.to_json_string()
    restored = type(config).from_dict(json.loads(text))
    assert type(restored) is type(config) and restored == config and restored.to_json_string() == text
    assert config.hidden_size % config.num_attention_heads == 0
    (height, width), (patch_h, patch_w) = config.image_hw, config.patch_hw
    assert config.num_patches == (height // patch_h) * (width // patch_w) and height % patch_h == width % patch_w == 0
    assert config.num_labels == len(config.id2label) == len(config.label2id)
    assert all(config.label2id[name] == i for i, name in config.id2label.items())


# === One field set to an arbitrary value: rejected exactly when the documented rule says so ===
POSITIVE_INTS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "num_channels",
                 "encoder_stride")
PROBABILITIES = ("hidden_dropout_prob", "attention_probs_dropout_prob", "drop_path_rate")
POSITIVE_FLOATS = ("initializer_range", "layer_norm_eps")
SIZES = ("image_size", "patch_size")
FIELDS = [*POSITIVE_INTS, *PROBABILITIES, *POSITIVE_FLOATS, *SIZES, "hidden_act", "pooler_act", "qkv_bias",
          "num_labels", "pooler_output_size", "problem_type"]
EDGES = [None, True, False, 0, 1, -1, 0.0, 1.0, 0.5, float("nan"), 16, 224, "", "gelu", [16, 16], [16, 0], (16, 16)]
VALUES = st.one_of( st.integers(-10, 64), st.floats(allow_nan=True), st.floats(0, 1),
    st.text(max_size=5), st.sampled_from(sorted(ACTIVATIONS)), st.sampled_from(PROBLEM_TYPES),
    st.lists(st.integers(-3, 3), max_size=3), st.lists(st.sampled_from([8, 16, 32, 48]), min_size=2, max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _size_pair(value):
    """(height, width) if `value` is a positive int or a list of two, else None."""
    pair = (value, value) if _is_int(value) else tuple(value) if isinstance(value, (list, tuple)) and len(value) == 2 else ()
    return pair if pair and all(_is_int(v) and v > 0 for v in pair) else None


def _rule_broken(field, value):
    """(the field the error must name first, what it must say) when `value` breaks `field`'s rule; None if valid."""
    if field in POSITIVE_INTS or field == "pooler_output_size" and value is not None:
        if not (_is_int(value) and value > 0):
            return field, "to be a positive int"
        if field == "hidden_size" and value % DEFAULT.num_attention_heads:
            return "hidden_size", f"to be divisible by num_attention_heads. Received: hidden_size={value}, "
        if field == "num_attention_heads" and DEFAULT.hidden_size % value:
            return "hidden_size", f"to be divisible by num_attention_heads. Received: hidden_size={DEFAULT.hidden_size}, "
    elif field in PROBABILITIES + POSITIVE_FLOATS:
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if field in PROBABILITIES and not (number and 0 <= value < 1):
            return field, "to be a float in [0, 1)"
        if field in POSITIVE_FLOATS and not (number and value > 0):
            return field, "to be a finite positive float"
    elif field in SIZES:
        pair = _size_pair(value)
        if pair is None:
            return field, "to be a positive int or a pair of them"
        image, patch = (pair, DEFAULT.patch_hw) if field == "image_size" else (DEFAULT.image_hw, pair)
        if image[0] % patch[0] or image[1] % patch[1]:
            return "patch_size", "to divide image_size. Received: "
    elif field in ("hidden_act", "pooler_act"):
        if not (isinstance(value, str) and value in ACTIVATIONS):
            return field, f"to be one of {sorted(ACTIVATIONS)}"
    elif field == "qkv_bias":
        if not isinstance(value, bool):
            return field, "to be a bool"
    elif field == "num_labels":
        if value is not None and not (_is_int(value) and value >= 0):
            return field, "to be an int >= 0"
    elif field == "problem_type":
        if value is not None and value not in PROBLEM_TYPES:
            return field, f"to be None or one of {PROBLEM_TYPES}"
    return None


def _check_field(field, value):
    # Sizes are stored, and shown in errors, as lists (as in config.json).
    shown = list(value) if field in SIZES and isinstance(value, tuple) else value
    broken = _rule_broken(field, value)
    if broken is None:
        config = ViTConfig(**{field: value})
        defaults = {"num_labels": 2, "pooler_output_size": config.hidden_size}
        assert getattr(config, field) == (defaults[field] if value is None and field in defaults else shown)
        assert ViTConfig.from_dict(json.loads(config.to_json_string())) == config
        return
    named, rule = broken
    with pytest.raises(ValueError) as info:
        ViTConfig(**{field: value})
    message = str(info.value)
    assert type(info.value) is ValueError and message.startswith(f"Expected {named} {rule}"), message
    assert f"{field}={shown!r}" in message, message


@pytest.mark.parametrize("field", FIELDS)
def test_edge_values_are_rejected_exactly_when_a_rule_is_broken(field):
    for value in EDGES:
        _check_field(field, value)


@pytest.mark.parametrize("field", FIELDS)
@FUZZ
@given(value=VALUES)
def test_arbitrary_values_are_rejected_exactly_when_a_rule_is_broken(field, value):
    _check_field(field, value)


@FUZZ
@given(st.integers(1, 64), st.integers(1, 16))
def test_hidden_size_must_split_into_the_heads(hidden_size, heads):
    if hidden_size % heads == 0:
        assert ViTConfig(hidden_size=hidden_size, num_attention_heads=heads).hidden_size // heads >= 1
        return
    with pytest.raises(ValueError) as info:
        ViTConfig(hidden_size=hidden_size, num_attention_heads=heads)
    assert str(info.value) == (
        "Expected hidden_size to be divisible by num_attention_heads. "
        f"Received: hidden_size={hidden_size}, num_attention_heads={heads}"
    )


@FUZZ
@given(st.tuples(st.integers(1, 64), st.integers(1, 64)), st.tuples(st.integers(1, 16), st.integers(1, 16)))
def test_patches_must_tile_the_image(image, patch):
    if image[0] % patch[0] == 0 and image[1] % patch[1] == 0:
        config = ViTConfig(image_size=list(image), patch_size=list(patch))
        assert config.grid_size == (image[0] // patch[0], image[1] // patch[1])
        return
    with pytest.raises(ValueError) as info:
        ViTConfig(image_size=list(image), patch_size=list(patch))
    assert str(info.value) == (
        f"Expected patch_size to divide image_size. Received: image_size={list(image)}, patch_size={list(patch)}"
    )


@pytest.mark.parametrize("config_class, other", [(ViTConfig, DeiTConfig), (DeiTConfig, ViTConfig)])
def test_from_dict_rejects_the_other_model_type(config_class, other):
    with pytest.raises(ValueError, match=f"Expected model_type='{config_class.model_type}' for {config_class.__name__}. "
                                         f"Received: model_type='{other.model_type}'"):
        config_class.from_dict(other().to_dict())
