"""The main job runs end to end, and README's commands stay true."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    return re.findall(r"^```bash\n(.+?)\n```", (ROOT / "README.md").read_text(), flags=re.M)


def test_readme_opens_with_two_commands_and_ci_runs_the_second():
    text = (ROOT / "README.md").read_text()
    commands = _readme_commands()
    assert text.startswith("# keras_vit\n\n```bash\n")
    assert "examples/train_digits.py" in commands[0]
    assert "pytest" in commands[1]
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci_lines[-1] == commands[1]  # .ci/run runs exactly README's test command


@pytest.mark.slow
def test_main_job_trains_saves_reloads_and_classifies(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_digits.py"), "--epochs", "2", "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    accuracies = dict(re.findall(r"(\w+) ([01]\.\d{4})", result.stdout.split("Held-out accuracy:")[-1]))
    assert set(accuracies) == {"vit", "teacher", "deit_none", "deit_hard"}
    assert float(accuracies["teacher"]) > 0.2, accuracies  # twice chance (0.1) after 2 epochs
    keras_lines = re.findall(r"(test_\d\d_label_\d\.png): predicted (\d) \(confidence 0\.\d{3}\)", result.stdout)
    served_lines = re.findall(r"(test_\d\d_label_\d\.png): SavedModel predicts (\d) \(score 0\.\d{3}\)", result.stdout)
    assert len(keras_lines) == 5 and served_lines == keras_lines  # the served model agrees with the reloaded one
    for name in ("vit_digits.keras", "deit_digits.keras", "attention_overlay.png", "serving/vit/1/saved_model.pb"):
        assert (tmp_path / name).is_file(), name


@pytest.mark.slow  # ~85 s on 2 shared cores
def test_finetune_folder_trains_exports_and_the_saved_model_agrees(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "finetune_folder.py"), "--epochs", "1", "--tiles", "12",
         "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Using 18 files for training." in result.stdout and "val_accuracy" in result.stdout
    lines = re.findall(r"(china|flower)/\d{3}\.jpg: SavedModel (\w+) \((0\.\d+)\), Keras (\w+) \((0\.\d+)\)", result.stdout)
    assert len(lines) == 6  # the held-out files
    for _, served, served_score, keras_label, keras_score in lines:
        assert served == keras_label and abs(float(served_score) - float(keras_score)) <= 0.01
    assert (tmp_path / "serving" / "1" / "saved_model.pb").is_file()
    assert len(list((tmp_path / "images" / "china").glob("*.jpg"))) == 12
