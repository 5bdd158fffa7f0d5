import pytest

from keras_vit.atomic import atomic_path, write_text_atomically


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
