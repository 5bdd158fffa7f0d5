"""Hugging Face checkpoint directories: finding them, reading and writing their weight files.

A checkpoint directory holds `config.json` and one of (first found wins):
`model.safetensors`, `model.safetensors.index.json` with its shards, `tf_model.h5` (written
by transformers' TFViT/TFDeiT classes, read with h5py), or `pytorch_model.bin` (read only
with `torch.load(weights_only=True)`, never unpickled otherwise). Every reader returns the
Hugging Face PyTorch state dict (names and layouts) that `keras_vit.conversion` maps.
"""

import json
from pathlib import Path

import numpy as np

from keras_vit.atomic import atomic_path, write_text_atomically
from keras_vit.config import config_class_for
from keras_vit.conversion import load_hf_state_dict, to_hf_state_dict
from keras_vit.hub import (  # noqa: F401 (re-exported)
    CONFIG_NAME,
    PYTORCH_WEIGHTS_NAME,
    SAFETENSORS_INDEX_NAME,
    SAFETENSORS_NAME,
    TF_WEIGHTS_NAME,
    WEIGHT_FILES,
    read_json_file,
    resolve_checkpoint,
)

def read_config(directory, config_class=None):
    """Reads `config.json` of a checkpoint directory as a ViTConfig/DeiTConfig.

    Raises:
        FileNotFoundError: if config.json is missing.
        ValueError: if it is not JSON, or of another model type than `config_class`.
    """
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"Missing {CONFIG_NAME} in checkpoint directory {str(directory)!r}.")
    config_dict = read_json_file(path)
    if config_class is None:
        config_class = config_class_for(config_dict.get("model_type", "vit"))
    return config_class.from_dict(config_dict)


def _read_safetensors(path):
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"Could not read {path} (truncated or corrupted safetensors file): {e}") from None


def _read_sharded_safetensors(index_path):
    try:
        weight_map = json.loads(Path(index_path).read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError) as e:
        raise ValueError(f"Expected {index_path} to be a safetensors index with a weight_map: {e}") from None
    state = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = Path(index_path).parent / shard
        if not shard_path.is_file():
            raise FileNotFoundError(f"Missing shard {shard} listed in {index_path}.")
        state.update(_read_safetensors(shard_path))
    return state


def _tf_name(dataset_name):
    """'deit/tf_dei_t_for_.../deit/encoder/layer_._0/output/dense/kernel:0' -> torch-style name."""
    parts = dataset_name.split("/")
    scope = next((i for i, p in enumerate(parts) if p.startswith("tf_")), 0)
    name = ".".join(parts[scope + 1 :]).rsplit(":", 1)[0]
    name = name.replace("layer_._", "layer.")
    for tf_suffix, torch_suffix in ((".kernel", ".weight"), (".gamma", ".weight"), (".beta", ".bias")):
        if name.endswith(tf_suffix):
            name = name[: -len(tf_suffix)] + torch_suffix
    return name


def _read_tf_h5(path):
    """Reads a transformers TF `tf_model.h5` into torch names and layouts."""
    import h5py

    state = {}
    try:
        with h5py.File(path, "r") as f:

            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    array = np.asarray(obj, dtype="float32")
                    if name.endswith("kernel:0"):
                        array = array.T if array.ndim == 2 else np.transpose(array, (3, 2, 0, 1))
                    state[_tf_name(name)] = array

            f.visititems(visit)
    except OSError as e:
        raise ValueError(f"Could not read {path} (truncated or corrupted HDF5 file): {e}") from None
    return state


def _read_pytorch_bin(path):
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"{path} is a PyTorch pickle; reading it safely needs torch (torch.load(weights_only=True)). Install "
            "torch, or convert the checkpoint to model.safetensors."
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"Could not read {path} with torch.load(weights_only=True): {e}") from None
    return {k: v.float().numpy() for k, v in state.items()}


_READERS = {
    SAFETENSORS_NAME: _read_safetensors,
    SAFETENSORS_INDEX_NAME: _read_sharded_safetensors,
    TF_WEIGHTS_NAME: _read_tf_h5,
    PYTORCH_WEIGHTS_NAME: _read_pytorch_bin,
}


def read_state_dict(directory):
    """Reads the weights of a checkpoint directory as a Hugging Face PyTorch state dict.

    Raises:
        FileNotFoundError: naming the directory and the files looked for.
        ValueError: for a truncated or corrupted file.
    """
    for name in WEIGHT_FILES:
        path = Path(directory) / name
        if path.is_file():
            return _READERS[name](path)
    raise FileNotFoundError(f"No weights in {str(directory)!r}: looked for {', '.join(WEIGHT_FILES)}.")


def from_pretrained(model_class, path_or_repo_id, ignore_mismatched_sizes=False, revision=None, cache_dir=None,
                    local_files_only=False, **kwargs):
    """Builds `model_class` from a Hugging Face checkpoint (see `VisionTransformer.from_pretrained`)."""
    directory = resolve_checkpoint(path_or_repo_id, revision, cache_dir, local_files_only)
    config = read_config(directory, model_class.config_class)
    field_names = set(type(config)().to_dict()) | {"num_labels"}
    overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in field_names}
    if overrides:
        if "num_labels" in overrides and "id2label" not in overrides:
            overrides["id2label"] = None
            overrides["label2id"] = None
        config = type(config).from_dict({**config.to_dict(), **overrides})
    model = model_class(config, **kwargs)
    load_hf_state_dict(model, read_state_dict(directory), ignore_mismatched_sizes)
    return model


def save_pretrained(model, directory):
    """Writes `config.json` and `model.safetensors` in the Hugging Face layout.

    Each file is written to a temporary sibling and renamed into place, so a failure never
    leaves a half-written file. Transformers (PyTorch) loads the result.
    """
    from safetensors.numpy import save_file

    directory = Path(directory)
    config = model.config.to_dict()
    config["architectures"] = [type(model).__name__]
    with atomic_path(directory / SAFETENSORS_NAME) as tmp:
        save_file(to_hf_state_dict(model), str(tmp), metadata={"format": "pt"})
    write_text_atomically(directory / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return directory
