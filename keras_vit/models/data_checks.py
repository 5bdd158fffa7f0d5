"""Checks of the data given to `fit`, `evaluate` and `predict`, made before Keras' steps run.

Inside Keras' steps the checks of a model call cannot always run: Keras retraces a step
with relaxed shapes when a later call brings other ones (the image size is then unknown
while tracing), and XLA drops TensorFlow's assertions. So the data is checked where it is
seen whole: arrays and tensors in memory (shapes, dtypes and class ids) at once; a
`tf.data.Dataset` by its element spec, and by checks in its own pipeline where the spec
leaves the image size or the class ids open; a Python generator batch by batch. Each check
raises the `ValueError` an eager call raises, and `named_check_errors` re-raises one that
fails inside Keras' loop (from the input pipeline, a graph assertion or a JAX callback) as
that `ValueError`.
"""

import contextlib
import inspect
import re
import sys

import keras
import numpy as np

from keras_vit.models.inputs import check_image_shape, check_inputs, in_memory_batch_length, named_inputs

# What a check's message looks like inside the error of a failed input pipeline, graph or JAX callback.
_CHECK_MESSAGE = re.compile(r"ValueError: (Expected [^\n]*)|assertion failed: \[(Expected .*?)\](?: \[|\n|$)")


def checked_data(model, x, y=None, labelled=True):
    """Checks `x` and `y` for `model` as far as they are known now; returns them for Keras.

    Arrays and tensors come back as given; a dataset or generator whose batches need
    checking comes back wrapped (same elements, checked before the step takes them).
    `labelled=False` (predict) leaves the labels of a dataset or generator unchecked.

    Raises:
        ValueError, TypeError: the errors of calling the model on `x`, and `ValueError`
            for class ids the built-in loss refuses.
    """
    if _is_dataset(x):
        return _checked_dataset(model, x, labelled), y
    if inspect.isgenerator(x):
        return _checked_batches(model, x, labelled), y
    if in_memory_batch_length(model, x) is not None:
        _check_batch(model, x, y)
    return x, y


@contextlib.contextmanager
def named_check_errors():
    """Re-raises a check that failed inside Keras' steps as the `ValueError` of an eager call."""
    try:
        yield
    except ValueError:
        raise
    except Exception as error:  # tf.errors.InvalidArgumentError, jax.errors.JaxRuntimeError
        match = _CHECK_MESSAGE.search(str(error))
        if match is None:
            raise
        raise ValueError(match.group(1) or match.group(2)) from None


def _check_batch(model, x, y):
    check_inputs(model, named_inputs(model, x))
    if y is not None and model.checks_labels():
        model.check_labels(y)


def _checked_batches(model, batches, labelled):
    for batch in batches:
        x, y, _ = keras.utils.unpack_x_y_sample_weight(batch)
        _check_batch(model, x, y if labelled else None)
        yield batch


def _is_dataset(x):
    tf = sys.modules.get("tensorflow")  # a tf.data.Dataset implies TensorFlow is imported
    return tf is not None and isinstance(x, tf.data.Dataset)


def _checked_dataset(model, dataset, labelled):
    """`dataset` after its element spec is checked, with checks in its pipeline where needed."""
    x_spec, y_spec, _ = keras.utils.unpack_x_y_sample_weight(dataset.element_spec)
    given = named_inputs(model, x_spec)
    check_inputs(model, given)
    image_shape = tuple(given["pixel_values"].shape)
    check_images = None in image_shape[1:] and not model.interpolate_pos_encoding
    check_labels = labelled and y_spec is not None and model.checks_labels()
    if not (check_images or check_labels):
        return dataset
    import tensorflow as tf

    def check_shape(shape):
        check_image_shape(model, tuple(int(n) for n in shape))
        return np.bool_(True)

    def check_class_ids(labels):
        model.check_labels(labels)
        return np.bool_(True)

    def checked(*element):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(element[0] if len(element) == 1 else element)
        checks = []
        if check_images:
            shape = tf.shape(named_inputs(model, x)["pixel_values"])
            checks.append(tf.numpy_function(check_shape, [shape], tf.bool))
        if check_labels:
            checks.append(tf.numpy_function(check_class_ids, [y], tf.bool))
        with tf.control_dependencies(checks):
            x, y = keras.tree.map_structure(lambda t: None if t is None else tf.identity(t), (x, y))
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

    return dataset.map(checked)
