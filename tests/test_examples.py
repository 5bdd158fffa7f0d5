"""The main job runs end to end, its data loader reads idx files, and README's commands stay true."""

import gzip
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MAIN_JOB = ROOT / "examples" / "train_fashion_mnist.py"
SEEDS_BENCHMARK = ROOT / "benchmarks" / "distillation.py"


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _main_job_module():
    return _load(MAIN_JOB)


def _readme_commands():
    return re.findall(r"^```bash\n(.+?)\n```", (ROOT / "README.md").read_text(), flags=re.M)


def test_readme_opens_with_two_commands_and_ci_runs_the_second():
    text = (ROOT / "README.md").read_text()
    commands = _readme_commands()
    assert text.startswith("# keras_vit\n\n```bash\n")
    # One line for a fresh Debian machine: the data package, then the project, then the main job.
    steps = commands[0].split(" && ")
    assert steps.index("apt-get install -y dataset-fashion-mnist python3-venv") < steps.index("python3 -m venv .venv")
    assert "pip install -e '.[examples,serving]'" in steps
    assert steps[-1] == "python examples/train_fashion_mnist.py"
    assert "pytest" in commands[1]
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci_lines[-1] == commands[1]  # .ci/run runs exactly README's test command


def _write_idx(path, array, header=None):
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    header = bytes([0, 0, 8, array.ndim]) if header is None else header
    path.write_bytes(gzip.compress(header + dims + array.astype("uint8").tobytes()))


def test_read_idx_reads_shape_and_values(tmp_path):
    array = np.arange(24, dtype="uint8").reshape(2, 3, 4)
    _write_idx(tmp_path / "images.gz", array)
    read = _main_job_module().read_idx(tmp_path / "images.gz")
    assert read.dtype == np.uint8 and read.shape == (2, 3, 4)
    np.testing.assert_array_equal(read, array)


def test_read_idx_rejects_other_types_and_truncated_files(tmp_path):
    module = _main_job_module()
    _write_idx(tmp_path / "float.gz", np.zeros((2, 2)), header=bytes([0, 0, 0x0D, 2]))  # 0x0D: float32
    with pytest.raises(ValueError, match=r"Expected a uint8 idx file \(header 00 00 08\).*000d02"):
        module.read_idx(tmp_path / "float.gz")
    truncated = gzip.compress(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + bytes(3))
    (tmp_path / "short.gz").write_bytes(truncated)
    with pytest.raises(ValueError, match=r"Expected 5 values for shape \(5,\)\. Received: 3"):
        module.read_idx(tmp_path / "short.gz")


def test_load_dataset_reads_fashion_mnist_files_and_splits_them(tmp_path):
    rng = np.random.default_rng(0)
    files = _main_job_module().FASHION_MNIST_FILES
    x_train, y_train = rng.integers(0, 256, (50, 28, 28)), np.arange(50) % 10
    x_test, y_test = rng.integers(0, 256, (7, 28, 28)), np.arange(7) % 10
    for key, array in {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}.items():
        _write_idx(tmp_path / files[key], array)
    data = _main_job_module().load_dataset(train_size=30, val_size=5, seed=0, directory=tmp_path)
    assert data.name == "Fashion-MNIST" and data.class_names[9] == "Ankle boot"
    assert data.x_train.shape == (30, 28, 28) and data.x_val.shape == (5, 28, 28) and data.x_test.shape == (7, 28, 28)
    np.testing.assert_array_equal(data.x_test, x_test)
    # Training and validation images are distinct rows of the training file, labels kept with them.
    rows = {tuple(image.ravel()): label for image, label in zip(x_train, y_train)}
    seen = [tuple(image.ravel()) for image in np.concatenate([data.x_train, data.x_val])]
    assert len(set(seen)) == 35 and all(rows[r] == y for r, y in zip(seen, np.concatenate([data.y_train, data.y_val])))


def test_load_dataset_falls_back_to_digits_and_says_so(tmp_path, capsys):
    data = _main_job_module().load_dataset(train_size=10_000, val_size=2000, seed=0, directory=tmp_path)
    assert f"Fashion-MNIST is not installed in {tmp_path}" in capsys.readouterr().out
    assert data.name == "scikit-learn digits" and data.x_train.shape[1:] == (8, 8)
    assert len(data.x_test) == 450 and len(data.x_val) == 1347 // 5 and len(data.x_train) == 1347 - 1347 // 5


def test_to_pixel_values_matches_the_exported_preprocessing():
    images = np.array([[[0, 255], [51, 128]]], dtype="uint8")
    pixel_values = _main_job_module().to_pixel_values(images)
    assert pixel_values.shape == (1, 2, 2, 1) and pixel_values.dtype == np.float32
    # ViTImageProcessor defaults: (x / 255 - 0.5) / 0.5.
    np.testing.assert_allclose(pixel_values[0, ..., 0], (images[0] / 255 - 0.5) / 0.5, atol=1e-6)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "Expected --epochs >= 1. Received: 0"),
        (["--subset", "-5"], "Expected --subset >= 1. Received: -5"),
        (["--learning-rate", "0"], "Expected --learning-rate > 0. Received: 0.0"),
        (["--temperature", "-1"], "Expected --temperature > 0. Received: -1.0"),
        (["--teacher-epochs", "0"], "Expected --teacher-epochs >= 1. Received: 0"),
    ],
)
def test_main_job_rejects_bad_flags_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _main_job_module().parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_load_dataset_gives_the_teacher_every_image_but_the_validation_ones(tmp_path):
    rng = np.random.default_rng(1)
    files = _main_job_module().FASHION_MNIST_FILES
    for key, shape in {"x_train": (40, 28, 28), "y_train": (40,), "x_test": (3, 28, 28), "y_test": (3,)}.items():
        _write_idx(tmp_path / files[key], rng.integers(0, 10 if key.startswith("y") else 256, shape))
    data = _main_job_module().load_dataset(train_size=12, val_size=8, seed=3, directory=tmp_path)
    assert data.x_teacher.shape == (32, 28, 28) and data.y_teacher.shape == (32,)
    np.testing.assert_array_equal(data.x_teacher[:12], data.x_train)  # the students' images are the teacher's first
    np.testing.assert_array_equal(data.y_teacher[:12], data.y_train)
    val_rows = {image.tobytes() for image in data.x_val}
    assert not any(image.tobytes() in val_rows for image in data.x_teacher)


def test_one_per_class_picks_the_first_image_of_each_class_in_class_order():
    labels = np.array([3, 1, 1, 0, 3, 2, 0])
    np.testing.assert_array_equal(_main_job_module().one_per_class(labels, 5), [3, 1, 5, 0])  # class 4 absent


FAKE_SEEDS = [  # fake per-seed accuracies: the arithmetic and layout only, not evidence
    {"teacher": 0.90, "deit_none": 0.80, "deit_soft": 0.81, "deit_hard": 0.83},
    {"teacher": 0.92, "deit_none": 0.82, "deit_soft": 0.82, "deit_hard": 0.83},
    {"teacher": 0.91, "deit_none": 0.81, "deit_soft": 0.80, "deit_hard": 0.80},
]


def test_seeds_benchmark_summarizes_mean_std_and_hard_minus_none_with_its_standard_error():
    summary = _load(SEEDS_BENCHMARK).summarize(FAKE_SEEDS)
    assert summary["teacher"]["mean"] == pytest.approx(0.91) and summary["teacher"]["std"] == pytest.approx(0.01)
    assert summary["deit_soft"]["per_seed"] == [0.81, 0.82, 0.80]
    difference = summary["hard_minus_none"]  # +0.03, +0.01, -0.01
    np.testing.assert_allclose(difference["per_seed"], [0.03, 0.01, -0.01], atol=1e-12)
    assert difference["mean"] == pytest.approx(0.01) and difference["std"] == pytest.approx(0.02)
    assert difference["standard_error"] == pytest.approx(0.02 / np.sqrt(3)) and difference["seeds_above"] == 2
    with pytest.raises(ValueError, match="Expected at least 2 seeds for a standard deviation. Received: 1 runs"):
        _load(SEEDS_BENCHMARK).summarize(FAKE_SEEDS[:1])


def test_seeds_benchmark_table_and_the_main_job_prints_its_run_next_to_it(tmp_path, capsys):
    benchmark, job = _load(SEEDS_BENCHMARK), _main_job_module()
    summary = benchmark.summarize(FAKE_SEEDS)
    table = benchmark.format_table(summary, job.RESULT_NAMES).splitlines()
    assert table[2] == "| CNN teacher | 0.9100 ± 0.0100 | 0.9000, 0.9200, 0.9100 | RegNetY-16GF teacher |"
    assert table[4].startswith("| DeiT, soft distillation | 0.8100 ± 0.0100 | 0.8100, 0.8200, 0.8000 |")
    assert table[6] == (
        "| hard − none (points) | +1.00 ± 1.15 (mean ± standard error); hard above none in 2/3 seeds "
        "| +3.00, +1.00, -1.00 | +1.2 (83.0 − 81.8) |"
    )
    args = job.parse_args(["--seed", "4"])
    reference = {"date": "2026-12-07", "machine": "test", "budget": job.budget(args), "seeds": [0, 1, 2], "summary": summary}
    (tmp_path / "reference.json").write_text(json.dumps(reference))
    results = {"teacher": 0.9, "deit_none": 0.8, "deit_soft": 0.805, "deit_hard": 0.82}
    job.print_reference(results, args, tmp_path / "reference.json")
    printed = capsys.readouterr().out
    assert "This run (seed 4) next to benchmarks/distillation.py over seeds [0, 1, 2]" in printed
    assert "| DeiT, hard distillation | 0.8200 | 0.8200 ± 0.0173 |" in printed
    assert "| hard − none (points) | +2.00 | +1.00 ± 1.15 (mean ± standard error), hard above none in 2/3 seeds |" in printed
    assert "other flags" not in printed
    job.print_reference(results, job.parse_args(["--epochs", "3"]), tmp_path / "reference.json")
    assert "The reference ran other flags" in capsys.readouterr().out
    job.print_reference(results, args, tmp_path / "missing.json")
    assert "No reference over seeds yet" in capsys.readouterr().out
    (tmp_path / "one_seed.json").write_text(json.dumps({**reference, "seeds": [7], "summary": None}))
    job.print_reference(results, args, tmp_path / "one_seed.json")
    assert "has one seed, [7]: merge more" in capsys.readouterr().out


def test_seeds_benchmark_merges_records_of_the_same_flags(tmp_path, capsys):
    benchmark, job = _load(SEEDS_BENCHMARK), _main_job_module()
    budget = job.budget(job.parse_args([]))
    paths = [tmp_path / "seeds_0_1.json", tmp_path / "seed_2.json", tmp_path / "other_flags.json"]
    records = [
        {"machine": "a", "budget": budget, "runs": [{"seed": 0, **FAKE_SEEDS[0]}, {"seed": 1, **FAKE_SEEDS[1]}]},
        {"machine": "b", "budget": budget, "runs": [{"seed": 2, **FAKE_SEEDS[2]}]},
        {"machine": "a", "budget": {**budget, "epochs": 1}, "runs": [{"seed": 3, **FAKE_SEEDS[2]}]},
    ]
    for path, record in zip(paths, records):
        path.write_text(json.dumps(record))
    benchmark.main(["--merge", str(paths[0]), str(paths[1]), "--write", str(tmp_path / "merged.json")])
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert merged["seeds"] == [0, 1, 2] and merged["machine"] == "a; b" and merged["budget"] == budget
    assert merged["summary"] == json.loads(json.dumps(benchmark.summarize(FAKE_SEEDS)))
    assert "hard above none in 2/3 seeds" in capsys.readouterr().out
    with pytest.raises(ValueError, match="Expected records made with the same flags"):
        benchmark.main(["--merge", str(paths[0]), str(paths[2]), "--write", str(tmp_path / "merged.json")])


@pytest.mark.slow
def test_main_job_distils_saves_reloads_and_serves(tmp_path):
    result = subprocess.run(
        [sys.executable, str(MAIN_JOB), "--subset", "256", "--epochs", "1", "--teacher-epochs", "1", "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = result.stdout.split("Held-out accuracy:")[-1]
    accuracies = {name: float(value) for name, value in re.findall(r"(\w+) ([01]\.\d{4})", summary)}
    assert set(accuracies) == {"teacher", "deit_none", "deit_soft", "deit_hard"}
    table_row = re.search(r"^\| ([01]\.\d{4}) \| ([01]\.\d{4}) \| ([01]\.\d{4}) \| ([01]\.\d{4}) \|$", result.stdout, re.M)
    assert [float(v) for v in table_row.groups()] == [accuracies[k] for k in ("teacher", "deit_none", "deit_soft", "deit_hard")]
    keras_lines = re.findall(r"^(test_\d\d\.png): reloaded \.keras predicts (.+) \(confidence", result.stdout, re.M)
    served_lines = re.findall(r"^(test_\d\d\.png): SavedModel serving_default predicts (.+) \(score", result.stdout, re.M)
    assert len(keras_lines) == 10 and served_lines == keras_lines  # the served model agrees with the reloaded one
    assert "agrees with the reloaded .keras model on 10/10 images" in result.stdout
    for name in ("deit_hard.keras", "serving/deit/1/saved_model.pb", "png/test_09.png"):
        assert (tmp_path / name).is_file(), name
    for printed in ("deit_hard.keras", "serving/deit/1", "png"):  # the job says where each file went
        assert f": {tmp_path / printed}\n" in result.stdout, printed
    reference = ROOT / "benchmarks" / "distillation_seeds.json"  # tiny flags: never the reference's
    assert ("The reference ran other flags" if reference.is_file() else "No reference over seeds yet") in result.stdout
    for figure in ("attention_rollout.png", "training_curves.png"):
        assert f": {tmp_path / figure}\n" in result.stdout
        with Image.open(tmp_path / figure) as image:
            assert image.format == "PNG" and image.width >= 800 and image.height >= 400, image.size


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
