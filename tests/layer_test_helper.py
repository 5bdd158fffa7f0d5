"""One check run on every public layer (the keras-hub `run_layer_test` idea).

It covers: config JSON round trip, symbolic call in a functional model, eager call, one
`fit` step that moves the weights, mixed precision (compute dtype, float32 variables,
agreement with float32), `.keras` save/load with equal outputs, and `path_differences`:
values and gradients through both attention paths, with and without
`gradient_checkpointing`, in float32 and mixed_bfloat16, against the float32 explicit path
without checkpointing.
"""

import inspect
import json

import keras
import numpy as np
from keras import tree

from tests.gradients import layer_value_and_gradients

# Largest |Δ| / max |reference| of a value or gradient against the float32 reference.
TOLERANCES = {"float32": 1e-5, "mixed_bfloat16": 5e-2}


def _first(output):
    return tree.flatten(output)[0]


def _as_model(layer, inputs, call_kwargs):
    symbolic = {k: keras.Input(v.shape[1:], dtype=str(v.dtype), name=k) for k, v in inputs.items()}
    args = list(symbolic.values())
    output = layer(*args, **call_kwargs)
    return keras.Model(args, output), list(inputs.values())


def run_layer_test(layer_cls, init_kwargs, inputs, expected_output_shape, call_kwargs=None, tmp_path=None):
    """Runs the shared layer checks.

    Args:
        layer_cls: the layer class.
        init_kwargs: dict of constructor arguments.
        inputs: dict name -> numpy array (batch first), passed positionally in order.
        expected_output_shape: shape of the first (flattened) output.
        call_kwargs: extra non-tensor call arguments.
        tmp_path: directory for the `.keras` file.
    """
    call_kwargs = call_kwargs or {}
    layer = layer_cls(**init_kwargs)

    # Config: JSON round trip gives an equal config, and get_config holds exactly the init args.
    config = layer.get_config()
    for name in init_kwargs:
        assert name in config, f"get_config lacks {name}"
    accepted = set(inspect.signature(layer_cls.__init__).parameters) | {"name", "trainable", "dtype"}
    assert set(config) <= accepted, f"get_config has keys __init__ does not take: {set(config) - accepted}"
    restored = layer_cls.from_config(json.loads(json.dumps(config)))
    assert restored.get_config() == config

    # Eager call.
    eager = layer(*inputs.values(), **call_kwargs)
    assert tuple(_first(eager).shape) == tuple(expected_output_shape)

    # Symbolic call inside a functional model, with the same numbers.
    model, values = _as_model(layer, inputs, call_kwargs)
    np.testing.assert_allclose(
        np.asarray(_first(model(values))), np.asarray(_first(eager)), rtol=1e-5, atol=1e-5
    )

    # One fit step changes the trainable weights and gives a finite loss.
    head = keras.layers.Dense(1)
    fit_inputs = model.inputs
    feature = keras.layers.Flatten()(_first(model(fit_inputs)))
    trainer = keras.Model(fit_inputs, head(feature))
    trainer.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [np.array(w) for w in layer.trainable_weights]
    target = np.ones((values[0].shape[0], 1), "float32")
    history = trainer.fit(values, target, epochs=1, batch_size=values[0].shape[0], verbose=0)
    assert np.isfinite(history.history["loss"][0])
    if before:
        after = [np.array(w) for w in layer.trainable_weights]
        assert any(not np.allclose(a, b) for a, b in zip(before, after)), "fit did not move the layer's weights"

    # .keras save/load gives the same outputs.
    if tmp_path is not None:
        path = str(tmp_path / f"{layer_cls.__name__}.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        np.testing.assert_allclose(
            np.asarray(_first(loaded(values))), np.asarray(_first(model(values))), rtol=1e-6, atol=1e-6
        )

    # Mixed precision: bfloat16 compute, float32 variables, close to the float32 result.
    reference = layer_cls(**init_kwargs)
    reference_out = _first(reference(*inputs.values(), **call_kwargs))
    mixed = layer_cls(**init_kwargs, dtype="mixed_bfloat16")
    mixed(*inputs.values(), **call_kwargs)
    mixed.set_weights(reference.get_weights())
    mixed_out = _first(mixed(*inputs.values(), **call_kwargs))
    assert all(w.dtype == "float32" for w in mixed.weights)
    if "float" in str(mixed_out.dtype):
        assert "bfloat16" in str(mixed_out.dtype)
    expected = np.asarray(reference_out, "float32")
    got = np.asarray(keras.ops.cast(mixed_out, "float32"))
    scale = np.abs(expected).max() + 1e-6
    assert np.abs(got - expected).max() / scale < 5e-2

    assert_paths_agree(path_differences(layer_cls, init_kwargs, inputs, call_kwargs))
    return layer


def path_variants(layer_cls, init_kwargs):
    """{name: (constructor arguments, call arguments)} of every path the layer has, float32 reference first.

    Attention path: `explicit` (asked for by an all-ones `head_mask`, the same function) and
    `fused` (`keras.ops.dot_product_attention`), for layers whose call takes `head_mask`;
    `gradient_checkpointing` off and on, for layers that take it; float32 and mixed_bfloat16.
    """
    call_parameters = inspect.signature(layer_cls.call).parameters
    paths = {"": {}}
    if "head_mask" in call_parameters:
        ones = np.ones((init_kwargs["num_attention_heads"],), "float32")
        paths = {"explicit": {"head_mask": ones}, "fused": {}}
    remat = [False, True] if "gradient_checkpointing" in inspect.signature(layer_cls.__init__).parameters else [False]
    variants = {}
    for dtype in TOLERANCES:
        for checkpointing in remat:
            for path, call_kwargs in paths.items():
                kwargs = dict(init_kwargs, dtype=dtype)
                if checkpointing:
                    kwargs["gradient_checkpointing"] = True
                name = " ".join(filter(None, (dtype, path, "checkpointing" if checkpointing else "")))
                variants[name] = (kwargs, call_kwargs)
    return variants


def path_differences(layer_cls, init_kwargs, inputs, call_kwargs=None):
    """{variant (mode): (value |Δ|, largest gradient |Δ|), relative} against the float32 reference.

    Each variant (`path_variants`) gets the reference's weights and is differentiated with
    the backend's autodiff (`gradients.layer_value_and_gradients`), w.r.t. the float inputs
    and the trainable weights; on TensorFlow in a graph and XLA-compiled (eager calls: the
    other checks of `run_layer_test`).
    """
    arrays = list(inputs.values())
    modes = {"graph": False, "xla": True} if keras.backend.backend() == "tensorflow" else {"": False}
    variants = path_variants(layer_cls, init_kwargs)
    reference = None
    differences = {}
    for name, (kwargs, extra_call_kwargs) in variants.items():
        layer = layer_cls(**kwargs)
        layer(*arrays, **(call_kwargs or {}))
        if reference is None:
            reference_layer = layer
            upstream = np.random.default_rng(1).normal(size=_first(layer(*arrays, **(call_kwargs or {}))).shape)
            upstream = upstream.astype("float32")
        layer.set_weights(reference_layer.get_weights())
        for mode, jit_compile in modes.items():
            if jit_compile and not layer.supports_jit:  # Keras itself would not XLA-compile it
                continue
            kwargs_ = {**(call_kwargs or {}), **extra_call_kwargs}
            value, grads = layer_value_and_gradients(layer, arrays, upstream, kwargs_, jit_compile=jit_compile)
            if reference is None:
                reference = value, grads
            differences[" ".join(filter(None, (name, mode)))] = (
                _relative(value, reference[0]),
                max([_relative(g, r) for g, r in zip(grads, reference[1])], default=0.0),
            )
    return differences


def _relative(got, expected):
    return float(np.abs(got - expected).max() / (np.abs(expected).max() + 1e-12))


def assert_paths_agree(differences):
    """Each variant of `path_differences` within `TOLERANCES` of its dtype, values and gradients."""
    for name, (value, gradient) in differences.items():
        tolerance = TOLERANCES[name.split()[0]]
        assert value <= tolerance and gradient <= tolerance, f"{name}: value {value:.2e}, gradient {gradient:.2e}"
