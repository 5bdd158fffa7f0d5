import os

import pytest

import keras_vit
from keras_vit.atomic import atomic_files, atomic_path, make_dirs, umask, write_text_atomically
from tests.conftest import tiny_config
from tests.disk import modes, snapshot


def test_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "config.json"
    write_text_atomically(target, "first")
    write_text_atomically(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["config.json"]


def test_failure_leaves_target_and_no_temporary(tmp_path):
    target = tmp_path / "model.keras"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            assert tmp.suffix == ".keras" and tmp.parent == tmp_path
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


# === Modes, fsync, directory-atomic writes ===


@pytest.fixture
def set_umask():
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def test_umask_is_read_without_changing_it(set_umask):
    for mask in (0o022, 0o077, 0o002):
        set_umask(mask)
        assert umask() == mask
        assert os.umask(mask) == mask


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)])
def test_files_and_directories_honour_the_umask(tmp_path, set_umask, mask, file_mode, dir_mode):
    set_umask(mask)
    model = keras_vit.ViTForImageClassification(tiny_config(keras_vit.ViTForImageClassification))
    model.save_pretrained(tmp_path / "hf" / "nested")
    keras_vit.ViTImageProcessor.from_config(model.config).save_pretrained(tmp_path / "hf" / "nested")
    write_text_atomically(tmp_path / "text" / "a.txt", "a")
    assert modes(tmp_path) == {
        ".": tmp_path.stat().st_mode & 0o777,
        "hf": dir_mode, "hf/nested": dir_mode, "text": dir_mode,
        "hf/nested/config.json": file_mode, "hf/nested/model.safetensors": file_mode,
        "hf/nested/preprocessor_config.json": file_mode, "text/a.txt": file_mode,
    }


def test_file_and_directory_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))) or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", str(b))) or real_replace(a, b))
    write_text_atomically(tmp_path / "config.json", "{}")
    (kind, tmp), replace, directory = events
    assert kind == "fsync" and os.path.dirname(tmp) == str(tmp_path) and tmp.endswith(".tmp.json")
    assert replace == ("replace", str(tmp_path / "config.json"))
    assert directory == ("fsync", str(tmp_path))


def _checkpoint(directory, tag):
    (directory / "model.safetensors").write_text(f"weights {tag}")
    (directory / "config.json").write_text(f"config {tag}")


def _write(directory, tag):
    with atomic_files(directory, ["model.safetensors", "config.json"]) as tmp:
        tmp["model.safetensors"].write_text(f"weights {tag}")
        tmp["config.json"].write_text(f"config {tag}")


def test_a_reader_never_sees_new_weights_with_the_old_config(tmp_path, monkeypatch):
    _checkpoint(tmp_path, "old")
    (tmp_path / "README.md").write_text("card")
    states = []
    for name in ("rename", "replace"):
        real = getattr(os, name)

        def record(a, b, real=real):
            real(a, b)
            states.append({p.name: p.read_text() for p in tmp_path.iterdir() if not p.name.startswith(".")})

        monkeypatch.setattr(os, name, record)
    _write(tmp_path, "new")
    assert states[-1] == {"README.md": "card", "config.json": "config new", "model.safetensors": "weights new"}
    for state in states:  # after every rename: no config, or a matching pair
        if "config.json" in state:
            assert state["config.json"].split()[1] == state["model.safetensors"].split()[1], states
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json", "model.safetensors"]


@pytest.mark.parametrize("failing_call", range(4))
def test_a_failed_rename_puts_the_old_files_back(tmp_path, monkeypatch, failing_call):
    _checkpoint(tmp_path, "old")
    (tmp_path / "README.md").write_text("card")
    before = snapshot(tmp_path)
    calls = []
    real_rename, real_replace = os.rename, os.replace

    def flaky(real):
        def call(a, b):
            calls.append(b)
            if len(calls) == failing_call + 1:
                raise OSError(f"injected failure renaming to {b}")
            return real(a, b)
        return call

    monkeypatch.setattr(os, "rename", flaky(real_rename))
    monkeypatch.setattr(os, "replace", flaky(real_replace))
    with pytest.raises(OSError, match="injected failure"):
        _write(tmp_path, "new")
    monkeypatch.undo()
    assert snapshot(tmp_path) == before


def test_a_failed_write_changes_nothing_and_removes_directories_it_made(tmp_path):
    _checkpoint(tmp_path, "old")
    before = snapshot(tmp_path)
    for directory in (tmp_path, tmp_path / "new" / "deeper"):
        with pytest.raises(TypeError, match="not serialisable"):
            with atomic_files(directory, ["model.safetensors", "config.json"]) as tmp:
                tmp["model.safetensors"].write_text("weights new")
                raise TypeError("not serialisable")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("target", ["config.json", "file/config.json", "file/x/config.json"])
def test_targets_that_are_directories_or_under_files_are_named(tmp_path, target):
    (tmp_path / "config.json").mkdir()
    (tmp_path / "file").write_text("a file")
    before = snapshot(tmp_path)
    with pytest.raises(ValueError) as error:
        write_text_atomically(tmp_path / target, "{}")
    assert str(tmp_path / target.split("/")[0]) in str(error.value)
    assert snapshot(tmp_path) == before
    if target != "config.json":
        with pytest.raises(ValueError, match=f"Received a file: '{tmp_path / 'file'}'"):
            make_dirs(tmp_path / target)


def test_save_pretrained_replaces_a_checkpoint_and_keeps_other_files(tmp_path):
    first = keras_vit.ViTForImageClassification(tiny_config(keras_vit.ViTForImageClassification))
    second = keras_vit.ViTForImageClassification(tiny_config(keras_vit.ViTForImageClassification, num_labels=5))
    first.save_pretrained(tmp_path)
    (tmp_path / "README.md").write_text("card")
    (tmp_path / "preprocessor_config.json").write_text("{}")
    second.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "README.md", "config.json", "model.safetensors", "preprocessor_config.json"]
    assert keras_vit.ViTForImageClassification.from_pretrained(tmp_path).config.num_labels == 5
