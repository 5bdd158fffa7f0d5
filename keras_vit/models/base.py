"""The base class of every ViT/DeiT model: construction checks, inputs, losses, checkpoints, serialization.

Every model is a functional `keras.Model` (the keras-hub pattern): a backbone
(`ViTModel`, `DeiTModel`) lays out the encoder graph; a task model holds its backbone as a
sub-model (`model.backbone`, layer name `vit` / `deit`) and adds a head. This class adds
what users of Hugging Face models expect on top of Keras: inputs given as a tensor, a list
or a dict; call-time Hugging Face keywords that work or say how to get them; dict outputs
with Hugging Face names that `compile` can key losses and metrics by; a built-in loss when
compiled without one; `from_pretrained` / `save_pretrained`; `get_config` / `from_config`.
"""

import inspect

import keras
import numpy as np
from keras import ops

from keras_vit import checkpoints
from keras_vit.config import ViTConfig
from keras_vit.data_format import DATA_FORMATS
from keras_vit.layers.custom_gradient import graphs_own_custom_gradients, traces_tensorflow_graph
from keras_vit.layers.preprocessing import ImagePreprocessing
from keras_vit.models.op_tracebacks import library_frames_left_out

_DTYPES = {
    "pixel_values": (("float", "bfloat"), "float (normalised images; use the image processor on uint8 pixels)"),
    "bool_masked_pos": (("bool", "int", "uint"), "bool or int (1 = masked patch)"),
    "head_mask": (("float", "bfloat", "int"), "float or int (1 = keep the head)"),
}
# Call-time Hugging Face flags that are construction arguments here: they shape the graph.
_GRAPH_FLAGS = ("output_attentions", "output_hidden_states", "interpolate_pos_encoding")
# Keywords Keras itself passes to `__call__` / `call`.
_KERAS_CALL_ARGS = ("training", "mask")


def _dtype_name(tensor):
    try:
        return keras.backend.standardize_dtype(tensor.dtype)
    except ValueError:  # e.g. strings, which Keras has no name for
        return str(tensor.dtype)


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


def _positive_int_or_none(value):
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0)


def _in_memory_inputs(x, input_names):
    """(x, batch length) for x a NumPy array, a tensor or a dict of them (a list keyed by `input_names`), else None.

    Raises:
        ValueError: arrays without a batch axis or with different batch lengths, named
            (Keras' array adapter would fail on them with an IndexError or AttributeError).
    """
    if isinstance(x, (list, tuple)) and len(x) == len(input_names):
        x = dict(zip(input_names, x))
    named = x if isinstance(x, dict) and x else {input_names[0]: x}
    if not all(isinstance(v, np.ndarray) or ops.is_tensor(v) for v in named.values()):
        return None
    lengths = {name: int(v.shape[0]) if len(v.shape) else None for name, v in named.items()}
    if None in lengths.values() or len(set(lengths.values())) != 1:
        raise ValueError(
            "Expected inputs with a batch axis of one length, e.g. pixel_values of shape (batch, height, width, "
            f"channels). Received batch lengths {lengths} (None: a scalar without a batch axis)"
        )
    return x, next(iter(lengths.values()))


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

    # === Inputs ===
    @property
    def input_names(self):
        return [tensor.name for tensor in self.inputs]

    def _embeddings(self):
        """The `PatchEmbedding` layer (inside `self.backbone` for task models)."""
        return getattr(self, "backbone", self).get_layer("embeddings")

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
        names = self.input_names
        if isinstance(inputs, dict):
            unknown = sorted(set(inputs) - set(names))
            if unknown:
                raise ValueError(f"Expected input names among {names}. Received unknown keys: {unknown}")
            given = dict(inputs)
        elif isinstance(inputs, (list, tuple)):
            if not 1 <= len(inputs) <= len(names):
                raise ValueError(f"Expected a list of 1 to {len(names)} inputs in the order {names}. Received {len(inputs)}.")
            given = dict(zip(names, inputs))
        else:
            given = {"pixel_values": inputs}
        keras_kwargs = {k: call_kwargs.pop(k) for k in _KERAS_CALL_ARGS if k in call_kwargs}
        self._take_call_keywords(given, call_kwargs)
        if given.get("pixel_values") is None:
            raise ValueError("Expected pixel_values in the inputs. Received None.")
        for name, value in given.items():
            kinds, expected = _DTYPES[name]
            if value is not None and not _dtype_name(value).startswith(kinds):
                raise ValueError(f"Expected {name} of dtype {expected}. Received: dtype={_dtype_name(value)}")
        self._check_shapes(given)
        if given.get("head_mask") is not None:
            given["head_mask"] = self._batched_head_mask(given["head_mask"], given["pixel_values"])
        values = [given.get(name) for name in names]
        present = [v for v in values if v is not None]
        if not any(keras.backend.is_keras_tensor(v) for v in present):
            # Keras refuses a call that mixes arrays and tensors.
            values = [None if v is None else ops.convert_to_tensor(v) for v in values]
        return (values[0] if len(values) == 1 else values), keras_kwargs

    def _take_call_keywords(self, given, call_kwargs):
        """Moves `head_mask=` / `bool_masked_pos=` into `given`; accepts graph flags equal to the built ones."""
        cls = type(self).__name__
        for name, flag in (("head_mask", "use_head_mask"), ("bool_masked_pos", "use_mask_token")):
            if name not in call_kwargs:
                continue
            value = call_kwargs.pop(name)
            if value is None:
                continue
            if name not in self.input_names:
                raise TypeError(f"{cls} was built without a {name} input; build it with {flag}=True to pass {name}.")
            if given.get(name) is not None:
                raise TypeError(f"{name} was given twice: in the inputs and as a keyword argument.")
            given[name] = value
        for flag in _GRAPH_FLAGS:
            if flag in call_kwargs:
                value = call_kwargs.pop(flag)
                if value is not None and value != getattr(self, flag):
                    raise TypeError(
                        f"{flag}={value!r} at call time: {flag} shapes the graph here, so it is a construction "
                        f"argument. Build the model with {cls}(config, {flag}={value!r}) (weights transfer with "
                        f"set_weights, or from_pretrained(..., {flag}={value!r}))."
                    )
        if call_kwargs:
            raise TypeError(
                f"{cls} got unexpected call keyword argument(s) {sorted(call_kwargs)}. Expected inputs "
                f"{self.input_names} (as a tensor, list or dict), training, or the Hugging Face flags {list(_GRAPH_FLAGS)}."
            )

    def _check_shapes(self, given):
        pixel_values = given["pixel_values"]
        shape = tuple(pixel_values.shape)
        channels_last = self.data_format == "channels_last"
        layout = "(batch, height, width, channels)" if channels_last else "(batch, channels, height, width)"
        if len(shape) != 4:
            raise ValueError(f"Expected pixel_values of rank 4, {layout}. Received: shape={shape}")
        if shape[0] == 0:
            raise ValueError(f"Expected a batch of at least one image. Received: pixel_values of shape={shape}")
        channels = shape[3] if channels_last else shape[1]
        if channels is not None and channels != self.config.num_channels:
            raise ValueError(
                f"Expected pixel_values with {self.config.num_channels} channels, {layout} "
                f"(data_format={self.data_format!r}). Received: shape={shape}"
            )
        height, width = shape[1:3] if channels_last else shape[2:4]
        self._embeddings().check_image_size(height, width, self.interpolate_pos_encoding)
        mask = given.get("bool_masked_pos")
        if mask is not None:
            mask_shape = tuple(mask.shape)
            if len(mask_shape) != 2:
                raise ValueError(f"Expected bool_masked_pos of shape (batch, num_patches). Received: shape={mask_shape}")
            if None not in (mask_shape[0], shape[0]) and mask_shape[0] != shape[0]:
                raise ValueError(
                    "Expected bool_masked_pos with the batch size of pixel_values. Received: "
                    f"bool_masked_pos shape={mask_shape}, pixel_values shape={shape}"
                )
            if None not in (height, width, mask_shape[1]):
                patch_h, patch_w = self.config.patch_hw
                num_patches = (height // patch_h) * (width // patch_w)
                if mask_shape[1] != num_patches:
                    raise ValueError(
                        f"Expected bool_masked_pos of shape (batch, {num_patches}), one entry per patch. "
                        f"Received: shape={mask_shape}"
                    )

    def _batched_head_mask(self, head_mask, pixel_values):
        """(heads,), (layers, heads) or (batch, layers, heads) -> float32 (batch, layers, heads)."""
        layers, heads = self.config.num_hidden_layers, self.config.num_attention_heads
        shape = tuple(head_mask.shape)
        if shape not in ((heads,), (layers, heads)) and not (len(shape) == 3 and shape[1:] == (layers, heads)):
            raise ValueError(
                f"Expected head_mask of shape ({heads},), ({layers}, {heads}) or (batch, {layers}, {heads}) "
                f"(num_hidden_layers, num_attention_heads). Received: shape={shape}"
            )
        if len(shape) == 3:
            return head_mask
        batch = ops.shape(pixel_values)[0]
        return ops.broadcast_to(ops.cast(head_mask, "float32"), (batch, layers, heads))

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

        XLA on TensorFlow: Keras' `jit_compile="auto"` (the default) leaves XLA out on
        machines without a GPU. Here, with "auto", the training and evaluation steps of the
        built-in loss and every `predict` step are XLA-compiled there too (`_step`), and the
        built-in loss's label checks (`label_checks`) run before the compiled step, since XLA
        drops TensorFlow's assertions. On 2 CPU cores a DeiT-S/16 training step then peaks at
        1.88 GiB instead of 2.32 GiB at 224 px batch 16 and 2.30 GiB instead of 3.40 GiB at 384
        px batch 8 (its gradients recompute attention probabilities, x̂, Φ(x), GELU(x) and q,
        k, v, `layers.recomputation`), for 2.96 s instead of 2.58 s and 5.33 s instead of
        4.57 s per step: `jit_compile=False` trains faster where memory allows. XLA makes
        `predict_on_batch` of ViT-B/16 at batch 8 take 1.69 s instead of 2.03 s
        (`benchmarks/README.md`); outputs differ by ~1e-6. `model.jit_compile` still reports
        Keras' value (False). A `loss` given here, `jit_compile=True/False`, `run_eagerly`,
        tf.distribute, op determinism or a layer without `supports_jit` leave Keras' choice in
        place (with `loss` for training and evaluation: Keras' own losses check nothing under
        XLA), and so does a compiled model reloaded from `.keras`, whose config records Keras'
        resolved value.
        TensorFlow keeps each XLA-compiled step in its compilation cache for the life of the
        process (about 150 MiB per trained DeiT-S/16 at 64 px, `benchmarks/model_churn.py`):
        a loop that builds many models saves that with `jit_compile=False`.
        """
        self._per_output = any(isinstance(x, dict) for x in (loss, metrics, weighted_metrics))
        self._requested_jit_compile = kwargs.get("jit_compile", "auto")
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, weighted_metrics=weighted_metrics, **kwargs)

    def compile_from_config(self, config):
        # Keras skips compiling a reloaded model whose `compile` is overridden; ours only notes
        # per-output dicts, so reload compiles through it as Keras' own method does.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def make_train_function(self, force=False):
        # Keras on TensorFlow without tf.distribute builds the optimizer while it traces the
        # first training step; built before, the XLA step of a DeiT-S/16 at 224 px batch 16
        # peaked 0.13 GiB lower (oneDNN's allocator on; 0.07 GiB without it). The other
        # backends and tf.distribute build it before this call, as Keras' own code does.
        if self.optimizer is not None and not self.optimizer.built and getattr(self, "_distribute_strategy", None) is None:
            self.optimizer.build(self.trainable_variables)
        return super().make_train_function(force)

    # === Steps ===
    def train_step(self, *args):
        logs = self._step(super().train_step, *args)
        if keras.backend.backend() == "torch":
            # Keras' PyTorch step frees the previous step's gradients only after its own
            # forward pass, which so runs next to them (88 MB for DeiT-S/16) and leaves glibc's
            # heap more fragmented: a DeiT-S/16 step at 384 px batch 8 peaked at 2.51-2.61 GiB
            # against 2.18-2.25 GiB freeing them here, after the update, as a PyTorch loop's
            # `optimizer.zero_grad()` before the forward pass does (benchmarks/README.md).
            self.zero_grad(set_to_none=True)
        return logs

    def test_step(self, *args):
        return self._step(super().test_step, *args)

    def predict_step(self, *args):
        return self._step(super().predict_step, *args, labelled=False)

    def _step(self, step, *args, labelled=True):
        """Keras' `step(*args)`, XLA-compiled where `_steps_use_xla` (see `compile`).

        Keras calls steps inside its own `tf.function`; the compiled step is a nested
        `tf.function(jit_compile=True)`, as Keras builds it for `jit_compile=True`, so the
        label checks can run in the outer graph before it. The ops of every traced step leave
        TensorFlow's and Keras' frames out of their tracebacks, which XLA would keep as
        strings (`op_tracebacks`).
        """
        with graphs_own_custom_gradients(), library_frames_left_out():
            if not self._steps_use_xla(labelled):
                return step(*args)
            import tensorflow as tf

            (data,) = args
            checks = self.label_checks(keras.utils.unpack_x_y_sample_weight(data)[1]) if labelled else []
            with tf.control_dependencies(checks):
                return tf.function(step, jit_compile=True)(data)

    def _steps_use_xla(self, labelled):
        if not traces_tensorflow_graph() or getattr(self, "_requested_jit_compile", "auto") != "auto":
            return False
        # TensorFlow has no public getter for this; Keras reads it from the same place.
        from tensorflow.python.framework.config import is_op_determinism_enabled

        return (
            not (labelled and self.loss is not None)
            and not self.jit_compile  # Keras compiles the step with XLA itself (GPUs)
            # Keras' own "auto" rules out XLA under tf.distribute and with op determinism.
            and getattr(self, "_distribute_strategy", None) is None
            and not is_op_determinism_enabled()
            and all(layer.supports_jit for layer in self._flatten_layers())
        )

    def label_checks(self, labels):
        """The built-in loss's runtime checks of `labels` (a list of tensors), for graphs.

        Run before a step that XLA compiles (`compile`): XLA drops TensorFlow's assertions.
        This class checks nothing; classifiers check class ids (`losses.class_id_checks`).
        """
        return []

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

    # === Inference ===
    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """`keras.Model.predict`; on TensorFlow, in-memory inputs skip Keras' array adapter.

        Inputs as for calling the model (`pixel_values` (batch, height, width, channels) float,
        normalised; `bool_masked_pos`, `head_mask` where the graph has them); returns the output
        dict with NumPy arrays, batches concatenated. Keras' array adapter builds and traces a
        slicing pipeline on every call, about 60 ms of 115 ms for DeiT-Ti/16 at batch 1 on 2
        CPU cores (`benchmarks/README.md`). NumPy arrays and tensors of one batch length, alone,
        in a dict, or in a list in `input_names` order, are batched here with
        `tf.data.Dataset.from_tensor_slices(x).batch(batch_size or 32)` (autotuning off), the
        way keras-hub's `predict` does: same batches in the same order, so the same outputs.
        Datasets, generators and anything else go to Keras as given, errors included, and so do
        in-memory inputs on other backends once their batch lengths are checked. In-memory
        inputs that fit one batch, without `steps` or a tf.distribute strategy, skip `tf.data`
        too: they run as `predict_on_batch` does, with `predict`'s callbacks and progress bar
        (`_predict_one_batch`): DeiT-Ti/16 at batch 1 then takes as long as `predict_on_batch`,
        26.5 against 26.6 ms, where it took 32.8 against 24.7 ms (`benchmarks/README.md`).
        The two ways trace the predict function separately: the first call of the other kind
        traces it once more (about 2 s for DeiT-Ti/16). XLA compiles each new batch length in
        both, as before.

        Raises:
            ValueError: on every backend, in-memory inputs without a batch axis or with
                different batch lengths, naming each input's length.
        """
        if _positive_int_or_none(batch_size):
            in_memory = _in_memory_inputs(x, self.input_names)
            if in_memory is not None and keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                arrays, length = in_memory
                strategy = self.distribute_strategy
                distributed = tf.distribute.has_strategy() or strategy is not tf.distribute.get_strategy()
                if steps is None and 0 < length <= (batch_size or 32) and not distributed:
                    return self._predict_one_batch(arrays, verbose, callbacks)
                # Nothing here to tune; tf.data's autotuning thread slowed 4 of 18 ViT-B/16
                # batch-8 calls on 2 cores from 1.7 s to 2.55 s, and none of 27 without it.
                options = tf.data.Options()
                options.autotune.enabled = False
                x = tf.data.Dataset.from_tensor_slices(arrays).batch(batch_size or 32).with_options(options)
                batch_size = None
        return super().predict(x, batch_size=batch_size, verbose=verbose, steps=steps, callbacks=callbacks)

    def _predict_one_batch(self, x, verbose, callbacks):
        """Keras' TensorFlow `predict` loop for one in-memory batch, without an epoch iterator.

        The same calls as Keras' loop (`keras/src/backend/tensorflow/trainer.py`) makes for a
        single batch: callbacks (a progress bar unless `verbose=0`) around one
        `predict_function` call on `[(x,)]`, the data `predict_on_batch` gives it.
        """
        if not isinstance(callbacks, keras.callbacks.CallbackList):
            callbacks = keras.callbacks.CallbackList(
                callbacks, add_progbar=verbose != 0, verbose=verbose, epochs=1, steps=1, model=self
            )
        self.make_predict_function()
        self.stop_predicting = False
        callbacks.on_predict_begin()
        callbacks.on_predict_batch_begin(0)
        outputs = self.predict_function([(x,)])
        callbacks.on_predict_batch_end(0, {"outputs": outputs})
        callbacks.on_predict_end()
        return keras.tree.map_structure(ops.convert_to_numpy, outputs)

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
        model = checkpoints.from_pretrained(cls, path_or_repo_id, **kwargs)
        if not include_preprocessing:
            return model
        hub_kwargs = {k: kwargs[k] for k in ("revision", "cache_dir", "local_files_only") if k in kwargs}
        layer = ImagePreprocessing.from_pretrained(path_or_repo_id, data_format=model.data_format, **hub_kwargs)
        images = keras.Input((None, None, model.config.num_channels), name="images")
        return keras.Model(images, model(layer(images)), name=f"{model.name}_with_preprocessing")

    def save_pretrained(self, directory):
        """Writes `config.json` + `model.safetensors` that transformers' same-named class loads."""
        return checkpoints.save_pretrained(self, directory)

    # === Serialization ===
    def get_config(self):
        config = {"config": self.config.to_dict()}
        for name in self.construction_arguments():
            if name == "dtype":
                config[name] = keras.dtype_policies.serialize(self.layer_dtype_policies())
            else:
                config[name] = getattr(self, name)
        return config

    def layer_dtype_policies(self):
        """The model's dtype policy, as a `DTypePolicyMap` by layer path once layers are quantized.

        After `quantize("int8")` the quantized Dense layers (also those inside our layers) have
        their own policies; the map records them so that `from_config` rebuilds those layers
        with quantized weights (the keras-hub backbone pattern).
        """
        if isinstance(self.dtype_policy, keras.dtype_policies.DTypePolicyMap):
            return self.dtype_policy
        quantized = {
            layer.path: layer.dtype_policy for layer in self._flatten_layers() if layer.quantization_mode is not None
        }
        if not quantized:
            return self.dtype_policy
        return keras.dtype_policies.DTypePolicyMap(default_policy=self.dtype_policy, policy_map=quantized)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        policy_map = config.get("dtype")
        if not isinstance(policy_map, keras.dtype_policies.DTypePolicyMap):
            return cls(**config)
        # Build in the default policy, then quantize the recorded layers (Keras' own
        # `quantize`, so every layer keeps one concrete policy); loading sets their weights.
        model = cls(**{**config, "dtype": policy_map.default_policy})
        modes = {path: policy.quantization_mode for path, policy in policy_map.items()}
        for mode in sorted({m for m in modes.values() if m is not None}):
            model.quantize(mode, filters=lambda layer, mode=mode: modes.get(layer.path) == mode)
        return model
