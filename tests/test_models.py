import warnings

import keras
import numpy as np
import pytest

import keras_vit
from keras_vit import MODEL_CLASSES
from keras_vit.losses import simmim_loss
from tests.conftest import tiny_config

RNG = np.random.default_rng(1)
IMAGES = RNG.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
MASK = RNG.uniform(size=(2, 16)) > 0.5
MASK_MODELS = (keras_vit.ViTForMaskedImageModeling, keras_vit.DeiTForMaskedImageModeling)
EXPECTED_KEYS = {
    "ViTModel": {"last_hidden_state", "pooler_output"},
    "DeiTModel": {"last_hidden_state", "pooler_output"},
    "ViTForImageClassification": {"logits"},
    "DeiTForImageClassification": {"logits"},
    "DeiTForImageClassificationWithTeacher": {"logits", "cls_logits", "distillation_logits"},
    "ViTForMaskedImageModeling": {"reconstruction"},
    "DeiTForMaskedImageModeling": {"reconstruction"},
}


def build(cls, **kwargs):
    return cls(tiny_config(cls), **kwargs)


def assert_outputs_equal(a, b, atol=1e-5):
    assert set(a) == set(b)
    for key in a:
        for x, y in zip(keras.tree.flatten(a[key]), keras.tree.flatten(b[key])):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, err_msg=key)


@pytest.mark.parametrize("cls", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_tensor_list_and_dict_inputs_agree(cls):
    model = build(cls)
    out = model(IMAGES)
    assert set(out) == EXPECTED_KEYS[cls.__name__]
    assert_outputs_equal(out, model([IMAGES]))
    assert_outputs_equal(out, model({"pixel_values": IMAGES}))
    assert_outputs_equal(out, {k: v for k, v in model.predict(IMAGES, verbose=0).items()})
    with_mask = build(cls, use_head_mask=True)
    with_mask.set_weights(model.get_weights())
    assert with_mask.input_names[-1] == "head_mask"
    ones = np.ones((2, 4), "float32")
    assert_outputs_equal(out, with_mask(IMAGES, head_mask=ones))
    assert_outputs_equal(out, with_mask({"pixel_values": IMAGES, "head_mask": np.ones(4, "float32")}))
    if cls in MASK_MODELS:
        assert_outputs_equal(out, with_mask([IMAGES, None, ones]))
    else:
        assert_outputs_equal(out, with_mask([IMAGES, ones]))


@pytest.mark.parametrize("cls", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_output_shapes_and_flags(cls):
    model = build(cls, output_hidden_states=True, output_attentions=True)
    out = model(IMAGES)
    seq = 16 + (2 if cls.__name__.startswith("DeiT") else 1)
    assert len(out["hidden_states"]) == 3 and len(out["attentions"]) == 2
    assert all(tuple(h.shape) == (2, seq, 32) for h in out["hidden_states"])
    assert all(tuple(a.shape) == (2, 4, seq, seq) for a in out["attentions"])
    np.testing.assert_allclose(np.asarray(out["attentions"][0]).sum(-1), 1.0, atol=1e-5)
    if "last_hidden_state" in out:
        assert tuple(out["last_hidden_state"].shape) == (2, seq, 32)
        assert tuple(out["pooler_output"].shape) == (2, 32)
    if "logits" in out:
        assert tuple(out["logits"].shape) == (2, 3)
    if "reconstruction" in out:
        assert tuple(out["reconstruction"].shape) == (2, 32, 32, 3)
    plain = build(cls)
    plain.set_weights(model.get_weights())
    assert_outputs_equal(plain(IMAGES), {k: v for k, v in out.items() if k in EXPECTED_KEYS[cls.__name__]})


def test_hidden_states_are_block_outputs():
    model = build(keras_vit.ViTModel, output_hidden_states=True)
    out = model(IMAGES)
    layernorm = model.get_layer("layernorm")
    np.testing.assert_allclose(layernorm(out["hidden_states"][-1]), out["last_hidden_state"], atol=1e-5)
    np.testing.assert_allclose(out["hidden_states"][0], model.get_layer("embeddings")(IMAGES), atol=1e-6)


@pytest.mark.parametrize("cls", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_channels_first_equals_channels_last(cls):
    last = build(cls)
    first = build(cls, data_format="channels_first")
    first.set_weights(last.get_weights())
    out_first = first(IMAGES.transpose(0, 3, 1, 2))
    expected = last(IMAGES)
    if "reconstruction" in expected:
        out_first["reconstruction"] = np.asarray(out_first["reconstruction"]).transpose(0, 2, 3, 1)
    assert_outputs_equal(out_first, expected)


@pytest.mark.parametrize("cls", [keras_vit.ViTModel, keras_vit.DeiTForMaskedImageModeling], ids=lambda c: c.__name__)
def test_interpolate_pos_encoding(cls):
    fixed = build(cls)
    dynamic = build(cls, interpolate_pos_encoding=True)
    dynamic.set_weights(fixed.get_weights())
    assert_outputs_equal(dynamic(IMAGES), fixed(IMAGES))
    big = RNG.uniform(-1, 1, (2, 48, 64, 3)).astype("float32")
    out = dynamic(big)
    if cls is keras_vit.ViTModel:
        assert tuple(out["last_hidden_state"].shape) == (2, 1 + 6 * 8, 32)
    else:
        assert tuple(out["reconstruction"].shape) == (2, 48, 64, 3)
        masked = dynamic({"pixel_values": big, "bool_masked_pos": np.ones((2, 48), bool)})
        assert not np.allclose(masked["reconstruction"], out["reconstruction"])


@pytest.mark.parametrize("cls", MASK_MODELS, ids=lambda c: c.__name__)
def test_bool_masked_pos(cls):
    model = build(cls)
    plain = model(IMAGES)["reconstruction"]
    masked = model([IMAGES, MASK])["reconstruction"]
    none_masked = model([IMAGES, np.zeros_like(MASK)])["reconstruction"]
    np.testing.assert_allclose(none_masked, plain, atol=1e-5)
    assert np.abs(np.asarray(masked) - np.asarray(plain)).max() > 1e-3


def test_base_model_mask_token_flag():
    model = build(keras_vit.ViTModel, use_mask_token=True)
    out = model({"pixel_values": IMAGES, "bool_masked_pos": MASK})
    assert tuple(out["last_hidden_state"].shape) == (2, 17, 32)
    with pytest.raises(ValueError, match=r"unknown keys: \['bool_masked_pos'\]"):
        build(keras_vit.ViTModel)({"pixel_values": IMAGES, "bool_masked_pos": MASK})
    with pytest.raises(TypeError, match="use_mask_token=True"):
        build(keras_vit.ViTModel)(IMAGES, bool_masked_pos=MASK)


def test_head_mask_changes_outputs_per_layer():
    model = build(keras_vit.ViTModel, use_head_mask=True)
    ones = np.ones((2, 4), "float32")
    base = np.asarray(model([IMAGES, ones])["last_hidden_state"])
    mask = ones.copy()
    mask[1, 2] = 0.0
    changed = np.asarray(model([IMAGES, mask])["last_hidden_state"])
    assert np.abs(changed - base).max() > 1e-4
    # Per-example masks: the first image keeps every head, the second loses one.
    batched = np.stack([ones, mask])
    per_example = np.asarray(model(IMAGES, head_mask=batched)["last_hidden_state"])
    np.testing.assert_allclose(per_example[0], base[0], atol=1e-6)
    np.testing.assert_allclose(per_example[1], changed[1], atol=1e-6)
    # Silencing a head in the last layer leaves the first block's output alone.
    hidden = build(keras_vit.ViTModel, use_head_mask=True, output_hidden_states=True)
    hidden.set_weights(model.get_weights())
    a = hidden([IMAGES, ones])["hidden_states"]
    b = hidden([IMAGES, mask])["hidden_states"]
    np.testing.assert_allclose(a[1], b[1], atol=1e-6)
    assert np.abs(np.asarray(a[2]) - np.asarray(b[2])).max() > 1e-4


@pytest.mark.parametrize(
    "inputs, message",
    [
        (np.zeros((32, 32, 3), "float32"), r"rank 4, \(batch, height, width, channels\). Received: shape=\(32, 32, 3\)"),
        (np.zeros((1, 32, 32, 1), "float32"), r"3 channels.*shape=\(1, 32, 32, 1\)"),
        (np.zeros((1, 3, 32, 32), "float32"), r"3 channels"),
        (np.zeros((1, 48, 32, 3), "float32"), r"Expected images of size \(32, 32\)"),
        ({"pixel_values": IMAGES, "masks": MASK}, r"unknown keys: \['masks'\]"),
        ({"bool_masked_pos": MASK}, "Expected pixel_values"),
        ([IMAGES, None, None, None], "Received 4"),
        ([IMAGES, None, np.ones((3, 4), "float32")], r"head_mask of shape \(4,\), \(2, 4\) or \(batch, 2, 4\).*\(3, 4\)"),
        ([IMAGES, np.zeros((2, 9), bool)], r"bool_masked_pos of shape \(batch, 16\)"),
        ([IMAGES, np.zeros((3, 16), bool)], r"batch size of pixel_values.*shape=\(3, 16\)"),
        (np.zeros((0, 32, 32, 3), "float32"), r"at least one image.*shape=\(0, 32, 32, 3\)"),
        (np.zeros((1, 32, 32, 3), "uint8"), r"pixel_values of dtype float.*image processor.*dtype=uint8"),
        ([IMAGES, MASK.astype("float32")], r"bool_masked_pos of dtype bool or int.*dtype=float32"),
        ([IMAGES, None, np.array(["a"] * 4)], r"head_mask of dtype float or int"),
    ],
)
def test_bad_inputs_are_named(inputs, message):
    model = build(keras_vit.ViTModel, use_mask_token=True, use_head_mask=True)
    with pytest.raises(ValueError, match=message):
        model(inputs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(data_format="NHWC"), "data_format='NHWC'"),
        (dict(output_attentions="yes"), "output_attentions='yes'"),
        (dict(interpolate_pos_encoding=1), "interpolate_pos_encoding=1"),
    ],
)
def test_bad_constructor_flags(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(keras_vit.ViTForImageClassification, **kwargs)
    with pytest.raises(ValueError, match="Expected config to be a DeiTConfig"):
        keras_vit.DeiTModel(tiny_config(keras_vit.ViTModel))
    with pytest.raises(ValueError, match="Expected config to be a ViTConfig.*Received: DeiTConfig"):
        keras_vit.ViTForImageClassification(tiny_config(keras_vit.DeiTModel))


def test_mim_requires_patch_size_equal_encoder_stride():
    model = keras_vit.ViTForMaskedImageModeling(tiny_config(encoder_stride=4))
    assert tuple(model(IMAGES)["reconstruction"].shape) == (2, 16, 16, 3)
    with pytest.raises(ValueError, match="patch_size=8, encoder_stride=4"):
        model([IMAGES, MASK])


@pytest.mark.parametrize("cls", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_keras_save_load_round_trip(cls, tmp_path):
    model = build(cls, output_attentions=True, data_format="channels_first")
    x = IMAGES.transpose(0, 3, 1, 2)
    path = tmp_path / f"{cls.__name__}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)  # no lambdas or pickles in our configs
    assert type(loaded) is cls
    assert loaded.config == model.config and loaded.data_format == "channels_first"
    assert_outputs_equal(loaded(x), model(x), atol=1e-6)
    assert cls.from_config(model.get_config()).count_params() == model.count_params()


def _policies(model):
    """(path, dtype policy name) of every layer of `model`, sorted."""
    return sorted((layer.path or layer.name, layer.dtype_policy.name) for layer in model._flatten_layers())


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "bfloat16"])
def test_keras_file_keeps_the_dtype_policy(policy, tmp_path):
    cls = keras_vit.DeiTForImageClassificationWithTeacher
    model = build(cls, dtype=policy)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.dtype_policy.name == policy
    assert _policies(loaded) == _policies(model)
    assert {layer.dtype_policy.name for layer in loaded._flatten_layers() if layer.weights} == {policy}
    assert {w.path: w.dtype for w in loaded.weights} == {w.path: w.dtype for w in model.weights}
    assert_outputs_equal(
        {k: keras.ops.cast(v, "float32") for k, v in loaded(IMAGES).items()},
        {k: keras.ops.cast(v, "float32") for k, v in model(IMAGES).items()},
        atol=0,
    )


def _trainable_paths(model):
    return sorted(w.path for w in model.trainable_weights)


def test_keras_file_keeps_frozen_layers_and_resumes_training(tmp_path):
    cls = keras_vit.ViTForImageClassification
    model = build(cls)
    model.backbone.trainable = False
    head = _trainable_paths(model)
    assert head == ["classifier/bias", "classifier/kernel"]
    partly = build(cls)
    partly.backbone.get_layer("encoder_layer_1").trainable = False
    (attention,) = [layer for layer in partly._flatten_layers() if layer.path == "encoder_layer_0/attention"]
    attention.trainable = False
    assert len(_trainable_paths(partly)) < len(partly.weights)
    y = np.array([0, 2])
    for original in (model, partly):
        original.compile(keras.optimizers.AdamW(1e-2))
        original.fit(IMAGES, y, epochs=1, verbose=0)
        original.save(tmp_path / "model.keras")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = keras.saving.load_model(tmp_path / "model.keras")
        assert not [w for w in caught if "Skipping variable loading" in str(w.message)]
        assert _trainable_paths(loaded) == _trainable_paths(original)
        assert len(loaded.optimizer.variables) == len(original.optimizer.variables)
        for a, b in zip(loaded.optimizer.variables, original.optimizer.variables):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
        # One more step of each: the same weights (the optimizer state resumed).
        for resumed in (original, loaded):
            resumed.fit(IMAGES, y, epochs=1, verbose=0)
        for a, b in zip(loaded.weights, original.weights):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, err_msg=a.path)


@pytest.mark.parametrize(
    "cls", [keras_vit.ViTForImageClassification, keras_vit.DeiTForImageClassificationWithTeacher], ids=lambda c: c.__name__
)
def test_fit_with_compiled_loss_and_metrics(cls):
    model = build(cls)
    x = RNG.uniform(-1, 1, (16, 32, 32, 3)).astype("float32")
    y = np.arange(16) % 3
    model.compile(
        keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    history = model.fit(x, y, epochs=8, batch_size=8, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    assert history["accuracy"][-1] > 0.5
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, model.predict(x, verbose=0)["logits"])
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0, return_dict=True)["loss"], expected, rtol=1e-4)


def test_builtin_classification_losses():
    model = build(keras_vit.ViTForImageClassification)
    model.compile("adam")
    y = np.array([0, 2])
    logits = np.asarray(model(IMAGES)["logits"])
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
    np.testing.assert_allclose(model.evaluate(IMAGES, y, verbose=0), expected, rtol=1e-5)
    multi = np.array([[1, 0, 1], [0, 1, 0]], "float32")
    expected = keras.losses.BinaryCrossentropy(from_logits=True)(multi, logits)
    np.testing.assert_allclose(model.evaluate(IMAGES, multi, verbose=0), expected, rtol=1e-5)
    regression = keras_vit.ViTForImageClassification(tiny_config(num_labels=1))
    regression.compile("adam")
    target = np.array([0.5, -1.0], "float32")
    pred = np.asarray(regression(IMAGES)["logits"])[:, 0]
    np.testing.assert_allclose(regression.evaluate(IMAGES, target, verbose=0), np.mean((pred - target) ** 2), rtol=1e-5)
    # problem_type="single_label_classification": soft (MixUp / one-hot) labels get softmax cross-entropy.
    single = keras_vit.ViTForImageClassification(tiny_config(problem_type="single_label_classification"))
    single.compile("adam")
    soft = np.array([[0.7, 0.3, 0.0], [0.0, 0.2, 0.8]], "float32")
    expected = keras.losses.CategoricalCrossentropy(from_logits=True)(soft, single(IMAGES)["logits"])
    np.testing.assert_allclose(single.evaluate(IMAGES, soft, verbose=0), expected, rtol=1e-5)


def test_builtin_teacher_loss_averages_heads():
    model = build(keras_vit.DeiTForImageClassificationWithTeacher)
    model.compile("adam")
    y = np.array([1, 2])
    out = model(IMAGES)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    expected = 0.5 * (ce(y, out["cls_logits"]) + ce(y, out["distillation_logits"]))
    np.testing.assert_allclose(model.evaluate(IMAGES, y, verbose=0), expected, rtol=1e-5)


@pytest.mark.parametrize("cls", MASK_MODELS, ids=lambda c: c.__name__)
def test_builtin_simmim_loss(cls):
    model = build(cls)
    model.compile(keras.optimizers.Adam(1e-3))
    recon = np.asarray(model([IMAGES, MASK])["reconstruction"])
    pixel_mask = np.repeat(np.repeat(MASK.reshape(2, 4, 4), 8, 1), 8, 2)[..., None]
    expected = (np.abs(IMAGES - recon) * pixel_mask).sum() / (pixel_mask.sum() + 1e-5) / 3
    inputs = {"pixel_values": IMAGES, "bool_masked_pos": MASK}
    np.testing.assert_allclose(model.evaluate(inputs, verbose=0), expected, rtol=1e-5)
    np.testing.assert_allclose(simmim_loss(IMAGES, recon, MASK, (8, 8)), expected, rtol=1e-5)
    losses = model.fit(inputs, epochs=5, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    with pytest.raises(ValueError, match="needs bool_masked_pos"):
        model.fit(IMAGES, epochs=1, verbose=0)


def test_fit_without_labels_is_refused():
    model = build(keras_vit.ViTForImageClassification)
    model.compile("adam")
    with pytest.raises(ValueError, match="needs labels"):
        model.fit(IMAGES, epochs=1, verbose=0)


def test_mixed_precision_model_close_to_float32():
    reference = build(keras_vit.ViTForImageClassification)
    mixed = build(keras_vit.ViTForImageClassification, dtype="mixed_bfloat16")
    mixed.set_weights(reference.get_weights())
    expected = np.asarray(reference(IMAGES)["logits"])
    got = mixed(IMAGES)["logits"]
    assert "bfloat16" in str(got.dtype)
    assert all(w.dtype == "float32" for w in mixed.weights)
    got = np.asarray(keras.ops.cast(got, "float32"))
    assert np.abs(got - expected).max() <= 1e-2 * np.abs(expected).max() + 2e-2
    mixed.compile("adam")  # the built-in loss
    before = [np.array(w) for w in mixed.trainable_weights]
    assert np.isfinite(mixed.fit(IMAGES, np.array([0, 1]), epochs=1, verbose=0).history["loss"][0])
    assert all(not np.array_equal(b, np.array(w)) for b, w in zip(before, mixed.trainable_weights))


def test_model_composes_in_user_functional_model():
    backbone = build(keras_vit.DeiTModel)
    inputs = keras.Input((32, 32, 3))
    features = backbone(inputs)["pooler_output"]
    model = keras.Model(inputs, keras.layers.Dense(2, name="my_head")(features))
    assert tuple(model(IMAGES).shape) == (2, 2)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert np.isfinite(model.fit(IMAGES, np.array([0, 1]), epochs=1, verbose=0).history["loss"][0])


def test_num_labels_zero_returns_features():
    model = keras_vit.ViTForImageClassification(tiny_config(num_labels=0))
    assert tuple(model(IMAGES)["logits"].shape) == (2, 32)


def test_weight_paths_are_stable():
    model = build(keras_vit.DeiTForImageClassificationWithTeacher)
    paths = {w.path for w in model.weights}
    for path in (
        "embeddings/cls_token",
        "embeddings/distillation_token",
        "embeddings/position_embeddings",
        "embeddings/projection/kernel",
        "encoder_layer_1/attention/qkv/kernel",
        "encoder_layer_1/attention/output/bias",
        "encoder_layer_0/fc1/kernel",
        "layernorm/gamma",
        "head/distillation_classifier/kernel",
    ):
        assert path in paths, path
