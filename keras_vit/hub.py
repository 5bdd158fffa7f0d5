"""Finding checkpoint files: Hugging Face file names, Hub resolution, JSON reading (a leaf module)."""

import json
import os
import re
from pathlib import Path

CONFIG_NAME = "config.json"
PREPROCESSOR_CONFIG_NAME = "preprocessor_config.json"
SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
TF_WEIGHTS_NAME = "tf_model.h5"
PYTORCH_WEIGHTS_NAME = "pytorch_model.bin"
WEIGHT_FILES = (SAFETENSORS_NAME, SAFETENSORS_INDEX_NAME, TF_WEIGHTS_NAME, PYTORCH_WEIGHTS_NAME)
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def resolve_checkpoint(path_or_repo_id, revision=None, cache_dir=None, local_files_only=False):
    """Returns the local directory of a checkpoint.

    A local directory is used as it is. Otherwise `path_or_repo_id` is a Hub repo id
    ("org/name") resolved with `huggingface_hub.snapshot_download`: first from the local
    cache, then (unless offline: `local_files_only` or `HF_HUB_OFFLINE=1`) from the Hub.

    Raises:
        FileNotFoundError: naming the path or repo id, the files looked for, and where.
        ImportError: for a repo id when huggingface_hub is not installed.
    """
    path = Path(path_or_repo_id)
    if path.is_dir():
        return path
    if not _REPO_ID.match(str(path_or_repo_id)):
        raise FileNotFoundError(f"No checkpoint directory at {str(path)!r}, and it is not a Hub repo id (org/name).")
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError(
            f"{path_or_repo_id!r} is not a local directory; resolving Hub repo ids needs huggingface_hub "
            "(pip install 'keras-vit[hf]')."
        ) from None
    patterns = [CONFIG_NAME, PREPROCESSOR_CONFIG_NAME, *WEIGHT_FILES, "model-*.safetensors"]
    kwargs = dict(repo_id=str(path_or_repo_id), revision=revision, cache_dir=cache_dir, allow_patterns=patterns)
    offline = local_files_only or os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
    try:
        return Path(huggingface_hub.snapshot_download(local_files_only=True, **kwargs))
    except Exception as cached_error:
        if offline:
            raise FileNotFoundError(
                f"{CONFIG_NAME} and weights ({', '.join(WEIGHT_FILES)}) for {path_or_repo_id!r} are not in the "
                f"local Hub cache ({cache_dir or huggingface_hub.constants.HF_HUB_CACHE}) and downloads are off "
                f"(offline): {cached_error}"
            ) from None
    try:
        return Path(huggingface_hub.snapshot_download(etag_timeout=10, **kwargs))
    except Exception as error:
        raise FileNotFoundError(
            f"Could not download {path_or_repo_id!r} from the Hugging Face Hub, and it is not in the local cache "
            f"({cache_dir or huggingface_hub.constants.HF_HUB_CACHE}); looked for {CONFIG_NAME} and one of "
            f"{', '.join(WEIGHT_FILES)}: {type(error).__name__}: {error}"
        ) from None


def read_json_file(path):
    """Returns the parsed content of a JSON file; raises ValueError naming the file if it is not JSON."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"Expected {path} to hold JSON. Parsing failed: {e}") from None
