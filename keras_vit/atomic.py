"""Writes that never leave a half-written file or a mismatched set of files.

`atomic_path` writes one file: to a temporary sibling, fsynced, renamed into place, the
directory fsynced. `atomic_files` writes several files of one directory (a checkpoint's
`config.json` and `model.safetensors`) so that a reader never finds a mixed set of old and
new files, and files it does not write (a README, `preprocessor_config.json`) stay.
New files get mode `0o666 & ~umask` and directories `0o777 & ~umask`, as `open` and `mkdir`
give them (0644 and 0755 under umask 022), not `tempfile`'s 0600; a file that is replaced
keeps its mode (a 0600 `config.json` stays 0600). `save_keras_atomically` writes a `.keras`
file the same way, for `keras.Model.save`, which opens its target with "wb".
"""

import contextlib
import os
import re
import secrets
import stat
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


def exchange(a, b):
    """Swaps two paths in one step (Linux `renameat2(RENAME_EXCHANGE)`); returns False where
    the system cannot (another OS, an old kernel or file system), changing nothing."""
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(error, os.strerror(error), str(a), None, str(b))


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


def _make_publishable(tmp, target):
    """Gives `tmp` the mode of the file it replaces (else the one `open` would give) and flushes it to disk."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        mode = 0o666 & ~umask()
    os.chmod(tmp, mode)
    _fsync(tmp)


def _backup_name(name, token):
    return f".{name}.old-{token}"


def _temporary_prefix(name, pid):
    return f".{Path(name).stem}-{pid}-"


def _remove_orphan_temporaries(directory, names):
    """Removes the temporary files of `names` whose writing process (named in them) is gone."""
    pattern = re.compile(r"^\.(?P<stem>.+)-(?P<pid>[0-9]+)-[^-]+\.tmp(?P<suffix>.*)$")
    stems = {(Path(name).stem, Path(name).suffix) for name in names}
    for entry in os.listdir(directory):
        match = pattern.match(entry)
        if match and (match["stem"], match["suffix"]) in stems and not _alive(int(match["pid"])):
            with contextlib.suppress(FileNotFoundError):
                os.remove(Path(directory, entry))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _backups(directory, names):
    """{token: [(backup path, target path)]} of the backups `atomic_files` left in `directory`."""
    pattern = re.compile(r"^\.(?P<name>.+)\.old-(?P<token>[0-9a-f]{8})$")
    groups = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir(directory):
            match = pattern.match(entry)
            if match and match["name"] in names:
                groups.setdefault(match["token"], []).append((Path(directory, entry), Path(directory, match["name"])))
    return groups


def committed_paths(directory, names):
    """{name: path} of the set of files an `atomic_files(directory, names)` call last committed.

    The files themselves, except after a crash between the renames (`names[-1]` missing):
    then the old set, from the backups where the old files were renamed aside. Reads
    nothing and changes nothing, so a reader sees the old set or the new one, never a mix.
    """
    directory = Path(directory)
    paths = {name: directory / name for name in names}
    if not paths[names[-1]].exists():
        for backups in _backups(directory, names).values():
            paths.update({target.name: backup for backup, target in backups})
    return paths


def recover(directory, names):
    """Finishes or undoes a set of `atomic_files(directory, names)` renames cut short by a crash.

    Backups of one call share a token. If `names[-1]` (renamed in last, the commit) is
    missing, the call died before committing: its backups are renamed back over whatever
    was published, so the directory holds the old set again. Otherwise it committed and
    the backups are deleted. Temporary files of a writer that is gone are deleted too.
    Returns the names restored.
    """
    directory = Path(directory)
    _remove_orphan_temporaries(directory, names)
    groups = _backups(directory, names)
    committed = (directory / names[-1]).exists()
    restored = []
    for backups in groups.values():
        for backup, target in backups:
            if committed:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(backup)
            else:
                os.replace(backup, target)
                restored.append(target.name)
    if groups:
        _fsync(directory)
    return restored


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it onto `path` if the block succeeds.

    The temporary name keeps `path`'s suffix (Keras picks the format from it). Before the
    rename the file gets the mode of the file it replaces (else 0o666 & ~umask) and is fsynced; the directory is fsynced
    after. On any error the temporary file is removed and `path` is left as it was
    (directories created for it are removed again).

    Raises:
        ValueError: if `path` is a directory, or a parent of it is a file (before the block runs).
    """
    path = Path(path)
    with atomic_files(path.parent, [path.name]) as temporaries:
        yield temporaries[path.name]


def save_keras_atomically(save, filepath, *args, **kwargs):
    """Calls `save(temporary_path, *args, **kwargs)` then renames the result onto `filepath`.

    For `keras.Model.save`, which opens its target with "wb" (a crash mid-save would leave
    a truncated file): a reader or a crash sees the old file or the new one. Paths other
    than local `.keras` files (e.g. `gs://`, `.h5`) go straight to `save`.
    """
    path = os.fspath(filepath) if isinstance(filepath, (str, os.PathLike)) else None
    if path is None or "://" in path or not path.endswith(".keras"):
        return save(filepath, *args, **kwargs)
    if not kwargs.get("overwrite", True) and os.path.exists(path):
        return save(filepath, *args, **kwargs)  # Keras' own refusal (or prompt)
    with atomic_path(path) as tmp:
        save(str(tmp), *args, **{**kwargs, "overwrite": True})  # the temporary file exists, empty
    return None


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
    recover(directory, names)
    token = secrets.token_hex(4)
    temporaries, backups, published, committed = {}, [], [], False
    try:
        for target in targets:
            if target.is_dir():
                raise ValueError(f"Expected a file path. Received a directory: {str(target)!r}")
        for name in names:
            fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(name, os.getpid()), suffix=f".tmp{Path(name).suffix}",
                                       dir=directory)
            os.close(fd)
            temporaries[name] = Path(tmp)
        yield dict(temporaries)
        for name, tmp in temporaries.items():
            _make_publishable(tmp, directory / name)
        for target in reversed(targets if len(targets) > 1 else []):
            if target.exists() or target.is_symlink():
                backup = target.with_name(_backup_name(target.name, token))
                os.rename(target, backup)
                backups.append((backup, target))
        for name, target in zip(names, targets):
            os.replace(temporaries[name], target)
            del temporaries[name]
            published.append(target)
        committed = True
        _fsync(directory)
        for backup, _ in backups:
            with contextlib.suppress(FileNotFoundError):
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
