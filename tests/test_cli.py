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
