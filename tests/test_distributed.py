"""Training on existing distribution engines gives the single-device result."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def train(mode, out, *extra, env=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "training_check.py"), mode, str(out), *map(str, extra)],
        env=env, capture_output=True, text=True, timeout=600,
    )


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "single.npz"
    result = train("single", out)
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(out)


@pytest.mark.parametrize("mode", ["mirrored", "data_parallel"])
def test_distributed_loss_equals_single_device(mode, single, tmp_path):
    result = train(mode, tmp_path / f"{mode}.npz")
    assert result.returncode == 0, result.stderr[-3000:]
    dist = np.load(tmp_path / f"{mode}.npz")
    diff = abs(float(dist["loss"][0]) - float(single["loss"][0]))
    print(f"{mode}: loss {float(dist['loss'][0]):.6f} vs single {float(single['loss'][0]):.6f} (|Δ| {diff:.2e})")
    assert diff <= 1e-4
    weights = [k for k in single.files if k.startswith("arr_")]
    assert max(float(np.abs(dist[k] - single[k]).max()) for k in weights) <= 1e-4
