"""A training run killed mid-epoch resumes with BackupAndRestore and ends where an uninterrupted run ends."""

import signal

import numpy as np

from tests.test_distributed import train


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    reference = train("resume", tmp_path / "reference.npz", tmp_path / "backup_reference")
    assert reference.returncode == 0, reference.stderr[-3000:]

    killed = train("resume", tmp_path / "killed.npz", tmp_path / "backup", env={"KILL_IN_EPOCH": "2"})
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed.npz").exists()
    assert (tmp_path / "backup").is_dir()

    resumed = train("resume", tmp_path / "resumed.npz", tmp_path / "backup")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = np.load(tmp_path / "reference.npz"), np.load(tmp_path / "resumed.npz")
    assert len(got["loss"]) == 1  # only the interrupted epoch ran again
    np.testing.assert_allclose(got["loss"][-1], expected["loss"][-1], rtol=1e-5)
    weights = [k for k in expected.files if k.startswith("arr_")]
    assert max(float(np.abs(got[k] - expected[k]).max()) for k in weights) <= 1e-5
