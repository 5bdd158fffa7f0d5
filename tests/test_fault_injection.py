"""Crashes, full disks and read-only targets during every writer: the target holds the old
content or the new one, never nothing or a mix, and the next call cleans up.

A crash is a forked child that SIGKILLs itself just before its n-th call to `os.replace`,
`os.rename`, `os.fsync` or `keras_vit.atomic.exchange`, for every n until the writer
finishes.
"""

import contextlib
import errno
import os
import shutil
import signal
import subprocess

import keras
import pytest

import keras_vit
import keras_vit.export
from keras_vit.atomic import atomic_files, save_keras_atomically, write_text_atomically
from tests.conftest import tiny_config
from tests.disk import snapshot

_MODEL = keras_vit.ViTForImageClassification
_CRASH_POINTS = ((os, "replace"), (os, "rename"), (os, "fsync"), (keras_vit.export, "exchange"))


def _killed_at(n, write):
    """Runs `write()` in a forked child killed before its n-th crash point; True if it was killed."""
    pid = os.fork()
    if pid == 0:
        calls = [0]

        def crash_point(real):
            def call(*args, **kwargs):
                calls[0] += 1
                if calls[0] == n:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(*args, **kwargs)

            return call

        code = 1
        try:
            for module, name in _CRASH_POINTS:
                setattr(module, name, crash_point(getattr(module, name)))
            write()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) or os.WEXITSTATUS(status) == 0, f"the writer failed at n={n}"
    return os.WIFSIGNALED(status)


def _every_crash(write, check):
    """Calls `check(n)` after a crash before each crash point n of `write`, then after a full run."""
    n = 1
    while _killed_at(n, write):
        check(n)
        n += 1
        assert n < 50
    check(n)
    return n - 1


def _hidden(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_save_pretrained_killed_anywhere_loads_old_or_new_and_the_next_save_cleans_up(tmp_path):
    old, new = (_MODEL(tiny_config(_MODEL, num_labels=n)) for n in (3, 5))
    old.save_pretrained(tmp_path)
    os.chmod(tmp_path / "config.json", 0o600)
    seen = set()

    def check(n):
        seen.add(_MODEL.from_pretrained(tmp_path).config.num_labels)  # a reader right after the crash
        old.save_pretrained(tmp_path)  # the next call restores or removes what the crash left
        assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"], n
        assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o600

    points = _every_crash(lambda: new.save_pretrained(tmp_path), check)
    assert points >= 6 and seen == {3, 5}


@pytest.mark.parametrize("writer", ["text", "keras"])
def test_single_file_writers_killed_anywhere_leave_the_old_or_new_file(tmp_path, writer):
    if writer == "text":
        target = tmp_path / "preprocessor_config.json"
        target.write_text("old")
        write, read = (lambda: write_text_atomically(target, "new")), (lambda: target.read_text())
    else:
        target = tmp_path / "model.keras"
        old, new = (_MODEL(tiny_config(_MODEL, num_labels=n)) for n in (3, 5))
        old.save(target)
        write = lambda: new.save(target)  # noqa: E731  (the model's save: atomic)
        read = lambda: keras.saving.load_model(target).config.num_labels  # noqa: E731
    os.chmod(target, 0o600)
    before, seen = read(), set()

    def check(n):
        seen.add(read())
        assert target.stat().st_mode & 0o777 == 0o600

    _every_crash(write, check)
    assert seen == {before, read()} and len(seen) == 2


def test_keras_save_with_overwrite_false_writes_a_new_file_and_refuses_an_existing_one(tmp_path, monkeypatch):
    model = _MODEL(tiny_config(_MODEL))
    model.save(tmp_path / "new.keras", overwrite=False)
    assert keras.saving.load_model(tmp_path / "new.keras").config.num_labels == 3
    monkeypatch.setattr("builtins.input", lambda prompt: "n")  # Keras asks before overwriting
    before = (tmp_path / "new.keras").read_bytes()
    _MODEL(tiny_config(_MODEL, num_labels=5)).save(tmp_path / "new.keras", overwrite=False)
    assert (tmp_path / "new.keras").read_bytes() == before


def test_keras_save_killed_while_keras_writes_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"old")

    def save(path, overwrite=True):
        with open(path, "wb") as f:  # what keras.Model.save does: truncate, then write
            f.write(b"ne")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    assert _killed_at(100, lambda: save_keras_atomically(save, target))
    assert target.read_bytes() == b"old"


def test_overwrite_export_killed_anywhere_keeps_a_complete_version(tmp_path):
    def version(name, content):
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_text(content)

    def publish():
        version(".tmp-1", "new")
        keras_vit.export._publish(tmp_path / ".tmp-1", tmp_path / "1", overwrite=True)

    version("1", "old")
    seen = set()

    def check(n):
        seen.add((tmp_path / "1" / "saved_model.pb").read_text())
        keras_vit.export._recover_versions(tmp_path)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp_path / ".tmp-1")  # export_saved_model's own cleanup of its claim
        assert sorted(p.name for p in tmp_path.iterdir()) == ["1"], n

    _every_crash(publish, check)
    assert seen == {"old", "new"}


# === Full disks and read-only targets ===
def _mount_tmpfs(path, options):
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """A 256 KiB tmpfs where the machine allows mounting one; else writes fail with ENOSPC."""
    mount = tmp_path / "disk"
    mounted = _mount_tmpfs(mount, "size=256k")
    if not mounted:
        import safetensors.numpy

        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device (simulated)")

        monkeypatch.setattr(safetensors.numpy, "save_file", full)
    yield mount
    if mounted:
        subprocess.run(["umount", str(mount)], check=True)


def test_save_pretrained_on_a_full_disk_leaves_the_old_checkpoint(small_disk):
    _MODEL(tiny_config(_MODEL, hidden_size=16, num_attention_heads=2, intermediate_size=8)).save_pretrained(small_disk)
    before = snapshot(small_disk)
    big = _MODEL(tiny_config(_MODEL, hidden_size=64, intermediate_size=256, num_hidden_layers=4))
    with pytest.raises(OSError) as error:
        big.save_pretrained(small_disk)
    assert error.value.errno == errno.ENOSPC or "No space" in str(error.value)
    assert snapshot(small_disk) == before


@pytest.fixture
def read_only_checkpoint(tmp_path):
    """A checkpoint directory that cannot be written: a tmpfs remounted read-only where the
    machine allows mounting, else a directory of mode 0o555 (which root ignores)."""
    directory = tmp_path / "ckpt"
    mounted = _mount_tmpfs(directory, "size=1m")
    _MODEL(tiny_config(_MODEL)).save_pretrained(directory)
    if mounted:
        subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)
    else:
        if os.geteuid() == 0:
            pytest.skip("root without mount: no way to make a directory read-only")
        os.chmod(directory, 0o555)
    yield directory
    if mounted:
        subprocess.run(["umount", str(directory)], check=True)
    else:
        os.chmod(directory, 0o755)


def test_save_pretrained_into_a_read_only_directory_changes_nothing(read_only_checkpoint):
    before = snapshot(read_only_checkpoint)
    with pytest.raises(OSError) as error:
        _MODEL(tiny_config(_MODEL, num_labels=5)).save_pretrained(read_only_checkpoint)
    assert error.value.errno in (errno.EROFS, errno.EACCES)
    assert snapshot(read_only_checkpoint) == before
    assert _MODEL.from_pretrained(read_only_checkpoint).config.num_labels == 3


def test_atomic_files_leave_no_temporary_when_the_write_fails(tmp_path):
    (tmp_path / "config.json").write_text("old")
    with pytest.raises(OSError):
        with atomic_files(tmp_path, ["model.safetensors", "config.json"]) as tmp:
            raise OSError(errno.ENOSPC, "No space left on device")
    assert _hidden(tmp_path) == [] and (tmp_path / "config.json").read_text() == "old"
