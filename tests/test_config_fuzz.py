"""Property tests: any valid config survives JSON; any invalid field value gives ValueError, never a crash."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_vit import DeiTConfig, ViTConfig
from keras_vit.layers.activations import ACTIVATIONS

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def valid_configs(draw):
    heads = draw(st.integers(1, 16))
    patch = draw(st.integers(1, 32))
    grid = draw(st.tuples(st.integers(1, 16), st.integers(1, 16)))
    labels = draw(st.integers(0, 20))
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
        id2label={i: draw(st.text(min_size=1, max_size=8)) for i in range(labels)},
    )


@FUZZ
@given(valid_configs())
def test_valid_configs_round_trip_through_json(config):
    restored = type(config).from_dict(json.loads(config.to_json_string()))
    assert restored == config
    assert restored.num_labels == config.num_labels and restored.num_patches == config.num_patches


FIELDS = ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
          "hidden_dropout_prob", "layer_norm_eps", "image_size", "patch_size", "num_channels", "qkv_bias",
          "encoder_stride", "pooler_act", "num_labels"]
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10, 0), st.floats(allow_nan=True), st.text(max_size=5),
                 st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


@FUZZ
@given(st.sampled_from(FIELDS), JUNK)
def test_invalid_field_values_raise_value_error_naming_the_field(field, value):
    try:
        ViTConfig(**{field: value})
    except ValueError as error:
        assert field in str(error) or "image_size" in str(error) or "divisible" in str(error)
    else:  # some junk is valid for some fields (e.g. a probability of 0.5, num_labels=None)
        assert ViTConfig(**{field: value}).to_dict()
