"""Hugging Face checkpoint directories: finding them, reading and writing their weight files.

A checkpoint directory holds `config.json` and one of (first found wins):
`model.safetensors`, `model.safetensors.index.json` with its shards, `tf_model.h5` (written
by transformers' TFViT/TFDeiT classes, read with h5py), or `pytorch_model.bin` (read only
with `torch.load(weights_only=True)`, never unpickled otherwise). Every reader returns the
Hugging Face PyTorch state dict (names and layouts) that `keras_vit.conversion` maps.

`from_pretrained` also reads timm's layout (`keras_vit.conversion_timm`: a directory with a
timm `config.json` or none, or one `.safetensors` / `.bin` / `.pth` file) and Google's ViT
`.npz` files (`keras_vit.conversion_npz`), building the config from the tensors' shapes.
"""

import inspect
import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from keras_vit.atomic import atomic_files, committed_paths
from keras_vit.config import read_config, to_json_string
from keras_vit.conversion import canonical_name
from keras_vit.conversion import load_hf_state_dict, tf_era_qkv_bias, to_hf_state_dict
from keras_vit.conversion_npz import config_from_npz, npz_to_hf, read_npz, save_npz
from keras_vit.conversion_timm import (
    config_from_timm,
    is_timm_state_dict,
    timm_model_args,
    timm_to_hf,
    to_timm_state_dict,
)
from keras_vit.hub import (
    CONFIG_NAME,
    PYTORCH_WEIGHTS_NAME,
    SAFETENSORS_INDEX_NAME,
    SAFETENSORS_NAME,
    TF_WEIGHTS_NAME,
    WEIGHT_FILES,
    read_json_file,
    resolve_checkpoint,
)

logger = logging.getLogger("keras_vit")


class LazyTensor:
    """One tensor of a weight file, read only when converted (`np.asarray(tensor, dtype)`).

    `shape` and `dtype` come from the file's header, so names and shapes can be checked, and
    tensors nobody maps skipped, without reading any data.
    """

    def __init__(self, shape, dtype, read, source):
        self.shape, self.dtype, self._read, self.source = tuple(shape), dtype, read, source

    def __array__(self, dtype=None, copy=None):
        array = self._read()
        return array if dtype is None else array.astype(dtype)

    def __repr__(self):
        return f"LazyTensor(shape={self.shape}, dtype={self.dtype}, source={self.source!r})"


# safetensors dtypes that are real numbers NumPy holds (BF16 is widened to float32 on read).
_SAFETENSORS_DTYPES = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"}


def _read_bfloat16(path, name):
    """A BF16 tensor of a safetensors file as float32 (NumPy has no bfloat16)."""
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        start, end = header[name]["data_offsets"]
        f.seek(start, os.SEEK_CUR)  # offsets count from the end of the header
        raw = np.frombuffer(f.read(end - start), "<u2")
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(header[name]["shape"])


def _read_safetensors(path):
    """{name: LazyTensor} of a safetensors file; tensors are read one at a time, when used."""
    from safetensors import SafetensorError, safe_open

    def reader(name, dtype):
        def read():
            if dtype == "BF16":
                return _read_bfloat16(path, name)
            with safe_open(str(path), framework="numpy") as f:
                return f.get_tensor(name)

        return read

    try:
        with safe_open(str(path), framework="numpy") as f:
            state = {}
            for name in f.keys():
                tensor = f.get_slice(name)
                dtype = tensor.get_dtype()
                if dtype not in _SAFETENSORS_DTYPES:
                    raise ValueError(
                        f"Expected {path} tensor {name!r} to have a real-valued dtype among "
                        f"{sorted(_SAFETENSORS_DTYPES)}. Received: dtype {dtype}"
                    )
                state[name] = LazyTensor(tensor.get_shape(), dtype, reader(name, dtype), str(path))
            return state
    except (SafetensorError, OSError) as e:
        raise ValueError(f"Could not read {path} (truncated or corrupted safetensors file): {e}") from None


def _inside(directory, name, source):
    """`directory / name` for a relative path `name` read from the file `source`.

    Raises:
        ValueError: naming the entry, unless it is a relative path that stays inside
            `directory`, symlinks resolved (in a Hub cache snapshot, inside the repo's cache
            folder, whose `blobs/` the snapshot's symlinks point to).
    """
    if not isinstance(name, str) or not name or "\0" in name:
        raise ValueError(f"Expected the entries of {source} to be file names. Received: {name!r}")
    directory = Path(directory)
    path = directory / name
    root = directory.resolve()
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith("models--"):
        root = root.parent.parent
    lexical = os.path.normpath(name)
    if os.path.isabs(name) or lexical == ".." or lexical.startswith(".." + os.sep) or not path.resolve().is_relative_to(root):
        raise ValueError(
            f"Expected the entries of {source} to name files inside the checkpoint directory {str(directory)!r}. "
            f"Received: {name!r}, which leads to {str(path.resolve())!r}"
        )
    return path


def _read_sharded_safetensors(index_path):
    index = read_json_file(index_path)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(
            f"Expected {index_path} to be a safetensors index: a JSON object with a non-empty weight_map object. "
            f"Received: weight_map={weight_map!r}"
        )
    shards = {}
    for shard in weight_map.values():
        if not (isinstance(shard, str) and shard in shards):
            shards[shard] = _inside(index_path.parent, shard, index_path)
    state = {}
    for shard, shard_path in sorted(shards.items()):
        if not shard_path.is_file():
            raise FileNotFoundError(f"Missing shard {shard!r} listed in {index_path}.")
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
    """{torch-style name: LazyTensor} of a transformers TF `tf_model.h5`, in torch layouts;
    each dataset is read only when used."""
    import h5py

    def reader(name, kernel):
        def read():
            with h5py.File(path, "r") as f:
                array = np.asarray(f[name][()])
            if kernel:
                array = array.T if array.ndim == 2 else np.transpose(array, (3, 2, 0, 1))
            return array

        return read

    state = {}
    try:
        with h5py.File(path, "r") as f:

            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    if obj.dtype.kind not in "fiub":
                        raise ValueError(
                            f"Expected {path} dataset {name!r} to be real-valued. Received: dtype {obj.dtype}"
                        )
                    kernel = name.endswith("kernel:0")
                    shape = obj.shape
                    if kernel:
                        shape = shape[::-1] if len(shape) == 2 else tuple(shape[i] for i in (3, 2, 0, 1))
                    state[_tf_name(name)] = LazyTensor(shape, str(obj.dtype), reader(name, kernel), str(path))

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
    # Training checkpoints wrap the state dict: {"model": ...} (DeiT, timm), {"state_dict": ...}.
    while isinstance(state, dict) and not any(torch.is_tensor(v) for v in state.values()):
        wrapped = [key for key in _STATE_DICT_KEYS if isinstance(state.get(key), dict)]
        if not wrapped:
            break
        state = state[wrapped[0]]
    if not isinstance(state, dict) or not any(torch.is_tensor(v) for v in state.values()):
        raise ValueError(
            f"Expected {path} to hold a state dict (tensor names -> tensors), possibly under one of "
            f"{list(_STATE_DICT_KEYS)}. Received: {_describe(state)}"
        )
    skipped = sorted(str(k) for k, v in state.items() if not (isinstance(k, str) and torch.is_tensor(v)))
    if skipped:
        logger.warning("Ignoring entries of %s that are not named tensors: %s", path, skipped)
    arrays = {}
    for key, tensor in state.items():
        if isinstance(key, str) and torch.is_tensor(tensor):
            if tensor.is_complex() or tensor.is_quantized:
                raise ValueError(f"Expected {path} entry {key!r} to be a real-valued tensor. Received: dtype {tensor.dtype}")
            arrays[key.removeprefix("module.")] = tensor.detach().to_dense().float().numpy()
    return arrays


_STATE_DICT_KEYS = ("model", "state_dict", "model_state_dict", "module")


def _describe(value):
    if isinstance(value, dict):
        return f"a dict with keys {sorted(map(str, value))[:10]}"
    return f"a {type(value).__name__}"


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
    path = weights_file(directory)
    return _READERS[path.name](path)


def weights_file(directory):
    """The path of the weight file `read_state_dict` reads (the first of WEIGHT_FILES found).

    Raises:
        FileNotFoundError: naming the directory and the files looked for.
    """
    for name in WEIGHT_FILES:
        path = Path(directory) / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"No weights in {str(directory)!r}: looked for {', '.join(WEIGHT_FILES)}.")


def _expected_shapes(config):
    """[(name pattern, shape, fields)]: the Hugging Face tensors whose shapes `config` fixes."""
    h, inner, channels = config.hidden_size, config.intermediate_size, config.num_channels
    layer = r"encoder\.layer\.\d+\."
    return [
        (r"embeddings\.patch_embeddings\.projection\.weight", (h, channels, *config.patch_hw),
         "hidden_size, num_channels, patch_size"),
        (r"embeddings\.(cls_token|distillation_token)", (1, 1, h), "hidden_size"),
        (layer + r"attention\.(attention\.(query|key|value)|output\.dense)\.weight", (h, h), "hidden_size"),
        (layer + r"intermediate\.dense\.weight", (inner, h), "intermediate_size, hidden_size"),
        (layer + r"output\.dense\.weight", (h, inner), "hidden_size, intermediate_size"),
        (layer + r"(layernorm_before|layernorm_after)\.(weight|bias)", (h,), "hidden_size"),
    ]


def check_shapes(config, state_dict):
    """Compares the checkpoint's tensor shapes (read from the file headers) with `config`.

    Run before the model is built: a `config.json` that does not describe its weights
    fails here, naming the tensor and the config fields, instead of after building a model
    of the config's size.

    Raises:
        ValueError: naming the first tensor whose shape the config contradicts.
    """
    expected = [(re.compile(pattern), shape, fields) for pattern, shape, fields in _expected_shapes(config)]
    for name, value in state_dict.items():
        canonical = canonical_name(name)
        for pattern, shape, fields in expected:
            if pattern.fullmatch(canonical) and tuple(np.shape(value)) != shape:
                values = ", ".join(f"{f}={getattr(config, f)}" for f in fields.split(", "))
                raise ValueError(
                    f"The checkpoint does not fit its config: tensor {name!r} has shape {tuple(np.shape(value))}, "
                    f"the config gives {shape} ({values})."
                )
_FOREIGN_READERS = {
    ".npz": read_npz,
    ".safetensors": _read_safetensors,
    ".bin": _read_pytorch_bin,
    ".pth": _read_pytorch_bin,
    ".pt": _read_pytorch_bin,
}
# Config fields the tensors' shapes fix: a value the caller passes must agree with them.
_SHAPE_FIELDS = ("hidden_size", "num_hidden_layers", "intermediate_size", "patch_size", "num_channels", "qkv_bias")


def _foreign_weights(source):
    """(weights file, timm config.json dict or None) of a timm / .npz checkpoint; None for Hugging Face's."""
    source = Path(source)
    if source.is_file():
        if source.suffix not in _FOREIGN_READERS:
            raise ValueError(
                f"Expected a checkpoint directory or a weights file ending in {sorted(_FOREIGN_READERS)}. "
                f"Received: {str(source)!r}"
            )
        return source, None
    hub_config = read_json_file(source / CONFIG_NAME) if (source / CONFIG_NAME).is_file() else None
    if hub_config is not None and not (isinstance(hub_config, dict) and "architecture" in hub_config):
        return None  # a Hugging Face config.json (timm's names an `architecture`)
    files = [source / n for n in (SAFETENSORS_NAME, PYTORCH_WEIGHTS_NAME)] + sorted(source.glob("*.npz"))
    files = [f for f in files if f.is_file()]
    return (files[0], hub_config) if files else None


def read_foreign_checkpoint(path_or_repo_id, revision=None, cache_dir=None, local_files_only=False, overrides=None):
    """Reads a timm or Google `.npz` checkpoint; None for a Hugging Face one.

    Args:
        path_or_repo_id: a weights file (`.safetensors`, `.bin`, `.pth`, `.pt`, `.npz`), a
            directory (timm's Hub layout: `config.json` with `architecture` and
            `model.safetensors` or `pytorch_model.bin`; or weights without `config.json`),
            or a Hub repo id.
        overrides: config fields the caller passes; `num_attention_heads` is used for a
            timm state dict, whose shapes do not give it.

    Returns:
        None for a Hugging Face checkpoint, else (config fields with `model_type`, model
        class name, Hugging Face state dict).

    Raises:
        ValueError: for a timm/npz variant keras_vit does not run, unknown heads, or a
            field in `overrides` that the tensors' shapes contradict (named).
    """
    overrides = overrides or {}
    source = Path(path_or_repo_id)
    if not source.is_file():
        source = resolve_checkpoint(path_or_repo_id, revision, cache_dir, local_files_only)
    found = _foreign_weights(source)
    if found is None:
        return None
    path, hub_config = found
    # The timm/npz adapters slice and split arrays: lazy safetensors tensors are read here.
    state = {k: np.asarray(v) if isinstance(v, LazyTensor) else v for k, v in _FOREIGN_READERS[path.suffix](path).items()}
    if path.suffix == ".npz":
        fields, architecture = config_from_npz(state)
        state, checked = npz_to_hf(state), (*_SHAPE_FIELDS, "num_attention_heads")
    elif is_timm_state_dict(state):
        hf_state = timm_to_hf(state)
        fields, architecture = config_from_timm(state, hub_config, overrides.get("num_attention_heads"))
        state, checked = hf_state, _SHAPE_FIELDS
    elif hub_config is None and path.parent == source:
        return None  # Hugging Face weights without config.json: the Hugging Face path says so
    else:
        raise ValueError(f"Expected timm ViT/DeiT tensor names in {path}. Received: {sorted(state)[:10]}")
    for name in checked:
        if name in overrides and overrides[name] != fields[name]:
            raise ValueError(
                f"Expected {name}={fields[name]!r}, as the tensors of {path} have it. Received: {name}={overrides[name]!r}"
            )
    return fields, architecture, state


def from_pretrained(model_class, path_or_repo_id, ignore_mismatched_sizes=False, revision=None, cache_dir=None,
                    local_files_only=False, **kwargs):
    """Builds `model_class` from a Hugging Face checkpoint (see `VisionTransformer.from_pretrained`).

    Raises:
        TypeError: naming keywords that are neither config fields nor construction arguments
            of `model_class`, before any file is read.
    """
    config_class = model_class.config_class
    field_names = set(inspect.signature(config_class.__init__).parameters) - {"self", "kwargs"}
    construction_names = set(model_class.construction_arguments())
    unknown = sorted(set(kwargs) - field_names - construction_names)
    if unknown:
        raise TypeError(
            f"{model_class.__name__}.from_pretrained got unexpected keyword argument(s) {unknown}. Expected config "
            f"fields among {sorted(field_names)} or construction arguments among {sorted(construction_names)}."
        )
    overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in field_names}
    if "num_labels" in overrides and "id2label" not in overrides:
        overrides["id2label"] = None
        overrides["label2id"] = None
    foreign = read_foreign_checkpoint(path_or_repo_id, revision, cache_dir, local_files_only, overrides)
    if foreign is not None:
        fields, _, state_dict = foreign
        fields.pop("model_type")
        config = config_class(**{**fields, **overrides})
    else:
        directory = resolve_checkpoint(path_or_repo_id, revision, cache_dir, local_files_only)
        saved = committed_paths(directory, [SAFETENSORS_NAME, CONFIG_NAME])
        if saved[CONFIG_NAME] == directory / CONFIG_NAME:
            config = read_config(directory, config_class)
            weights = weights_file(directory)
            read = _READERS[weights.name]
        else:  # a save_pretrained killed between its renames: the old pair, from its backups
            config = config_class.from_json_file(saved[CONFIG_NAME])
            weights, read = saved[SAFETENSORS_NAME], _read_safetensors
        if overrides:
            config = config_class.from_dict({**config.to_dict(), **overrides})
        state_dict = read(weights)
        if weights.name == TF_WEIGHTS_NAME:
            config = tf_era_qkv_bias(config, state_dict)
    check_shapes(config, state_dict)
    model = model_class(config, **kwargs)
    load_hf_state_dict(model, state_dict, ignore_mismatched_sizes)
    return model


def save_pretrained(model, directory, format="hf"):
    """Writes `config.json` and `model.safetensors` in the Hugging Face layout; returns `directory`.

    `format="timm"` writes timm's layout instead (`_save_timm`); `format="npz"` writes
    Google's ViT parameter names to `directory/model.npz` (`keras_vit.conversion_npz`).

    The config is serialised first (a value JSON cannot hold is a ValueError naming the
    field, before anything is written), then both files are written to temporary siblings
    and published with `keras_vit.atomic.atomic_files`: a reader never finds new weights
    beside the old config, and other files of `directory` stay. Transformers (PyTorch)
    loads the result.

    Files replaced keep their mode. A save killed between its renames is undone (or
    finished, if it committed) by the next one; until then `from_pretrained` reads the
    old pair from the backups (`keras_vit.atomic.committed_paths`).

    Raises:
        ValueError: naming a config field that JSON cannot hold (e.g. a NumPy scalar), or
            if `directory` is a file; nothing on disk changes.
        OSError: when writing fails (a full disk, a read-only directory); nothing on disk changes.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    if format not in ("hf", "timm", "npz"):
        raise ValueError(f"Expected format to be 'hf', 'timm' or 'npz'. Received: format={format!r}")
    if format == "timm":
        return _save_timm(model, directory)
    if format == "npz":
        save_npz(model, Path(directory) / "model.npz")
        return Path(directory)
    directory = Path(directory)
    config = model.config.to_dict()
    config["architectures"] = [type(model).__name__]
    config_text = to_json_string(config)
    with atomic_files(directory, [SAFETENSORS_NAME, CONFIG_NAME]) as tmp:
        try:
            save_file(to_hf_state_dict(model), str(tmp[SAFETENSORS_NAME]), metadata={"format": "pt"})
        except SafetensorError as e:  # the I/O error (e.g. a full disk) as Python's own
            raise OSError(f"Could not write {directory / SAFETENSORS_NAME}: {e}") from None
        tmp[CONFIG_NAME].write_text(config_text, encoding="utf-8")
    return directory


def _save_timm(model, directory):
    """Writes timm's Hub layout: `model.safetensors` (timm names) and a timm `config.json`.

    `timm.create_model(architecture, num_classes=num_classes, **model_args)` builds the
    model whose `load_state_dict` takes the weights: `model_args` give every size, the
    architecture only the family. timm's `LayerNorm` epsilon is 1e-6, so a config with
    another `layer_norm_eps` gives slightly different outputs there.
    """
    from safetensors.numpy import save_file

    directory = Path(directory)
    config = model.config
    distilled = any(w.path.endswith("embeddings/distillation_token") for w in model.weights)
    hub_config = {
        "architecture": "deit_base_distilled_patch16_224" if distilled else "vit_base_patch16_224",
        "num_classes": config.num_labels,
        "num_features": config.hidden_size,
        "model_args": timm_model_args(config),
        "label_names": [config.id2label[i] for i in range(config.num_labels)],
    }
    config_text = to_json_string(hub_config)
    with atomic_files(directory, [SAFETENSORS_NAME, CONFIG_NAME]) as tmp:
        save_file(to_timm_state_dict(model), str(tmp[SAFETENSORS_NAME]), metadata={"format": "pt"})
        tmp[CONFIG_NAME].write_text(config_text, encoding="utf-8")
    return directory
