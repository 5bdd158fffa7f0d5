"""fit, evaluate and predict of the models: Keras' own steps, with and without XLA."""

import keras
import numpy as np
import pytest

import keras_vit
from tests.conftest import tiny_config

TASKS = [keras_vit.ViTForImageClassification, keras_vit.DeiTForImageClassificationWithTeacher]
IMAGES = np.random.default_rng(1).normal(size=(5, 32, 32, 3)).astype("float32")
LABELS = np.array([0, 1, 2, 0, 1])


@pytest.mark.parametrize("cls", TASKS, ids=lambda c: c.__name__)
def test_xla_training_step_equals_the_graph_step(cls):
    graph, xla = cls(tiny_config(cls)), cls(tiny_config(cls))
    initial = graph.get_weights()
    xla.set_weights(initial)
    graph.compile(keras.optimizers.Adam(1e-2), jit_compile=False)
    xla.compile(keras.optimizers.Adam(1e-2), jit_compile=True)
    for model in (graph, xla):
        model.fit(IMAGES, LABELS, batch_size=5, epochs=2, verbose=0)
    for a, b, variable in zip(xla.get_weights(), graph.get_weights(), graph.weights):
        np.testing.assert_allclose(a, b, atol=1e-5, err_msg=variable.path)
    assert max(np.abs(a - b).max() for a, b in zip(xla.get_weights(), initial)) > 1e-3  # the steps did train
    expected = keras.ops.convert_to_numpy(graph(IMAGES)["logits"])
    np.testing.assert_allclose(xla.predict(IMAGES, batch_size=5, verbose=0)["logits"], expected, atol=1e-5)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_soft_labels_train(jit_compile):
    cls = keras_vit.ViTForImageClassification
    model = cls(tiny_config(cls, problem_type="single_label_classification"))
    model.compile(keras.optimizers.Adam(1e-2), jit_compile=jit_compile)
    one_hot = np.eye(3, dtype="float32")[LABELS]
    losses = model.fit(IMAGES, one_hot, batch_size=5, epochs=4, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def _dataset(images, labels, known_size=True):
    """A batched tf.data pipeline of (images, labels); known_size=False leaves height and width out of its spec."""
    import tensorflow as tf

    if known_size:
        return tf.data.Dataset.from_tensor_slices((images, labels)).batch(5)
    spec = (tf.TensorSpec((None, None, None, 3)), tf.TensorSpec((None,), tf.as_dtype(labels.dtype)))
    return tf.data.Dataset.from_generator(lambda: iter([(images, labels)]), output_signature=spec)


def _raises_the_eager_error(expected, run):
    """Runs `run`, which must raise `expected` (the eager ValueError): same message, no other error shown."""
    with pytest.raises(ValueError) as raised:
        run()
    assert str(raised.value) == str(expected)
    assert raised.value.__cause__ is None and (raised.value.__context__ is None or raised.value.__suppress_context__)


DATA = ["arrays", "dataset", "dataset of unknown image size"]


def _data(kind, images, labels):
    return (images, labels) if kind == "arrays" else (_dataset(images, labels, kind == "dataset"), None)


@pytest.mark.parametrize("kind", DATA)
@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_wrong_image_size_gives_the_eager_error_in_fit_evaluate_and_predict(jit_compile, kind):
    model = keras_vit.ViTForImageClassification(tiny_config(keras_vit.ViTForImageClassification))
    large = np.random.default_rng(2).normal(size=(5, 64, 64, 3)).astype("float32")
    message = r"^Expected images of size \(32, 32\).*interpolate_pos_encoding=True.*height=64, width=64$"
    with pytest.raises(ValueError, match=message) as eager:
        model(large)
    model.compile(keras.optimizers.Adam(1e-2), jit_compile=jit_compile)
    x, y = _data(kind, large, LABELS)
    _raises_the_eager_error(eager.value, lambda: model.fit(x, y, verbose=0))  # the first call
    model.fit(*_data(kind, IMAGES, LABELS), verbose=0)
    model.predict(IMAGES, verbose=0)
    before = model.get_weights()
    for run in (
        lambda: model.fit(x, y, verbose=0),  # later calls: Keras retraces with relaxed shapes
        lambda: model.evaluate(x, y, verbose=0),
        lambda: model.predict(x, verbose=0),
        lambda: model.fit(IMAGES, LABELS, validation_data=(large, LABELS), verbose=0),
    ):
        _raises_the_eager_error(eager.value, run)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", DATA)
@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_out_of_range_labels_give_the_eager_error_in_fit_and_evaluate(jit_compile, kind):
    cls = keras_vit.DeiTForImageClassificationWithTeacher
    model = cls(tiny_config(cls))
    bad = np.array([0, 1, 3, 0, -1])
    with pytest.raises(ValueError, match=r"^Expected integer class labels in \[0, 3\).*values \[-1, 3\]\. Map") as eager:
        keras_vit.losses.classification_loss(bad, np.zeros((5, 3), "float32"))
    model.compile(keras.optimizers.Adam(1e-2), jit_compile=jit_compile)
    x, y = _data(kind, IMAGES, bad)
    _raises_the_eager_error(eager.value, lambda: model.fit(x, y, verbose=0))  # the first call
    model.fit(*_data(kind, IMAGES, LABELS), verbose=0)
    before = model.get_weights()
    for run in (lambda: model.fit(x, y, verbose=0), lambda: model.evaluate(x, y, verbose=0)):
        _raises_the_eager_error(eager.value, run)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
