"""TensorFlow graphs that hold custom gradients (Keras' train step, `keras.remat`) and can still be freed."""

import contextlib
import weakref

import keras

# Attribute of a TensorFlow graph holding the gradient functions its custom-gradient ops need.
_GRAPH_ATTRIBUTE = "_keras_vit_gradient_functions"
# Attribute marking the registry's forwarders to those functions.
_FORWARDER = "_keras_vit_forwarder"


@contextlib.contextmanager
def graphs_own_custom_gradients():
    """Moves the TensorFlow custom gradients registered inside onto the graph being traced.

    In a TensorFlow graph (a `tf.function`: Keras' train, test and predict functions, and
    SavedModel signatures), `tf.custom_gradient` registers each call's gradient function in
    TensorFlow's global gradient registry under a new name and never removes it
    (tensorflow/tensorflow#27492, #97697); that function holds the forward tensors, so their
    graph and every variable it captures stay in memory for the life of the process. Keras'
    TensorFlow train step registers one, and `keras.remat` (`tf.recompute_grad`) one per
    call. While a graph is being traced, the gradient functions registered inside the block
    leave the registry for an attribute of the current graph; the registry keeps, under the
    same name, a forwarder that reaches them through a weak reference and is removed when
    the graph is freed. So the graph, and the variables it captures, can be freed
    (`benchmarks/model_churn.py`; `tests/test_training_memory.py` checks that no graph
    survives, with and without gradient checkpointing, and that without this block graphs
    do). Eagerly, and on the other backends, it does nothing.
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
