import json

import pytest

from keras_vit import PRESETS, DeiTConfig, ViTConfig
from keras_vit.config import config_class_for
from keras_vit.presets import preset_fields

HF_DEFAULTS = dict(
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    initializer_range=0.02,
    layer_norm_eps=1e-12,
    image_size=224,
    patch_size=16,
    num_channels=3,
    qkv_bias=True,
    encoder_stride=16,
    pooler_output_size=768,
    pooler_act="tanh",
)


@pytest.mark.parametrize("cls", [ViTConfig, DeiTConfig])
def test_defaults_equal_transformers(cls):
    import transformers

    ours = cls().to_dict()
    theirs = getattr(transformers, cls.__name__)().to_dict()
    for name, value in HF_DEFAULTS.items():
        assert ours[name] == value == theirs[name], name
    assert ours["model_type"] == theirs["model_type"]
    assert cls().num_labels == 2


@pytest.mark.parametrize("cls", [ViTConfig, DeiTConfig])
def test_config_json_round_trip_with_transformers(cls, tmp_path):
    import transformers

    theirs = getattr(transformers, cls.__name__)(
        hidden_size=48, num_attention_heads=3, id2label={0: "cat", 1: "dog", 2: "eel"}, image_size=[64, 96]
    )
    theirs.save_pretrained(tmp_path)
    ours = cls.from_json_file(tmp_path / "config.json")
    assert ours.num_labels == 3 and ours.id2label[2] == "eel" and ours.label2id["dog"] == 1
    assert ours.image_hw == (64, 96) and ours.grid_size == (4, 6)
    ours.to_json_file(tmp_path / "ours.json")
    assert json.loads((tmp_path / "ours.json").read_text()) == json.loads((tmp_path / "config.json").read_text())
    reloaded = getattr(transformers, cls.__name__).from_json_file(tmp_path / "ours.json")
    assert reloaded.id2label == theirs.id2label and reloaded.hidden_size == 48


@pytest.mark.parametrize("problem_type", ["regression", "single_label_classification", "multi_label_classification"])
def test_problem_type_round_trips_with_transformers(problem_type, tmp_path):
    import transformers

    transformers.DeiTConfig(problem_type=problem_type).save_pretrained(tmp_path)
    ours = DeiTConfig.from_json_file(tmp_path / "config.json")
    assert ours.problem_type == problem_type and DeiTConfig().problem_type is None
    ours.to_json_file(tmp_path / "ours.json")
    assert json.loads((tmp_path / "ours.json").read_text())["problem_type"] == problem_type
    assert transformers.DeiTConfig.from_json_file(tmp_path / "ours.json").problem_type == problem_type


def test_from_dict_rejects_other_model_type():
    with pytest.raises(ValueError, match="model_type='deit' for DeiTConfig. Received: model_type='deit2'"):
        DeiTConfig.from_dict({"model_type": "deit2"})
    assert config_class_for("deit") is DeiTConfig


def test_from_json_file_rejects_non_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="to hold JSON"):
        ViTConfig.from_json_file(path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(hidden_size=30, num_attention_heads=4), "hidden_size=30, num_attention_heads=4"),
        (dict(image_size=230, patch_size=16), "image_size=230, patch_size=16"),
        (dict(hidden_size=0), "hidden_size=0"),
        (dict(num_hidden_layers=-1), "num_hidden_layers=-1"),
        (dict(intermediate_size=2.5), "intermediate_size=2.5"),
        (dict(num_channels=0), "num_channels=0"),
        (dict(hidden_act="gelu2"), "hidden_act='gelu2'"),
        (dict(pooler_act="nope"), "pooler_act='nope'"),
        (dict(hidden_dropout_prob=1.5), "hidden_dropout_prob=1.5"),
        (dict(layer_norm_eps=0), "layer_norm_eps=0"),
        (dict(image_size=(224,)), r"image_size=\[224\]"),
        (dict(patch_size=True), "patch_size=True"),
        (dict(num_labels=-2), "num_labels=-2"),
        (dict(num_labels=3, id2label={0: "a"}), "num_labels=3"),
        (dict(qkv_bias="yes"), "qkv_bias='yes'"),
        (dict(pooler_output_size=-4), "pooler_output_size=-4"),
        (dict(problem_type="single_label"), "problem_type='single_label'"),
        (dict(problem_type=1), "problem_type=1"),
    ],
)
def test_invalid_configs_name_field_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ViTConfig(**kwargs)


def test_presets_cover_published_sizes():
    for name in ("vit-tiny-patch16-224", "vit-small-patch32-224", "vit-base-patch16-384", "vit-huge-patch14-224"):
        assert name in PRESETS
    base = ViTConfig.from_preset("vit-base-patch16-224")
    assert (base.hidden_size, base.num_hidden_layers, base.num_attention_heads) == (768, 12, 12)
    large = ViTConfig.from_preset("vit-large-patch32-384", num_labels=10)
    assert (large.hidden_size, large.num_hidden_layers, large.patch_size, large.image_size) == (1024, 24, 32, 384)
    assert large.num_labels == 10
    tiny = DeiTConfig.from_preset("deit-tiny-distilled-patch16-224")
    assert (tiny.hidden_size, tiny.num_attention_heads, tiny.model_type) == (192, 3, "deit")
    for name in PRESETS:
        config_class_for(name.split("-")[0]).from_preset(name)
    with pytest.raises(ValueError, match="Received: name='deit-tiny-patch16-224'"):
        ViTConfig.from_preset("deit-tiny-patch16-224")
    with pytest.raises(ValueError, match="preset name"):
        preset_fields("vit-gigantic")


def test_config_json_keeps_unknown_fields_and_a_round_trip_is_unchanged(tmp_path):
    content = {**HF_DEFAULTS, "model_type": "vit", "num_hiden_layers": 2, "transformers_version": "5.0.0",
               "architectures": ["ViTModel"], "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}
    (tmp_path / "config.json").write_text(json.dumps(content))
    config = ViTConfig.from_pretrained(tmp_path)
    assert config.extra == {"num_hiden_layers": 2, "transformers_version": "5.0.0", "architectures": ["ViTModel"]}
    assert config.num_hidden_layers == 12
    config.to_json_file(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == content
    assert ViTConfig.from_json_file(tmp_path / "again.json") == ViTConfig.from_dict(content) == config


def test_replace_num_labels_regenerates_default_labels():
    config = ViTConfig(hidden_size=32, num_attention_heads=4)
    three = config.replace(num_labels=3)
    assert three.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    assert three.label2id == {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}
    from_file = ViTConfig.from_dict({"id2label": {"0": "LABEL_0", "1": "LABEL_1"}, "label2id": {"LABEL_0": 0, "LABEL_1": 1}})
    assert from_file.replace(num_labels=0).num_labels == 0


def test_replace_and_equality():
    config = ViTConfig(hidden_size=32, num_attention_heads=4)
    other = config.replace(num_hidden_layers=3)
    assert other.num_hidden_layers == 3 and other.hidden_size == 32 and other != config
    assert ViTConfig.from_dict(config.to_dict()) == config
