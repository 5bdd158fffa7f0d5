"""The losses the Hugging Face models compute when given labels, in `keras.ops`.

Used by the models when they are compiled without a `loss` (as the Hugging Face models
do): `classification_loss` for the classifiers (also as the Keras loss
`ClassificationLoss`), `simmim_loss` for masked image modeling. The label handling here
(`class_targets`, `check_class_ids`) is shared with `keras_vit.distillation`.
"""

import keras
import numpy as np
from keras import ops

PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


def weighted_mean(per_example, sample_weight):
    """Mean of a (batch,) tensor, weighted by an optional (batch,) sample_weight."""
    if sample_weight is None:
        return ops.mean(per_example)
    sample_weight = ops.cast(ops.reshape(sample_weight, (-1,)), per_example.dtype)
    return ops.sum(per_example * sample_weight) / ops.maximum(ops.sum(sample_weight), 1e-12)


def validate_loss_arguments(problem_type, label_smoothing):
    """Raises ValueError naming a problem_type outside PROBLEM_TYPES or a label_smoothing outside [0, 1)."""
    if problem_type is not None and problem_type not in PROBLEM_TYPES:
        raise ValueError(f"Expected problem_type to be None or one of {PROBLEM_TYPES}. Received: {problem_type=}")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)):
        raise ValueError(f"Expected label_smoothing to be a float in [0, 1). Received: {label_smoothing=}")
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"Expected label_smoothing to be a float in [0, 1). Received: {label_smoothing=}")
    if problem_type == "regression" and label_smoothing:
        raise ValueError(f"Expected label_smoothing=0 for problem_type='regression'. Received: {label_smoothing=}")


def _is_integer(labels):
    return "int" in keras.backend.standardize_dtype(ops.convert_to_tensor(labels).dtype)


def _class_ids_message(num_labels):
    return f"Expected integer class labels in [0, {num_labels}) (num_labels={num_labels})."


def _raise_for_bad_class_ids(ids, num_labels):
    ids = np.asarray(ids)
    bad = (ids < 0) | (ids >= num_labels) | (ids != np.round(ids))
    if bad.any():
        values = sorted(set(ids[bad].tolist()))
        raise ValueError(
            f"{_class_ids_message(num_labels)} Received: labels with values {values[:10]}. Map the labels to "
            f"0..{num_labels - 1}, or build the model with a config whose num_labels covers them."
        )


def check_labels(labels, num_labels, problem_type=None):
    """Checks in-memory `labels` (NumPy or tensors) as `classification_loss` would; returns nothing.

    Class ids outside [0, num_labels) raise the `ValueError` of `check_class_ids` at once;
    other labels (regression, multi-label, probabilities) are left to the loss.

    >>> check_labels(np.array([0, 3]), 3)
    Traceback (most recent call last):
    ...
    ValueError: Expected integer class labels in [0, 3) (num_labels=3). Received: labels with values [3]. Map ...
    >>> check_labels(np.array([[0.2, 0.8]], "float32"), 2, "single_label_classification")
    """
    if resolve_problem_type(labels, num_labels, problem_type) == "single_label_classification":
        if not is_soft_labels(labels, num_labels):
            _raise_for_bad_class_ids(np.reshape(ops.convert_to_numpy(labels), (-1,)), num_labels)


def check_class_ids(labels, num_labels):
    """Class ids (batch,) or (batch, 1) as int32 (batch,), refusing any id outside [0, num_labels).

    Eagerly (and on the PyTorch backend) a bad id raises `ValueError` at once. Inside a
    TensorFlow graph (`fit`'s `tf.function`) `tf.debugging` assertions raise
    `InvalidArgumentError` when the step runs; inside a JAX trace a `jax.debug.callback`
    raises (as `JaxRuntimeError`; Keras' JAX trainer donates the training state to the
    jitted step, so after such an error reload the model before using it again).
    XLA-compiled TensorFlow steps (`jit_compile=True`, Keras' default on GPUs) drop
    assertions, so there the check cannot run: the models' `fit` and `evaluate` check
    labels in memory and in datasets before Keras' steps (`keras_vit.models.data_checks`),
    and re-raise a check failed inside a step as this `ValueError`.

    Raises:
        ValueError: a negative, non-integral or >= num_labels id (eagerly; see above in graphs).

    >>> check_class_ids(np.array([0, 3]), 3)
    Traceback (most recent call last):
    ...
    ValueError: Expected integer class labels in [0, 3) (num_labels=3). Received: labels with values [3]. Map ...
    """
    labels = ops.reshape(ops.convert_to_tensor(labels), (-1,))
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly():
            message = _class_ids_message(num_labels)
            checks = [
                tf.debugging.assert_non_negative(labels, message=message),
                tf.debugging.assert_less(labels, tf.cast(num_labels, labels.dtype), message=message),
            ]
            if labels.dtype.is_floating:
                checks.append(tf.debugging.assert_equal(labels, tf.round(labels), message=message))
            with tf.control_dependencies(checks):
                return tf.cast(labels, "int32")
    elif backend == "jax":
        import jax

        if isinstance(labels, jax.core.Tracer):
            jax.debug.callback(_raise_for_bad_class_ids, labels, num_labels)
            return ops.cast(labels, "int32")
    _raise_for_bad_class_ids(ops.convert_to_numpy(labels), num_labels)
    return ops.cast(labels, "int32")


def after_label_check(labels, num_labels, *tensors):
    """Returns `tensors`, made to depend on `check_class_ids(labels, num_labels)` (soft labels: unchecked).

    Inside a TensorFlow graph an assertion only stops what depends on it; a loss term that
    does not read the labels (e.g. the teacher term of distillation) would still update its
    weights in a step whose labels fail. Passing that term's logits through here prevents
    it. Eagerly the check raises at once; in JAX a failed check fails the whole step.
    """
    if is_soft_labels(labels, num_labels):
        return tensors
    ids = check_class_ids(labels, num_labels)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly():
            with tf.control_dependencies([ids]):
                return tuple(tf.identity(t) for t in tensors)
    return tensors


def is_soft_labels(labels, num_labels):
    """Whether labels are per-class probabilities (batch, num_labels) rather than class ids (batch,) or (batch, 1)."""
    shape = ops.shape(labels)
    return len(shape) == 2 and shape[-1] == num_labels and num_labels > 1


def class_targets(labels, num_labels, label_smoothing=0.0):
    """Single-label targets: class ids or probabilities to a float32 (batch, num_labels) distribution.

    Class ids (batch,) or (batch, 1) are range-checked (`check_class_ids`) and one-hot
    encoded; probabilities (batch, num_labels) (one-hot, MixUp / CutMix mixtures) are used as
    they are. Label smoothing ε then gives (1 − ε)·target + ε / num_labels, as
    `keras.losses.CategoricalCrossentropy` and timm.

    Raises:
        ValueError: labels of another shape, or class ids outside [0, num_labels).
    """
    labels = ops.convert_to_tensor(labels)
    shape = tuple(ops.shape(labels))
    if is_soft_labels(labels, num_labels):
        target = ops.cast(labels, "float32")
    elif len(shape) == 1 or (len(shape) == 2 and shape[-1] == 1):
        target = ops.one_hot(check_class_ids(labels, num_labels), num_labels, dtype="float32")
    else:
        raise ValueError(
            f"Expected class ids of shape (batch,) or probabilities of shape (batch, {num_labels}). "
            f"Received: labels of shape {shape}"
        )
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + label_smoothing / num_labels
    return target


def resolve_problem_type(labels, num_labels, problem_type=None):
    """Hugging Face's rule (transformers `ForSequenceClassificationLoss`) when problem_type is None.

    One output (`num_labels == 1`): "regression"; integer labels:
    "single_label_classification"; anything else: "multi_label_classification". Where
    transformers has no answer (float labels of shape (batch,) or (batch, 1) with several
    outputs: its multi-label loss fails on the shape) they are class ids, single-label;
    Keras itself traces losses with float labels under `tf.distribute` strategies.
    """
    if problem_type is not None:
        return problem_type
    if num_labels == 1:
        return "regression"
    shape = tuple(ops.shape(labels))
    class_ids = len(shape) == 1 or (len(shape) == 2 and shape[-1] == 1)
    return "single_label_classification" if _is_integer(labels) or class_ids else "multi_label_classification"


def per_example_classification_loss(labels, logits, problem_type=None, label_smoothing=0.0):
    """`classification_loss` before the batch mean: float32 (batch,)."""
    validate_loss_arguments(problem_type, label_smoothing)
    logits = ops.cast(logits, "float32")
    num_labels = logits.shape[-1]
    problem_type = resolve_problem_type(labels, num_labels, problem_type)
    labels = ops.convert_to_tensor(labels)
    if problem_type == "single_label_classification":
        target = class_targets(labels, num_labels, label_smoothing)
        return ops.categorical_crossentropy(target, logits, from_logits=True)
    if problem_type == "regression":
        if int(np.prod(labels.shape[1:])) != num_labels:
            raise ValueError(
                f"Expected regression labels of shape (batch, {num_labels})"
                + (" or (batch,)" if num_labels == 1 else "")
                + f". Received: labels of shape {tuple(labels.shape)}"
            )
        labels = ops.reshape(ops.cast(labels, "float32"), ops.shape(logits))
        return ops.mean(ops.square(logits - labels), axis=-1)
    if tuple(labels.shape[1:]) != (num_labels,):
        raise ValueError(
            f"Expected multi-label labels of shape (batch, {num_labels}) (for single-label classification give "
            "class ids or set problem_type='single_label_classification'). "
            f"Received: labels of shape {tuple(labels.shape)}, dtype {keras.backend.standardize_dtype(labels.dtype)}"
        )
    labels = ops.cast(labels, "float32")
    if label_smoothing:
        labels = labels * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return ops.mean(ops.binary_crossentropy(labels, logits, from_logits=True), axis=-1)


def classification_loss(labels, logits, sample_weight=None, problem_type=None, label_smoothing=0.0):
    """The classifier loss of Hugging Face's `problem_type` rule (transformers `ForSequenceClassificationLoss`).

    - "regression": mean squared error over the batch and outputs;
    - "single_label_classification": softmax cross-entropy against class ids (batch,) or
      (batch, 1), or against probabilities (batch, num_labels): one-hot, MixUp / CutMix
      mixtures (an extension: transformers takes class ids only);
    - "multi_label_classification": sigmoid cross-entropy, averaged over outputs, against
      0/1 (or probability) labels (batch, num_labels).

    With `problem_type=None` it is inferred as transformers does (`resolve_problem_type`):
    regression when `num_labels == 1`, single-label for integer labels (or class ids of
    shape (batch,)), multi-label otherwise (so float one-hot labels need
    `problem_type="single_label_classification"`). Label smoothing ε
    moves single-label targets to (1 − ε)·target + ε / num_labels and multi-label targets
    to (1 − ε)·target + ε / 2, as `keras.losses.CategoricalCrossentropy` and
    `BinaryCrossentropy`. transformers' `ignore_index=-100` is not supported: every class id
    must be in [0, num_labels).

    Args:
        labels: tensor as above.
        logits: float tensor (batch, num_labels).
        sample_weight: optional tensor (batch,); the loss is sum(w·loss) / sum(w).
        problem_type: None or one of `PROBLEM_TYPES`.
        label_smoothing: float in [0, 1); must be 0 for regression.

    Returns:
        float32 scalar.

    Raises:
        ValueError: an unknown problem_type, a bad label_smoothing, labels of the wrong shape,
            or class ids outside [0, num_labels) (see `check_class_ids` for graphs).

    >>> logits = np.array([[2.0, 0.0, 0.0]], "float32")
    >>> round(float(classification_loss(np.array([0]), logits)), 4)
    0.2395
    >>> round(float(classification_loss(np.array([[1.0, 0.0, 0.0]]), logits,
    ...     problem_type="single_label_classification")), 4)
    0.2395
    """
    return weighted_mean(per_example_classification_loss(labels, logits, problem_type, label_smoothing), sample_weight)


@keras.saving.register_keras_serializable(package="keras_vit")
class ClassificationLoss(keras.losses.Loss):
    """`classification_loss` as a Keras loss, for `model.compile(loss=...)` on logits.

    Keras' `Loss.__call__` casts labels to the loss dtype, which would hide integer class
    ids from the `problem_type` rule; this class computes the per-example losses from the
    labels as given and leaves the reduction (and sample weights) to Keras, so with
    sample weights the default reduction divides by the batch size, as every Keras loss.

    Args:
        problem_type: None (inferred per batch, as transformers) or one of `PROBLEM_TYPES`.
        label_smoothing: float in [0, 1); must be 0 for regression.
        name, reduction, dtype: as `keras.losses.Loss`.

    Call arguments:
        y_true: class ids (batch,), probabilities or multi-label targets (batch, num_labels),
            or regression targets; see `classification_loss`.
        y_pred: float logits (batch, num_labels).
        sample_weight: optional (batch,).

    Raises:
        ValueError: a bad problem_type or label_smoothing (at construction), bad labels (at call).

    >>> loss = ClassificationLoss(problem_type="single_label_classification", label_smoothing=0.1)
    >>> round(float(loss(np.array([0, 1]), np.array([[2.0, 0.0], [0.0, 0.0]], "float32"))), 4)
    0.46
    """

    def __init__(self, problem_type=None, label_smoothing=0.0, name="classification_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        validate_loss_arguments(problem_type, label_smoothing)
        self.problem_type = problem_type
        self.label_smoothing = label_smoothing

    def __call__(self, y_true, y_pred, sample_weight=None):
        per_example = per_example_classification_loss(y_true, y_pred, self.problem_type, self.label_smoothing)
        return super().__call__(per_example, per_example, sample_weight)

    def call(self, y_true, y_pred):
        """Returns the per-example losses `__call__` computed (passed as both arguments)."""
        return y_pred

    def get_config(self):
        return {**super().get_config(), "problem_type": self.problem_type, "label_smoothing": self.label_smoothing}


def simmim_loss(pixel_values, reconstruction, bool_masked_pos, patch_size, sample_weight=None):
    """SimMIM L1 loss on masked patches (Xie et al. 2022, eq. 1; Hugging Face ViTForMaskedImageModeling).

    sum(|pixel_values − reconstruction| · mask) / (sum(mask) + 1e-5) / channels, with the
    per-patch mask upsampled to pixels.

    Args:
        pixel_values: float tensor (batch, height, width, channels), channels last.
        reconstruction: float tensor of the same shape.
        bool_masked_pos: bool/int tensor (batch, rows·cols), rows = height / patch_size[0].
        patch_size: (height, width) of one patch.
        sample_weight: optional tensor (batch,), weights each image's masked pixels.

    Returns:
        float32 scalar.
    """
    pixel_values = ops.cast(pixel_values, "float32")
    reconstruction = ops.cast(reconstruction, "float32")
    shape = ops.shape(pixel_values)
    rows, cols = shape[1] // patch_size[0], shape[2] // patch_size[1]
    mask = ops.reshape(ops.cast(bool_masked_pos, "float32"), (shape[0], rows, cols))
    mask = ops.repeat(ops.repeat(mask, patch_size[0], axis=1), patch_size[1], axis=2)[..., None]
    if sample_weight is not None:
        mask = mask * ops.cast(ops.reshape(sample_weight, (-1, 1, 1, 1)), "float32")
    error = ops.abs(pixel_values - reconstruction) * mask
    return ops.sum(error) / (ops.sum(mask) + 1e-5) / ops.cast(pixel_values.shape[-1], "float32")
