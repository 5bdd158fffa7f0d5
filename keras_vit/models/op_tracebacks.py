"""Graph-op tracebacks without TensorFlow's and Keras' own frames."""

import contextlib
import sys

from keras_vit.layers.custom_gradient import traces_tensorflow_graph

# Top-level packages whose source files are left out of the tracebacks of graph ops.
LIBRARY_PACKAGES = ("tensorflow", "keras")


def library_files(packages=LIBRARY_PACKAGES):
    """The source files of the imported modules of `packages` (a tuple of top-level names).

    >>> import keras.src.ops.numpy
    >>> keras.src.ops.numpy.__file__ in library_files(("keras",))
    True
    >>> __file__ in library_files(("keras",))
    False
    """
    files = set()
    for name, module in list(sys.modules.items()):
        # `vars`, not `getattr`: a lazily loaded module imports itself on attribute access.
        path = vars(module).get("__file__") if name.partition(".")[0] in packages else None
        if isinstance(path, str):
            files.add(path)
    return frozenset(files)


@contextlib.contextmanager
def library_frames_left_out():
    """Leaves TensorFlow's and Keras' frames out of the tracebacks of graph ops traced inside.

    TensorFlow records the Python stack of every op it adds to a graph. When XLA compiles the
    graph, it turns each op's whole stack into strings (`StackTraceWrapper::LastUserFrame`,
    called by `XlaCompilationDevice::Compute` in TensorFlow 2.21) and keeps them as long as
    the compiled function lives. A DeiT-S/16 training step has ~11,600 ops with ~59 frames
    each: 150 MiB of strings, held through every later step, and most of those frames are
    TensorFlow's and Keras' internals (dispatch wrappers, `Layer.__call__`, op builders).
    Inside this block they are left out, as autograph leaves out its own frames
    (`tf_stack.CurrentModuleFilter`, whose private mechanism this uses): a traceback keeps
    the frames of keras_vit and of the user's code, so error messages and XLA's op metadata
    still point at the line that made the op. Two TensorFlow files stay in:
    `tf_stack.py` and `framework/ops.py` hold the innermost frames of every op's
    traceback, which TensorFlow drops after filtering (`stacklevel`); left out, it would
    drop the user's innermost frames instead, and crash XLA's compiler on an op left with
    no frame (a segfault in `FrozenStackTrace::LastUserFrame`, seen while building this).
    Eagerly, and on the other backends, it does nothing.
    """
    if not traces_tensorflow_graph():
        yield
        return
    from tensorflow.python.framework import ops as tf_ops
    from tensorflow.python.util import tf_stack

    kept = {tf_stack.__file__, tf_ops.__file__}

    class LibraryFrameFilter(tf_stack.StackTraceFilter):
        files = None

        def get_filtered_filenames(self):  # also called by each filter entered inside
            if self.files is None:
                self.files = (library_files() - kept) | self.parent.get_filtered_filenames()
            return self.files

    with LibraryFrameFilter():
        yield
