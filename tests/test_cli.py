import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_vit
from keras_vit.cli import main
from tests.test_checkpoints import FIXTURES


def test_convert_hf_directory_to_keras(tmp_path, capsys):
    output = tmp_path / "out" / "vit.keras"
    assert main(["convert", str(FIXTURES / "tf-vit-classifier"), str(output)]) == 0
    assert "ViTForImageClassification" in capsys.readouterr().out
    model = keras.saving.load_model(output)
    assert isinstance(model, keras_vit.ViTForImageClassification)
    directory = FIXTURES / "tf-vit-classifier"
    pixels = np.load(directory / "input_pixel_values.npy").transpose(0, 2, 3, 1)
    np.testing.assert_allclose(model(pixels)["logits"], np.load(directory / "expected_logits.npy"), atol=1e-4)
    assert [p.name for p in output.parent.iterdir()] == ["vit.keras"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["convert", "missing-dir", "x.keras"], "not a Hub repo id"),
        (["convert", str(FIXTURES / "tf-vit-classifier"), "x.h5"], "ending in .keras"),
        (["convert", str(FIXTURES / "tf-vit-classifier"), "x.keras", "--model-class", "Nope"], "Received: 'Nope'"),
    ],
)
def test_convert_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from PIL import Image
    from sklearn.datasets import load_sample_images

    directory = tmp_path_factory.mktemp("photos")
    paths = []
    for i, image in enumerate(load_sample_images().images):
        paths.append(directory / f"photo{i}.jpg")
        Image.fromarray(image).save(paths[-1])
    return paths


def test_predict_from_hf_directory_and_keras_file(tmp_path, photos, capsys):
    model = keras_vit.DeiTForImageClassificationWithTeacher(
        keras_vit.DeiTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                             image_size=32, patch_size=8, id2label={0: "cat", 1: "dog", 2: "eel"}),
        data_format="channels_first",
    )
    model.save_pretrained(tmp_path / "hf")
    processor = keras_vit.DeiTImageProcessor.from_config(model.config)
    processor.save_pretrained(tmp_path / "hf")
    logits = np.asarray(model.predict(processor([str(p) for p in photos], data_format="channels_first")["pixel_values"], verbose=0)["logits"])
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert main(["predict", str(tmp_path / "hf"), *map(str, photos), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line, path, p in zip(lines, photos, probs):
        best = p.argsort()[::-1][:2]
        assert line == f"{path}: " + ", ".join(f"{['cat', 'dog', 'eel'][i]} {p[i]:.4f}" for i in best)
    model.save(tmp_path / "model.keras")
    assert main(["predict", str(tmp_path / "model.keras"), str(photos[0]), "--top-k", "1"]) == 0
    assert capsys.readouterr().out.strip() == lines[0].split(",")[0]
    # Through an exported SavedModel: JPEG decoding and resizing run in the graph (TF vs PIL
    # resampling), so the ranking matches and the scores agree to about 1e-2.
    assert main(["export", str(tmp_path / "hf"), str(tmp_path / "serving")]) == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "serving" / "1"), *map(str, photos), "--top-k", "2"]) == 0
    served = capsys.readouterr().out.strip().splitlines()
    for line, reference in zip(served, lines):
        assert re.sub(r" \d\.\d+", "", line) == re.sub(r" \d\.\d+", "", reference)
        scores = [float(x) for x in re.findall(r"\d\.\d+", line)]
        expected = [float(x) for x in re.findall(r"\d\.\d+", reference)]
        np.testing.assert_allclose(scores, expected, atol=2e-2)


def test_predict_errors(tmp_path, photos, capsys):
    assert main(["predict", str(FIXTURES / "tf-vit-classifier"), str(tmp_path / "none.png")]) == 1
    assert capsys.readouterr().out == f"{tmp_path / 'none.png'}: error: no such file or directory\n"
    assert main(["predict", str(FIXTURES / "tf-vit-classifier"), str(photos[0]), "--top-k", "0"]) == 2
    assert "argument --top-k: expected an int >= 1. Received: 0" in capsys.readouterr().err


def test_export_command_publishes_a_version(tmp_path, capsys):
    from tests.conftest import tiny_config

    keras_vit.ViTForImageClassification(tiny_config()).save(tmp_path / "m.keras")
    assert main(["export", str(tmp_path / "m.keras"), str(tmp_path / "serving")]) == 0
    assert (tmp_path / "serving" / "1" / "saved_model.pb").is_file()
    assert main(["export", str(tmp_path / "m.keras"), str(tmp_path / "serving"), "--version", "1"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "serving").iterdir()) == ["1"]


def test_predict_refuses_a_decompression_bomb_without_a_traceback(tmp_path, capsys):
    from tests.test_preprocessing import bomb_png

    (tmp_path / "bomb.png").write_bytes(bomb_png(14000, 14000))
    assert main(["predict", str(FIXTURES / "tf-vit-classifier"), str(tmp_path / "bomb.png")]) == 1
    out, err = capsys.readouterr()
    assert "bomb.png': it is over PIL's decompression-bomb limit" in out and "Traceback" not in err


def test_quiet_logs_keep_keras_progress_and_drop_absl_lines(tmp_path):
    script = """
import keras_vit_quiet
keras_vit_quiet.quiet_tensorflow_logs()
import keras, numpy as np, tensorflow as tf
data = tf.data.Dataset.from_tensor_slices((np.ones((8, 3), "float32"), np.ones((8, 1), "float32"))).batch(4)
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
model.compile("sgd", "mse")
model.fit(data, epochs=2, verbose=2)
"""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.findall(r"^Epoch \d/2$", result.stdout, re.M) == ["Epoch 1/2", "Epoch 2/2"]
    assert "loss:" in result.stdout
    assert not re.search(r"^[IWE]\d{4} |absl::InitializeLog", result.stderr, re.M), result.stderr
