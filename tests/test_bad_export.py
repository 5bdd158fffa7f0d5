"""Exporter edges: versions claimed atomically and bounded, version paths that are not directories, labels.json."""

import json
import os
import threading

import numpy as np
import pytest
import tensorflow as tf

import keras_vit
from keras_vit import export
from keras_vit.export import MAX_VERSION, export_saved_model
from tests.conftest import tiny_config
from tests.disk import snapshot

LABELS = {0: "cat\nsiamese", 1: "dog", 2: "eel\r\n", 3: "ünï\u2028code", 4: ""}


@pytest.fixture(scope="module")
def classifier():
    return keras_vit.ViTForImageClassification(
        tiny_config(keras_vit.ViTForImageClassification, num_labels=None, id2label=LABELS)
    )


@pytest.fixture
def no_heavy_work(monkeypatch):
    """Fails the test if the export gets past the checks."""
    monkeypatch.setattr(export, "_archive", lambda *a: pytest.fail("traced before refusing"))


BAD_VERSIONS = [-1, -(2**63), MAX_VERSION + 1, 2**64, 10**30, 1.0, 1.5, "1", "latest", True, False, [1], float("nan")]


@pytest.mark.parametrize("version", BAD_VERSIONS, ids=repr)
def test_bad_version_is_named_before_any_work(classifier, tmp_path, no_heavy_work, version):
    (tmp_path / "1").mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(ValueError) as error:
        export_saved_model(classifier, tmp_path, version=version, verbose=False)
    assert f"version={version!r}" in str(error.value) and str(MAX_VERSION) in str(error.value)
    assert snapshot(tmp_path) == before


def _make(tmp_path, kind):
    target = tmp_path / "3"
    if kind == "file":
        target.write_bytes(b"not a version")
    elif kind == "empty file":
        target.write_bytes(b"")
    elif kind == "symlink to a directory":
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "elsewhere" / "keep").write_text("keep")
        os.symlink("elsewhere", target)
    elif kind == "symlink to a file":
        (tmp_path / "file").write_text("keep")
        os.symlink("file", target)
    elif kind == "broken symlink":
        os.symlink("nowhere", target)
    return target


KINDS = ["file", "empty file", "symlink to a directory", "symlink to a file", "broken symlink"]


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_version_path_that_is_not_a_directory_is_refused_before_any_work(classifier, tmp_path, no_heavy_work, kind,
                                                                          overwrite):
    target = _make(tmp_path, kind)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError) as error:
        export_saved_model(classifier, tmp_path, version=3, overwrite=overwrite, verbose=False)
    assert f"version path {target} to be a directory or absent" in str(error.value)
    assert ("symlink" if "symlink" in kind else "file") in str(error.value)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", KINDS)
def test_publish_onto_a_file_that_appeared_meanwhile_leaves_nothing_behind(tmp_path, kind):
    tmp = tmp_path / ".tmp-3"
    tmp.mkdir()
    (tmp / "saved_model.pb").write_bytes(b"new")
    target = _make(tmp_path, kind)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="to be a directory or absent"):
        export._publish(tmp, target, overwrite=True)
    assert snapshot(tmp_path) == before  # no .old-*, target as it was, the caller removes tmp


BAD_BASES = ["file", "file/sub", "file/sub/deeper"]


@pytest.mark.parametrize("base", BAD_BASES)
def test_export_base_under_a_file_is_named(classifier, tmp_path, no_heavy_work, base):
    (tmp_path / "file").write_text("a file")
    before = snapshot(tmp_path)
    with pytest.raises(ValueError) as error:
        export_saved_model(classifier, tmp_path / base, verbose=False)
    assert str(tmp_path / "file") in str(error.value) and "file" in str(error.value)
    assert snapshot(tmp_path) == before


def test_version_claimed_by_another_export_is_refused(classifier, tmp_path, no_heavy_work):
    (tmp_path / ".tmp-4").mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"Version 4 is being exported by another process: .*\.tmp-4 exists"):
        export_saved_model(classifier, tmp_path, version=4, verbose=False)
    assert snapshot(tmp_path) == before


BAD_SAMPLES = [([], "Received: []"), (b"png", "Received: b'png'"), ([b"not an image"], "sample_images[0]"),
               ([b"\x89PNG\r\n\x1a\n"], "sample_images[0]"), (["cat.png"], "sample_images[0] to be bytes"),
               ([np.zeros(3)], "sample_images[0] to be bytes")]


@pytest.mark.parametrize("samples, message", BAD_SAMPLES, ids=[m for _, m in BAD_SAMPLES])
def test_bad_sample_images_are_named(classifier, tmp_path, no_heavy_work, samples, message):
    with pytest.raises(ValueError) as error:
        export_saved_model(classifier, tmp_path / "base", sample_images=samples, verbose=False)
    assert message in str(error.value)
    assert list(tmp_path.iterdir()) == []


# === Concurrency: versions are claimed with os.mkdir ===
def test_concurrent_claims_get_distinct_versions(tmp_path):
    (tmp_path / "2").mkdir()
    claims, barrier = [], threading.Barrier(8)

    def claim():
        barrier.wait()
        claims.append(export._claim(tmp_path, None))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(version for _, version in claims) == list(range(3, 11))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["2", *(f".tmp-{v}" for v in range(3, 11))])


def test_claim_skips_a_version_published_after_it_was_counted(tmp_path, monkeypatch):
    counted = iter([1, 2])
    monkeypatch.setattr(export, "_next_version", lambda base: next(counted))
    (tmp_path / "1").mkdir()  # published by another export between counting and claiming
    assert export._claim(tmp_path, None) == (tmp_path / ".tmp-2", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-2", "1"]


def test_claim_past_max_version_is_named(tmp_path):
    (tmp_path / str(MAX_VERSION)).mkdir()
    with pytest.raises(ValueError, match=f"version={MAX_VERSION + 1}"):
        export._claim(tmp_path, None)
    assert [p.name for p in tmp_path.iterdir()] == [str(MAX_VERSION)]


def test_export_takes_the_next_unclaimed_version_and_stores_labels_losslessly(classifier, tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / ".tmp-2").mkdir()  # another export is writing version 2
    path = export_saved_model(classifier, tmp_path, verbose=False)
    assert path == tmp_path / "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-2", "1", "3"]
    labels = json.loads((path / "assets.extra" / "labels.json").read_text(encoding="utf-8"))
    assert labels == {str(i): name for i, name in LABELS.items()}
    assert not (path / "assets.extra" / "labels.txt").exists()
    pixels = np.random.default_rng(0).uniform(-1, 1, (5, 32, 32, 3)).astype("float32")
    served = tf.saved_model.load(str(path)).signatures["predict_pixels"](pixel_values=tf.constant(pixels))
    for label, index in zip(served["label"].numpy(), np.argmax(served["logits"].numpy(), -1)):
        assert label.decode("utf-8") == labels[str(index)]
