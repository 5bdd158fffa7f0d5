"""The base class of every ViT/DeiT model: construction checks, LoRA and the Keras hooks.

Every model is a functional `keras.Model` (the keras-hub pattern): a backbone
(`ViTModel`, `DeiTModel`) lays out the encoder graph; a task model holds its backbone as a
sub-model (`model.backbone`, layer name `vit` / `deit`) and adds a head. This class adds
what users of Hugging Face models expect on top of Keras: inputs given as a tensor, a list
or a dict; call-time Hugging Face keywords that work or say how to get them; dict outputs
with Hugging Face names that `compile` can key losses and metrics by; a built-in loss when
compiled without one; data checked before `fit`, `evaluate` and `predict` run Keras' steps;
`from_pretrained` / `save_pretrained`; `get_config` / `from_config`. The inputs and their
checks live in `models.inputs` and `models.data_checks`, saving in `models.serialization`.
"""

import inspect

import keras
from keras import ops

from keras_vit import checkpoints
from keras_vit.atomic import save_keras_atomically
from keras_vit.config import ViTConfig
from keras_vit.data_format import DATA_FORMATS
from keras_vit.layers.custom_gradient import graphs_own_custom_gradients
from keras_vit.models import serialization
from keras_vit.models.data_checks import checked_data, named_check_errors
from keras_vit.models.inputs import standardize_inputs


def _check_rank(rank, name):
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"Expected {name} to be a positive int. Received: {name}={rank!r}")


def _output_names(outputs):
    """Names of the flattened outputs, in Keras' flattening order: dict keys, `key_i` inside tuples."""
    names = []
    for key in sorted(outputs):
        value = outputs[key]
        names.extend([f"{key}_{i}" for i in range(len(value))] if isinstance(value, tuple) else [key])
    return names


class VisionTransformer(keras.Model):
    """Base class of the ViT/DeiT models; not instantiated directly.

    Subclasses build their graph in `__init__` and hand it to `_init_graph`.
    """

    config_class = ViTConfig
    # Key of the outputs dict that a single compiled loss or metric list is applied to.
    prediction_key = "logits"
    use_distillation_token = False
    use_mask_token = False

    @classmethod
    def construction_arguments(cls):
        """Names of the keyword arguments `__init__` takes besides `config`."""
        parameters = inspect.signature(cls.__init__).parameters
        return tuple(n for n, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY)

    @classmethod
    def _check_construction(cls, config, unknown, data_format, flags, lora_rank):
        """Validates the config and flags before the graph is built; returns the config object.

        Raises:
            TypeError: for unknown keyword arguments, naming them.
            ValueError: a config of another class, a bad data_format, a non-bool flag or a
                lora_rank that is not a positive int.
        """
        if unknown:
            raise TypeError(
                f"{cls.__name__} got unexpected keyword argument(s) {sorted(unknown)}. Expected construction "
                f"arguments among {list(cls.construction_arguments())}; config fields (e.g. drop_path_rate, "
                "num_labels) belong in the config: config.replace(name=value)."
            )
        if isinstance(config, dict):
            config = cls.config_class.from_dict(config)
        if type(config) is not cls.config_class:
            raise ValueError(
                f"Expected config to be a {cls.config_class.__name__} (or its dict) for {cls.__name__}. "
                f"Received: {type(config).__name__}"
            )
        if data_format not in DATA_FORMATS:
            raise ValueError(f"Expected data_format to be one of {DATA_FORMATS}. Received: data_format={data_format!r}")
        for name, flag in flags.items():
            if not isinstance(flag, bool):
                raise ValueError(f"Expected {name} to be a bool. Received: {name}={flag!r}")
        if lora_rank is not None:
            _check_rank(lora_rank, "lora_rank")
        return config

    def _init_graph(self, config, inputs, outputs, flags, dtype, name, trainable):
        """Initialises the functional model and stores the construction arguments."""
        single = len(inputs) == 1
        super().__init__(
            inputs=inputs[0] if single else inputs, outputs=outputs, dtype=dtype, name=name, trainable=trainable
        )
        if dtype is not None:
            # The functional model itself drops `dtype`; its policy is what `get_config` saves.
            self.dtype_policy = dtype
        # Losses and metrics in `compile` are keyed by the outputs' names, not their layers'.
        self.output_names = _output_names(outputs)
        self.config = config
        for flag, value in flags.items():
            setattr(self, flag, value)
        self.lora_rank = None

    # === Fine-tuning ===
    def enable_lora(self, rank):
        """Low-rank adaptation (Hu et al. 2021) of the encoder; freezes the rest of the encoder.

        Every transformer block gets LoRA factors of rank `rank` on its attention `qkv` and
        `output` projections and its MLP `fc1` / `fc2` (`TransformerBlock.enable_lora`); all
        other encoder weights (embeddings, LayerNorms, projection kernels and biases, pooler)
        become non-trainable. A task model's head stays trainable. The rank is part of the
        model's config, so a `.keras` file reloads with LoRA enabled (Keras saves each
        projection with its LoRA product merged into the kernel, and zero factors).

        Args:
            rank: int >= 1.

        Raises:
            ValueError: a rank that is not a positive int, or LoRA already enabled.
        """
        _check_rank(rank, "rank")
        if self.lora_rank is not None:
            raise ValueError(f"LoRA is already enabled on {self.name} (lora_rank={self.lora_rank}).")
        backbone = getattr(self, "backbone", self)
        if backbone is not self:
            backbone.enable_lora(rank)
        else:
            for layer in self.layers:
                layer.trainable = False
            for i in range(self.config.num_hidden_layers):
                block = self.get_layer(f"encoder_layer_{i}")
                block.trainable = True
                block.enable_lora(rank)
        self.lora_rank = rank

    def gradient_checkpointing_enable(self):
        """Turns on `gradient_checkpointing` (Hugging Face's method name) for the model and every block.

        Training then recomputes each transformer block's branches in the backward pass
        (`TransformerBlock`, `keras.remat`); saved in the config like the construction
        flag. Functions traced before (a compiled TensorFlow or JAX train step) keep their
        plan: call it before `compile`.
        """
        for layer in self._flatten_layers():  # the model, its backbone, the blocks
            if hasattr(layer, "gradient_checkpointing"):
                layer.gradient_checkpointing = True

    # === Inputs ===
    @property
    def input_names(self):
        return [tensor.name for tensor in self.inputs]

    def standardize_inputs(self, inputs, **call_kwargs):
        """Turns a tensor, a list or a dict (plus `head_mask=` / `bool_masked_pos=` keywords) into this
        model's inputs, checked.

        Returns:
            (inputs, keras_kwargs): `pixel_values` alone for a one-input model, else the list of
            inputs in the order of `input_names` (None for an absent optional input); and the
            keywords left for Keras (`training`, `mask`).

        Raises:
            TypeError: a call-time keyword this model was not built for, with the construction
                flag that provides it, or an unknown keyword.
            ValueError: unknown dict keys, too many list entries, missing pixel_values, a dtype,
                rank, channel count, image size or batch size the model cannot take.
        """
        return standardize_inputs(self, inputs, call_kwargs)

    def __call__(self, inputs, *args, **kwargs):
        inputs, keras_kwargs = self.standardize_inputs(inputs, **kwargs)
        return super().__call__(inputs, *args, **keras_kwargs)

    def call(self, inputs, training=None, mask=None, **kwargs):
        # Keras' JAX and stateless paths call `call` directly, not `__call__`.
        inputs, _ = self.standardize_inputs(inputs, **kwargs)
        return super().call(inputs, training=training, mask=mask)

    # === Training ===
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, weighted_metrics=None, **kwargs):
        """`keras.Model.compile`; without a `loss`, `fit` uses the model's built-in loss.

        A single loss or a list of metrics applies to the `prediction_key` output (e.g.
        `logits`); a dict keyed by output names (`cls_logits`, `distillation_logits`, ...)
        applies per output.
        """
        self._per_output = any(isinstance(x, dict) for x in (loss, metrics, weighted_metrics))
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, weighted_metrics=weighted_metrics, **kwargs)

    def compile_from_config(self, config):
        # Keras skips compiling a reloaded model whose `compile` is overridden; ours only notes
        # per-output dicts, so reload compiles through it as Keras' own method does.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def train_step(self, *args):
        # Keras' TensorFlow train step registers a custom gradient in TensorFlow's global
        # registry, which would keep every traced graph and its variables alive after the model
        # is deleted (`custom_gradient.graphs_own_custom_gradients`, benchmarks/model_churn.py).
        with graphs_own_custom_gradients():
            return super().train_step(*args)

    def _predictions(self, y_pred):
        return y_pred if getattr(self, "_per_output", False) else y_pred[self.prediction_key]

    def builtin_loss(self, x, y, y_pred, sample_weight):
        """The loss used when compiled without one. Subclasses define it."""
        raise ValueError(f"{type(self).__name__} has no built-in loss; compile it with a loss.")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self.loss is None:
            loss = self.builtin_loss(x, y, y_pred, sample_weight)
            if self.losses:
                loss = loss + ops.sum(self.losses)
            return loss
        return super().compute_loss(x, y, self._predictions(y_pred), sample_weight, training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, self._predictions(y_pred), sample_weight)

    def checks_labels(self):
        """Whether `check_labels` checks anything: only the built-in loss of classifiers does."""
        return False

    def check_labels(self, labels):
        """Raises `ValueError` for in-memory labels the built-in loss refuses. This class checks none."""

    # === fit, evaluate, predict: the data is checked before Keras' steps (`data_checks`) ===
    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`, after checking `x`, `y` and `validation_data` (`data_checks`).

        Raises:
            ValueError, TypeError: the errors of a call on the inputs (e.g. an image size the
                model cannot take), in the first call and in later ones, with or without XLA;
                `ValueError` for class ids outside [0, num_labels) with the built-in loss.
        """
        x, y = checked_data(self, x, y)
        validation_data = kwargs.get("validation_data")
        if isinstance(validation_data, (list, tuple)):
            checked_data(self, *validation_data[:2])
        elif validation_data is not None:
            kwargs["validation_data"], _ = checked_data(self, validation_data)
        with named_check_errors():
            return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.evaluate`, after checking `x` and `y` as `fit` does."""
        x, y = checked_data(self, x, y)
        with named_check_errors():
            return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        """`keras.Model.predict`: inputs as for calling the model; returns the output dict of NumPy arrays.

        Raises:
            ValueError, TypeError: as `fit`; in-memory inputs without a batch axis or with
                different batch lengths, naming each input's length.
        """
        x, _ = checked_data(self, x, labelled=False)
        with named_check_errors():
            return super().predict(x, *args, **kwargs)

    # === Hugging Face checkpoints ===
    @classmethod
    def from_pretrained(cls, path_or_repo_id, include_preprocessing=False, **kwargs):
        """Builds the model from a Hugging Face checkpoint directory or Hub repo id.

        Reads `config.json` and `model.safetensors` (sharded too), `tf_model.h5` or
        `pytorch_model.bin` (torch `weights_only=True` only); see `keras_vit.checkpoints`.

        Args:
            path_or_repo_id: local directory, or "org/name" resolved with huggingface_hub.
            include_preprocessing: bool. True returns `keras.Model(images, model(layer(images)))`
                with the checkpoint's `preprocessor_config.json` as an `ImagePreprocessing`
                layer: it takes uint8 or float 0-255 images (batch, height, width, channels) of
                any size, e.g. batches of `keras.utils.image_dataset_from_directory`.
            **kwargs: `ignore_mismatched_sizes`, `revision`, `cache_dir`,
                `local_files_only`; config fields to override (`num_labels`, `id2label`,
                `drop_path_rate`, ...); and construction arguments (`data_format`,
                `output_attentions`, `interpolate_pos_encoding`, ...).

        Raises:
            TypeError: a keyword that is none of those, named, before any file is read.
            FileNotFoundError: no such directory or cached repo (offline), no weights, or
                (with `include_preprocessing`) no preprocessor_config.json.
            ValueError: missing, unexpected or mis-shaped tensors, listed.
        """
        return serialization.from_pretrained(cls, path_or_repo_id, include_preprocessing, **kwargs)

    def save_pretrained(self, directory, format="hf"):
        """Writes the weights for another library to load (`checkpoints.save_pretrained`).

        `format="hf"`: `config.json` + `model.safetensors` that transformers' same-named class
        loads; `"timm"`: timm's state dict and config; `"npz"`: Google's ViT `.npz` naming.
        """
        return checkpoints.save_pretrained(self, directory, format=format)

    # === Serialization ===
    def save(self, filepath, overwrite=True, **kwargs):
        """`keras.Model.save`, atomic for local `.keras` files (`atomic.save_keras_atomically`).

        Keras opens the target with "wb": a crash mid-save would leave a truncated file. Here the
        file is written aside and renamed in, so a reader or a crash sees the old or the new one.
        """
        return save_keras_atomically(super().save, filepath, overwrite=overwrite, **kwargs)

    def get_config(self):
        return serialization.model_config(self)

    @classmethod
    def from_config(cls, config):
        return serialization.model_from_config(cls, config)
