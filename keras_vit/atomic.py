"""Writes that never leave a half-written file or a mismatched set of files.

`atomic_path` writes one file: to a temporary sibling, fsynced, renamed into place, the
directory fsynced. `atomic_files` writes several files of one directory (a checkpoint's
`config.json` and `model.safetensors`) so that a reader never finds a mixed set of old and
new files, and files it does not write (a README, `preprocessor_config.json`) stay.
Files get mode `0o666 & ~umask` and directories `0o777 & ~umask`, as `open` and `mkdir`
give them (0644 and 0755 under umask 022), not `tempfile`'s 0600.
"""

import contextlib
import os
import secrets
import tempfile
from pathlib import Path


def umask():
    """The process umask, read without changing it where Linux allows (/proc/self/status)."""
    with contextlib.suppress(OSError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path):
    """Flushes a file's or directory's content (for a directory: its entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path):
    """Creates `path` and its missing parents (mode 0o777 & ~umask); returns it as a Path.

    Raises:
        ValueError: if `path` or one of its parents exists and is not a directory.
    """
    path = Path(path)
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"Expected a directory. Received a file: {str(parent)!r} (in {str(path)!r})")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _make_publishable(tmp):
    """Gives `tmp` the mode `open` would have given it and flushes it to disk."""
    os.chmod(tmp, 0o666 & ~umask())
    _fsync(tmp)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it onto `path` if the block succeeds.

    The temporary name keeps `path`'s suffix (Keras picks the format from it). Before the
    rename the file gets mode 0o666 & ~umask and is fsynced; the directory is fsynced
    after. On any error the temporary file is removed and `path` is left as it was
    (directories created for it are removed again).

    Raises:
        ValueError: if `path` is a directory, or a parent of it is a file (before the block runs).
    """
    path = Path(path)
    with atomic_files(path.parent, [path.name]) as temporaries:
        yield temporaries[path.name]


def write_text_atomically(path, text):
    """Writes `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_files(directory, names):
    """Yields {name: temporary path} for files of `directory`; publishes them all if the block succeeds.

    The block writes every temporary file (serialising and validating everything first).
    Then, for a reader, the directory goes from the old set of files to the new one without
    ever holding a mixed set: the old files about to be replaced are renamed to hidden
    backups, `names[-1]` first, the new files are renamed in, `names[-1]` last, and the
    backups are deleted. So list the file a loader reads first (`config.json`) last: a
    reader (or a crash) in between finds it missing, never paired with other weights, and
    the backups keep the old files. Files of `directory` not in `names` are untouched.
    On an error nothing under the final names changes and no temporary file is left.

    Raises:
        ValueError: if `directory` is a file or one of `names` is an existing directory,
            before the block runs.
    """
    directory = Path(directory)
    created = [p for p in (directory, *directory.parents) if not p.exists()]
    make_dirs(directory)
    targets = [directory / name for name in names]
    temporaries, backups, published, committed = {}, [], [], False
    try:
        for target in targets:
            if target.is_dir():
                raise ValueError(f"Expected a file path. Received a directory: {str(target)!r}")
        for name in names:
            fd, tmp = tempfile.mkstemp(prefix=f".{Path(name).stem}-", suffix=f".tmp{Path(name).suffix}", dir=directory)
            os.close(fd)
            temporaries[name] = Path(tmp)
        yield dict(temporaries)
        for tmp in temporaries.values():
            _make_publishable(tmp)
        for target in reversed(targets if len(targets) > 1 else []):
            if target.exists() or target.is_symlink():
                backup = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
                os.rename(target, backup)
                backups.append((backup, target))
        for name, target in zip(names, targets):
            os.replace(temporaries[name], target)
            del temporaries[name]
            published.append(target)
        committed = True
        _fsync(directory)
        for backup, _ in backups:
            os.remove(backup)
    finally:
        for tmp in temporaries.values():
            if os.path.exists(tmp):
                os.remove(tmp)
        if not committed:  # put the old files back, remove directories made for nothing
            for target in published:
                os.remove(target)
            for backup, target in backups:
                os.rename(backup, target)
            for path in created:
                with contextlib.suppress(OSError):
                    path.rmdir()
