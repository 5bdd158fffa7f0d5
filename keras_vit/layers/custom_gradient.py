"""`keras.ops.custom_gradient` whose TensorFlow graphs can be freed."""

import contextlib
import functools
import weakref

import keras
from keras import ops

# Attribute of a TensorFlow graph holding the gradient functions its custom-gradient ops need.
_GRAPH_ATTRIBUTE = "_keras_vit_gradient_functions"
# Attribute marking the registry's forwarders to those functions.
_FORWARDER = "_keras_vit_forwarder"


def custom_gradient(fn):
    """`keras.ops.custom_gradient(fn)` that lets TensorFlow free the graphs it is traced into.

    In a TensorFlow graph (a `tf.function`: Keras' train, test and predict functions, and
    SavedModel signatures), `tf.custom_gradient` registers each call's gradient function in
    TensorFlow's global gradient registry under a new name and never removes it
    (tensorflow/tensorflow#27492, #97697). That function holds the forward tensors, so their
    graph and every variable the graph captures stay in memory for the life of the process.
    Here each call runs under `graphs_own_custom_gradients`. Eagerly and on the other
    backends this is `keras.ops.custom_gradient(fn)` unchanged.

    Args:
        fn: a function of tensors returning `(outputs, grad)`, as for
            `keras.ops.custom_gradient`.

    Returns:
        The function with `fn`'s custom gradient.

    >>> @custom_gradient
    ... def double(x):
    ...     return 2.0 * x, lambda *args, upstream=None: 2.0 * (args[0] if upstream is None else upstream)
    >>> keras.ops.convert_to_numpy(double(keras.ops.ones((2,)))).tolist()
    [2.0, 2.0]
    """
    wrapped = ops.custom_gradient(fn)

    @functools.wraps(fn)
    def call(*args):
        with graphs_own_custom_gradients():
            return wrapped(*args)

    return call


def cast_like(gradients, inputs):
    """`gradients`, each cast to the dtype of the input it is the gradient of (same order).

    >>> (half,) = cast_like([keras.ops.ones(2)], [keras.ops.ones(2, "float16")])
    >>> keras.backend.standardize_dtype(half.dtype)
    'float16'
    """
    return tuple(ops.cast(gradient, tensor.dtype) for gradient, tensor in zip(gradients, inputs))


@contextlib.contextmanager
def graphs_own_custom_gradients():
    """Moves the TensorFlow custom gradients registered inside onto the graph being traced.

    While a TensorFlow graph is being traced, the gradient functions that
    `tf.custom_gradient` registers inside the block (ours, and Keras' own: its TensorFlow
    train step all-reduces through one) leave TensorFlow's global registry for an attribute
    of the current graph; the registry keeps, under the same name, a forwarder that reaches
    them through a weak reference and is removed when the graph is freed. So the graph, and
    the variables it captures, can be freed: a DeiT-S/16 classifier at 64 px, trained for one
    step, run through `predict` and deleted, left 370 MiB behind in TensorFlow graphs without
    this and none with it (`benchmarks/model_churn.py`; `tests/test_training_memory.py` checks
    that no graph survives, on a tiny model). Eagerly, and on the other backends, it does
    nothing.
    """
    if not traces_tensorflow_graph():
        yield
        return
    import tensorflow as tf

    registry = _gradient_registry()
    before = set(registry)
    try:
        yield
    finally:
        graph = tf.compat.v1.get_default_graph()
        for name in set(registry) - before:
            if not getattr(registry[name]["type"], _FORWARDER, False):  # moved by an inner block
                _move_to_graph(registry, name, graph)


def traces_tensorflow_graph():
    """Whether the backend is TensorFlow and a graph is being built here (a `tf.function`).

    >>> traces_tensorflow_graph()  # eagerly, on any backend
    False
    """
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.executing_eagerly()


def _gradient_registry():
    """TensorFlow's gradient registry, name -> {"type": function, "location": frame}.

    Private: TensorFlow has no API to remove a registered gradient.
    """
    from tensorflow.python.framework import ops as tf_ops

    return tf_ops._gradient_registry._registry


def _move_to_graph(registry, name, graph):
    """Keeps registry entry `name`'s function on `graph`; the registry forwards to it while `graph` lives."""
    functions = getattr(graph, _GRAPH_ATTRIBUTE, None)
    if functions is None:
        functions = {}
        setattr(graph, _GRAPH_ATTRIBUTE, functions)
    functions[name] = registry[name]["type"]
    graph_ref = weakref.ref(graph)

    def forward(op, *grads):
        graph = graph_ref()
        if graph is None:
            raise LookupError(f"The graph holding custom gradient {name!r} has been freed.")
        return getattr(graph, _GRAPH_ATTRIBUTE)[name](op, *grads)

    setattr(forward, _FORWARDER, True)
    registry[name] = {**registry[name], "type": forward}
    weakref.finalize(graph, registry.pop, name, None)
