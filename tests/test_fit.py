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
