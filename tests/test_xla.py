"""TensorFlow under XLA: the block's gradients equal eager ones, and steps and predict compile with XLA."""

import contextlib
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vit
from keras_vit.layers.attention import MultiHeadSelfAttention
from keras_vit.layers.transformer_block import TransformerBlock
from keras_vit.models import base, op_tracebacks
from tests.conftest import TINY

# What these tests observe is the CPU case: with a GPU, Keras' own "auto" already compiles with XLA.
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow" or bool(tf.config.list_physical_devices("GPU")),
    reason="TensorFlow's XLA on a machine without a GPU",
)


@pytest.fixture
def fused_calls(monkeypatch):
    """Traces of `MultiHeadSelfAttention.call` inside an XLA-compiled function: > 0 where a step ran under XLA."""
    from tensorflow.python.ops import control_flow_util

    calls = []
    original = MultiHeadSelfAttention.call

    def call(self, *args, **kwargs):
        if not tf.executing_eagerly() and control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()):
            calls.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MultiHeadSelfAttention, "call", call)
    return calls


@pytest.mark.parametrize("variant", ["qkv_bias", "no_qkv_bias", "lora"])
def test_block_gradients_under_xla_equal_eager_gradients(variant, fused_calls):
    block = TransformerBlock(32, 4, 37, qkv_bias=variant != "no_qkv_bias")
    rng = np.random.default_rng(0)
    tokens = tf.constant(rng.normal(size=(2, 17, 32)).astype("float32"))
    upstream = tf.constant(rng.normal(size=(2, 17, 32)).astype("float32"))
    block(tokens)
    for variable in block.trainable_variables:  # γ ≠ 1, β ≠ 0
        variable.assign(variable + rng.normal(scale=0.1, size=variable.shape).astype("float32"))
    if variant == "lora":
        block.enable_lora(3)
        for variable in block.trainable_variables:  # lora_kernel_b ≠ 0
            variable.assign(rng.normal(scale=0.1, size=variable.shape).astype("float32"))

    def value_and_gradients(tokens):
        with tf.GradientTape() as tape:
            tape.watch(tokens)
            value = block(tokens)
        return value, tape.gradient(value, [tokens] + block.trainable_variables, output_gradients=upstream)

    eager_value, eager_grads = value_and_gradients(tokens)
    assert not fused_calls
    xla_value, xla_grads = tf.function(value_and_gradients, jit_compile=True)(tokens)
    assert fused_calls == ["attention"]
    np.testing.assert_allclose(xla_value.numpy(), eager_value.numpy(), atol=1e-5)
    weights = {"qkv_bias": 12, "no_qkv_bias": 11, "lora": 8}[variant]  # LoRA: the 4 projections' factors
    assert len(xla_grads) == 1 + len(block.trainable_variables) == 1 + weights
    for xla_grad, eager_grad, name in zip(xla_grads, eager_grads, ["tokens"] + [v.path for v in block.trainable_variables]):
        np.testing.assert_allclose(xla_grad.numpy(), eager_grad.numpy(), atol=1e-5, err_msg=name)


TASKS = [keras_vit.ViTForImageClassification, keras_vit.DeiTForImageClassificationWithTeacher]
IMAGES = np.random.default_rng(1).normal(size=(5, 32, 32, 3)).astype("float32")
LABELS = np.array([0, 1, 2, 0, 1])


def _model(cls=keras_vit.ViTForImageClassification, **config):
    config_class = keras_vit.DeiTConfig if cls.__name__.startswith("DeiT") else keras_vit.ViTConfig
    return cls(config_class(**TINY, **config))


def _counts(model, fused_calls):
    """Fused-attention traces of fit, evaluate and predict: > 0 where the step ran under XLA."""
    counts = {}
    for name, run in [
        ("fit", lambda: model.fit(IMAGES, LABELS, batch_size=5, verbose=0)),
        ("evaluate", lambda: model.evaluate(IMAGES, LABELS, batch_size=5, verbose=0)),
        ("predict", lambda: model.predict(IMAGES, batch_size=5, verbose=0)),
    ]:
        fused_calls.clear()
        run()
        counts[name] = len(fused_calls)
    return counts


@pytest.mark.parametrize(
    "compile_kwargs, xla_steps",
    [
        ({}, {"fit", "evaluate", "predict"}),
        ({"jit_compile": "auto"}, {"fit", "evaluate", "predict"}),
        ({"loss": "sparse_categorical_crossentropy"}, {"predict"}),  # Keras' losses check nothing under XLA
        ({"jit_compile": False}, set()),
        ({"run_eagerly": True}, set()),
        ({"jit_compile": True}, {"fit", "evaluate", "predict"}),  # Keras' own XLA steps
    ],
    ids=["default", "auto", "keras loss", "jit_compile=False", "run_eagerly", "jit_compile=True"],
)
def test_steps_use_xla_unless_told_otherwise(compile_kwargs, xla_steps, fused_calls):
    model = _model()
    model.compile(keras.optimizers.Adam(1e-3), **compile_kwargs)
    counts = _counts(model, fused_calls)
    assert {name for name, count in counts.items() if count} == xla_steps, counts
    # Every layer traces the fused path in an XLA step (once per trace).
    assert all(count % TINY["num_hidden_layers"] == 0 for count in counts.values()), counts


def test_uncompiled_predict_uses_xla_and_equals_the_call(fused_calls):
    model = _model()
    expected = keras.ops.convert_to_numpy(model(IMAGES)["logits"])
    predicted = model.predict(IMAGES, batch_size=5, verbose=0)["logits"]
    on_batch = model.predict_on_batch(IMAGES)["logits"]
    assert fused_calls
    np.testing.assert_allclose(predicted, expected, atol=1e-5)
    np.testing.assert_allclose(on_batch, expected, atol=1e-5)
    assert model.jit_compile is False  # Keras' own resolution on CPU, reported unchanged


def test_a_layer_without_xla_support_keeps_keras_choice(fused_calls):
    model = _model()
    model.get_layer("classifier").supports_jit = False
    model.compile(keras.optimizers.Adam(1e-3))
    assert _counts(model, fused_calls) == {"fit": 0, "evaluate": 0, "predict": 0}


@pytest.mark.parametrize("cls", TASKS, ids=lambda c: c.__name__)
def test_xla_training_step_equals_the_graph_step(cls, fused_calls):
    graph, xla = _model(cls), _model(cls)
    xla.set_weights(graph.get_weights())
    graph.compile(keras.optimizers.Adam(1e-2), jit_compile=False)
    xla.compile(keras.optimizers.Adam(1e-2))
    for model in (graph, xla):
        model.fit(IMAGES, LABELS, batch_size=5, epochs=2, verbose=0)
    assert fused_calls
    for a, b, variable in zip(xla.get_weights(), graph.get_weights(), graph.weights):
        np.testing.assert_allclose(a, b, atol=1e-5, err_msg=variable.path)
    changed = [np.abs(a - b).max() for a, b in zip(xla.get_weights(), _model(cls).get_weights())]
    assert max(changed) > 1e-3  # the steps did train


@pytest.mark.parametrize("cls", TASKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad", [3, -1])
def test_label_checks_stop_the_xla_step_before_it_runs(cls, bad, fused_calls):
    model = _model(cls)
    model.compile(keras.optimizers.Adam(1e-2))
    before = model.get_weights()
    labels = np.array([0, 1, bad, 0, 1])
    for run in (
        lambda: model.fit(IMAGES, labels, batch_size=5, verbose=0),
        lambda: model.evaluate(IMAGES, labels, batch_size=5, verbose=0),
    ):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"Expected integer class labels in \[0, 3\)"):
            run()
    assert fused_calls  # the steps were compiled with XLA
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_soft_labels_train_under_xla(fused_calls):
    model = _model(problem_type="single_label_classification")
    model.compile(keras.optimizers.Adam(1e-2))
    one_hot = np.eye(3, dtype="float32")[LABELS]
    losses = model.fit(IMAGES, one_hot, batch_size=5, epochs=4, verbose=0).history["loss"]
    assert fused_calls
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def _ops_and_called_functions(graph, seen):
    """Every op of `graph` and of the functions it calls, recursively (each function once)."""
    ops = list(graph.get_operations())
    for name, function in graph._functions.items():
        if name not in seen:
            seen.add(name)
            ops += _ops_and_called_functions(function.graph, seen)
    return ops


def _op_tracebacks(model):
    """{op name: [(file, function name), ...]} of a traced training step, outermost first.

    Also asserts that the step calls an XLA-compiled function.
    """
    step = tf.function(lambda images, labels: model.train_step((images, labels)))
    graph = step.get_concrete_function(tf.constant(IMAGES), tf.constant(LABELS)).graph
    ops = _ops_and_called_functions(graph, set())
    assert any("_XlaMustCompile" in op.node_def.attr and op.get_attr("_XlaMustCompile") for op in ops)
    return {op.name: [(frame.filename, frame.name) for frame in op.traceback] for op in ops}


def test_xla_steps_leave_library_frames_out_of_op_tracebacks(monkeypatch):
    model = _model()
    model.compile(keras.optimizers.AdamW(1e-3))
    model.optimizer.build(model.trainable_variables)
    filtered = _op_tracebacks(model)
    monkeypatch.setattr(base, "library_frames_left_out", contextlib.nullcontext)
    full = _op_tracebacks(model)
    assert len(filtered) == len(full)
    assert all(filtered.values())
    library = op_tracebacks.library_files()

    def count(tracebacks):
        """(frames of TensorFlow's or Keras' files, other frames)."""
        frames = [file in library for traceback in tracebacks.values() for file, _ in traceback]
        return sum(frames), len(frames) - sum(frames)

    (full_library, full_other), (filtered_library, filtered_other) = count(full), count(filtered)
    # Left out: all library frames but framework/ops.py's and those autograph maps onto Keras'
    # trainer (127,453 -> 8,942 frames). Kept: every frame of keras_vit, the test and pytest.
    assert filtered_library < 0.1 * full_library, (filtered_library, full_library)
    assert filtered_other == full_other
    # The attention's output projection in the first block: its innermost frames are still the
    # block's and the attention layer's lines that made it, then one of
    # framework/ops.py: TensorFlow drops the innermost three frames after filtering, and
    # keeping ops.py and tf_stack.py feeds it those.
    (full_output,), (filtered_output,) = [
        [
            [(file.rsplit("/", 1)[-1], name) for file, name in frames]
            for op, frames in tracebacks.items()
            if re.fullmatch(r".*/encoder_layer_0\w*/attention\w*/output\w*/(Tensordot/)?MatMul", op)
        ]
        for tracebacks in (full, filtered)
    ]
    wrappers = {("layer.py", "__call__"), ("dispatch.py", "op_dispatch_handler"), ("math_ops.py", "matmul")}
    assert wrappers <= set(full_output)
    assert not wrappers & set(filtered_output)
    assert filtered_output[-4:] == [
        ("transformer_block.py", "call"),
        ("transformer_block.py", "attention"),
        ("attention.py", "call"),
        ("ops.py", "_create_op_internal"),
    ]


def test_the_optimizer_is_built_before_the_training_step_is_traced(monkeypatch):
    model = _model()
    model.compile(keras.optimizers.AdamW(1e-3))
    optimizer_built = []
    step = model._step

    def spy(*args, **kwargs):
        optimizer_built.append(model.optimizer.built)
        return step(*args, **kwargs)

    monkeypatch.setattr(model, "_step", spy)
    model.train_on_batch(IMAGES, LABELS)
    model.fit(IMAGES, LABELS, batch_size=5, verbose=0)
    assert optimizer_built and all(optimizer_built)
