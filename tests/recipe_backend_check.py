"""Run under another Keras backend by test_optimizers.py: the losses, label checks and LayerDecayOptimizer.

Usage: KERAS_BACKEND=jax python tests/recipe_backend_check.py TMP_DIR
       KERAS_BACKEND=tensorflow python tests/recipe_backend_check.py mirrored  (2 logical CPUs)
"""

import sys

if sys.argv[1:] == ["mirrored"]:  # logical devices must be set before anything initialises TensorFlow
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
import numpy as np

from keras_vit.distillation import hard_distillation_loss
from keras_vit.losses import ClassificationLoss, classification_loss
from keras_vit.optimizers import LayerDecayOptimizer
from tests.test_optimizers import (
    check_factors_on_tiny_model,
    check_save_load_resume,
    check_updates_are_scaled_like_per_variable_learning_rates,
    tiny_model,
)

LOGITS = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 1.0]], "float32")


def log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def check_loss_values():
    ids = np.array([0, 2])
    soft = np.array([[0.7, 0.0, 0.3], [0.0, 0.4, 0.6]], "float32")
    smoothed = 0.9 * np.eye(3)[ids] + 0.1 / 3
    cases = [
        (classification_loss(ids, LOGITS), -(np.eye(3)[ids] * log_softmax(LOGITS)).sum(-1).mean()),
        (classification_loss(ids, LOGITS, label_smoothing=0.1), -(smoothed * log_softmax(LOGITS)).sum(-1).mean()),
        (
            classification_loss(soft, LOGITS, problem_type="single_label_classification"),
            -(soft * log_softmax(LOGITS)).sum(-1).mean(),
        ),
        (
            classification_loss(soft, LOGITS),
            np.mean(np.maximum(LOGITS, 0) - LOGITS * soft + np.log1p(np.exp(-np.abs(LOGITS)))),
        ),
        (classification_loss(np.array([1.0, 0.0]), LOGITS[:, :1]), np.mean((LOGITS[:, 0] - [1.0, 0.0]) ** 2)),
    ]
    for got, expected in cases:
        np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    one_hot = np.eye(3, dtype="float32")[ids]
    by_id = hard_distillation_loss(ids, LOGITS, LOGITS, LOGITS)["loss"]
    np.testing.assert_allclose(float(hard_distillation_loss(one_hot, LOGITS, LOGITS, LOGITS)["loss"]), float(by_id))


def check_bad_labels_fail_eagerly_and_in_fit():
    for bad in ([0, 3], [-1, 1]):
        try:
            classification_loss(np.array(bad), LOGITS)
        except ValueError as e:
            assert "class labels in [0, 3)" in str(e), e
        else:
            raise AssertionError(f"no error for labels {bad}")
    # Step 1 is good, step 2 has label 5: fit must raise naming the label. On torch the model then holds exactly
    # step 1's update. Keras' JAX trainer donates the training state to the jitted step, so after an error raised
    # inside it the in-memory weights are gone (documented in check_class_ids); only the error is checked there.
    images = np.random.default_rng(0).uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
    labels = np.array([0, 1, 2, 0, 0, 1, 2, 5])
    reference = tiny_model()
    initial = reference.get_weights()
    reference.compile(keras.optimizers.Adam(1e-2), loss=ClassificationLoss())
    reference.fit(images[:4], labels[:4], epochs=1, batch_size=4, verbose=0)
    model = tiny_model()
    model.set_weights(initial)
    model.compile(keras.optimizers.Adam(1e-2), loss=ClassificationLoss())
    try:
        model.fit(images, labels, epochs=1, batch_size=4, shuffle=False, verbose=0)
    except Exception as e:  # ValueError eagerly (torch); JaxRuntimeError from inside jit (jax)
        assert "class labels in [0, 3)" in str(e), e
    else:
        raise AssertionError("fit accepted label 5 with num_labels=3")
    if keras.backend.backend() == "torch":
        for got, expected in zip(model.get_weights(), reference.get_weights()):
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)  # Adam steps here are ~1e-2


def check_mirrored_equals_single_device():
    """LayerDecayOptimizer(AdamW) under tf.distribute.MirroredStrategy on 2 logical CPUs == one device."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
    labels = np.arange(8) % 3

    def compile(model):
        optimizer = LayerDecayOptimizer(keras.optimizers.AdamW(1e-2, weight_decay=0.1), layer_decay=0.5)
        model.compile(optimizer, loss=ClassificationLoss())

    def fit(model):
        model.fit(images, labels, batch_size=8, epochs=2, shuffle=False, verbose=0)
        return model.get_weights()

    single = tiny_model()
    initial = single.get_weights()
    compile(single)
    expected = fit(single)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():  # model and optimizer variables are created in the scope, as Keras requires
        mirrored = tiny_model()
        mirrored.set_weights(initial)
        compile(mirrored)
    got = fit(mirrored)
    assert max(float(np.abs(a - b).max()) for a, b in zip(initial, expected)) > 1e-3  # it trained
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def main(tmp_dir):
    check_loss_values()
    check_bad_labels_fail_eagerly_and_in_fit()
    check_factors_on_tiny_model()
    check_updates_are_scaled_like_per_variable_learning_rates()
    check_save_load_resume(tmp_dir)
    print(f"recipe checks passed on {keras.backend.backend()}")


if __name__ == "__main__":
    if sys.argv[1] == "mirrored":
        keras.utils.set_random_seed(0)
        check_mirrored_equals_single_device()
        print("recipe checks passed on tensorflow mirrored")
    else:
        keras.utils.set_random_seed(0)
        main(sys.argv[1])
