"""Layer-wise learning-rate decay for fine-tuning Vision Transformers, as a serializable Keras optimizer.

BEiT (Bao et al. 2022, section 3.2 and appendix; `beit/optim_factory.py`
`get_layer_id_for_vit`), MAE (`util/lr_decay.py` `param_groups_lrd`) and timm
(`timm/optim/_param_groups.py` `param_groups_layer_decay`) give each parameter a layer id —
0 for the embeddings (patch projection, [CLS] / distillation tokens, position embeddings),
i + 1 for transformer block i, L + 1 for everything after the last block (final LayerNorm,
pooler, heads) — and scale its learning rate by layer_decay ** (L + 1 − layer_id), for L
blocks: the head trains at the full rate, block i at layer_decay ** (L − i), the embeddings
at layer_decay ** (L + 1).
"""

import re

import keras
from keras import ops

_BLOCK = re.compile(r"^encoder_layer_(\d+)$")


def layer_id(path, num_layers):
    """The BEiT / timm layer id of a variable path: 0 embeddings, i + 1 `encoder_layer_{i}`, else num_layers + 1.

    Path segments are read from the left, so `vit/encoder_layer_3/attention/qkv/kernel`
    and `encoder_layer_3/attention/qkv/kernel` are both block 3 (layer id 4).

    Raises:
        ValueError: a block index >= num_layers.

    >>> [layer_id(p, 12) for p in ("embeddings/cls_token", "encoder_layer_3/fc1/kernel", "classifier/bias")]
    [0, 4, 13]
    """
    for segment in path.split("/"):
        if segment == "embeddings":
            return 0
        match = _BLOCK.match(segment)
        if match:
            index = int(match.group(1))
            if index >= num_layers:
                raise ValueError(
                    f"Expected transformer blocks encoder_layer_0 .. encoder_layer_{num_layers - 1} "
                    f"(num_layers={num_layers}). Received: a variable at path={path!r}"
                )
            return index + 1
    return num_layers + 1


def count_layers(paths):
    """Number of transformer blocks among variable paths: 1 + the largest `encoder_layer_{i}` index (0 if none)."""
    indices = [int(m.group(1)) for path in paths for m in map(_BLOCK.match, path.split("/")) if m]
    return max(indices) + 1 if indices else 0


@keras.saving.register_keras_serializable(package="keras_vit")
class LayerDecayOptimizer(keras.optimizers.Optimizer):
    """Runs a Keras optimizer with layer-wise learning-rate decay (BEiT, MAE, timm fine-tuning recipes).

    Each step runs the wrapped optimizer, then scales every variable's step by
    layer_decay ** (L + 1 − layer_id) (see `layer_id`; the module docstring gives the rule
    and its sources). For optimizers whose step is proportional to the learning rate (SGD
    with or without momentum, Adam, AdamW with its decoupled weight decay, RMSprop, Lion,
    Adamax, Nadam) that is exactly the wrapped optimizer with a per-variable learning rate
    lr · factor, as timm's parameter groups; the learning rate (a float or a
    `keras.optimizers.schedules.LearningRateSchedule`), weight decay, clipping and gradient
    accumulation are the wrapped optimizer's own. `iterations` and `learning_rate` are the
    wrapped optimizer's; its moments are saved with the model (`model.save(".keras")`) and
    training resumes where it stopped.

    Args:
        optimizer: a `keras.optimizers.Optimizer` (or its name / config, as
            `keras.optimizers.get`) without `use_ema` (its averages would miss the scaling).
        layer_decay: float in (0, 1], the decay per block.
        num_layers: int > 0, the number of transformer blocks L; None counts the
            `encoder_layer_{i}` variables the optimizer is built with.
        name: optional name.

    Raises:
        ValueError: a bad optimizer, layer_decay or num_layers; at build, variables of a
            block index >= num_layers, or no transformer blocks when num_layers is None.

    >>> import keras_vit
    >>> config = keras_vit.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...     intermediate_size=37, image_size=32, patch_size=8, num_labels=3)
    >>> model = keras_vit.ViTForImageClassification(config)
    >>> optimizer = LayerDecayOptimizer(keras.optimizers.AdamW(1e-3, weight_decay=0.05), layer_decay=0.5)
    >>> optimizer.build(model.trainable_variables)
    >>> multipliers = optimizer.learning_rate_multipliers
    >>> [multipliers[p] for p in ("embeddings/cls_token", "encoder_layer_0/fc1/kernel",
    ...     "encoder_layer_1/fc1/kernel", "classifier/kernel")]
    [0.125, 0.25, 0.5, 1.0]
    >>> model.compile(optimizer, loss=keras_vit.losses.ClassificationLoss())
    """

    def __init__(self, optimizer, layer_decay=0.75, num_layers=None, name=None, **kwargs):
        if kwargs:
            raise ValueError(
                "LayerDecayOptimizer takes the learning rate, weight decay, clipping and EMA settings from "
                f"its wrapped optimizer. Received: {sorted(kwargs)}"
            )
        if isinstance(optimizer, (str, dict)):
            optimizer = keras.optimizers.get(optimizer)
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise ValueError(f"Expected optimizer to be a keras.optimizers.Optimizer. Received: {optimizer=}")
        if optimizer.use_ema:
            raise ValueError(
                "Expected a wrapped optimizer with use_ema=False: its moving averages would miss the layer-wise "
                f"scaling. Received: {type(optimizer).__name__}(use_ema=True)"
            )
        if isinstance(layer_decay, bool) or not isinstance(layer_decay, (int, float)) or not 0 < layer_decay <= 1:
            raise ValueError(f"Expected layer_decay to be a float in (0, 1]. Received: {layer_decay=}")
        if num_layers is not None and (
            isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1
        ):
            raise ValueError(f"Expected num_layers to be None or a positive int. Received: {num_layers=}")
        super().__init__(learning_rate=0.0, name=name)
        self.optimizer = optimizer
        self.layer_decay = layer_decay
        self.num_layers = num_layers

    def build(self, var_list):
        num_layers = self.num_layers or count_layers([v.path for v in var_list])
        if num_layers == 0:
            raise ValueError(
                "Expected variables of transformer blocks (paths with encoder_layer_{i}) to infer num_layers. "
                f"Received: paths={[v.path for v in var_list][:5]}..."
            )
        self._multipliers = [self.layer_decay ** (num_layers + 1 - layer_id(v.path, num_layers)) for v in var_list]
        self.optimizer.build(var_list)
        super().build(var_list)

    @property
    def learning_rate_multipliers(self):
        """dict variable path -> learning-rate factor, once built."""
        return {v.path: m for v, m in zip(self._trainable_variables, self._multipliers)}

    @property
    def variables(self):
        return self._variables + self.optimizer.variables

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            self.build(trainable_variables)
        variables = self._trainable_variables if trainable_variables is None else list(trainable_variables)
        multipliers = [self._multipliers[self._get_variable_index(v)] for v in variables]
        before = [None if m == 1 else ops.copy(v) for v, m in zip(variables, multipliers)]
        self.optimizer.apply(grads, trainable_variables)
        for variable, old, multiplier in zip(variables, before, multipliers):
            if old is not None:
                variable.assign(old + multiplier * (variable - old))

    @property
    def iterations(self):
        return self.optimizer.iterations

    @property
    def learning_rate(self):
        return self.optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        # The base class sets its own (unused) rate in __init__, before `optimizer` exists.
        if hasattr(self, "optimizer"):
            self.optimizer.learning_rate = learning_rate

    def finalize_variable_values(self, var_list):
        self.optimizer.finalize_variable_values(var_list)

    def get_config(self):
        return {
            "name": self.name,
            "optimizer": keras.saving.serialize_keras_object(self.optimizer),
            "layer_decay": self.layer_decay,
            "num_layers": self.num_layers,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        optimizer = keras.saving.deserialize_keras_object(config.pop("optimizer"), custom_objects=custom_objects)
        return cls(optimizer, **config)
