import keras
import numpy as np
import pytest

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


def test_one_hot_labels_are_refused():
    with pytest.raises(ValueError, match=r"integer class labels of shape \(batch,\). Received: shape=\(2, 3\)"):
        label_loss(np.eye(3)[LABELS], CLS_LOGITS, DISTILLATION_LOGITS)


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
