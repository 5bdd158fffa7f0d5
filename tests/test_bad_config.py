"""Bad configs: every bad field value, config.json file and unserialisable extra is a ValueError naming it."""

import json
import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_vit
from keras_vit import DeiTConfig, ViTConfig
from keras_vit.config import read_config
from keras_vit.config import config_class_for
from keras_vit.layers.activations import ACTIVATIONS
from tests.conftest import TINY, tiny_config
from tests.disk import peak_rss_mib, snapshot

NAN, INF = float("nan"), float("inf")

# (field, bad value, text the message must contain; None: "field=repr(value)").
BAD_FIELDS = [
    *[("hidden_size", v, None) for v in (0, -32, 32.0, "32", True, None, NAN)],
    *[("num_hidden_layers", v, None) for v in (0, -1, 2.0, "2", False, INF)],
    *[("num_attention_heads", v, None) for v in (0, -4, 4.0, "4", None)],
    ("num_attention_heads", 3, "hidden_size=32, num_attention_heads=3"),
    *[("intermediate_size", v, None) for v in (0, -37, 37.5, "37", [37])],
    *[("num_channels", v, None) for v in (0, -3, 3.0, True)],
    *[("encoder_stride", v, None) for v in (0, -8, 8.0, "8")],
    *[("pooler_output_size", v, None) for v in (0, -1, 2.5, "32", True)],
    *[("hidden_dropout_prob", v, None) for v in (NAN, INF, -INF, -0.1, 1.0, 1.5, "0.1", True, None, [0.1])],
    *[("attention_probs_dropout_prob", v, None) for v in (NAN, INF, -0.5, 1, "0")],
    *[("initializer_range", v, None) for v in (NAN, INF, 0, 0.0, -0.02, "0.02", True, None)],
    *[("layer_norm_eps", v, None) for v in (NAN, INF, -INF, 0, -1e-12, "1e-12", None, False, [1e-12])],
    *[("image_size", v, None) for v in (0, -32, True, "32", 32.0, None)],
    *[("image_size", v, f"image_size={list(v)!r}") for v in ([32], [32, 32, 32], [32, 0], [32.0, 32], [32, "32"], [])],
    ("image_size", 36, "image_size=36, patch_size=8"),
    ("image_size", [32, 36], "image_size=[32, 36], patch_size=8"),
    *[("patch_size", v, None) for v in (0, -8, "8", 8.0, None)],
    ("patch_size", 7, "image_size=32, patch_size=7"),
    ("patch_size", [8], "patch_size=[8]"),
    *[("hidden_act", v, None) for v in ("gelu2", "GELU", "", 3, None, ["gelu"])],
    *[("pooler_act", v, None) for v in ("nope", "Tanh", 0, ["tanh"])],
    *[("qkv_bias", v, None) for v in ("true", 1, 0, None, 1.0)],
    *[("num_labels", v, None) for v in (-1, 2.5, "3", True, NAN)],
    ("id2label", ["cat", "dog"], "id2label=['cat', 'dog']"),
    ("id2label", "cat", "id2label='cat'"),
    ("id2label", {"a": "cat"}, "'a': 'cat'"),
    ("id2label", {"0.5": "cat"}, "'0.5': 'cat'"),
    ("id2label", {" 0": "cat"}, "' 0': 'cat'"),
    ("id2label", {"0": 1}, "'0': 1"),
    ("id2label", {"0": None}, "'0': None"),
    ("id2label", {"0": ["cat"]}, "'0': ['cat']"),
    ("id2label", {1.0: "cat"}, "1.0: 'cat'"),
    ("id2label", {True: "cat"}, "True: 'cat'"),
    ("id2label", {"1": "cat"}, "Received: [1]"),
    ("id2label", {"0": "cat", "2": "dog"}, "Received: [0, 2]"),
    ("id2label", {"-1": "cat"}, "Received: [-1]"),
    ("id2label", {"0": "cat", "00": "dog"}, "distinct ints. Received: ['0', '00']"),
    ("label2id", ["cat"], "label2id=['cat']"),
    ("label2id", {"cat": "x"}, "label2id={'cat': 'x'}"),
    ("label2id", {"cat": 1.5}, "label2id={'cat': 1.5}"),
    ("label2id", {"cat": None}, "label2id={'cat': None}"),
    ("architectures", "ViTModel", "architectures='ViTModel'"),
    ("architectures", [1], "architectures=[1]"),
    ("architectures", {"ViTModel": 1}, "architectures={'ViTModel': 1}"),
]


@pytest.mark.parametrize(
    "field, value, message", BAD_FIELDS, ids=[f"{f}={v!r}"[:40] for f, v, _ in BAD_FIELDS]
)
def test_bad_field_value_is_a_value_error_naming_it(field, value, message):
    config = {**TINY, "num_labels": None, field: value}
    with pytest.raises(ValueError) as error:
        ViTConfig(**config)
    assert (message or f"{field}={value!r}") in str(error.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_labels=2, id2label={"0": "cat"}), "num_labels=2"),
        (dict(num_labels=0, id2label={"0": "cat"}), "num_labels=0"),
    ],
)
def test_num_labels_must_match_id2label(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ViTConfig(**{**TINY, **kwargs})


@pytest.mark.parametrize("cls", [ViTConfig, DeiTConfig])
def test_unknown_keyword_is_a_type_error_naming_the_closest_field(cls):
    with pytest.raises(TypeError, match=r"'num_hiden_layers' \(did you mean 'num_hidden_layers'\?\)"):
        cls(num_hiden_layers=2, hidden_size=64, num_attention_heads=4)
    with pytest.raises(TypeError, match=r"'resolution_xyz'") as error:
        cls.from_preset("vit-base-patch16-224" if cls is ViTConfig else "deit-tiny-patch16-224", resolution_xyz=1)
    assert "did you mean" not in str(error.value)
    with pytest.raises(TypeError, match=r"'hiden_size' \(did you mean 'hidden_size'\?\)"):
        cls(**TINY).replace(hiden_size=64)


def test_replace_num_labels_keeps_user_given_labels_or_raises():
    config = ViTConfig(**{**TINY, "num_labels": None, "id2label": {0: "cat", 1: "dog"}})
    with pytest.raises(ValueError, match=r"Expected id2label .* class names \['cat', 'dog'\]. Received: num_labels=3"):
        config.replace(num_labels=3)
    assert config.replace(num_labels=2).id2label == {0: "cat", 1: "dog"}
    assert config.replace(num_labels=3, id2label={0: "a", 1: "b", 2: "c"}).label2id == {"a": 0, "b": 1, "c": 2}


# === config.json files ===
BAD_FILES = [
    (b'["hidden_size", 32]', "Received: a JSON list"),
    (b'"vit"', "Received: a JSON str"),
    (b"32", "Received: a JSON int"),
    (b"null", "Received: a JSON NoneType"),
    (b"{not json", "to hold JSON"),
    (b"", "to hold JSON"),
    (b"\xff\xfe{}", "to hold UTF-8 JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nested less deeply"),
    (b'{"model_type": ["vit"]}', "model_type=['vit']"),
    (b'{"model_type": 1}', "model_type=1"),
    (b'{"model_type": "bert"}', "model_type='bert'"),
    (b'{"model_type": "vit", "layer_norm_eps": NaN}', "layer_norm_eps=nan"),
    (b'{"model_type": "vit", "layer_norm_eps": Infinity}', "layer_norm_eps=inf"),
    (b'{"model_type": "vit", "hidden_dropout_prob": -Infinity}', "hidden_dropout_prob=-inf"),
    (b'{"model_type": "vit", "id2label": {"zero": "cat"}}', "'zero': 'cat'"),
    (b'{"model_type": "vit", "id2label": [["0", "cat"]]}', "id2label=[['0', 'cat']]"),
    (b'{"model_type": "vit", "label2id": {"cat": "zero"}}', "label2id={'cat': 'zero'}"),
    (b'{"model_type": "vit", "self": 1}', "Expected"),  # must not be a TypeError
]


@pytest.mark.parametrize("content, message", BAD_FILES, ids=[c[:30].decode("latin-1") for c, _ in BAD_FILES])
def test_bad_config_json_is_a_value_error_naming_it(tmp_path, content, message):
    (tmp_path / "config.json").write_bytes(content)
    before = snapshot(tmp_path)
    if message == "Expected":  # an unknown field named like an argument is kept, not a crash
        assert read_config(tmp_path).extra == {"self": 1}
    else:
        with pytest.raises(ValueError) as error:
            read_config(tmp_path)
        assert message in str(error.value)
        with pytest.raises(ValueError):
            keras_vit.ViTModel.from_pretrained(tmp_path)
    assert snapshot(tmp_path) == before


# === save_pretrained: the config is serialised before anything changes ===
BAD_EXTRAS = [
    (np.float32(1.5), "np.float32(1.5)", "numpy.float32"),
    (np.int64(3), "np.int64(3)", "numpy.int64"),
    (np.arange(2), "array([0, 1])", "numpy.ndarray"),
    ({1, 2}, "{1, 2}", "builtins.set"),
    (b"bytes", "b'bytes'", "builtins.bytes"),
    (NAN, "nan", "finite number"),
    (INF, "inf", "finite number"),
    ({"nested": [1, np.float64(2.0)]}, "['extra_field']['nested'][1]", "numpy.float64"),
    ({1: "a"}, "key 1 (int)", "keys of config['extra_field']"),
    (object, "<class 'object'>", "builtins.type"),
]


@pytest.fixture(scope="module")
def tiny_classifier():
    return keras_vit.ViTForImageClassification(tiny_config(keras_vit.ViTForImageClassification))


@pytest.mark.parametrize("value, shown, kind", BAD_EXTRAS, ids=[s for _, s, _ in BAD_EXTRAS])
def test_unserialisable_extra_field_fails_before_anything_changes(tmp_path, tiny_classifier, value, shown, kind):
    model = tiny_classifier
    model.save_pretrained(tmp_path)
    (tmp_path / "README.md").write_text("model card")
    before = snapshot(tmp_path)
    model.config.extra["extra_field"] = value
    try:
        with pytest.raises(ValueError) as error:
            model.save_pretrained(tmp_path)
        with pytest.raises(ValueError):
            model.save_pretrained(tmp_path / "new")
    finally:
        del model.config.extra["extra_field"]
    assert "config['extra_field']" in str(error.value)
    assert shown in str(error.value) and kind in str(error.value)
    assert snapshot(tmp_path) == before  # same bytes, no temporary left, "new" not created


# === Property-based: an oracle says which values are valid; the config agrees ===
def _positive_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _finite(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _pair(v):
    if _positive_int(v):
        return (v, v)
    if isinstance(v, list) and len(v) == 2 and all(_positive_int(x) for x in v):
        return tuple(v)
    return None


def _valid(field, v):
    """Whether ViTConfig(**{**TINY, field: v}) is valid (TINY: hidden 32, 4 heads, 32 px, patch 8)."""
    if field == "hidden_size":
        return _positive_int(v) and v % 4 == 0
    if field == "num_attention_heads":
        return _positive_int(v) and 32 % v == 0
    if field in ("num_hidden_layers", "intermediate_size", "num_channels", "encoder_stride", "pooler_output_size"):
        return _positive_int(v) or (field == "pooler_output_size" and v is None)
    if field in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        return _finite(v) and 0 <= v < 1
    if field in ("initializer_range", "layer_norm_eps"):
        return _finite(v) and v > 0
    if field == "image_size":
        return _pair(v) is not None and all(x % 8 == 0 for x in _pair(v))
    if field == "patch_size":
        return _pair(v) is not None and all(32 % x == 0 for x in _pair(v))
    if field in ("hidden_act", "pooler_act"):
        return isinstance(v, str) and v in ACTIVATIONS
    if field == "qkv_bias":
        return isinstance(v, bool)
    if field == "num_labels":
        return v is None or isinstance(v, int) and not isinstance(v, bool) and v >= 0
    raise AssertionError(field)


FIELDS = ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "num_channels",
          "encoder_stride", "pooler_output_size", "hidden_dropout_prob", "attention_probs_dropout_prob",
          "initializer_range", "layer_norm_eps", "image_size", "patch_size", "hidden_act", "pooler_act", "qkv_bias",
          "num_labels"]
JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-40, 40), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(sorted(ACTIVATIONS)), st.text(max_size=6), st.lists(st.integers(-8, 40), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.sampled_from(FIELDS), JSON_VALUES)
def test_fuzz_field_values_match_the_oracle(field, value):
    fields = {**TINY, field: value}
    if field == "num_labels":
        fields["id2label"] = None
    if _valid(field, value):
        config = ViTConfig(**fields)
        assert getattr(config, field) == value or field in ("pooler_output_size", "num_labels")
        assert ViTConfig.from_dict(json.loads(config.to_json_string())) == config
    else:
        with pytest.raises(ValueError) as error:
            ViTConfig(**fields)
        assert field in str(error.value) or "image_size=" in str(error.value)


@FUZZ
@given(
    st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=4)
    | st.dictionaries(st.integers(-2, 6), st.one_of(st.text(max_size=3), st.integers(), st.none()), max_size=4)
)
def test_fuzz_id2label(id2label):
    keys = [int(k) if isinstance(k, int) or re.fullmatch("-?[0-9]+", k) else None for k in id2label]
    valid = (
        None not in keys
        and sorted(keys) == list(range(len(keys)))
        and all(isinstance(v, str) for v in id2label.values())
    )
    if valid:
        config = ViTConfig(**{**TINY, "num_labels": None, "id2label": id2label})
        assert config.id2label == {int(k): v for k, v in id2label.items()}
        assert ViTConfig.from_dict(json.loads(config.to_json_string())).id2label == config.id2label
    else:
        with pytest.raises(ValueError, match="id2label"):
            ViTConfig(**{**TINY, "num_labels": None, "id2label": id2label})


@FUZZ
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=12,
))
def test_fuzz_extra_fields_save_losslessly_or_are_named(value):
    config = ViTConfig.from_dict({**TINY, "some_field": value})

    def finite(v):
        if isinstance(v, float):
            return math.isfinite(v)
        if isinstance(v, list):
            return all(map(finite, v))
        if isinstance(v, dict):
            return all(map(finite, v.values()))
        return True

    if finite(value):
        assert json.loads(config.to_json_string())["some_field"] == value
    else:
        with pytest.raises(ValueError, match=r"config\['some_field'\].*finite number"):
            config.to_json_string()


def test_valid_controls_are_accepted():
    """The checks reject only bad values: the values next to the bad ones load."""
    config = ViTConfig(**{**TINY, "num_labels": None, "layer_norm_eps": 1e-6, "hidden_dropout_prob": 0.0,
                          "id2label": {"0": "cat", "1": "dog"}, "label2id": {"cat": "0", "dog": 1},
                          "architectures": ["ViTModel"]})
    assert config.id2label == {0: "cat", 1: "dog"} and config.label2id == {"cat": 0, "dog": 1}
    assert config_class_for("deit") is DeiTConfig


# === Sizes that would allocate: refused before anything is built ===
# The reproductions of issue 33: each took tens of seconds and gigabytes before it failed.
HUGE_FIELDS = [
    ({"num_hidden_layers": 10**6}, r"num_hidden_layers <= 1024 .*Received: num_hidden_layers=1000000"),
    ({"intermediate_size": 10**8}, r"MAX_PARAMETER_BYTES.*Received: intermediate_size=100000000 gives about"),
    ({"image_size": 80000}, r"at most 1048576 patches .*Received: image_size=80000, patch_size=8"),
    ({"num_labels": 10**8}, r"num_labels <= 131072 .*Received: num_labels=100000000"),
    ({"hidden_size": 10**9}, r"MAX_PARAMETER_BYTES.*Received: hidden_size=1000000000 gives"),
    ({"hidden_size": 2**16, "num_attention_heads": 1}, r"MAX_PARAMETER_BYTES.*Received: hidden_size=65536 gives"),
    ({"image_size": 8192, "hidden_size": 8192, "num_attention_heads": 1},
     r"MAX_PARAMETER_BYTES.*Received: image_size=8192 gives"),
]


@pytest.mark.parametrize("fields, message", HUGE_FIELDS, ids=lambda v: str(v)[:40])
def test_huge_sizes_in_config_json_are_named_before_any_weight_is_built(tmp_path, fields, message):
    config = {**TINY, "model_type": "vit", **fields}
    if "num_labels" in fields:
        config.pop("num_labels")
        config["num_labels"] = fields["num_labels"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    peak = peak_rss_mib()
    with pytest.raises(ValueError, match=message):
        keras_vit.ViTForImageClassification.from_pretrained(tmp_path)
    assert peak_rss_mib() - peak < 64


def test_size_ceilings_are_module_attributes_the_user_can_raise(monkeypatch):
    from keras_vit import config as config_module

    fields = {**TINY, "intermediate_size": 2**14}
    count = config_module.parameter_count(ViTConfig(**fields))
    monkeypatch.setattr(config_module, "MAX_PARAMETER_BYTES", count * 4 - 1)
    with pytest.raises(ValueError, match=f"Received: intermediate_size=16384 gives about {count} weights"):
        ViTConfig(**fields)
    monkeypatch.setattr(config_module, "MAX_PARAMETER_BYTES", count * 4)
    assert ViTConfig(**fields).intermediate_size == 2**14
    monkeypatch.setattr(config_module, "MAX_NUM_HIDDEN_LAYERS", 1)
    with pytest.raises(ValueError, match="num_hidden_layers <= 1 "):
        ViTConfig(**TINY)


@pytest.mark.parametrize("model_cls", [keras_vit.ViTForImageClassification, keras_vit.ViTForMaskedImageModeling,
                                       keras_vit.DeiTForImageClassificationWithTeacher])
def test_parameter_count_bounds_every_model(model_cls):
    config = tiny_config(model_cls, pooler_output_size=24)
    assert model_cls(config).count_params() <= keras_vit.config.parameter_count(config)
