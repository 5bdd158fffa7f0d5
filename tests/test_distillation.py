import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vit
from keras_vit.distillation import DistillationTrainer, hard_distillation_loss, label_loss, soft_distillation_loss
from tests.conftest import tiny_config

LABELS = np.array([0, 2])
CLS_LOGITS = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 1.0]], "float32")
DISTILLATION_LOGITS = np.array([[0.0, 1.0, 0.0], [1.0, -1.0, 0.5]], "float32")
TEACHER_LOGITS = np.array([[0.0, 3.0, 0.0], [2.0, 0.0, 1.0]], "float32")  # argmax [1, 0], not the labels
WEIGHTS = np.array([1.0, 3.0], "float32")


def log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def cross_entropy(labels, logits, smoothing=0.0, weights=np.ones(2)):
    target = np.eye(3)[labels] * (1 - smoothing) + smoothing / 3
    per_example = -(target * log_softmax(logits)).sum(-1)
    return (per_example * weights).sum() / weights.sum()


def assert_terms(got, loss, cls_loss, distillation_loss):
    np.testing.assert_allclose(
        [float(got["loss"]), float(got["cls_loss"]), float(got["distillation_loss"])],
        [loss, cls_loss, distillation_loss],
        rtol=1e-5,
    )


def test_hard_distillation_loss_by_hand():
    # Zero logits: every cross-entropy is log 3.
    zeros = np.zeros((2, 3), "float32")
    assert_terms(hard_distillation_loss(LABELS, zeros, zeros, TEACHER_LOGITS), np.log(3), np.log(3), np.log(3))
    cls_loss = cross_entropy(LABELS, CLS_LOGITS, weights=WEIGHTS)
    distillation_loss = cross_entropy(np.array([1, 0]), DISTILLATION_LOGITS, weights=WEIGHTS)
    got = hard_distillation_loss(LABELS, CLS_LOGITS, DISTILLATION_LOGITS, TEACHER_LOGITS, sample_weight=WEIGHTS)
    assert_terms(got, 0.5 * (cls_loss + distillation_loss), cls_loss, distillation_loss)


def test_label_smoothing_applies_to_the_labels_only():
    got = hard_distillation_loss(LABELS, CLS_LOGITS, DISTILLATION_LOGITS, TEACHER_LOGITS, label_smoothing=0.2)
    cls_loss = cross_entropy(LABELS, CLS_LOGITS, smoothing=0.2)
    distillation_loss = cross_entropy(np.array([1, 0]), DISTILLATION_LOGITS)
    assert_terms(got, 0.5 * (cls_loss + distillation_loss), cls_loss, distillation_loss)
    assert cls_loss != pytest.approx(cross_entropy(LABELS, CLS_LOGITS))


def test_soft_distillation_loss_by_hand():
    # One example, teacher certain of class 0 at τ = 1: KL = -log softmax(student)[0].
    got = soft_distillation_loss([1], [[0.0, 0.0]], [[0.0, 0.0]], [[100.0, 0.0]], alpha=1.0)
    assert_terms(got, np.log(2), np.log(2), np.log(2))
    tau, alpha = 2.0, 0.3
    teacher = log_softmax(TEACHER_LOGITS / tau)
    kl = (np.exp(teacher) * (teacher - log_softmax(DISTILLATION_LOGITS / tau))).sum(-1)
    distillation_loss = tau**2 * (kl * WEIGHTS).sum() / WEIGHTS.sum()
    cls_loss = cross_entropy(LABELS, CLS_LOGITS, smoothing=0.1, weights=WEIGHTS)
    got = soft_distillation_loss(
        LABELS,
        CLS_LOGITS,
        DISTILLATION_LOGITS,
        TEACHER_LOGITS,
        alpha=alpha,
        temperature=tau,
        label_smoothing=0.1,
        sample_weight=WEIGHTS,
    )
    assert_terms(got, (1 - alpha) * cls_loss + alpha * distillation_loss, cls_loss, distillation_loss)
    # Identical distributions: no distillation loss, whatever τ.
    same = soft_distillation_loss(LABELS, CLS_LOGITS, TEACHER_LOGITS, TEACHER_LOGITS, temperature=5.0)
    assert float(same["distillation_loss"]) == pytest.approx(0.0, abs=1e-5)


def test_label_loss_by_hand():
    got = label_loss(LABELS, CLS_LOGITS, DISTILLATION_LOGITS, label_smoothing=0.1)
    cls_loss = cross_entropy(LABELS, CLS_LOGITS, smoothing=0.1)
    distillation_loss = cross_entropy(LABELS, DISTILLATION_LOGITS, smoothing=0.1)
    assert_terms(got, 0.5 * (cls_loss + distillation_loss), cls_loss, distillation_loss)


SOFT = np.array([[0.7, 0.0, 0.3], [0.0, 0.4, 0.6]], "float32")  # MixUp targets


def soft_cross_entropy(target, logits, smoothing=0.0, weights=np.ones(2)):
    target = target * (1 - smoothing) + smoothing / 3
    return (-(target * log_softmax(logits)).sum(-1) * weights).sum() / weights.sum()


@pytest.mark.parametrize("loss", [hard_distillation_loss, soft_distillation_loss, label_loss])
def test_one_hot_labels_equal_class_ids(loss):
    teacher = () if loss is label_loss else (TEACHER_LOGITS,)
    by_id = loss(LABELS, CLS_LOGITS, DISTILLATION_LOGITS, *teacher, label_smoothing=0.1, sample_weight=WEIGHTS)
    one_hot = np.eye(3, dtype="float32")[LABELS]
    by_one_hot = loss(one_hot, CLS_LOGITS, DISTILLATION_LOGITS, *teacher, label_smoothing=0.1, sample_weight=WEIGHTS)
    assert_terms(by_one_hot, float(by_id["loss"]), float(by_id["cls_loss"]), float(by_id["distillation_loss"]))


def test_soft_labels_by_hand():
    cls_loss = soft_cross_entropy(SOFT, CLS_LOGITS, smoothing=0.1, weights=WEIGHTS)
    teacher_loss = cross_entropy(np.array([1, 0]), DISTILLATION_LOGITS, weights=WEIGHTS)
    got = hard_distillation_loss(
        SOFT, CLS_LOGITS, DISTILLATION_LOGITS, TEACHER_LOGITS, label_smoothing=0.1, sample_weight=WEIGHTS
    )
    assert_terms(got, 0.5 * (cls_loss + teacher_loss), cls_loss, teacher_loss)
    both = soft_cross_entropy(SOFT, DISTILLATION_LOGITS)
    assert_terms(label_loss(SOFT, CLS_LOGITS, DISTILLATION_LOGITS), 0.5 * (soft_cross_entropy(SOFT, CLS_LOGITS) + both),
                 soft_cross_entropy(SOFT, CLS_LOGITS), both)
    got = soft_distillation_loss(SOFT, CLS_LOGITS, DISTILLATION_LOGITS, TEACHER_LOGITS, alpha=0.0)
    assert float(got["loss"]) == pytest.approx(soft_cross_entropy(SOFT, CLS_LOGITS), rel=1e-5)


@pytest.mark.parametrize("loss", [hard_distillation_loss, soft_distillation_loss, label_loss])
@pytest.mark.parametrize("labels, values", [([0, 3], r"\[3\]"), ([-1, 2], r"\[-1\]"), ([[5], [9]], r"\[5, 9\]")])
def test_out_of_range_labels_raise(loss, labels, values):
    teacher = () if loss is label_loss else (TEACHER_LOGITS,)
    message = r"class labels in \[0, 3\) \(num_labels=3\). Received: labels with values " + values
    with pytest.raises(ValueError, match=message):
        loss(np.array(labels), CLS_LOGITS, DISTILLATION_LOGITS, *teacher)
    graph = tf.function(lambda y: loss(y, CLS_LOGITS, DISTILLATION_LOGITS, *teacher)["loss"])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"class labels in \[0, 3\)"):
        graph(tf.constant(labels))


def test_labels_of_another_shape_are_refused():
    with pytest.raises(ValueError, match=r"probabilities of shape \(batch, 3\). Received: labels of shape \(2, 4\)"):
        label_loss(np.zeros((2, 4), "float32"), CLS_LOGITS, DISTILLATION_LOGITS)


# === Trainer ===
def student():
    return keras_vit.DeiTForImageClassificationWithTeacher(tiny_config(keras_vit.DeiTForImageClassificationWithTeacher))


def channel_teacher():
    """Predicts the channel with the largest mean; BatchNorm and Dropout would change it if trained."""
    teacher = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(3, kernel_initializer="identity", bias_initializer="zeros"),
        ]
    )
    return teacher


def channel_data(count, seed=0):
    """Images brightened on channel c (the teacher's class); labels (c + 1) % 3, never the teacher's."""
    rng = np.random.default_rng(seed)
    channel = rng.integers(0, 3, count)
    images = rng.uniform(-1, 1, (count, 32, 32, 3)).astype("float32")
    images[np.arange(count), :, :, channel] += 0.5
    return images, (channel + 1) % 3, channel


def test_a_teacher_that_is_or_shares_the_student_is_refused():
    model = student()
    with pytest.raises(ValueError, match="Expected a teacher that is not the student.*Received: teacher=student"):
        DistillationTrainer(model, teacher=model)
    inputs = keras.Input((32, 32, 3))
    wrapper = keras.Model(inputs, model(inputs)["logits"])
    with pytest.raises(ValueError, match="Received: teacher=Functional sharing weights with the student"):
        DistillationTrainer(model, teacher=wrapper)
    assert model.trainable  # nothing was frozen
    DistillationTrainer(model, teacher=channel_teacher())


@pytest.mark.parametrize("mode", ["hard", "soft", "none"])
def test_trainer_loss_is_the_loss_function(mode):
    teacher = channel_teacher()
    trainer = DistillationTrainer(
        student(), teacher, distillation=mode, alpha=0.3, temperature=2.0, label_smoothing=0.1
    )
    trainer.compile("adam")
    images, labels, _ = channel_data(4)
    out = trainer(images)
    heads = (labels, out["cls_logits"], out["distillation_logits"])
    if mode == "hard":
        expected = hard_distillation_loss(*heads, teacher(images), label_smoothing=0.1)
    elif mode == "soft":
        expected = soft_distillation_loss(*heads, teacher(images), alpha=0.3, temperature=2.0, label_smoothing=0.1)
    else:
        expected = label_loss(*heads, label_smoothing=0.1)
    got = trainer.evaluate(images, labels, verbose=0, return_dict=True)
    assert_terms(got, float(expected["loss"]), float(expected["cls_loss"]), float(expected["distillation_loss"]))


@pytest.fixture(scope="module")
def fitted():
    keras.utils.set_random_seed(0)
    teacher = channel_teacher()
    before = [np.array(w) for w in teacher.weights]
    trainer = DistillationTrainer(student(), teacher, distillation="hard")
    trainer.compile(keras.optimizers.Adam(2e-3))
    images, labels, channel = channel_data(96)
    history = trainer.fit(images, labels, epochs=8, batch_size=16, verbose=0).history
    return trainer, teacher, before, history


def test_teacher_weights_do_not_change_during_fit(fitted):
    trainer, teacher, before, _ = fitted
    assert not teacher.trainable and not trainer.teacher.trainable_weights
    assert len(before) == 6  # BatchNorm moving statistics included
    for old, new in zip(before, teacher.weights):
        np.testing.assert_array_equal(old, np.array(new))


def test_distillation_head_learns_the_teacher(fitted):
    trainer, _, _, history = fitted
    images, labels, channel = channel_data(60, seed=1)  # held out
    assert np.array_equal(np.argmax(trainer.teacher(images), -1), channel)
    out = trainer.predict(images, verbose=0)
    distillation = np.argmax(out["distillation_logits"], -1)
    assert np.mean(distillation == channel) > 0.8
    assert np.mean(distillation == labels) < 0.2
    assert np.mean(np.argmax(out["cls_logits"], -1) == labels) > 0.5
    assert history["distillation_loss"][-1] < 0.5 * history["distillation_loss"][0]


def test_history_reports_both_heads_and_loss_parts(fitted):
    _, _, _, history = fitted
    names = {"loss", "cls_loss", "distillation_loss", "cls_accuracy", "distillation_accuracy", "accuracy"}
    assert set(history) == names
    assert all(len(values) == 8 and np.all(np.isfinite(values)) for values in history.values())
    # The reported loss is the ½/½ mix of the reported parts (both are epoch means).
    np.testing.assert_allclose(
        history["loss"], 0.5 * (np.array(history["cls_loss"]) + np.array(history["distillation_loss"])), rtol=1e-4
    )


def test_student_and_trainer_save_and_load(fitted, tmp_path):
    trainer, *_ = fitted
    images, _, _ = channel_data(4, seed=2)
    expected = trainer.predict(images, verbose=0)
    trainer.student.save(tmp_path / "student.keras")
    loaded = keras.saving.load_model(tmp_path / "student.keras")
    np.testing.assert_allclose(loaded.predict(images, verbose=0)["logits"], expected["logits"], atol=1e-6)
    trainer.save(tmp_path / "trainer.keras")
    loaded = keras.saving.load_model(tmp_path / "trainer.keras")
    assert isinstance(loaded, DistillationTrainer) and loaded.distillation == "hard" and not loaded.teacher.trainable
    np.testing.assert_allclose(loaded.predict(images, verbose=0)["logits"], expected["logits"], atol=1e-6)


def test_compiled_metrics_read_the_averaged_logits():
    trainer = DistillationTrainer(student(), None, distillation="none")
    trainer.compile("adam", metrics=[keras.metrics.SparseCategoricalAccuracy(name="mean_head_accuracy")])
    images, labels, _ = channel_data(8)
    got = trainer.evaluate(images, labels, verbose=0, return_dict=True)
    expected = np.mean(np.argmax(trainer.predict(images, verbose=0)["logits"], -1) == labels)
    assert got["mean_head_accuracy"] == pytest.approx(expected) == pytest.approx(got["accuracy"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(distillation="medium"), r"one of \('hard', 'soft', 'none'\). Received: distillation='medium'"),
        (dict(alpha=1.5), r"alpha in \[0, 1\]. Received: alpha=1.5"),
        (dict(alpha=-0.1), r"alpha in \[0, 1\]. Received: alpha=-0.1"),
        (dict(temperature=0.0), "temperature > 0. Received: temperature=0.0"),
        (dict(temperature=-2), "temperature > 0. Received: temperature=-2"),
        (dict(label_smoothing=1.0), r"label_smoothing in \[0, 1\). Received: label_smoothing=1.0"),
        (dict(teacher=None), "Expected a teacher model for distillation='hard'. Received: teacher=None"),
        (
            dict(student=keras_vit.ViTForImageClassification(tiny_config(keras_vit.ViTForImageClassification))),
            "DeiTForImageClassificationWithTeacher. Received: ViTForImageClassification",
        ),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    kwargs = {"student": student(), "teacher": channel_teacher(), **kwargs}
    with pytest.raises(ValueError, match=message):
        DistillationTrainer(**kwargs)


def test_bad_fit_setups_are_named():
    images, labels, _ = channel_data(4)
    wide_teacher = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(5)])
    trainer = DistillationTrainer(student(), wide_teacher)
    trainer.compile("adam")
    with pytest.raises(ValueError, match=r"teacher logits of shape \(batch, 3\).*Received: shape=\(4, 5\)"):
        trainer.evaluate(images, labels, batch_size=4, verbose=0)
    with pytest.raises(ValueError, match="needs labels"):
        trainer.fit(images, epochs=1, verbose=0)
    trainer = DistillationTrainer(student(), channel_teacher())
    trainer.compile("adam", loss="mse")
    with pytest.raises(ValueError, match="computes its own loss.*Received: loss='mse'"):
        trainer.fit(images, labels, epochs=1, verbose=0)


def mixup_dataset(images, labels, batch_size, seed=0):
    """(mixed images, soft labels) batches from keras.layers.MixUp on one-hot labels, as in DeiT's pipeline."""
    mixup = keras.layers.MixUp(alpha=0.8, seed=seed)

    def mix(x, y):
        mixed = mixup({"images": x, "labels": y})
        return mixed["images"], mixed["labels"]

    one_hot = np.eye(3, dtype="float32")[labels]
    return tf.data.Dataset.from_tensor_slices((images, one_hot)).batch(batch_size).map(mix)


@pytest.mark.parametrize("mode", ["hard", "soft", "none"])
def test_trainer_with_mixup_soft_labels(mode):
    teacher = channel_teacher()
    trainer = DistillationTrainer(student(), teacher, distillation=mode, alpha=0.3, temperature=2.0)
    trainer.compile("adam", metrics=[keras.metrics.CategoricalAccuracy(name="soft_accuracy")])
    images, labels, _ = channel_data(8)
    mixed_images, soft = next(iter(mixup_dataset(images, labels, 8)))
    mixed_images, soft = mixed_images.numpy(), soft.numpy()
    assert not np.allclose(mixed_images, images) and not np.all(np.isin(soft, [0.0, 1.0]))
    out = trainer(mixed_images)
    heads = (soft, out["cls_logits"], out["distillation_logits"])
    # The teacher sees the mixed images.
    if mode == "hard":
        expected = hard_distillation_loss(*heads, teacher(mixed_images))
    elif mode == "soft":
        expected = soft_distillation_loss(*heads, teacher(mixed_images), alpha=0.3, temperature=2.0)
    else:
        expected = label_loss(*heads)
    got = trainer.evaluate(mixed_images, soft, batch_size=8, verbose=0, return_dict=True)
    assert_terms(got, float(expected["loss"]), float(expected["cls_loss"]), float(expected["distillation_loss"]))
    # Accuracies compare against the argmax of the soft labels.
    dominant = soft.argmax(-1)
    for key, name in [("cls_logits", "cls_accuracy"), ("distillation_logits", "distillation_accuracy")]:
        assert got[name] == pytest.approx(np.mean(np.argmax(out[key], -1) == dominant))
    assert got["soft_accuracy"] == pytest.approx(got["accuracy"]) == pytest.approx(
        np.mean(np.argmax(out["logits"], -1) == dominant)
    )
    history = trainer.fit(mixup_dataset(images, labels, 4), epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))


def test_trainer_fit_refuses_out_of_range_labels():
    trainer = DistillationTrainer(student(), channel_teacher(), distillation="hard")
    trainer.compile("adam")
    images, labels, _ = channel_data(4)
    labels[2] = 3
    before = [np.array(w) for w in trainer.student.weights]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"class labels in \[0, 3\)"):
        trainer.fit(images, labels, batch_size=4, epochs=1, verbose=0)
    for old, new in zip(before, trainer.student.weights):
        np.testing.assert_array_equal(old, np.array(new))


class RecordWeights(keras.callbacks.Callback):
    def __init__(self, variables):
        super().__init__()
        self.variables, self.steps = variables, []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append([np.array(v) for v in self.variables])


def test_trainer_with_ema_ends_on_the_moving_average():
    teacher = channel_teacher()
    teacher_before = [np.array(w) for w in teacher.weights]
    trainer = DistillationTrainer(student(), teacher, distillation="soft")
    momentum = 0.8
    trainer.compile(keras.optimizers.AdamW(1e-2, use_ema=True, ema_momentum=momentum))
    images, labels, _ = channel_data(24)
    record = RecordWeights(trainer.student.trainable_weights)
    trainer.fit(mixup_dataset(images, labels, 8), epochs=2, verbose=0, callbacks=[record])
    assert len(record.steps) == 6
    # Keras' EMA: the first step copies the weights, later steps average with `momentum`.
    average = record.steps[0]
    for step in record.steps[1:]:
        average = [momentum * a + (1 - momentum) * w for a, w in zip(average, step)]
    final = [np.array(v) for v in trainer.student.trainable_weights]
    for expected, got, last in zip(average, final, record.steps[-1]):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert max(np.abs(g - w).max() for g, w in zip(final, record.steps[-1])) > 1e-3  # really swapped
    for old, new in zip(teacher_before, teacher.weights):
        np.testing.assert_array_equal(old, np.array(new))
