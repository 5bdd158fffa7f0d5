"""Bad and unusual checkpoint files: every path stays inside the checkpoint, every layout loads or is named."""

import json
import logging
import os
import shutil

import numpy as np
import pytest
import torch
import transformers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_vit
from keras_vit import checkpoints
from keras_vit.checkpoints import LazyTensor, read_state_dict
from keras_vit.conversion import to_hf_state_dict
from tests.conftest import TINY
from tests.disk import peak_rss_mib, snapshot
from tests.test_checkpoints import FIXTURES

INDEX = "model.safetensors.index.json"


@pytest.fixture(scope="module")
def hf_vit():
    torch.manual_seed(0)
    return transformers.ViTForImageClassification(transformers.ViTConfig(**TINY)).eval()


@pytest.fixture(scope="module")
def sharded(hf_vit, tmp_path_factory):
    directory = tmp_path_factory.mktemp("sharded") / "checkpoint"
    hf_vit.save_pretrained(directory, max_shard_size="20KB")
    assert len(set(json.loads((directory / INDEX).read_text())["weight_map"].values())) > 1
    return directory


@pytest.fixture(scope="module")
def reference(sharded):
    return to_hf_state_dict(keras_vit.ViTForImageClassification.from_pretrained(sharded))


@pytest.fixture
def checkpoint(sharded, tmp_path):
    """A writable copy of the sharded checkpoint, in tmp_path/work/checkpoint, and a secret outside it."""
    (tmp_path / "work").mkdir()
    (tmp_path / "secret.safetensors").write_bytes(b"outside")
    return shutil.copytree(sharded, tmp_path / "work" / "checkpoint")


def _set_shard(directory, shard):
    index = json.loads((directory / INDEX).read_text())
    first = sorted(index["weight_map"])[0]
    index["weight_map"][first] = shard
    (directory / INDEX).write_text(json.dumps(index))
    return first


# === Paths read from the index stay inside the checkpoint directory ===
ESCAPING = [
    "../secret.safetensors",
    "../../secret.safetensors",
    "./../secret.safetensors",
    "sub/../../secret.safetensors",
    "..",
    "/etc/passwd",
    "//etc/passwd",
    "/dev/zero",
    "/proc/self/environ",
    "../checkpoint/../secret.safetensors",
]


@pytest.mark.parametrize("shard", ESCAPING)
def test_index_entry_leading_out_is_named(checkpoint, shard):
    _set_shard(checkpoint, shard)
    before = snapshot(checkpoint.parent.parent)
    with pytest.raises(ValueError) as error:
        read_state_dict(checkpoint)
    assert f"Received: {shard!r}" in str(error.value) and "inside the checkpoint directory" in str(error.value)
    with pytest.raises(ValueError):
        keras_vit.ViTForImageClassification.from_pretrained(checkpoint)
    assert snapshot(checkpoint.parent.parent) == before


@pytest.mark.parametrize("kind", ["file", "directory", "chain", "absolute"])
def test_symlink_leading_out_is_named(checkpoint, kind):
    outside = checkpoint.parent.parent
    if kind == "file":
        os.symlink("../../secret.safetensors", checkpoint / "link.safetensors")
        shard = "link.safetensors"
    elif kind == "directory":
        os.symlink("../..", checkpoint / "up")
        shard = "up/secret.safetensors"
    elif kind == "chain":
        os.symlink("../../secret.safetensors", checkpoint / "hop1")
        os.symlink("hop1", checkpoint / "hop2.safetensors")
        shard = "hop2.safetensors"
    else:
        os.symlink(outside / "secret.safetensors", checkpoint / "abs.safetensors")
        shard = "abs.safetensors"
    _set_shard(checkpoint, shard)
    before = snapshot(outside)
    with pytest.raises(ValueError) as error:
        read_state_dict(checkpoint)
    assert f"Received: {shard!r}" in str(error.value) and "secret.safetensors" in str(error.value)
    assert snapshot(outside) == before


BAD_ENTRIES = [("", "''"), (None, "None"), (3, "3"), (["model.safetensors"], "['model.safetensors']"),
               ({"a": 1}, "{'a': 1}"), ("x\0.safetensors", r"'x\x00.safetensors'"), (True, "True")]


@pytest.mark.parametrize("shard, shown", BAD_ENTRIES, ids=[s for _, s in BAD_ENTRIES])
def test_index_entry_that_is_not_a_file_name_is_named(checkpoint, shard, shown):
    _set_shard(checkpoint, shard)
    before = snapshot(checkpoint)
    with pytest.raises(ValueError) as error:
        read_state_dict(checkpoint)
    assert f"Received: {shown}" in str(error.value) and INDEX in str(error.value)
    assert snapshot(checkpoint) == before


BAD_INDEXES = [
    (b"[]", "weight_map=None"),
    (b"{}", "weight_map=None"),
    (b'{"weight_map": []}', "weight_map=[]"),
    (b'{"weight_map": "model.safetensors"}', "weight_map='model.safetensors'"),
    (b'{"weight_map": null}', "weight_map=None"),
    (b'{"weight_map": {}}', "weight_map={}"),
    (b"{not json", "to hold JSON"),
    (b"\xff\xfe", "to hold UTF-8 JSON"),
    (b"[" * 50_000, "nested less deeply"),
]


@pytest.mark.parametrize("content, message", BAD_INDEXES, ids=[c[:20].decode("latin-1") for c, _ in BAD_INDEXES])
def test_bad_index_file_is_named(checkpoint, content, message):
    (checkpoint / INDEX).write_bytes(content)
    before = snapshot(checkpoint)
    with pytest.raises(ValueError) as error:
        read_state_dict(checkpoint)
    assert message in str(error.value) and INDEX in str(error.value)
    assert snapshot(checkpoint) == before


def test_missing_shard_is_named(checkpoint):
    _set_shard(checkpoint, "model-99999-of-99999.safetensors")
    with pytest.raises(FileNotFoundError, match="Missing shard 'model-99999-of-99999.safetensors'"):
        read_state_dict(checkpoint)


def test_inside_paths_and_hub_cache_symlinks_load(checkpoint, reference, tmp_path):
    """The checks refuse only paths leading out: a subdirectory, `./` and Hub cache blobs load."""
    (checkpoint / "shards" / "x").mkdir(parents=True)
    index = json.loads((checkpoint / INDEX).read_text())
    for shard in set(index["weight_map"].values()):
        os.rename(checkpoint / shard, checkpoint / "shards" / shard)
    index["weight_map"] = {k: f"./shards/{v}" if k < "m" else f"shards/x/../{v}" for k, v in index["weight_map"].items()}
    (checkpoint / INDEX).write_text(json.dumps(index))
    loaded = to_hf_state_dict(keras_vit.ViTForImageClassification.from_pretrained(checkpoint))
    assert all(np.array_equal(loaded[k], reference[k]) for k in reference)
    # Hub cache: snapshots/<rev>/<file> -> ../../blobs/<hash>, outside the snapshot but inside the repo cache.
    repo = tmp_path / "models--acme--vit"
    snapshot_dir, blobs = repo / "snapshots" / ("a" * 40), repo / "blobs"
    snapshot_dir.mkdir(parents=True)
    blobs.mkdir()
    for path in [checkpoint / "config.json", checkpoint / INDEX, *(checkpoint / "shards").glob("*.safetensors")]:
        shutil.copy(path, blobs / path.name)
        os.symlink(f"../../blobs/{path.name}", snapshot_dir / path.name)
    index["weight_map"] = {k: os.path.basename(v) for k, v in index["weight_map"].items()}
    (blobs / INDEX).write_text(json.dumps(index))
    loaded = to_hf_state_dict(keras_vit.ViTForImageClassification.from_pretrained(snapshot_dir))
    assert all(np.array_equal(loaded[k], reference[k]) for k in reference)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["..", ".", "sub", "model.safetensors", "", "/", "secret.safetensors"]), min_size=1, max_size=5))
def test_fuzz_index_paths_never_leave_the_directory(checkpoint, parts):
    """Any shard path is read only if it stays inside the directory; otherwise a named ValueError or FileNotFoundError."""
    shard = "/".join(parts)
    _set_shard(checkpoint, shard)
    real, root = os.path.realpath(checkpoint / shard), str(checkpoint.resolve())
    inside = bool(shard) and (real == root or real.startswith(root + os.sep))
    before = snapshot(checkpoint.parent.parent)
    with pytest.raises((ValueError, FileNotFoundError)) as error:  # no part names an existing file
        read_state_dict(checkpoint)
    assert error.type is (FileNotFoundError if inside else ValueError)
    assert repr(shard) in str(error.value)
    assert snapshot(checkpoint.parent.parent) == before


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                    max_leaves=8))
def test_fuzz_index_contents_are_named_errors(checkpoint, content):
    (checkpoint / INDEX).write_text(json.dumps(content))
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        read_state_dict(checkpoint)
    assert INDEX in str(error.value) or "Missing shard" in str(error.value)


# === pytorch_model.bin in the layouts found in the wild ===
def _bin(directory, hf_vit, content):
    hf_vit.config.save_pretrained(directory)
    torch.save(content, directory / "pytorch_model.bin")
    return directory


LAYOUTS = {
    "plain": lambda sd: sd,
    "model (DeiT, timm)": lambda sd: {"model": sd},
    "model with training state": lambda sd: {"model": sd, "epoch": 300, "optimizer": {"lr": 1e-3}, "args": ["x"]},
    "state_dict": lambda sd: {"state_dict": sd},
    "model_state_dict": lambda sd: {"model_state_dict": sd, "step": 7},
    "module. prefixes (DataParallel)": lambda sd: {f"module.{k}": v for k, v in sd.items()},
    "state_dict + module.": lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
    "non-tensor entries": lambda sd: {**sd, "epoch": 3, "note": "best", "config": {"a": 1}, "shape": [1, 2]},
    "half precision": lambda sd: {k: v.half() for k, v in sd.items()},
    "bfloat16": lambda sd: {k: v.to(torch.bfloat16) for k, v in sd.items()},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_pytorch_bin_layouts_load(hf_vit, reference, tmp_path, layout, caplog):
    directory = _bin(tmp_path, hf_vit, LAYOUTS[layout](hf_vit.state_dict()))
    before = snapshot(tmp_path)
    with caplog.at_level(logging.WARNING, logger="keras_vit"):
        loaded = to_hf_state_dict(keras_vit.ViTForImageClassification.from_pretrained(directory))
    atol = 0 if "precision" not in layout and "bfloat" not in layout else 1e-2
    for key in reference:
        np.testing.assert_allclose(loaded[key], reference[key], atol=atol, rtol=atol)
    if layout == "non-tensor entries":
        assert "not named tensors: ['config', 'epoch', 'note', 'shape']" in caplog.text
    assert snapshot(tmp_path) == before


class Opaque:
    pass


BAD_BINS = [
    ("list of tensors", lambda sd: list(sd.values()), ValueError, "Received: a list"),
    ("tensor", lambda sd: torch.zeros(3), ValueError, "Received: a Tensor"),
    ("empty dict", lambda sd: {}, ValueError, "Received: a dict with keys []"),
    ("empty model", lambda sd: {"model": {}}, ValueError, "Received: a dict with keys []"),
    ("no tensors", lambda sd: {"epoch": 3, "lr": 0.1}, ValueError, "Received: a dict with keys ['epoch', 'lr']"),
    ("nested no tensors", lambda sd: {"model": {"a": {"b": 1}}}, ValueError, "Received: a dict with keys ['a']"),
    ("string", lambda sd: "weights", ValueError, "Received: a str"),
    ("complex tensor", lambda sd: {**sd, "extra.weight": torch.zeros(2, dtype=torch.complex64)}, ValueError,
     "entry 'extra.weight' to be a real-valued tensor"),
    ("pickled object", lambda sd: {"model": sd, "object": Opaque()}, ValueError, "weights_only=True"),
    ("timm names", lambda sd: {"model": {"blocks.0.attn.qkv.weight": torch.zeros(96, 32)}}, ValueError,
     "blocks.0.attn.qkv.weight"),
    ("renamed tensor", lambda sd: {("x" + k if "position_embeddings" in k else k): v for k, v in sd.items()},
     ValueError, "unexpected tensors: ['xvit.embeddings.position_embeddings']"),
]


@pytest.mark.parametrize("name, make, error_type, message", BAD_BINS, ids=[b[0] for b in BAD_BINS])
def test_bad_pytorch_bin_is_named(hf_vit, tmp_path, name, make, error_type, message):
    directory = _bin(tmp_path, hf_vit, make(hf_vit.state_dict()))
    before = snapshot(tmp_path)
    with pytest.raises(error_type) as error:
        keras_vit.ViTForImageClassification.from_pretrained(directory)
    assert message in str(error.value)
    assert snapshot(tmp_path) == before


CORRUPT = [
    ("model.safetensors", b"", "truncated or corrupted safetensors"),
    ("model.safetensors", b"\xff" * 8 + b"{}", "truncated or corrupted safetensors"),
    ("model.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00not json here!!!", "truncated or corrupted safetensors"),
    ("tf_model.h5", b"", "truncated or corrupted HDF5"),
    ("tf_model.h5", b"not an hdf5 file at all", "truncated or corrupted HDF5"),
    ("pytorch_model.bin", b"", "torch.load(weights_only=True)"),
    ("pytorch_model.bin", b"PK\x03\x04garbage", "torch.load(weights_only=True)"),
]


@pytest.mark.parametrize("name, content, message", CORRUPT, ids=[f"{n}:{c[:8]!r}" for n, c, _ in CORRUPT])
def test_corrupt_weight_file_is_named(hf_vit, tmp_path, name, content, message):
    hf_vit.config.save_pretrained(tmp_path)
    (tmp_path / name).write_bytes(content)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError) as error:
        keras_vit.ViTForImageClassification.from_pretrained(tmp_path)
    assert message in str(error.value) and name in str(error.value)
    assert snapshot(tmp_path) == before


# === TF-era checkpoints: qkv_bias=false in config.json, biases in tf_model.h5 ===
@pytest.mark.parametrize(
    "folder, cls, outputs",
    [
        ("tf-vit-classifier", keras_vit.ViTForImageClassification, ["logits"]),
        ("tf-deit-with-teacher", keras_vit.DeiTForImageClassificationWithTeacher,
         ["logits", "cls_logits", "distillation_logits"]),
    ],
)
def test_tf_h5_with_qkv_bias_false_reproduces_the_tf_outputs(tmp_path, folder, cls, outputs, caplog):
    directory = shutil.copytree(FIXTURES / folder, tmp_path / folder)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "qkv_bias": False}))
    before = snapshot(directory)
    with caplog.at_level(logging.WARNING, logger="keras_vit"):
        model = cls.from_pretrained(directory)
    assert model.config.qkv_bias is True
    assert "qkv_bias=False" in caplog.text and "loading with qkv_bias=True" in caplog.text
    pixels = np.load(directory / "input_pixel_values.npy").transpose(0, 2, 3, 1)
    result = model(pixels)
    for output in outputs:
        np.testing.assert_allclose(result[output], np.load(directory / f"expected_{output}.npy"), atol=1e-4)
    assert snapshot(directory) == before


def test_qkv_bias_false_without_biases_stays_false(hf_vit, tmp_path):
    """Only TF-era h5 files get the biases restored; a PyTorch checkpoint without them loads as written."""
    torch.manual_seed(0)
    hf = transformers.ViTModel(transformers.ViTConfig(**TINY, qkv_bias=False)).eval()
    hf.save_pretrained(tmp_path)
    assert keras_vit.ViTModel.from_pretrained(tmp_path).config.qkv_bias is False


# === Weights read lazily, only the tensors mapped; shapes checked against the config first ===
def test_unused_h5_dataset_is_never_read(tmp_path):
    import h5py

    directory = shutil.copytree(FIXTURES / "tf-vit-classifier", tmp_path / "ckpt")
    with h5py.File(directory / "tf_model.h5", "a") as f:  # 15000 x 15000 float32 (858 MiB), chunked zeros
        f.create_dataset("unused/huge:0", shape=(15000, 15000), dtype="float32", chunks=(1000, 1000),
                         compression="gzip", fillvalue=0)
    assert (directory / "tf_model.h5").stat().st_size < 2**20
    peak = peak_rss_mib()
    with pytest.raises(ValueError, match=r"unexpected tensors: \['huge'\]"):
        keras_vit.ViTForImageClassification.from_pretrained(directory)
    assert peak_rss_mib() - peak < 100


def test_weights_are_read_only_when_mapped(hf_vit, tmp_path, monkeypatch):
    hf_vit.save_pretrained(tmp_path)
    state = read_state_dict(tmp_path)
    assert all(isinstance(v, LazyTensor) for v in state.values())
    reads = []
    for name, tensor in state.items():
        monkeypatch.setattr(tensor, "_read", lambda read=tensor._read, name=name: reads.append(name) or read())
    monkeypatch.setattr(checkpoints, "read_state_dict", lambda directory: state)
    np.testing.assert_array_equal(np.asarray(state["classifier.bias"]), hf_vit.classifier.bias.detach().numpy())
    assert reads == ["classifier.bias"]


@pytest.mark.parametrize("field, value, tensor", [
    ("hidden_size", 64, "embeddings.cls_token"),
    ("intermediate_size", 4000, "encoder.layer.0.intermediate.dense.weight"),
    ("patch_size", 16, "embeddings.patch_embeddings.projection.weight"),
])
def test_config_that_contradicts_the_weights_is_named_before_building(hf_vit, tmp_path, monkeypatch, field, value,
                                                                      tensor):
    hf_vit.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, field: value, "num_attention_heads": 4}))
    monkeypatch.setattr(keras_vit.ViTForImageClassification, "__init__", lambda *a, **k: pytest.fail("built"))
    with pytest.raises(ValueError, match=rf"tensor 'vit.{tensor}' has shape .*{field}={value}"):
        keras_vit.ViTForImageClassification.from_pretrained(tmp_path)


def _safetensors_with(dtype, nbytes, shape):
    header = json.dumps({"w": {"dtype": dtype, "shape": shape, "data_offsets": [0, nbytes]}}).encode()
    return len(header).to_bytes(8, "little") + header + b"\x01" * nbytes


@pytest.mark.parametrize("dtype, nbytes", [("F8_E4M3", 2), ("F8_E5M2", 2), ("C64", 16)])
def test_safetensors_of_a_dtype_without_real_numpy_values_is_named(tmp_path, dtype, nbytes):
    (tmp_path / "model.safetensors").write_bytes(_safetensors_with(dtype, nbytes, [2]))
    with pytest.raises(ValueError, match=rf"tensor 'w' to have a real-valued dtype .*Received: dtype {dtype}"):
        read_state_dict(tmp_path)


def test_bfloat16_safetensors_are_widened_to_float32(tmp_path):
    values = np.array([1.0, -2.5, 3.140625], np.float32)
    raw = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    header = json.dumps({"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}).encode()
    (tmp_path / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + raw)
    np.testing.assert_array_equal(np.asarray(read_state_dict(tmp_path)["w"]), values)


def test_complex_h5_dataset_is_named(tmp_path):
    import h5py

    with h5py.File(tmp_path / "tf_model.h5", "w") as f:
        f.create_dataset("vit/tf_vi_t/vit/embeddings/cls_token:0", data=np.ones((1, 1, 32), np.complex64))
    with pytest.raises(ValueError, match=r"cls_token:0' to be real-valued. Received: dtype complex64"):
        read_state_dict(tmp_path)
