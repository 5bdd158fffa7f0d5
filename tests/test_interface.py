"""The Keras-native interface: backbone + task composition, one-input graphs that Keras' own export paths
take, LoRA and freezing, per-output compile dicts, and strict arguments."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vit
from keras_vit import MODEL_CLASSES
from tests.conftest import tiny_config

RNG = np.random.default_rng(3)
IMAGES = RNG.uniform(-1, 1, (4, 32, 32, 3)).astype("float32")
LABELS = np.array([0, 1, 2, 1])
MASK = RNG.uniform(size=(4, 16)) > 0.5
BACKBONES = (keras_vit.ViTModel, keras_vit.DeiTModel)
TASKS = tuple(cls for cls in MODEL_CLASSES if cls not in BACKBONES)
CLASSIFIERS = (
    keras_vit.ViTForImageClassification,
    keras_vit.DeiTForImageClassification,
    keras_vit.DeiTForImageClassificationWithTeacher,
)


def build(cls, **kwargs):
    return cls(tiny_config(cls), **kwargs)


def _inputs(cls):
    """What the exported default signature takes: masked-image models also take bool_masked_pos."""
    return [IMAGES, MASK] if cls.use_mask_token else IMAGES


def _as_dict(model, x):
    """`_inputs` keyed by input name."""
    return dict(zip(model.input_names, x)) if isinstance(x, list) else {"pixel_values": x}


def _max_difference(a, b):
    return max(float(np.abs(np.asarray(a[k]) - np.asarray(b[k])).max()) for k in a)


@pytest.mark.parametrize("cls", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_default_graph_has_one_input_unless_a_mask_token_exists(cls):
    model = build(cls)
    assert model.input_names == (["pixel_values", "bool_masked_pos"] if cls.use_mask_token else ["pixel_values"])
    assert build(cls, use_head_mask=True).input_names[-1] == "head_mask"


@pytest.mark.parametrize("cls", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_keras_export_paths_work(cls, tmp_path):
    model = build(cls)
    x = _inputs(cls)
    expected = model(x)
    model.export(tmp_path / "export", format="tf_saved_model", verbose=False)
    assert _max_difference(expected, tf.saved_model.load(str(tmp_path / "export")).serve(x)) < 1e-5
    tf.saved_model.save(model, str(tmp_path / "tf_saved_model"))
    signature = tf.saved_model.load(str(tmp_path / "tf_saved_model")).signatures["serving_default"]
    names = sorted(signature.structured_input_signature[1])  # "inputs", then "inputs_1" for a second input
    assert _max_difference(expected, signature(**dict(zip(names, x if isinstance(x, list) else [x])))) < 1e-5
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", model.call, input_signature=[model.input if len(model.inputs) == 1 else model.inputs])
    archive.write_out(str(tmp_path / "archive"), verbose=False)
    assert _max_difference(expected, tf.saved_model.load(str(tmp_path / "archive")).serve(x)) < 1e-5
    # A dataset element that is a list or tuple would read as (x, y): several inputs go in a dict.
    data = tf.data.Dataset.from_tensor_slices(dict(zip(model.input_names, x)) if isinstance(x, list) else x).batch(2)
    predicted = model.predict(data, verbose=0)
    assert _max_difference(expected, predicted) < 1e-5


@pytest.mark.parametrize("cls", [keras_vit.ViTForImageClassification, keras_vit.ViTForMaskedImageModeling], ids=lambda c: c.__name__)
def test_predict_of_in_memory_inputs_equals_the_call(cls):
    model = build(cls)
    x = _inputs(cls)
    expected = model(x)
    as_dict = _as_dict(model, x)
    for given in (x, as_dict, {k: tf.constant(v) for k, v in as_dict.items()}):
        for batch_size in (None, 3):  # 3: a last batch of 1
            predicted = model.predict(given, batch_size=batch_size, verbose=0)
            assert all(isinstance(value, np.ndarray) for value in predicted.values())
            assert _max_difference(expected, predicted) < 1e-5
    assert len(model.predict(x, batch_size=3, steps=1, verbose=0)[model.output_names[0]]) == 3


@pytest.mark.parametrize("cls", TASKS, ids=lambda c: c.__name__)
def test_fit_with_jit_compile_on_a_dataset(cls):
    model = build(cls)
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=True)
    if cls.use_mask_token:
        data = tf.data.Dataset.from_tensor_slices({"pixel_values": IMAGES, "bool_masked_pos": MASK}).batch(2)
    else:
        data = tf.data.Dataset.from_tensor_slices((IMAGES, LABELS)).batch(2)
    losses = model.fit(data, epochs=3, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


@pytest.mark.parametrize("cls", TASKS, ids=lambda c: c.__name__)
def test_task_holds_its_backbone(cls):
    model = build(cls)
    backbone_class = keras_vit.DeiTModel if cls.__name__.startswith("DeiT") else keras_vit.ViTModel
    assert type(model.backbone) is backbone_class
    assert model.backbone.name == model.config.model_type
    assert model.get_layer(model.config.model_type) is model.backbone
    assert {w.path for w in model.backbone.weights} <= {w.path for w in model.weights}
    state = keras_vit.conversion.to_hf_state_dict(model)
    assert f"{model.config.model_type}.embeddings.cls_token" in state  # Hugging Face's prefix is the layer name


@pytest.mark.parametrize("cls", CLASSIFIERS, ids=lambda c: c.__name__)
def test_frozen_backbone_trains_only_the_head(cls):
    model = build(cls)
    model.backbone.trainable = False
    head = {w.path for w in model.trainable_weights}
    assert head and not head & {w.path for w in model.backbone.weights}
    before = {w.path: np.array(w) for w in model.weights}
    model.compile(keras.optimizers.Adam(1e-2))
    model.fit(IMAGES, LABELS, epochs=2, verbose=0)
    moved = {w.path for w in model.weights if not np.allclose(before[w.path], np.array(w))}
    assert moved == head


@pytest.mark.parametrize("cls", [keras_vit.ViTModel, keras_vit.DeiTForImageClassificationWithTeacher], ids=lambda c: c.__name__)
def test_enable_lora_trains_low_rank_factors_and_the_head(cls, tmp_path):
    model = build(cls)
    model.enable_lora(2)
    trainable = {w.path for w in model.trainable_weights}
    lora = {p for p in trainable if "lora_kernel" in p}
    assert len(lora) == 2 * 4 * model.config.num_hidden_layers  # A and B on qkv, output, fc1, fc2 per block
    assert trainable - lora == {w.path for w in model.weights if w.path.startswith("head/")}
    hidden, intermediate = 32, 37
    per_block = 2 * ((hidden + 3 * hidden) + (hidden + hidden) + (hidden + intermediate) + (intermediate + hidden))
    head = sum(int(np.prod(w.shape)) for w in model.trainable_weights if "lora" not in w.path)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 2 * per_block + head
    frozen = {w.path: np.array(w) for w in model.weights if w.path not in trainable}
    if cls is keras_vit.ViTModel:
        model.compile(keras.optimizers.Adam(1e-2), loss="mse")
        model.fit(IMAGES, np.zeros((4, 17, 32), "float32"), epochs=2, verbose=0)
    else:
        model.compile(keras.optimizers.Adam(1e-2))
        model.fit(IMAGES, LABELS, epochs=2, verbose=0)
    for path, value in frozen.items():
        np.testing.assert_array_equal(value, np.array([w for w in model.weights if w.path == path][0]), err_msg=path)
    assert all(np.abs(np.array(w)).max() > 0 for w in model.trainable_weights if "lora_kernel_b" in w.path)
    model.save(tmp_path / "lora.keras")
    loaded = keras.saving.load_model(tmp_path / "lora.keras", safe_mode=True)
    assert loaded.lora_rank == 2 and {w.path for w in loaded.trainable_weights} == trainable
    assert _max_difference(model(IMAGES), loaded(IMAGES)) < 1e-5
    with pytest.raises(ValueError, match="already enabled"):
        model.enable_lora(2)
    with pytest.raises(ValueError, match="rank=0"):
        build(cls).enable_lora(0)


def test_loss_and_metric_dicts_are_keyed_by_output_name():
    model = build(keras_vit.DeiTForImageClassificationWithTeacher)
    assert model.output_names == ["cls_logits", "distillation_logits", "logits"]
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(
        keras.optimizers.Adam(1e-3),
        loss={"cls_logits": ce, "distillation_logits": ce},
        loss_weights={"cls_logits": 0.25, "distillation_logits": 0.75},
        metrics={"logits": ["accuracy"], "cls_logits": ["accuracy"]},
    )
    targets = {"cls_logits": LABELS, "distillation_logits": LABELS, "logits": LABELS}
    result = model.evaluate(IMAGES, targets, verbose=0, return_dict=True)
    out = model(IMAGES)
    expected = 0.25 * ce(LABELS, out["cls_logits"]) + 0.75 * ce(LABELS, out["distillation_logits"])
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-5)
    accuracy = np.mean(np.argmax(out["cls_logits"], -1) == LABELS)
    np.testing.assert_allclose(result["cls_logits_accuracy"], accuracy)
    assert {"logits_accuracy", "cls_logits_loss", "distillation_logits_loss"} <= set(result)


@pytest.mark.parametrize(
    "kwargs",
    [dict(output_attention=True), dict(drop_path_rate=0.1), dict(num_labels=5), dict(add_pooling_layer=True)],
    ids=lambda k: next(iter(k)),
)
def test_unknown_constructor_keywords_raise(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(TypeError, match=rf"unexpected keyword argument\(s\) \['{name}'\]"):
        build(keras_vit.ViTForImageClassification, **kwargs)


def test_unknown_from_pretrained_keywords_raise_before_reading(tmp_path):
    model = build(keras_vit.ViTForImageClassification)
    model.save_pretrained(tmp_path)
    with pytest.raises(TypeError, match=r"\['num_lables'\]"):
        keras_vit.ViTForImageClassification.from_pretrained(tmp_path / "does-not-exist", num_lables=5)
    loaded = keras_vit.ViTForImageClassification.from_pretrained(
        tmp_path, num_labels=5, drop_path_rate=0.1, output_attentions=True, ignore_mismatched_sizes=True
    )
    assert loaded.config.num_labels == 5 and loaded.config.drop_path_rate == 0.1 and loaded.output_attentions


@pytest.mark.parametrize("flag", ["output_attentions", "output_hidden_states", "interpolate_pos_encoding"])
def test_call_time_flags_work_or_say_how(flag):
    model = build(keras_vit.ViTForImageClassification)
    plain = model(IMAGES)
    assert _max_difference(plain, model(IMAGES, **{flag: False})) == 0
    with pytest.raises(TypeError, match=rf"{flag}=True.*ViTForImageClassification\(config, {flag}=True\)"):
        model(IMAGES, **{flag: True})
    built = build(keras_vit.ViTForImageClassification, **{flag: True})
    built.set_weights(model.get_weights())
    assert np.allclose(built(IMAGES, **{flag: True})["logits"], plain["logits"], atol=1e-5)


def test_call_time_masks_work_or_say_how():
    model = build(keras_vit.ViTModel)
    with pytest.raises(TypeError, match="use_head_mask=True"):
        model(IMAGES, head_mask=np.ones(4, "float32"))
    with pytest.raises(TypeError, match="use_mask_token=True"):
        model(IMAGES, bool_masked_pos=MASK)
    with pytest.raises(TypeError, match=r"unexpected call keyword argument\(s\) \['return_dict'\]"):
        model(IMAGES, return_dict=True)
    masked = build(keras_vit.ViTModel, use_head_mask=True, use_mask_token=True)
    weights = {w.path: w for w in model.weights}
    for variable in masked.weights:
        if variable.path in weights:
            variable.assign(weights[variable.path])
    out = masked(IMAGES, head_mask=np.ones(4, "float32"), bool_masked_pos=np.zeros_like(MASK))
    assert _max_difference(model(IMAGES), out) < 1e-5
    with pytest.raises(TypeError, match="head_mask was given twice"):
        masked({"pixel_values": IMAGES, "head_mask": np.ones(4, "float32")}, head_mask=np.ones(4, "float32"))


def test_drop_path_rate_is_linear_per_block_and_round_trips(tmp_path):
    config = tiny_config(keras_vit.ViTForImageClassification, num_hidden_layers=3, drop_path_rate=0.2)
    model = keras_vit.ViTForImageClassification(config)
    rates = [model.backbone.get_layer(f"encoder_layer_{i}").drop_path_rate for i in range(3)]
    np.testing.assert_allclose(rates, [0.0, 0.1, 0.2])
    np.testing.assert_allclose(model(IMAGES)["logits"], model(IMAGES)["logits"])  # identity at inference
    assert not np.allclose(model(IMAGES, training=True)["logits"], model(IMAGES, training=True)["logits"])
    model.save(tmp_path / "m.keras")
    assert keras.saving.load_model(tmp_path / "m.keras").config.drop_path_rate == 0.2
    model.save_pretrained(tmp_path / "hf")
    assert keras_vit.ViTForImageClassification.from_pretrained(tmp_path / "hf").config.drop_path_rate == 0.2


def test_from_pretrained_with_preprocessing_takes_raw_images(tmp_path):
    model = build(keras_vit.ViTForImageClassification)
    model.save_pretrained(tmp_path)
    processor = keras_vit.ViTImageProcessor.from_config(model.config)
    processor.save_pretrained(tmp_path)
    with pytest.raises(TypeError, match=r"\['include_preprocesing'\]"):
        keras_vit.ViTForImageClassification.from_pretrained(tmp_path, include_preprocesing=True)
    composed = keras_vit.ViTForImageClassification.from_pretrained(tmp_path, include_preprocessing=True)
    photos = np.random.default_rng(0).integers(0, 256, (2, 45, 61, 3), dtype=np.uint8)
    expected = model(processor(list(photos))["pixel_values"])["logits"]
    for images in (photos, photos.astype("float32")):  # uint8, and float 0-255 as image_dataset_from_directory
        np.testing.assert_allclose(composed(images)["logits"], expected, atol=0.05)
    data = tf.data.Dataset.from_tensor_slices(photos.astype("float32")).batch(2)
    np.testing.assert_allclose(composed.predict(data, verbose=0)["logits"], expected, atol=0.05)


@pytest.mark.parametrize(
    "given, lengths",
    [
        (lambda: np.array(1.0), "{'pixel_values': None}"),
        (lambda: {"pixel_values": IMAGES[:4], "bool_masked_pos": MASK[:3]}, "{'pixel_values': 4, 'bool_masked_pos': 3}"),
        (lambda: [IMAGES[:4], MASK[:3]], "{'pixel_values': 4, 'bool_masked_pos': 3}"),
    ],
    ids=["scalar", "dict of different lengths", "list of different lengths"],
)
def test_predict_names_inputs_without_one_batch_length(given, lengths, monkeypatch):
    model = build(keras_vit.ViTForMaskedImageModeling)
    # Raised before Keras builds anything (its array adapter failed with IndexError / AttributeError).
    monkeypatch.setattr(keras.Model, "predict", lambda *a, **k: pytest.fail("reached Keras' predict"))
    with pytest.raises(ValueError, match=re.escape(f"Received batch lengths {lengths}")):
        model.predict(given(), verbose=0)
