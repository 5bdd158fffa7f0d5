"""The CLI on bad input: exit 2 for usage, 1 for bad data, one `keras-vit: error:` line, nothing on disk changed."""

import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

import keras_vit
from keras_vit.cli import main
from keras_vit.export import export_saved_model
from tests.conftest import tiny_config
from tests.disk import snapshot

LABELS = {0: "cat\nsiamese", 1: "dog", 2: "eel"}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A checkpoint directory, a .keras file, an exported SavedModel and images, built once."""
    root = tmp_path_factory.mktemp("cli")
    model = keras_vit.ViTForImageClassification(
        tiny_config(keras_vit.ViTForImageClassification, num_labels=None, id2label=LABELS)
    )
    model.save_pretrained(root / "hf")
    model.save(root / "model.keras")
    export_saved_model(model, root / "serving", verbose=False)
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.jpg", "c.webp"):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(images / name)
    (images / "notes.txt").write_text("not an image")
    (images / ".hidden.png").write_bytes(b"not even a png")
    (root / "fake.png").write_text("text, named like an image")
    (root / "truncated.png").write_bytes((images / "b.png").read_bytes()[:60])
    (root / "fake.keras").write_text("not a zip")
    (root / "file").write_text("a file")
    (root / "empty").mkdir()
    (root / "out.keras").mkdir()
    (root / "no-weights").mkdir()
    shutil.copy(root / "hf" / "config.json", root / "no-weights")
    (root / "list-config").mkdir()
    (root / "list-config" / "config.json").write_text("[1, 2]")
    for name, labels in {"labels-list": '["cat"]', "labels-gap": '{"0": "cat", "2": "dog"}',
                         "labels-int": '{"0": 1, "1": "dog", "2": "eel"}', "labels-bad-json": "{"}.items():
        shutil.copytree(root / "serving" / "1", root / name)
        (root / name / "assets.extra" / "labels.json").write_text(labels)
    shutil.copytree(root / "serving" / "1", root / "labels-missing")
    (root / "labels-missing" / "assets.extra" / "labels.json").unlink()
    return root


def _run(argv, work, capsys, monkeypatch):
    monkeypatch.chdir(work)
    before = snapshot(work)
    code = main(argv)
    out, err = capsys.readouterr()
    assert snapshot(work) == before  # nothing written, nothing lost
    return code, out, err


USAGE = [
    ([], "the following arguments are required: command"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["convert"], "the following arguments are required: source, output"),
    (["convert", "hf"], "the following arguments are required: output"),
    (["export", "hf"], "the following arguments are required: export_base"),
    (["export", "hf", "serving", "--version", "one"], "invalid int value: 'one'"),
    (["export", "hf", "serving", "--version"], "expected one argument"),
    (["predict", "hf"], "the following arguments are required: images"),
    (["predict", "hf", "images", "--top-k", "two"], "invalid int value: 'two'"),
    (["predict", "hf", "images", "--top-k", "1.5"], "invalid int value: '1.5'"),
    (["predict", "hf", "images", "--unknown"], "unrecognized arguments: --unknown"),
    (["convert", "hf", "x.keras", "--model-class"], "expected one argument"),
]


@pytest.mark.parametrize("argv, message", USAGE, ids=[" ".join(a) or "(none)" for a, _ in USAGE])
def test_usage_error_exits_2(work, capsys, monkeypatch, argv, message):
    code, out, err = _run(argv, work, capsys, monkeypatch)
    assert code == 2 and out == ""
    assert message in err and "usage: keras-vit" in err and "Traceback" not in err


DATA = [
    (["convert", "missing-dir", "x.keras"], "'missing-dir'"),
    (["convert", "hf", "x.h5"], "ending in .keras. Received: 'x.h5'"),
    (["convert", "hf", "out.keras"], "Received a directory: 'out.keras'"),
    (["convert", "hf", "file/x.keras"], "Expected 'file' to be a directory"),
    (["convert", "hf", "x.keras", "--model-class", "Nope"], "Received: 'Nope'"),
    (["convert", "no-weights", "x.keras"], "No weights in 'no-weights'"),
    (["convert", "list-config", "x.keras"], "Received: a JSON list"),
    (["convert", "empty", "x.keras"], "Missing config.json in checkpoint directory 'empty'"),
    (["export", "hf", "file"], "Received a file: file"),
    (["export", "hf", "file/serving"], "Received a file: 'file'"),
    (["export", "hf", "serving", "--version", "-1"], "version=-1"),
    (["export", "hf", "serving", "--version", str(2**63)], f"version={2**63}"),
    (["export", "hf", "serving", "--version", "1"], "Version 1 already exists"),
    (["export", "fake.keras", "serving"], "fake.keras"),
    (["predict", "hf", "none.png"], "No such image file(s): ['none.png']"),
    (["predict", "hf", "empty"], "No image files in directory 'empty'"),
    (["predict", "hf", "fake.png"], "'fake.png'"),
    (["predict", "hf", "truncated.png"], "'truncated.png'"),
    (["predict", "hf", "images/notes.txt"], "'images/notes.txt'"),
    (["predict", "hf", "images", "--top-k", "0"], "--top-k >= 1. Received: 0"),
    (["predict", "model.keras", "fake.png"], "'fake.png'"),
    (["predict", "fake.keras", "images"], "fake.keras"),
    (["predict", "serving/1", "fake.png"], "Received: 'fake.png', which the SavedModel cannot decode"),
    (["predict", "serving/1", "images/b.png", "images/notes.txt"], "Received: 'images/notes.txt'"),
    (["predict", "serving/1", "truncated.png"], "'truncated.png'"),
    (["predict", "labels-list", "images"], "labels.json to map '0'..'n-1' to label names. Received: ['cat']"),
    (["predict", "labels-gap", "images"], "Received: {'0': 'cat', '2': 'dog'}"),
    (["predict", "labels-int", "images"], "Received: {'0': 1,"),
    (["predict", "labels-bad-json", "images"], "labels.json to hold JSON"),
    (["predict", "labels-missing", "images"], "no labels-missing/assets.extra/labels.json"),
    (["predict", "hf", "images", "--model-class", "ViTModel"], "Expected a classification model. Received: ViTModel"),
]


@pytest.mark.parametrize("argv, message", DATA, ids=[" ".join(a) for a, _ in DATA])
def test_bad_data_exits_1_with_one_line(work, capsys, monkeypatch, argv, message):
    code, out, err = _run(argv, work, capsys, monkeypatch)
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-vit: error: "), err
    assert message in lines[0]


def test_predict_takes_a_directory_and_reads_labels_json(work, capsys, monkeypatch):
    monkeypatch.chdir(work)
    assert main(["predict", "serving/1", "images", "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # All image files of the directory, sorted; notes.txt and hidden files skipped.
    assert [line.split(": ")[0] for line in lines] == ["images/a.jpg", "images/b.png", "images/c.webp"]
    for line in lines:  # one line per image; the label with a line break printed escaped
        assert sorted(re.findall(r"(cat\\nsiamese|dog|eel) \d\.\d{4}", line)) == ["cat\\nsiamese", "dog", "eel"]
    assert main(["predict", "hf", "images", "images/a.jpg", "--top-k", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[0] for line in lines] == ["images/a.jpg", "images/b.png", "images/c.webp", "images/a.jpg"]


def test_convert_writes_0644_and_leaves_other_files(work, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "README.md").write_text("keep")
    old_umask = os.umask(0o022)
    try:
        assert main(["convert", str(work / "hf"), "out/new/vit.keras"]) == 0
    finally:
        os.umask(old_umask)
    assert (tmp_path / "out" / "new" / "vit.keras").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "out" / "new").stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["README.md", "new", "vit.keras"]
    assert json.loads((work / "hf" / "config.json").read_text())["id2label"]["0"] == "cat\nsiamese"
