"""keras_vit.optimizers.LayerDecayOptimizer: BEiT / timm layer-wise learning-rate decay."""

import contextlib
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_vit
from keras_vit.losses import ClassificationLoss
from keras_vit.optimizers import LayerDecayOptimizer, count_layers, layer_id
from tests.conftest import run_check, tiny_config

PATHS = ["embeddings/cls_token", "encoder_layer_0/fc1/kernel", "encoder_layer_1/attention/qkv/bias", "layernorm/gamma"]


def scoped_variables(paths, seed=0):
    """keras.Variables whose `path` is each of `paths` (as inside a model)."""
    rng = np.random.default_rng(seed)
    variables = []
    for path in paths:
        *scopes, name = path.split("/")
        with contextlib.ExitStack() as stack:
            for scope in scopes:
                stack.enter_context(keras.name_scope(scope))
            variables.append(keras.Variable(rng.normal(size=(3, 2)).astype("float32"), name=name))
    assert [v.path for v in variables] == paths
    return variables


def tiny_model():
    return keras_vit.ViTForImageClassification(tiny_config(keras_vit.ViTForImageClassification))


def check_factors_on_tiny_model():
    model = tiny_model()
    optimizer = LayerDecayOptimizer(keras.optimizers.AdamW(1e-3), layer_decay=0.5)
    optimizer.build(model.trainable_variables)
    multipliers = optimizer.learning_rate_multipliers
    assert len(multipliers) == len(model.trainable_variables) == 32
    for path, factor in multipliers.items():
        if path.startswith("embeddings/"):
            assert factor == 0.125, path  # 0.5 ** (L + 1), L = 2
        elif path.startswith("encoder_layer_0/"):
            assert factor == 0.25, path
        elif path.startswith("encoder_layer_1/"):
            assert factor == 0.5, path
        else:
            assert path.split("/")[0] in ("layernorm", "classifier") and factor == 1.0, path
    assert sum(path.startswith("embeddings/") for path in multipliers) == 4  # cls, positions, projection


def check_updates_are_scaled_like_per_variable_learning_rates():
    """AdamW + weight decay + schedule through the wrapper == one AdamW per factor with lr·factor."""
    decay, steps = 0.6, 3
    factors = [decay**3, decay**2, decay, 1.0]

    def schedule(scale):
        return keras.optimizers.schedules.ExponentialDecay(1e-1 * scale, decay_steps=1, decay_rate=0.5)

    wrapped = scoped_variables(PATHS)
    optimizer = LayerDecayOptimizer(keras.optimizers.AdamW(schedule(1.0), weight_decay=0.2), layer_decay=decay)
    reference = scoped_variables(PATHS)
    groups = [keras.optimizers.AdamW(schedule(f), weight_decay=0.2) for f in factors]
    rng = np.random.default_rng(1)
    initial = [np.array(v) for v in wrapped]
    for _ in range(steps):
        grads = [rng.normal(size=(3, 2)).astype("float32") for _ in PATHS]
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in grads], wrapped)
        for group, grad, variable in zip(groups, grads, reference):
            group.apply([keras.ops.convert_to_tensor(grad)], [variable])
    assert int(optimizer.iterations) == steps
    assert float(optimizer.learning_rate) == pytest.approx(0.1 * 0.5**steps)
    for got, expected, start in zip(wrapped, reference, initial):
        np.testing.assert_allclose(np.array(got), np.array(expected), rtol=1e-5, atol=1e-6)
    # And the steps really differ by the factors (SGD: the step is -lr·factor·grad).
    variables = scoped_variables(PATHS)
    before = [np.array(v) for v in variables]
    grads = [keras.ops.ones((3, 2))] * 4
    LayerDecayOptimizer(keras.optimizers.SGD(0.1), layer_decay=decay).apply(grads, variables)
    for variable, old, factor in zip(variables, before, factors):
        np.testing.assert_allclose(np.array(variable) - old, -0.1 * factor, rtol=1e-5)


def make_optimizer():
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=20, warmup_target=None)
    return LayerDecayOptimizer(keras.optimizers.AdamW(schedule, weight_decay=0.05), layer_decay=0.7)


def check_save_load_resume(tmp_path, steps=3):
    """(train k steps, save .keras, load, train k) == (train 2k steps): weights and optimizer state."""
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (steps * 4, 32, 32, 3)).astype("float32")
    labels = np.arange(steps * 4) % 3

    keras.utils.set_random_seed(0)
    straight = tiny_model()
    initial = straight.get_weights()
    straight.compile(make_optimizer(), loss=ClassificationLoss())
    straight.fit(images, labels, batch_size=4, epochs=2, shuffle=False, verbose=0)

    resumed = tiny_model()
    resumed.set_weights(initial)
    resumed.compile(make_optimizer(), loss=ClassificationLoss())
    resumed.fit(images, labels, batch_size=4, epochs=1, shuffle=False, verbose=0)
    path = Path(tmp_path) / "model.keras"
    resumed.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, LayerDecayOptimizer) and loaded.optimizer.layer_decay == 0.7
    assert int(loaded.optimizer.iterations) == steps
    loaded.fit(images, labels, batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert int(loaded.optimizer.iterations) == int(straight.optimizer.iterations) == 2 * steps
    for got, expected in zip(loaded.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    for got, expected in zip(loaded.optimizer.variables, straight.optimizer.variables):
        np.testing.assert_allclose(np.array(got), np.array(expected), rtol=1e-5, atol=1e-7)
    assert max(float(np.abs(a - b).max()) for a, b in zip(initial, loaded.get_weights())) > 1e-4  # it trained


def test_layer_id_follows_beit_and_timm():
    assert [layer_id(p, 2) for p in PATHS] == [0, 1, 2, 3]
    assert layer_id("vit/encoder_layer_1/fc2/kernel", 2) == 2  # a backbone held by a task model
    assert layer_id("deit/embeddings/distillation_token", 12) == 0
    assert layer_id("head/cls_classifier/kernel", 12) == 13
    assert count_layers(PATHS) == 2 and count_layers(["classifier/kernel"]) == 0
    message = r"encoder_layer_0 .. encoder_layer_1 \(num_layers=2\). Received: .*'encoder_layer_5/fc1/kernel'"
    with pytest.raises(ValueError, match=message):
        layer_id("encoder_layer_5/fc1/kernel", 2)


def test_factors_on_tiny_model():
    check_factors_on_tiny_model()


def test_explicit_num_layers():
    optimizer = LayerDecayOptimizer("sgd", layer_decay=0.5, num_layers=4)
    optimizer.build(scoped_variables(PATHS))
    assert list(optimizer.learning_rate_multipliers.values()) == [0.5**5, 0.5**4, 0.5**3, 1.0]
    with pytest.raises(ValueError, match="num_layers=1"):
        LayerDecayOptimizer("sgd", num_layers=1).build(scoped_variables(PATHS))
    with pytest.raises(ValueError, match="infer num_layers"):
        LayerDecayOptimizer("sgd").build(scoped_variables(["classifier/kernel"]))


def test_updates_are_scaled_like_per_variable_learning_rates():
    check_updates_are_scaled_like_per_variable_learning_rates()


def test_save_load_resume_equals_uninterrupted_training(tmp_path):
    check_save_load_resume(tmp_path)


def test_config_round_trip():
    optimizer = LayerDecayOptimizer(keras.optimizers.AdamW(3e-4, weight_decay=0.05), layer_decay=0.65, num_layers=12)
    config = optimizer.get_config()
    assert set(config) == {"name", "optimizer", "layer_decay", "num_layers"}
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(optimizer))
    assert isinstance(restored, LayerDecayOptimizer) and isinstance(restored.optimizer, keras.optimizers.AdamW)
    assert (restored.layer_decay, restored.num_layers, restored.optimizer.weight_decay) == (0.65, 12, 0.05)
    assert float(restored.learning_rate) == pytest.approx(3e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(layer_decay=0.0), "layer_decay=0.0"),
        (dict(layer_decay=1.5), "layer_decay=1.5"),
        (dict(layer_decay=True), "layer_decay=True"),
        (dict(num_layers=0), "num_layers=0"),
        (dict(num_layers=2.0), "num_layers=2.0"),
        (dict(optimizer=3), "optimizer=3"),
        (dict(optimizer=keras.optimizers.Adam(use_ema=True)), r"use_ema=False.*Received: Adam\(use_ema=True\)"),
        (dict(learning_rate=0.1), r"from its wrapped optimizer. Received: \['learning_rate'\]"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    kwargs = {"optimizer": "adam", **kwargs}
    with pytest.raises(ValueError, match=message):
        LayerDecayOptimizer(**kwargs)


@pytest.mark.parametrize("backend", ["jax", "torch", "tensorflow mirrored"])
def test_losses_and_optimizer_on_other_backends(backend, tmp_path):
    argument = "mirrored" if backend.endswith("mirrored") else tmp_path
    stdout = run_check("recipe_backend_check.py", backend.split()[0], argument, timeout=900)
    assert stdout.strip().endswith(f"recipe checks passed on {backend}")
