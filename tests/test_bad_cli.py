"""The CLI on bad input: exit 2 for usage, 1 for bad data, one `keras-vit: error:` line, nothing on disk changed."""

import io
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import keras_vit
from keras_vit.cli import build_parser, main
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
    (["predict", "hf", "images", "--top-k", "0"], "argument --top-k: expected an int >= 1. Received: 0"),
    (["predict", "hf", "images", "--batch-size", "-2"], "argument --batch-size: expected an int >= 1. Received: -2"),
    (["predict", "hf", "images", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
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
    (["export", "hf", "serving", "--version", "-1"], "Received: --version -1"),
    (["export", "hf", "serving", "--version", str(2**63)], f"Received: --version {2**63}"),
    (["export", "hf", "serving", "--version", "1"], "Pass --overwrite to replace it."),
    (["export", "fake.keras", "serving"], "fake.keras"),
    (["predict", "fake.keras", "images"], "fake.keras"),
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


# An image that fails gets its own line on stdout; the run goes on and exits 1 at the end.
BAD_IMAGES = [
    (["hf", "none.png"], "none.png: error: no such file or directory"),
    (["hf", "empty"], "empty: error: no image files in this directory"),
    (["hf", "fake.png"], "fake.png: error: Expected the image to be a readable image file. Could not decode 'fake.png'"),
    (["hf", "truncated.png"], "truncated.png: error: Expected the image to be a readable image file."),
    (["hf", "images/notes.txt"], "images/notes.txt: error: Expected the image to be a readable image file."),
    (["model.keras", "fake.png"], "fake.png: error: Expected the image to be a readable image file."),
    (["serving/1", "fake.png"], "fake.png: error: the SavedModel cannot decode it: Expected the image to be a JPEG, PNG, GIF, BMP or still WebP image"),
    (["serving/1", "images/notes.txt"], "images/notes.txt: error: the SavedModel cannot decode it: Expected the image"),
    (["serving/1", "truncated.png"], "truncated.png: error: the SavedModel cannot decode it: Expected the image"),
]


@pytest.mark.parametrize("argv, line", BAD_IMAGES, ids=[" ".join(a) for a, _ in BAD_IMAGES])
def test_a_bad_image_gets_an_error_line_and_the_others_go_on(work, capsys, monkeypatch, argv, line):
    code, out, err = _run(["predict", *argv, "images/b.png", "--top-k", "1"], work, capsys, monkeypatch)
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith(line), lines
    assert re.fullmatch(r"images/b.png: (cat\\nsiamese|dog|eel) \d\.\d{4}", lines[1]), lines
    assert err == "keras-vit: error: 1 of 2 images failed (see their lines).\n"


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


@pytest.fixture(scope="module")
def tree(work):
    """A class-subfolder tree with a hidden folder, a truncated PNG, a 16-bit grayscale PNG and a non-UTF-8 name."""
    import tensorflow as tf

    root = work / "tree"
    for folder in ("cats", "dogs/.cache"):
        (root / folder).mkdir(parents=True)
    png = (work / "images" / "b.png").read_bytes()
    for name in ("cats/a.png", "dogs/b.png", "dogs/.cache/hidden.png", "top.png"):
        (root / name).write_bytes(png)
    (root / "dogs" / "truncated.png").write_bytes(png[:60])
    gray = np.random.default_rng(0).integers(0, 65536, (20, 20, 1), dtype=np.uint16)
    (root / "gray16.png").write_bytes(tf.io.encode_png(gray).numpy())
    os.rename(root / "top.png", os.path.join(os.fsencode(root), b"caf\xe9.png"))
    return root


@pytest.mark.parametrize("source", ["hf", "model.keras", "serving/1"])
def test_predict_searches_a_tree_and_every_source_refuses_the_same_images(work, tree, capsys, monkeypatch, source):
    code, out, err = _run(["predict", source, "tree", "--format", "json", "--top-k", "2", "--batch-size", "2"],
                          work, capsys, monkeypatch)
    records = [json.loads(line) for line in out.splitlines()]
    paths = [os.fsencode(r["path"]) for r in records]  # the non-UTF-8 name round-trips through its escapes
    assert paths == [b"tree/caf\xe9.png", b"tree/cats/a.png", b"tree/dogs/b.png", b"tree/dogs/truncated.png",
                     b"tree/gray16.png"]
    assert [sorted(r) for r in records] == [["labels", "path", "scores"]] * 3 + [["error", "path"]] * 2
    assert records[0]["labels"] == records[1]["labels"] and len(records[0]["labels"]) == 2  # the same image
    np.testing.assert_allclose(records[0]["scores"], records[1]["scores"], atol=1e-6)
    assert code == 1 and err == "keras-vit: error: 2 of 5 images failed (see their lines).\n"


def test_predict_no_recursive_text_and_csv(work, tree, capsys, monkeypatch):
    code, out, err = _run(["predict", "hf", "tree/cats", "--no-recursive", "--format", "csv", "--top-k", "1"],
                          work, capsys, monkeypatch)
    assert code == 0 and err == ""
    rows = list(__import__("csv").reader(out.splitlines()))
    assert rows[0] == ["path", "label_1", "score_1", "error"] and rows[1][0] == "tree/cats/a.png" and rows[1][3] == ""
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # text output writes a non-UTF-8 name as its bytes
    monkeypatch.setattr(sys, "stdout", stdout)
    code = main(["predict", "hf", "tree", "--no-recursive", "--top-k", "1"])
    stdout.flush()
    names = [line.split(b": ")[0] for line in stdout.buffer.getvalue().splitlines()]
    assert code == 1 and names == [b"tree/caf\xe9.png", b"tree/gray16.png"]


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out == f"keras-vit {keras_vit.__version__}\n"


def test_the_command_prints_no_tensorflow_log_lines(work):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # the default verbosity
    command = [sys.executable, "-c", "import sys, keras_vit_quiet; sys.exit(keras_vit_quiet.main())"]
    result = subprocess.run([*command, "predict", "serving/1", "images/b.png", "fake.png", "--top-k", "1"],
                            cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and len(result.stdout.splitlines()) == 2, result.stdout
    assert result.stderr == "keras-vit: error: 1 of 2 images failed (see their lines).\n", result.stderr


def test_progress_bar_goes_to_a_terminal_stderr_only(work):
    import pty

    main_fd, terminal_fd = pty.openpty()
    command = [sys.executable, "-c", "import sys, keras_vit_quiet; sys.exit(keras_vit_quiet.main())",
               "predict", "hf", "images", "--batch-size", "2", "--top-k", "1"]
    result = subprocess.run(command, cwd=work, stdout=subprocess.PIPE, stderr=terminal_fd, timeout=300)
    os.close(terminal_fd)
    shown = b""
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # EIO: the terminal's other end is closed and drained
            break
        if not chunk:
            break
        shown += chunk
    os.close(main_fd)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 3  # stdout: the results only
    assert b"3/3" in shown and b"image" in shown, shown  # keras.utils.Progbar on the terminal
