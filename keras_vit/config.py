"""Model configurations with the Hugging Face `ViTConfig` / `DeiTConfig` field names.

A config is a plain, validated record of hyper-parameters. `to_dict` / `from_dict` and
`to_json_file` / `from_json_file` read and write the `config.json` of a Hugging Face
checkpoint; fields this library does not use (`architectures`, `transformers_version`, …)
are kept and written back unchanged.
"""

import copy
import difflib
import inspect
import json
import math
import re
from pathlib import Path

from keras_vit.atomic import write_text_atomically
from keras_vit.hub import CONFIG_NAME, read_json_file, resolve_checkpoint
from keras_vit.layers.activations import ACTIVATIONS
from keras_vit.losses import PROBLEM_TYPES
from keras_vit.presets import preset_fields

_POSITIVE_INT_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "num_channels",
    "encoder_stride",
)
_PROBABILITY_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "drop_path_rate")
# Ceilings checked before anything is allocated (a config.json is untrusted input). Raise them
# (e.g. `keras_vit.config.MAX_PARAMETER_BYTES = 2**36`) for a larger model.
MAX_PARAMETER_BYTES = 2**34  # float32 weights of the model a config describes (parameter_count * 4)
MAX_NUM_HIDDEN_LAYERS = 1024  # each block is a few Keras layers: building costs time, not just bytes
MAX_NUM_LABELS = 2**17  # num_labels without id2label makes one "LABEL_i" name per label
MAX_NUM_PATCHES = 2**20  # tokens per image: position embeddings, and attention's tokens x tokens scores


def to_json_string(value, what="config"):
    """`value` as indented JSON with sorted keys and a final newline.

    Raises:
        ValueError: naming the first entry (e.g. `extra_field[2]`) that JSON cannot hold
            losslessly: a type other than dict (str keys), list, tuple, str, int, float,
            bool or None (e.g. a NumPy scalar), or NaN/infinity.
    """
    _check_json(value, what)
    return json.dumps(value, indent=2, sort_keys=True, allow_nan=False) + "\n"


def _check_json(value, path):
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"Expected the keys of {path} to be str. Received: key {key!r} ({type(key).__name__})")
            _check_json(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]")
    elif type(value) is float and not math.isfinite(value):
        raise ValueError(f"Expected {path} to be a finite number (JSON has no NaN or infinity). Received: {value!r}")
    elif value is not None and type(value) not in (str, int, float, bool):
        raise ValueError(
            f"Expected {path} to be a JSON value (dict, list, str, int, float, bool or None). "
            f"Received: {value!r} of type {type(value).__module__}.{type(value).__qualname__}"
        )


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _as_index(value):
    """`value` as an int if it is one or its decimal string ("3"), else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    return None


def _as_pair(value, name):
    """Returns `value` as a (height, width) tuple of positive ints."""
    if isinstance(value, bool):
        raise ValueError(f"Expected {name} to be a positive int or a pair of them. Received: {name}={value!r}")
    if isinstance(value, int):
        pair = (value, value)
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        pair = tuple(value)
    else:
        raise ValueError(f"Expected {name} to be a positive int or a pair of them. Received: {name}={value!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise ValueError(f"Expected {name} to be a positive int or a pair of them. Received: {name}={value!r}")
    return pair


_SIZE_FIELDS = ("hidden_size", "num_hidden_layers", "intermediate_size", "image_size", "patch_size", "num_channels",
                "encoder_stride", "pooler_output_size", "num_labels")


def parameter_count(config, **changes):
    """An upper bound on the number of weights of any model built from `config` (`changes`
    override its fields): embeddings, blocks, final norm, pooler, both DeiT heads and the
    masked-image-modeling decoder. Plain integer arithmetic, nothing allocated."""
    get = lambda name: changes.get(name, getattr(config, name))  # noqa: E731
    h, layers, inner, channels, stride = (get(n) for n in ("hidden_size", "num_hidden_layers", "intermediate_size",
                                                            "num_channels", "encoder_stride"))
    (image_h, image_w), (patch_h, patch_w) = _as_pair(get("image_size"), "image_size"), _as_pair(get("patch_size"), "patch_size")
    tokens = (image_h // patch_h) * (image_w // patch_w) + 2
    pooler, labels = get("pooler_output_size"), changes.get("num_labels", config.num_labels)
    embeddings = h * channels * patch_h * patch_w + h + tokens * h + 3 * h
    block = 4 * (h * h + h) + 2 * h * inner + inner + h + 4 * h
    heads = h * pooler + pooler + 2 * (h * labels + labels) + (h + 1) * stride * stride * channels
    return embeddings + layers * block + 2 * h + heads


def _check_model_size(config):
    """Raises ValueError naming the field that makes `config` too large to build (see the ceilings above)."""
    if config.num_hidden_layers > MAX_NUM_HIDDEN_LAYERS:
        raise ValueError(
            f"Expected num_hidden_layers <= {MAX_NUM_HIDDEN_LAYERS} (keras_vit.config.MAX_NUM_HIDDEN_LAYERS; raise it "
            f"for a deeper model). Received: num_hidden_layers={config.num_hidden_layers}"
        )
    if config.num_patches > MAX_NUM_PATCHES:
        raise ValueError(
            f"Expected image_size / patch_size to give at most {MAX_NUM_PATCHES} patches "
            f"(keras_vit.config.MAX_NUM_PATCHES; raise it for more). Received: image_size={config.image_size}, "
            f"patch_size={config.patch_size} give {config.num_patches} patches"
        )
    count = parameter_count(config)
    if count * 4 <= MAX_PARAMETER_BYTES:
        return
    defaults = {name: p.default for name, p in inspect.signature(ViTConfig.__init__).parameters.items()}
    defaults.update(pooler_output_size=config.hidden_size, num_labels=2)
    # The field whose default value would shrink the model most is the one to blame.
    culprit = min(_SIZE_FIELDS, key=lambda name: parameter_count(config, **{name: defaults[name]}))
    value = config.num_labels if culprit == "num_labels" else getattr(config, culprit)
    raise ValueError(
        f"Expected a model of at most {MAX_PARAMETER_BYTES} bytes of float32 weights "
        f"(keras_vit.config.MAX_PARAMETER_BYTES; raise it for a larger model). Received: {culprit}={value!r} "
        f"gives about {count} weights ({count * 4} bytes)"
    )


def _default_id2label(num_labels):
    return {i: f"LABEL_{i}" for i in range(num_labels)}


def _default_label2id(num_labels):
    return {f"LABEL_{i}": i for i in range(num_labels)}


def _config_fields(config_class):
    """The fields `config_class(...)` takes as named arguments (`hidden_size`, …, `problem_type`)."""
    parameters = inspect.signature(config_class.__init__).parameters
    return tuple(n for n, p in parameters.items() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD)


# config.json fields a config also takes as keywords: kept in `extra`, checked by `validate`.
_FILE_KEYWORDS = ("model_type", "architectures")


def _check_keywords(config_class, kwargs):
    """Raises TypeError naming the keywords of `kwargs` that are not config fields, with the closest."""
    fields = (*_config_fields(config_class), *_FILE_KEYWORDS)
    unknown = [k for k in kwargs if k not in fields]
    if not unknown:
        return
    guesses = []
    for name in unknown:
        close = difflib.get_close_matches(str(name), fields, n=1)
        guesses.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
    raise TypeError(
        f"{config_class.__name__} got unknown keyword argument(s): {', '.join(guesses)}. Expected fields among "
        f"{list(fields)}; `{config_class.__name__}.from_dict` keeps the other fields of a config.json."
    )


class ViTConfig:
    """Configuration of a Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words").

    Field names and defaults are those of Hugging Face `transformers.ViTConfig`, so a
    `config.json` written by transformers loads unchanged.

    Args:
        hidden_size: int, width of the token embeddings.
        num_hidden_layers: int, number of transformer blocks.
        num_attention_heads: int, heads per attention layer; must divide `hidden_size`.
        intermediate_size: int, width of the MLP hidden layer.
        hidden_act: str, MLP activation, one of `keras_vit.layers.activations.ACTIVATIONS`.
        hidden_dropout_prob: float in [0, 1), dropout on embeddings and residual branches.
        attention_probs_dropout_prob: float in [0, 1), dropout on attention probabilities.
        drop_path_rate: float in [0, 1), stochastic depth (Huang et al. 2016) of the last
            block; block i of L drops its residual branches with rate
            drop_path_rate * i / (L - 1), the linear rule of timm and DeiT (0.1 there).
            Not a Hugging Face field (timm's name); written to config.json only when set.
        initializer_range: float > 0, std of the truncated-normal weight initializer.
        layer_norm_eps: float > 0, LayerNorm epsilon.
        image_size: int or (height, width), input resolution in pixels.
        patch_size: int or (height, width), patch size in pixels; must divide `image_size`.
        num_channels: int, channels of `pixel_values`.
        qkv_bias: bool, whether the query/key/value projections have a bias.
        encoder_stride: int, upsampling factor of the masked-image-modeling decoder.
        pooler_output_size: int or None, pooler width (None: `hidden_size`).
        pooler_act: str, pooler activation.
        num_labels: int >= 0, classifier outputs (0: no classifier, logits are features).
        id2label: dict int -> str, class names (defines `num_labels` when given).
        label2id: dict str -> int, inverse of `id2label`.
        problem_type: None or one of `keras_vit.losses.PROBLEM_TYPES` ("regression",
            "single_label_classification", "multi_label_classification"): the built-in
            classifier loss (`keras_vit.losses.classification_loss`); None infers it from
            num_labels and the labels' dtype, as transformers.
        architectures: list of str, the model classes of a checkpoint (optional, as in
            transformers' `config.json`).

    `from_dict` / `from_json_file` / `from_pretrained` keep the other fields of a
    `config.json` (`transformers_version`, …) in `extra` and write them back unchanged.

    Raises:
        TypeError: for an unknown keyword (a typo such as `num_hiden_layers`), naming it and
            the closest field.
        ValueError: naming the field and value, when a size is not positive, `hidden_size`
            is not divisible by `num_attention_heads`, `image_size` is not divisible by
            `patch_size`, a probability is outside [0, 1), an activation is unknown,
            `problem_type` is not None or one of `PROBLEM_TYPES`; or, before anything is
            allocated, when a size passes its ceiling: `num_hidden_layers` >
            `MAX_NUM_HIDDEN_LAYERS`, `num_labels` > `MAX_NUM_LABELS`, more patches than
            `MAX_NUM_PATCHES`, or weights (`parameter_count` x 4 bytes) over
            `MAX_PARAMETER_BYTES`, naming the field that makes the model that large.
            Each ceiling is a module attribute the user can raise.

    >>> config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    >>> config.num_patches
    196
    """

    model_type = "vit"

    def __init__(
        self,
        /,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        drop_path_rate=0.0,
        initializer_range=0.02,
        layer_norm_eps=1e-12,
        image_size=224,
        patch_size=16,
        num_channels=3,
        qkv_bias=True,
        encoder_stride=16,
        pooler_output_size=None,
        pooler_act="tanh",
        num_labels=None,
        id2label=None,
        label2id=None,
        problem_type=None,
        **kwargs,
    ):
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.drop_path_rate = drop_path_rate
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.image_size = list(image_size) if isinstance(image_size, (list, tuple)) else image_size
        self.patch_size = list(patch_size) if isinstance(patch_size, (list, tuple)) else patch_size
        self.num_channels = num_channels
        self.qkv_bias = qkv_bias
        self.encoder_stride = encoder_stride
        self.pooler_output_size = hidden_size if pooler_output_size is None else pooler_output_size
        self.pooler_act = pooler_act
        self.problem_type = problem_type
        kwargs.pop("model_type", None)
        _check_keywords(type(self), kwargs)
        self.extra = kwargs
        self.id2label = self._id2label(num_labels, id2label)
        self._label2id = self._checked_label2id(label2id)
        self.validate()

    @staticmethod
    def _checked_label2id(label2id):
        if label2id is None:
            return None
        if not isinstance(label2id, dict) or not all(
            isinstance(k, str) and _as_index(v) is not None for k, v in label2id.items()
        ):
            raise ValueError(f"Expected label2id to be a dict of str -> int. Received: label2id={label2id!r}")
        return {k: _as_index(v) for k, v in label2id.items()}

    @staticmethod
    def _id2label(num_labels, id2label):
        if id2label is not None:
            if not isinstance(id2label, dict):
                raise ValueError(f"Expected id2label to be a dict of int -> str. Received: id2label={id2label!r}")
            for key, value in id2label.items():
                if _as_index(key) is None or not isinstance(value, str):
                    raise ValueError(
                        "Expected id2label to map ints (or their decimal strings) to str. "
                        f"Received the entry {key!r}: {value!r}"
                    )
            converted = {_as_index(k): v for k, v in id2label.items()}
            if len(converted) != len(id2label):
                raise ValueError(f"Expected id2label keys to be distinct ints. Received: {sorted(id2label, key=str)}")
            id2label = converted
            if num_labels is not None and num_labels != len(id2label):
                raise ValueError(
                    f"Expected num_labels to equal len(id2label). Received: num_labels={num_labels}, "
                    f"id2label with {len(id2label)} entries."
                )
            if sorted(id2label) != list(range(len(id2label))):
                raise ValueError(f"Expected id2label keys to be 0..{len(id2label) - 1}. Received: {sorted(id2label)}")
        else:
            num_labels = 2 if num_labels is None else num_labels
            if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 0:
                raise ValueError(f"Expected num_labels to be an int >= 0. Received: num_labels={num_labels!r}")
            if num_labels > MAX_NUM_LABELS:
                raise ValueError(
                    f"Expected num_labels <= {MAX_NUM_LABELS} (keras_vit.config.MAX_NUM_LABELS; raise it for more). "
                    f"Received: num_labels={num_labels}"
                )
            id2label = _default_id2label(num_labels)
        return id2label

    def validate(self):
        """Checks every field; raises ValueError naming the first bad field and its value."""
        for name in _POSITIVE_INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"Expected {name} to be a positive int. Received: {name}={value!r}")
        value = self.pooler_output_size
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"Expected pooler_output_size to be a positive int. Received: pooler_output_size={value!r}")
        for name in _PROBABILITY_FIELDS:
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < 1:
                raise ValueError(f"Expected {name} to be a float in [0, 1). Received: {name}={value!r}")
        for name in ("initializer_range", "layer_norm_eps"):
            value = getattr(self, name)
            if not _is_number(value) or value <= 0:
                raise ValueError(f"Expected {name} to be a finite positive float. Received: {name}={value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                "Expected hidden_size to be divisible by num_attention_heads. Received: "
                f"hidden_size={self.hidden_size}, num_attention_heads={self.num_attention_heads}"
            )
        image = _as_pair(self.image_size, "image_size")
        patch = _as_pair(self.patch_size, "patch_size")
        if image[0] % patch[0] or image[1] % patch[1]:
            raise ValueError(
                "Expected patch_size to divide image_size. Received: "
                f"image_size={self.image_size}, patch_size={self.patch_size}"
            )
        for name in ("hidden_act", "pooler_act"):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in ACTIVATIONS:
                raise ValueError(f"Expected {name} to be one of {sorted(ACTIVATIONS)}. Received: {name}={value!r}")
        if not isinstance(self.qkv_bias, bool):
            raise ValueError(f"Expected qkv_bias to be a bool. Received: qkv_bias={self.qkv_bias!r}")
        architectures = self.extra.get("architectures")
        if architectures is not None and not (
            isinstance(architectures, list) and all(isinstance(a, str) for a in architectures)
        ):
            raise ValueError(f"Expected architectures to be a list of class names. Received: architectures={architectures!r}")
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise ValueError(
                f"Expected problem_type to be None or one of {PROBLEM_TYPES}. "
                f"Received: problem_type={self.problem_type!r}"
            )
        _check_model_size(self)

    # === Derived values ===
    @property
    def label2id(self):
        """dict str -> int: as given in the config file, else the inverse of id2label."""
        if self._label2id is not None:
            return self._label2id
        return {v: k for k, v in self.id2label.items()}

    @property
    def num_labels(self):
        return len(self.id2label)

    @property
    def image_hw(self):
        """(height, width) of the input image in pixels."""
        return _as_pair(self.image_size, "image_size")

    @property
    def patch_hw(self):
        """(height, width) of one patch in pixels."""
        return _as_pair(self.patch_size, "patch_size")

    @property
    def grid_size(self):
        """(rows, columns) of the patch grid at `image_size`."""
        (h, w), (ph, pw) = self.image_hw, self.patch_hw
        return h // ph, w // pw

    @property
    def num_patches(self):
        rows, cols = self.grid_size
        return rows * cols

    # === Serialization ===
    def to_dict(self):
        """Returns the `config.json` content as a dict (id2label keys as strings, as in JSON)."""
        out = copy.deepcopy(self.extra)
        out.update(
            model_type=self.model_type,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            initializer_range=self.initializer_range,
            layer_norm_eps=self.layer_norm_eps,
            image_size=self.image_size,
            patch_size=self.patch_size,
            num_channels=self.num_channels,
            qkv_bias=self.qkv_bias,
            encoder_stride=self.encoder_stride,
            pooler_output_size=self.pooler_output_size,
            pooler_act=self.pooler_act,
            id2label={str(k): v for k, v in self.id2label.items()},
            label2id=None if self._label2id is None else dict(self._label2id),
        )
        if self.drop_path_rate:
            out["drop_path_rate"] = self.drop_path_rate
        if self.problem_type is not None:  # transformers writes it only when set
            out["problem_type"] = self.problem_type
        return out

    @classmethod
    def from_dict(cls, config_dict):
        """Builds a config from a `config.json` dict; raises ValueError for another model_type."""
        if not isinstance(config_dict, dict):
            raise ValueError(f"Expected a dict of config fields. Received: {type(config_dict).__name__}")
        bad_keys = [k for k in config_dict if not isinstance(k, str)]
        if bad_keys:
            raise ValueError(f"Expected config field names to be str. Received: {bad_keys[0]!r}")
        model_type = config_dict.get("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise ValueError(
                f"Expected model_type={cls.model_type!r} for {cls.__name__}. Received: model_type={model_type!r}"
            )
        fields = _config_fields(cls)
        config = cls(**{k: v for k, v in config_dict.items() if k in fields})
        config.extra = {k: v for k, v in config_dict.items() if k not in fields and k != "model_type"}
        config.validate()
        return config

    def to_json_string(self):
        """The `config.json` text; raises ValueError naming a field JSON cannot hold (see `to_json_string`)."""
        return to_json_string(self.to_dict())

    def to_json_file(self, path):
        """Writes `config.json` atomically (temporary file renamed into place)."""
        write_text_atomically(path, self.to_json_string())

    @classmethod
    def from_json_file(cls, path):
        """Reads a `config.json`; raises ValueError if it is not a JSON object."""
        return cls.from_dict(read_json_file(path))

    @classmethod
    def from_pretrained(cls, path_or_repo_id, **kwargs):
        """Reads `config.json` from a checkpoint directory or Hub repo id.

        `kwargs` go to `keras_vit.hub.resolve_checkpoint` (revision, cache_dir, local_files_only).

        Raises:
            FileNotFoundError: no such directory or cached repo, or no config.json in it.
            ValueError: if config.json is not JSON, or of another model type.
        """
        return read_config(resolve_checkpoint(path_or_repo_id, **kwargs), cls)

    @classmethod
    def from_preset(cls, name, **overrides):
        """Returns the config of a published size, e.g. `"vit-base-patch16-224"`.

        Raises:
            ValueError: if `name` is not in `keras_vit.presets.PRESETS` for this model type.
        """
        return cls(**{**preset_fields(name, cls.model_type), **overrides})

    def replace(self, **changes):
        """Returns a copy with `changes` applied (and validated).

        `num_labels` without `id2label` regenerates the default labels (`LABEL_0`, …).

        Raises:
            TypeError: for a keyword that is neither a field nor one of `extra`'s keys.
            ValueError: for `num_labels` without `id2label` when the config has its own
                class names, or as the constructor.
        """
        _check_keywords(type(self), {k: v for k, v in changes.items() if k not in self.extra})
        fields = self.to_dict()
        if "num_labels" in changes and "id2label" not in changes and changes["num_labels"] != self.num_labels:
            if self.id2label != _default_id2label(self.num_labels) or self.label2id != _default_label2id(self.num_labels):
                raise ValueError(
                    "Expected id2label (and label2id) next to num_labels: the config has its own class names "
                    f"{list(self.id2label.values())}. Received: num_labels={changes['num_labels']!r}"
                )
            del fields["id2label"], fields["label2id"]
        return type(self).from_dict({**fields, **changes})

    def __eq__(self, other):
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return f"{type(self).__name__} {self.to_json_string()}"


class DeiTConfig(ViTConfig):
    """Configuration of a Data-efficient image Transformer (Touvron et al. 2021).

    Same fields and defaults as `ViTConfig` (Hugging Face `transformers.DeiTConfig`);
    `model_type` is `"deit"`.
    """

    model_type = "deit"


def config_class_for(model_type):
    """Returns `ViTConfig` or `DeiTConfig` for a `model_type` string."""
    classes = {cls.model_type: cls for cls in (ViTConfig, DeiTConfig)}
    if not isinstance(model_type, str) or model_type not in classes:
        raise ValueError(f"Expected model_type to be one of {sorted(classes)}. Received: model_type={model_type!r}")
    return classes[model_type]


def read_config(directory, config_class=None):
    """Reads `config.json` of a checkpoint directory as a ViTConfig/DeiTConfig.

    Args:
        directory: the checkpoint directory.
        config_class: ViTConfig, DeiTConfig, or None to pick by the file's `model_type`.

    Raises:
        FileNotFoundError: if config.json is missing.
        ValueError: if it is not JSON, or of another model type than `config_class`.
    """
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"Missing {CONFIG_NAME} in checkpoint directory {str(directory)!r}.")
    config_dict = read_json_file(path)
    if not isinstance(config_dict, dict):
        raise ValueError(
            f"Expected {path} to hold a JSON object of config fields. Received: a JSON {type(config_dict).__name__}"
        )
    if config_class is None:
        config_class = config_class_for(config_dict.get("model_type", "vit"))
    return config_class.from_dict(config_dict)
