"""Quiet TensorFlow's C++ log lines for keras_vit's programs (the `keras-vit` command, the examples).

A top-level module, apart from the `keras_vit` package on purpose: importing anything from
`keras_vit` imports Keras and TensorFlow, and both steps below must come before that.

1. `TF_CPP_MIN_LOG_LEVEL` defaults to 3 (TensorFlow's own logging: fatal only). Errors
   that matter reach the program as Python exceptions, reported in its own words.
2. TensorFlow also logs through absl, which ignores that variable: at import ("All log
   messages before absl::InitializeLog() ...", oneDNN, cudart, CPU-feature lines) and while
   running (`use_unbounded_threadpool` from tf.data). Those lines,
   `E0000 00:00:... file.cc:12] message`, are dropped from stderr (file descriptor 2, which
   the C++ code writes to) below the same level. Everything else, Python's own messages,
   Keras' progress bars and tracebacks included, passes unchanged; fatal (`F`) lines too.

A user who sets `TF_CPP_MIN_LOG_LEVEL` gets that level, applied to absl's lines as well; at
level 2 the errors the process cannot act on (no GPU driver, tf.data's
`use_unbounded_threadpool`) are dropped too; level 0 installs no filter.
"""

import atexit
import os
import re
import sys
import threading

_ABSL_LINE = re.compile(rb"([IWE])\d{4} [\d:.]+ +\d+ [^\s:]+:\d+\] ")
_ABSL_HEADER = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_CPU_FEATURES_TAIL = re.compile(rb"To enable the following instructions: .* rebuild TensorFlow with the appropriate ")
_HARMLESS_ERRORS = (b"failed call to cuInit", b"use_unbounded_threadpool", b"oneDNN supports DT_UINT8 only")
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2}
_original_stderr_fd = None


def _dropped(line, level):
    """Whether absl printed `line` (bytes) below `level`, or it is a harmless error at level >= 2."""
    match = _ABSL_LINE.match(line)
    if match:
        severity = _SEVERITY[match.group(1)]
        return severity < level or (severity == 2 and any(text in line for text in _HARMLESS_ERRORS))
    return level >= 1 and (line.rstrip(b"\r\n") == _ABSL_HEADER or bool(_CPU_FEATURES_TAIL.match(line)))


def _filter_stderr(level):
    """Routes file descriptor 2 through a thread that drops absl lines (see `_dropped`)."""
    global _original_stderr_fd
    sys.stderr.flush()
    _original_stderr_fd = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump():
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not _dropped(line, level):
                    os.write(_original_stderr_fd, line)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()

    def restore():  # at exit: the pipe's last writer closes, the thread forwards what is left
        sys.stderr.flush()
        os.dup2(_original_stderr_fd, 2)
        thread.join(timeout=5)

    atexit.register(restore)


def quiet_tensorflow_logs():
    """Sets the default log level and filters absl's lines; call before TensorFlow is imported.

    Returns the level in effect (an int 0-3). Does nothing when TensorFlow is imported already
    (a script imported as a module by a program that uses TensorFlow): that program owns stderr.
    """
    if "tensorflow" in sys.modules:
        return None
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    level = int(level) if level in ("0", "1", "2", "3") else 0
    if level and _original_stderr_fd is None:
        _filter_stderr(level)
    return level


def stderr_is_terminal():
    """Whether the process' stderr (before any filter) is a terminal."""
    return os.isatty(2 if _original_stderr_fd is None else _original_stderr_fd)


def terminal_stderr():
    """A text stream on the process' stderr that bypasses the filter (for progress bars)."""
    if _original_stderr_fd is None:
        return sys.stderr
    return os.fdopen(os.dup(_original_stderr_fd), "w", buffering=1, encoding=sys.stderr.encoding, errors="replace")


def main():
    """The `keras-vit` console script: quiets TensorFlow, then runs `keras_vit.cli.main`."""
    quiet_tensorflow_logs()
    from keras_vit.cli import main as cli_main

    return cli_main()
