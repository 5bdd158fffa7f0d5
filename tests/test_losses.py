"""keras_vit.losses: Hugging Face's problem_type rule, soft labels, label smoothing, label range checks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vit
from keras_vit.losses import ClassificationLoss, check_class_ids, classification_loss
from tests.conftest import tiny_config

LOGITS = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 1.0], [-1.0, 3.0, 0.0]], "float32")
IDS = np.array([0, 2, 1])
WEIGHTS = np.array([1.0, 3.0, 0.5], "float32")
SINGLE = "single_label_classification"


def log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def soft_cross_entropy(target, logits):
    return -(target * log_softmax(logits)).sum(-1)


def weighted(per_example, weights=None):
    weights = np.ones(len(per_example)) if weights is None else weights
    return (per_example * weights).sum() / weights.sum()


def sigmoid_cross_entropy(target, logits):
    probs = 1 / (1 + np.exp(-logits))
    return -(target * np.log(probs) + (1 - target) * np.log(1 - probs)).mean(-1)


def assert_loss(got, expected):
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


# === problem_type rule ===
def test_integer_labels_are_single_label_softmax_cross_entropy():
    per_example = soft_cross_entropy(np.eye(3)[IDS], LOGITS)
    assert_loss(classification_loss(IDS, LOGITS), per_example.mean())
    assert_loss(classification_loss(IDS[:, None], LOGITS, WEIGHTS), weighted(per_example, WEIGHTS))
    assert_loss(classification_loss(IDS.astype("int64"), LOGITS, problem_type=SINGLE), per_example.mean())
    # Float class ids (batch,): transformers' multi-label loss would fail on the shape; they are class ids.
    assert_loss(classification_loss(IDS.astype("float32"), LOGITS), per_example.mean())
    # transformers' own loss on the same logits and labels.
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.cross_entropy(torch.tensor(LOGITS), torch.tensor(IDS))
    assert_loss(classification_loss(IDS, LOGITS), float(expected))


def test_float_labels_are_multi_label_sigmoid_cross_entropy():
    target = np.array([[1, 0, 1], [0, 0, 0], [0.2, 1, 0]], "float32")
    per_example = sigmoid_cross_entropy(target, LOGITS)
    assert_loss(classification_loss(target, LOGITS), per_example.mean())
    assert_loss(classification_loss(target, LOGITS, WEIGHTS), weighted(per_example, WEIGHTS))
    # Integer 0/1 multi-hot labels need the explicit problem_type, as in transformers.
    multi_hot = np.array([[1, 0, 1], [0, 1, 1], [0, 0, 0]])
    got = classification_loss(multi_hot, LOGITS, problem_type="multi_label_classification")
    assert_loss(got, sigmoid_cross_entropy(multi_hot, LOGITS).mean())


def test_one_output_is_regression():
    logits = np.array([[0.5], [-1.0], [2.0]], "float32")
    target = np.array([1.0, -1.0, 0.0], "float32")
    squared = (logits[:, 0] - target) ** 2
    assert_loss(classification_loss(target, logits), squared.mean())
    assert_loss(classification_loss(target[:, None], logits, WEIGHTS), weighted(squared, WEIGHTS))
    # Integer targets with one output are still regression (num_labels == 1 decides first).
    assert_loss(classification_loss(np.array([1, -1, 0]), logits), squared.mean())
    # Explicit regression over several outputs: mean over outputs and batch.
    target3 = np.arange(9, dtype="float32").reshape(3, 3) / 4
    got = classification_loss(target3, LOGITS, problem_type="regression")
    assert_loss(got, ((LOGITS - target3) ** 2).mean())


def test_rule_matches_transformers_loss_function():
    torch = pytest.importorskip("torch")
    from transformers import ViTConfig
    from transformers.loss.loss_utils import ForSequenceClassificationLoss

    cases = [
        (IDS, LOGITS),
        (np.array([[1, 0, 1], [0, 0, 0], [0.2, 1, 0]], "float32"), LOGITS),
        (np.array([1.0, -1.0, 0.0], "float32"), LOGITS[:, :1]),
    ]
    for labels, logits in cases:
        config = ViTConfig(num_labels=logits.shape[-1])
        expected = ForSequenceClassificationLoss(torch.tensor(labels), torch.tensor(logits), config)
        assert_loss(classification_loss(labels, logits), float(expected))


# === Soft labels and smoothing ===
def test_one_hot_equals_integer_labels_for_single_label():
    one_hot = np.eye(3, dtype="float32")[IDS]
    for smoothing in (0.0, 0.2):
        expected = classification_loss(IDS, LOGITS, WEIGHTS, label_smoothing=smoothing)
        got = classification_loss(one_hot, LOGITS, WEIGHTS, problem_type=SINGLE, label_smoothing=smoothing)
        assert_loss(got, float(expected))


def test_mixup_soft_labels_by_hand():
    # MixUp of examples 0 and 1 with λ = 0.7: target 0.7·one_hot(0) + 0.3·one_hot(2).
    soft = np.array([[0.7, 0.0, 0.3], [0.3, 0.0, 0.7], [0.0, 1.0, 0.0]], "float32")
    per_example = soft_cross_entropy(soft, LOGITS)
    assert_loss(classification_loss(soft, LOGITS, WEIGHTS, problem_type=SINGLE), weighted(per_example, WEIGHTS))
    # It is the λ-mix of the two hard-label losses (cross-entropy is linear in the target).
    hard = [soft_cross_entropy(np.eye(3)[[c]], LOGITS[:1])[0] for c in (0, 2)]
    np.testing.assert_allclose(per_example[0], 0.7 * hard[0] + 0.3 * hard[1], rtol=1e-6)


@pytest.mark.parametrize("smoothing", [0.1, 0.3])
def test_label_smoothing_matches_keras(smoothing):
    one_hot = np.eye(3, dtype="float32")[IDS]
    keras_loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=smoothing)
    assert_loss(classification_loss(IDS, LOGITS, label_smoothing=smoothing), float(keras_loss(one_hot, LOGITS)))
    target = (1 - smoothing) * one_hot + smoothing / 3
    assert_loss(classification_loss(IDS, LOGITS, label_smoothing=smoothing), soft_cross_entropy(target, LOGITS).mean())
    multi = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]], "float32")
    keras_binary = keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=smoothing)
    assert_loss(classification_loss(multi, LOGITS, label_smoothing=smoothing), float(keras_binary(multi, LOGITS)))
    assert float(classification_loss(IDS, LOGITS, label_smoothing=smoothing)) != pytest.approx(
        float(classification_loss(IDS, LOGITS))
    )


# === Bad labels and arguments ===
@pytest.mark.parametrize(
    "labels, values",
    [(np.array([0, 3, 1]), r"\[3\]"), (np.array([-1, 0, 7]), r"\[-1, 7\]"), (np.array([0.0, 1.5, 2.0]), r"\[1.5\]")],
)
def test_out_of_range_class_ids_raise_eagerly(labels, values):
    message = r"class labels in \[0, 3\) \(num_labels=3\). Received: labels with values " + values
    with pytest.raises(ValueError, match=message):
        classification_loss(labels, LOGITS, problem_type=SINGLE)


def test_out_of_range_class_ids_raise_in_tf_graphs():
    loss = tf.function(lambda labels: classification_loss(labels, LOGITS))
    assert_loss(loss(tf.constant(IDS)), float(classification_loss(IDS, LOGITS)))
    for bad in ([0, 3, 1], [-1, 0, 1]):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"class labels in \[0, 3\)"):
            loss(tf.constant(bad))


def test_fit_with_out_of_range_labels_raises_and_does_not_train():
    model = keras_vit.ViTForImageClassification(tiny_config(keras_vit.ViTForImageClassification))
    model.compile(keras.optimizers.Adam(1e-2), loss=ClassificationLoss())
    images = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)).astype("float32")
    before = [np.array(w) for w in model.trainable_weights]
    # The loss's graph assertion, re-raised by the model as a ValueError that says it first.
    with pytest.raises(ValueError, match=r"^Expected integer class labels in \[0, 3\) \(num_labels=3\)\.$"):
        model.fit(images, np.array([0, 1, 2, 5]), epochs=1, batch_size=4, verbose=0)
    for old, new in zip(before, model.trainable_weights):
        np.testing.assert_array_equal(old, np.array(new))


@pytest.mark.parametrize(
    "labels, kwargs, message",
    [
        (
            np.zeros((3, 4), "float32"),
            dict(problem_type=SINGLE),
            r"probabilities of shape \(batch, 3\). Received: labels of shape \(3, 4\)",
        ),
        (np.zeros((3, 2), "float32"), {}, r"multi-label labels of shape \(batch, 3\).*shape \(3, 2\)"),
        (
            np.zeros((3, 2), "int32"),
            dict(problem_type="multi_label_classification"),
            r"single-label classification give class ids.*shape \(3, 2\), dtype int32",
        ),
        (np.zeros((3, 2), "int32"), {}, r"class ids of shape \(batch,\) or probabilities .* shape \(3, 2\)"),
        (np.zeros((3, 2), "float32"), dict(problem_type="regression"), r"regression labels of shape \(batch, 3\)"),
        (IDS, dict(problem_type="single"), "problem_type='single'"),
        (IDS, dict(label_smoothing=1.0), "label_smoothing=1.0"),
        (IDS, dict(label_smoothing=-0.1), "label_smoothing=-0.1"),
        (IDS, dict(label_smoothing="0.1"), "label_smoothing='0.1'"),
        (IDS, dict(problem_type="regression", label_smoothing=0.1), "label_smoothing=0 for problem_type='regression'"),
    ],
)
def test_bad_labels_and_arguments_are_named(labels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        classification_loss(labels, LOGITS, **kwargs)


def test_check_class_ids_returns_flat_int32():
    ids = check_class_ids(np.array([[2], [0]]), 3)
    assert keras.backend.standardize_dtype(ids.dtype) == "int32" and np.array_equal(np.asarray(ids), [2, 0])


# === Keras loss class ===
def test_classification_loss_class_values_and_reduction():
    loss = ClassificationLoss(problem_type=SINGLE, label_smoothing=0.1)
    target = 0.9 * np.eye(3)[IDS] + 0.1 / 3
    per_example = soft_cross_entropy(target, LOGITS)
    assert_loss(loss(IDS, LOGITS), per_example.mean())
    assert_loss(loss(np.eye(3, dtype="float32")[IDS], LOGITS), per_example.mean())
    # Keras' reduction: sum(w·loss) / batch size, as keras.losses.CategoricalCrossentropy.
    keras_loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    assert_loss(loss(IDS, LOGITS, WEIGHTS), (per_example * WEIGHTS).sum() / 3)
    assert_loss(loss(IDS, LOGITS, WEIGHTS), float(keras_loss(np.eye(3)[IDS], LOGITS, WEIGHTS)))
    # problem_type=None infers from the labels' dtype per call, which Keras' cast would hide.
    inferred = ClassificationLoss()
    assert_loss(inferred(IDS, LOGITS), soft_cross_entropy(np.eye(3)[IDS], LOGITS).mean())
    multi = np.eye(3, dtype="float32")[IDS]
    assert_loss(inferred(multi, LOGITS), sigmoid_cross_entropy(multi, LOGITS).mean())
    with pytest.raises(ValueError, match="problem_type='multi'"):
        ClassificationLoss(problem_type="multi")


def test_classification_loss_class_serializes_and_trains(tmp_path):
    loss = ClassificationLoss(problem_type=SINGLE, label_smoothing=0.2, reduction="sum")
    config = keras.saving.serialize_keras_object(loss)
    assert config["registered_name"] == "keras_vit>ClassificationLoss"
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, ClassificationLoss)
    assert (restored.problem_type, restored.label_smoothing, restored.reduction) == (SINGLE, 0.2, "sum")
    assert set(restored.get_config()) == set(keras.losses.Loss().get_config()) | {"problem_type", "label_smoothing"}

    model = keras_vit.ViTForImageClassification(tiny_config(keras_vit.ViTForImageClassification))
    model.compile(keras.optimizers.Adam(1e-3), loss=ClassificationLoss(problem_type=SINGLE, label_smoothing=0.1))
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
    mixed = keras.layers.MixUp(seed=0)({"images": images, "labels": np.eye(3)[np.arange(8) % 3]})
    soft = keras.ops.convert_to_numpy(mixed["labels"])
    assert not np.all(np.isin(soft, [0.0, 1.0]))  # really mixed
    logits = model.predict(images, verbose=0)["logits"]
    expected = classification_loss(soft, logits, label_smoothing=0.1, problem_type=SINGLE)
    assert_loss(model.evaluate(images, soft, verbose=0), float(expected))
    history = model.fit(images, soft, epochs=3, batch_size=8, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.loss, ClassificationLoss) and loaded.loss.label_smoothing == 0.1
    expected = model.evaluate(images, soft, verbose=0)
    np.testing.assert_allclose(loaded.evaluate(images, soft, verbose=0), expected, rtol=1e-5)
