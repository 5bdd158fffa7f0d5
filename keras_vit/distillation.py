"""Training a DeiT student from a teacher: the distillation losses and a `keras.Model` that fits with them.

Touvron et al. 2021, "Training data-efficient image transformers & distillation through
attention", section 4: the student's class head learns the labels and its distillation
head learns the teacher, either its argmax ("hard") or its temperature-softened
distribution ("soft", Hinton et al. 2015). Labels are class ids or, for MixUp / CutMix
(DeiT's recipe, section 6), per-class probabilities; see `keras_vit.losses.class_targets`.
"""

import keras
from keras import ops

from keras_vit.losses import after_label_check, class_targets, is_soft_labels, weighted_mean
from keras_vit.models.deit import DeiTForImageClassificationWithTeacher

DISTILLATION_MODES = ("hard", "soft", "none")


def _cross_entropy(labels, logits, label_smoothing=0.0, sample_weight=None):
    """Softmax cross-entropy against class ids or probabilities (`class_targets`), optionally label-smoothed."""
    logits = ops.cast(logits, "float32")
    target = class_targets(labels, logits.shape[-1], label_smoothing)
    return weighted_mean(ops.categorical_crossentropy(target, logits, from_logits=True), sample_weight)


def _teacher_cross_entropy(teacher_logits, logits, sample_weight=None):
    """Softmax cross-entropy against the teacher's argmax (always a valid class id)."""
    logits = ops.cast(logits, "float32")
    target = ops.one_hot(ops.argmax(teacher_logits, axis=-1), logits.shape[-1], dtype="float32")
    return weighted_mean(ops.categorical_crossentropy(target, logits, from_logits=True), sample_weight)


def hard_distillation_loss(
    labels, cls_logits, distillation_logits, teacher_logits, label_smoothing=0.0, sample_weight=None
):
    """DeiT hard-label distillation (Touvron et al. 2021, section 4, "Hard-label distillation").

    loss = ½·CE(cls_logits, labels) + ½·CE(distillation_logits, argmax(teacher_logits)),
    each cross-entropy a (weighted) mean over the batch. Label smoothing (ε: the target is
    (1 − ε)·one_hot + ε / num_labels, as timm and Keras) applies to the labels only, not to
    the teacher's labels, as in the DeiT code.

    Args:
        labels: class ids, int tensor (batch,) or (batch, 1) in [0, num_labels), or
            per-class probabilities, float tensor (batch, num_labels) (one-hot, MixUp, CutMix).
        cls_logits: float tensor (batch, num_labels), the student's class head.
        distillation_logits: float tensor (batch, num_labels), the student's distillation head.
        teacher_logits: float tensor (batch, num_labels).
        label_smoothing: float in [0, 1).
        sample_weight: optional float tensor (batch,).

    Returns:
        dict of float32 scalars: `loss` (the total), `cls_loss` and `distillation_loss` (the
        two cross-entropies before the ½ weights).

    Raises:
        ValueError: labels of another shape, or class ids outside [0, num_labels) (eagerly;
            inside `fit`'s graphs see `keras_vit.losses.check_class_ids`).

    >>> zeros = keras.ops.zeros((1, 2))
    >>> float(hard_distillation_loss(keras.ops.array([0]), zeros, zeros, keras.ops.array([[0.0, 1.0]]))["loss"])
    0.6931...
    """
    (distillation_logits,) = after_label_check(labels, ops.shape(cls_logits)[-1], distillation_logits)
    cls_loss = _cross_entropy(labels, cls_logits, label_smoothing, sample_weight)
    distillation_loss = _teacher_cross_entropy(teacher_logits, distillation_logits, sample_weight)
    return {"loss": 0.5 * (cls_loss + distillation_loss), "cls_loss": cls_loss, "distillation_loss": distillation_loss}


def soft_distillation_loss(
    labels,
    cls_logits,
    distillation_logits,
    teacher_logits,
    alpha=0.5,
    temperature=1.0,
    label_smoothing=0.0,
    sample_weight=None,
):
    """DeiT soft distillation (Touvron et al. 2021, section 4, "Soft distillation"; Hinton et al. 2015).

    loss = (1 − α)·CE(cls_logits, labels) + α·τ²·KL(p_teacher ‖ p_student), where
    p_teacher = softmax(teacher_logits / τ) and p_student = softmax(distillation_logits / τ);
    the KL divergence is summed over classes and (weighted) averaged over the batch. The τ²
    factor keeps the gradient scale independent of τ (Hinton et al. 2015, section 2). The
    DeiT code also divides its KL term by num_labels; this function does not. Label
    smoothing applies to the labels only.

    Args:
        labels: class ids, int tensor (batch,) or (batch, 1) in [0, num_labels), or
            per-class probabilities, float tensor (batch, num_labels) (one-hot, MixUp, CutMix).
        cls_logits: float tensor (batch, num_labels), the student's class head.
        distillation_logits: float tensor (batch, num_labels), the student's distillation head.
        teacher_logits: float tensor (batch, num_labels).
        alpha: float in [0, 1], weight α of the distillation term.
        temperature: float τ > 0.
        label_smoothing: float in [0, 1).
        sample_weight: optional float tensor (batch,).

    Returns:
        dict of float32 scalars: `loss` (the total), `cls_loss` (the cross-entropy) and
        `distillation_loss` (τ²·KL), before the (1 − α) and α weights.

    Raises:
        ValueError: labels of another shape, or class ids outside [0, num_labels) (eagerly;
            inside `fit`'s graphs see `keras_vit.losses.check_class_ids`).
    """
    (distillation_logits,) = after_label_check(labels, ops.shape(cls_logits)[-1], distillation_logits)
    cls_loss = _cross_entropy(labels, cls_logits, label_smoothing, sample_weight)
    teacher_log_probs = ops.log_softmax(ops.cast(teacher_logits, "float32") / temperature, axis=-1)
    student_log_probs = ops.log_softmax(ops.cast(distillation_logits, "float32") / temperature, axis=-1)
    kl = ops.sum(ops.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs), axis=-1)
    distillation_loss = temperature**2 * weighted_mean(kl, sample_weight)
    return {
        "loss": (1.0 - alpha) * cls_loss + alpha * distillation_loss,
        "cls_loss": cls_loss,
        "distillation_loss": distillation_loss,
    }


def label_loss(labels, cls_logits, distillation_logits, label_smoothing=0.0, sample_weight=None):
    """Both heads against the labels, no teacher: ½·CE(cls_logits, labels) + ½·CE(distillation_logits, labels).

    The `distillation="none"` baseline: DeiT's two heads trained without a teacher (as the
    model's built-in loss); label smoothing applies to both terms.

    Args:
        labels, cls_logits, distillation_logits, label_smoothing, sample_weight: as
            `hard_distillation_loss`.

    Returns:
        dict of float32 scalars `loss`, `cls_loss` and `distillation_loss`.

    Raises:
        ValueError: as `hard_distillation_loss`.
    """
    cls_loss = _cross_entropy(labels, cls_logits, label_smoothing, sample_weight)
    distillation_loss = _cross_entropy(labels, distillation_logits, label_smoothing, sample_weight)
    return {"loss": 0.5 * (cls_loss + distillation_loss), "cls_loss": cls_loss, "distillation_loss": distillation_loss}


def _shares_weights(student, teacher):
    """Whether `teacher` is `student` or holds one of its (built) variables."""
    return teacher is student or bool({id(v) for v in student.weights} & {id(v) for v in teacher.weights})


@keras.saving.register_keras_serializable(package="keras_vit")
class DistillationTrainer(keras.Model):
    """Fits a DeiT student against labels and a frozen teacher with `fit(images, labels)`.

    The teacher is set to `trainable=False` and called with `training=False` on the same
    `pixel_values` as the student, so its weights (BatchNorm statistics included) never
    change; it must output logits (batch, num_labels) or a dict with `logits`. The loss is
    one of `hard_distillation_loss`, `soft_distillation_loss` or `label_loss`; `compile`
    takes an optimizer and optional metrics (computed on the averaged `logits`), not a loss.

    Metrics, in `fit`'s history and `evaluate`: `loss`; `cls_loss` and `distillation_loss`
    (the two terms, see the loss functions); `cls_accuracy`, `distillation_accuracy` and
    `accuracy` (the heads and their average, against the labels; against the argmax of
    soft labels). Metrics given to `compile` read the averaged `logits` and the labels as
    given (e.g. `keras.metrics.CategoricalAccuracy` for soft labels).

    Labels are class ids (batch,) or per-class probabilities (batch, num_labels). For DeiT's
    MixUp / CutMix (Touvron et al. 2021, section 6), mix in the data pipeline with
    `keras.layers.MixUp` / `keras.layers.CutMix` on one-hot labels: each batch reaches the
    trainer as (mixed images, soft labels) and the teacher sees the mixed images, as in the
    DeiT code. Keras optimizers' `use_ema=True` works as with any model: after `fit` the
    student holds the moving averages of its weights.

    `call` / `predict` return the student's outputs. Save the student with
    `trainer.student.save("student.keras")`; saving the whole trainer also works.

    Args:
        student: a `DeiTForImageClassificationWithTeacher`.
        teacher: a Keras model (or layer) mapping the student's pixel_values to logits
            (batch, num_labels) or a dict with `logits`; None only with distillation="none".
            A teacher trained on other preprocessing (e.g. pixels in [0, 1]) should start
            with the layers that undo the student's (e.g. `keras.layers.Rescaling`).
        distillation: "hard", "soft" or "none".
        alpha: float in [0, 1], weight of the soft distillation term.
        temperature: float > 0, softmax temperature of soft distillation.
        label_smoothing: float in [0, 1), applied to the label terms.

    Call arguments:
        inputs: the student's inputs: `pixel_values` float32 (batch, height, width, channels),
            or a list or dict as the student takes.
        training: bool, enables the student's dropout.

    Returns:
        the student's dict: `logits`, `cls_logits`, `distillation_logits`, each
        (batch, num_labels).

    Raises:
        ValueError: a student that is not a `DeiTForImageClassificationWithTeacher`, a
            missing teacher, a teacher that is the student or shares its weights (it
            would be frozen with them), an unknown distillation mode, alpha outside [0, 1],
            temperature <= 0, or label_smoothing outside [0, 1); and at `fit` / `evaluate`, a
            loss given to `compile`, missing labels, or teacher logits whose width is not
            num_labels.

    >>> import keras_vit, numpy as np, tensorflow as tf
    >>> config = keras_vit.DeiTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...     intermediate_size=37, image_size=32, patch_size=8, num_labels=3)
    >>> student = keras_vit.DeiTForImageClassificationWithTeacher(config)
    >>> teacher = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(3)])
    >>> images = np.random.default_rng(0).uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
    >>> one_hot = np.eye(3, dtype="float32")[np.arange(8) % 3]
    >>> mixup = keras.layers.MixUp(alpha=0.8)
    >>> def mix(images, labels):
    ...     mixed = mixup({"images": images, "labels": labels})
    ...     return mixed["images"], mixed["labels"]
    >>> dataset = tf.data.Dataset.from_tensor_slices((images, one_hot)).batch(4).map(mix)
    >>> trainer = DistillationTrainer(student, teacher, distillation="hard")
    >>> trainer.compile(keras.optimizers.AdamW(5e-4, use_ema=True))
    >>> history = trainer.fit(dataset, epochs=2, verbose=0)
    >>> sorted(history.history)
    ['accuracy', 'cls_accuracy', 'cls_loss', 'distillation_accuracy', 'distillation_loss', 'loss']

    Save the student alone with `trainer.student.save("deit_student.keras")`.
    """

    def __init__(
        self, student, teacher, distillation="hard", alpha=0.5, temperature=1.0, label_smoothing=0.0, **kwargs
    ):
        super().__init__(**kwargs)
        if not isinstance(student, DeiTForImageClassificationWithTeacher):
            raise ValueError(
                f"Expected student to be a DeiTForImageClassificationWithTeacher. Received: {type(student).__name__}"
            )
        if distillation not in DISTILLATION_MODES:
            raise ValueError(
                f"Expected distillation to be one of {DISTILLATION_MODES}. Received: distillation={distillation!r}"
            )
        if teacher is None and distillation != "none":
            raise ValueError(f'Expected a teacher model for distillation={distillation!r}. Received: teacher=None')
        if teacher is not None and _shares_weights(student, teacher):
            raise ValueError(
                "Expected a teacher that is not the student and shares none of its weights: the teacher is frozen, "
                "so freezing the student's own weights would train nothing. Received: teacher="
                f"{'student' if teacher is student else type(teacher).__name__ + ' sharing weights with the student'}"
            )
        if not 0 <= alpha <= 1:
            raise ValueError(f"Expected alpha in [0, 1]. Received: alpha={alpha}")
        if not temperature > 0:
            raise ValueError(f"Expected temperature > 0. Received: temperature={temperature}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"Expected label_smoothing in [0, 1). Received: label_smoothing={label_smoothing}")
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.distillation = distillation
        self.alpha = alpha
        self.temperature = temperature
        self.label_smoothing = label_smoothing
        self.cls_loss_tracker = keras.metrics.Mean(name="cls_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.accuracies = {
            "cls_logits": keras.metrics.SparseCategoricalAccuracy(name="cls_accuracy"),
            "distillation_logits": keras.metrics.SparseCategoricalAccuracy(name="distillation_accuracy"),
            "logits": keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
        }

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def teacher_logits(self, inputs):
        """The frozen teacher's logits (batch, num_labels) on the student's `pixel_values`, gradient-free.

        Raises:
            ValueError: teacher logits whose last axis is not the student's num_labels.
        """
        inputs, _ = self.student.standardize_inputs(inputs)
        pixel_values = inputs[0] if isinstance(inputs, list) else inputs
        logits = self.teacher(pixel_values, training=False)
        if isinstance(logits, dict):
            logits = logits["logits"]
        num_labels = self.student.config.num_labels
        if logits.shape[-1] != num_labels:
            raise ValueError(
                f"Expected teacher logits of shape (batch, {num_labels}), the student's num_labels. "
                f"Received: shape={tuple(logits.shape)}"
            )
        return ops.stop_gradient(logits)

    def loss_terms(self, x, y, y_pred, sample_weight=None):
        """The chosen loss function's dict (`loss`, `cls_loss`, `distillation_loss`) for one batch."""
        common = dict(
            labels=y,
            cls_logits=y_pred["cls_logits"],
            distillation_logits=y_pred["distillation_logits"],
            label_smoothing=self.label_smoothing,
            sample_weight=sample_weight,
        )
        if self.distillation == "none":
            return label_loss(**common)
        if self.distillation == "hard":
            return hard_distillation_loss(teacher_logits=self.teacher_logits(x), **common)
        return soft_distillation_loss(
            teacher_logits=self.teacher_logits(x), alpha=self.alpha, temperature=self.temperature, **common
        )

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self.loss is not None:
            raise ValueError(
                f"DistillationTrainer computes its own loss (distillation={self.distillation!r}); "
                f"compile it without one. Received: loss={self.loss!r}"
            )
        if y is None:
            raise ValueError("DistillationTrainer.fit needs labels (y). Received y=None.")
        terms = self.loss_terms(x, y, y_pred, sample_weight)
        batch_size = ops.shape(y_pred["logits"])[0]
        self.cls_loss_tracker.update_state(terms["cls_loss"], sample_weight=batch_size)
        self.distillation_loss_tracker.update_state(terms["distillation_loss"], sample_weight=batch_size)
        loss = terms["loss"]
        if self.losses:
            loss = loss + ops.sum(self.losses)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        class_ids = ops.argmax(y, axis=-1) if is_soft_labels(y, self.student.config.num_labels) else y
        for key, metric in self.accuracies.items():
            metric.update_state(class_ids, y_pred[key], sample_weight)
        return super().compute_metrics(x, y, y_pred["logits"], sample_weight)

    def get_config(self):
        return {
            **super().get_config(),
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "distillation": self.distillation,
            "alpha": self.alpha,
            "temperature": self.temperature,
            "label_smoothing": self.label_smoothing,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in ("student", "teacher"):
            config[name] = keras.saving.deserialize_keras_object(config[name])
        return cls(**config)
