"""The functional ViT/DeiT encoder graph and the base class of every model.

`VisionTransformer` is a `keras.Model` built with the functional API (the keras-hub
pattern): subclasses lay out their graph with `encoder_outputs` and pass inputs and
outputs to `keras.Model.__init__`. The base class adds what users of Hugging Face models
expect: inputs given as one tensor, a list or a dict; dict outputs with Hugging Face names;
`config`, `get_config` / `from_config`; and built-in losses when compiled without one.
"""

import keras
from keras import ops

from keras_vit.config import ViTConfig
from keras_vit.layers.heads import Pooler
from keras_vit.layers.patch_embedding import PatchEmbedding
from keras_vit.layers.transformer_block import TransformerBlock

INPUT_NAMES = ("pixel_values", "bool_masked_pos", "head_mask")
_DTYPES = (
    ("pixel_values", ("float", "bfloat"), "float (normalised images; use the image processor on uint8 pixels)"),
    ("bool_masked_pos", ("bool", "int", "uint"), "bool or int (1 = masked patch)"),
    ("head_mask", ("float", "bfloat", "int"), "float or int (1 = keep the head)"),
)
DATA_FORMATS = ("channels_last", "channels_first")


def _dtype_name(tensor):
    try:
        return keras.backend.standardize_dtype(tensor.dtype)
    except ValueError:  # e.g. strings, which Keras has no name for
        return str(tensor.dtype)


def model_inputs(config, interpolate_pos_encoding, data_format):
    """Returns the dict of `keras.Input`s: pixel_values, bool_masked_pos and head_mask.

    pixel_values is (batch, height, width, channels) or, for channels_first,
    (batch, channels, height, width); height and width are dynamic with
    `interpolate_pos_encoding`. The other two inputs are optional (None when absent).
    """
    height, width = (None, None) if interpolate_pos_encoding else config.image_hw
    if data_format == "channels_last":
        shape = (height, width, config.num_channels)
    else:
        shape = (config.num_channels, height, width)
    patches = None if interpolate_pos_encoding else config.num_patches
    return {
        "pixel_values": keras.Input(shape, name="pixel_values"),
        "bool_masked_pos": keras.Input((patches,), dtype="bool", name="bool_masked_pos", optional=True),
        "head_mask": keras.Input(
            batch_shape=(config.num_hidden_layers, config.num_attention_heads),
            name="head_mask",
            optional=True,
        ),
    }


def encoder_outputs(
    config,
    inputs,
    *,
    use_distillation_token,
    use_mask_token,
    add_pooling_layer,
    output_hidden_states,
    output_attentions,
    interpolate_pos_encoding,
    data_format,
    dtype,
):
    """Builds embeddings → transformer blocks → final LayerNorm (→ pooler) on `inputs`.

    Returns:
        (outputs, pixel_values): outputs is a dict with `last_hidden_state`
        (batch, seq, hidden), and as requested `pooler_output` (batch, pooler_output_size),
        `hidden_states` (tuple of num_hidden_layers + 1 tensors (batch, seq, hidden): the
        embeddings and each block's output) and `attentions` (tuple of num_hidden_layers
        tensors (batch, heads, seq, seq)); pixel_values is the image in channels_last.
    """
    pixel_values = inputs["pixel_values"]
    if data_format == "channels_first":
        pixel_values = keras.layers.Permute((2, 3, 1), dtype=dtype, name="to_channels_last")(pixel_values)
    hidden = PatchEmbedding(
        config.image_hw,
        config.patch_hw,
        config.hidden_size,
        use_distillation_token=use_distillation_token,
        use_mask_token=use_mask_token,
        dropout=config.hidden_dropout_prob,
        initializer_range=config.initializer_range,
        dtype=dtype,
        name="embeddings",
    )(pixel_values, bool_masked_pos=inputs["bool_masked_pos"], interpolate_pos_encoding=interpolate_pos_encoding)
    hidden_states, attentions = [hidden], []
    for i in range(config.num_hidden_layers):
        block = TransformerBlock(
            config.hidden_size,
            config.num_attention_heads,
            config.intermediate_size,
            hidden_act=config.hidden_act,
            qkv_bias=config.qkv_bias,
            dropout=config.hidden_dropout_prob,
            attention_dropout=config.attention_probs_dropout_prob,
            layer_norm_eps=config.layer_norm_eps,
            initializer_range=config.initializer_range,
            dtype=dtype,
            name=f"encoder_layer_{i}",
        )
        hidden = block(
            hidden, head_mask=inputs["head_mask"], layer_index=i, return_attention_scores=output_attentions
        )
        if output_attentions:
            hidden, probs = hidden
            attentions.append(probs)
        hidden_states.append(hidden)
    outputs = {
        "last_hidden_state": keras.layers.LayerNormalization(
            epsilon=config.layer_norm_eps, dtype=dtype, name="layernorm"
        )(hidden)
    }
    if add_pooling_layer:
        outputs["pooler_output"] = Pooler(
            config.pooler_output_size,
            activation=config.pooler_act,
            initializer_range=config.initializer_range,
            dtype=dtype,
            name="pooler",
        )(outputs["last_hidden_state"])
    if output_hidden_states:
        outputs["hidden_states"] = tuple(hidden_states)
    if output_attentions:
        outputs["attentions"] = tuple(attentions)
    return outputs, pixel_values


class VisionTransformer(keras.Model):
    """Base class of the ViT/DeiT models; not instantiated directly.

    Subclasses call `_build(config, head=..., **flags)` from their `__init__`.
    """

    config_class = ViTConfig
    # Keys of the outputs dict that the built-in loss and Keras metrics read.
    prediction_key = "logits"

    use_distillation_token = False

    def _build(
        self,
        config,
        *,
        head,
        add_pooling_layer=False,
        use_mask_token=False,
        output_hidden_states=False,
        output_attentions=False,
        interpolate_pos_encoding=False,
        data_format="channels_last",
        dtype=None,
        **kwargs,
    ):
        """Validates the flags, builds the graph and initialises the functional model.

        Args:
            head: callable (config, encoded, pixel_values, data_format, dtype) -> dict of
                output tensors, the task part of the graph.
        """
        if isinstance(config, dict):
            config = self.config_class.from_dict(config)
        if not isinstance(config, self.config_class):
            raise ValueError(
                f"Expected config to be a {self.config_class.__name__} or its dict. Received: {type(config).__name__}"
            )
        if data_format not in DATA_FORMATS:
            raise ValueError(f"Expected data_format to be one of {DATA_FORMATS}. Received: data_format={data_format!r}")
        for name, flag in (
            ("output_hidden_states", output_hidden_states),
            ("output_attentions", output_attentions),
            ("interpolate_pos_encoding", interpolate_pos_encoding),
        ):
            if not isinstance(flag, bool):
                raise ValueError(f"Expected {name} to be a bool. Received: {name}={flag!r}")
        inputs = model_inputs(config, interpolate_pos_encoding, data_format)
        encoded, pixel_values = encoder_outputs(
            config,
            inputs,
            use_distillation_token=self.use_distillation_token,
            use_mask_token=use_mask_token,
            add_pooling_layer=add_pooling_layer,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            interpolate_pos_encoding=interpolate_pos_encoding,
            data_format=data_format,
            dtype=dtype,
        )
        outputs = head(config, encoded, pixel_values, data_format, dtype)
        for name in ("hidden_states", "attentions"):
            if name in encoded:
                outputs[name] = encoded[name]
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)
        # Inputs are checked by `standardize_inputs` and the layers, with messages that name the
        # config fields; Keras' generic spec check would pre-empt them.
        self.input_spec = None
        self.config = config
        self.output_hidden_states = output_hidden_states
        self.output_attentions = output_attentions
        self.interpolate_pos_encoding = interpolate_pos_encoding
        self.data_format = data_format

    # === Inputs ===
    def standardize_inputs(self, inputs):
        """Turns a tensor, a list or a dict into the full inputs dict, checking shapes.

        Raises:
            ValueError: unknown dict keys, too many list entries, missing pixel_values, or a
                pixel_values / head_mask shape the model cannot take.
        """
        if isinstance(inputs, dict):
            unknown = sorted(set(inputs) - set(INPUT_NAMES))
            if unknown:
                raise ValueError(f"Expected input names among {INPUT_NAMES}. Received unknown keys: {unknown}")
        elif isinstance(inputs, (list, tuple)):
            if not 1 <= len(inputs) <= len(INPUT_NAMES):
                raise ValueError(
                    f"Expected a list of 1 to 3 inputs in the order {list(INPUT_NAMES)}. Received {len(inputs)}."
                )
            inputs = dict(zip(INPUT_NAMES, inputs))
        else:
            inputs = {"pixel_values": inputs}
        inputs = {name: inputs.get(name) for name in INPUT_NAMES}
        if inputs["pixel_values"] is None:
            raise ValueError("Expected pixel_values in the inputs. Received None.")
        for name, kinds, expected in _DTYPES:
            if inputs[name] is not None:
                dtype = _dtype_name(inputs[name])
                if not dtype.startswith(kinds):
                    raise ValueError(f"Expected {name} of dtype {expected}. Received: dtype={dtype}")
        self._check_pixel_values(inputs["pixel_values"])
        if inputs["head_mask"] is not None:
            inputs["head_mask"] = self._standardize_head_mask(inputs["head_mask"])
        given = [v for v in inputs.values() if v is not None]
        if not any(keras.backend.is_keras_tensor(v) for v in given):
            # Keras refuses a call that mixes arrays and tensors.
            inputs = {k: None if v is None else ops.convert_to_tensor(v) for k, v in inputs.items()}
        return inputs

    def _check_pixel_values(self, pixel_values):
        shape = tuple(pixel_values.shape)
        layout = "(batch, height, width, channels)"
        if self.data_format == "channels_first":
            layout = "(batch, channels, height, width)"
        if len(shape) != 4:
            raise ValueError(f"Expected pixel_values of rank 4, {layout}. Received: shape={shape}")
        channels = shape[3] if self.data_format == "channels_last" else shape[1]
        if channels is not None and channels != self.config.num_channels:
            raise ValueError(
                f"Expected pixel_values with {self.config.num_channels} channels, {layout} "
                f"(data_format={self.data_format!r}). Received: shape={shape}"
            )
        height, width = shape[1:3] if self.data_format == "channels_last" else shape[2:4]
        self.get_layer("embeddings").check_image_size(height, width, self.interpolate_pos_encoding)

    def _standardize_head_mask(self, head_mask):
        layers, heads = self.config.num_hidden_layers, self.config.num_attention_heads
        shape = tuple(head_mask.shape)
        if shape not in ((heads,), (layers, heads)):
            raise ValueError(
                f"Expected head_mask of shape ({heads},) or ({layers}, {heads}) (num_hidden_layers, "
                f"num_attention_heads). Received: shape={shape}"
            )
        return ops.broadcast_to(ops.cast(head_mask, "float32"), (layers, heads))

    def __call__(self, inputs, *args, **kwargs):
        return super().__call__(self.standardize_inputs(inputs), *args, **kwargs)

    def call(self, inputs, training=None, mask=None, **kwargs):
        # JAX's stateless training/prediction steps call `call` directly, not `__call__`.
        return super().call(self.standardize_inputs(inputs), training=training, mask=mask, **kwargs)

    def compute_output_spec(self, inputs, training=None, mask=None):
        # Keras compares every input's shape in the symbolic shortcut, so give absent optional
        # inputs their declared spec; output shapes do not depend on them.
        inputs = {k: self.input[k] if v is None else v for k, v in inputs.items()}
        return super().compute_output_spec(inputs, training=training, mask=mask)

    # === Training ===
    def builtin_loss(self, x, y, y_pred, sample_weight):
        """The loss used when compiled without one. Subclasses define it."""
        raise ValueError(f"{type(self).__name__} has no built-in loss; compile it with a loss.")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self.loss is None:
            loss = self.builtin_loss(self.standardize_inputs(x), y, y_pred, sample_weight)
            if self.losses:
                loss = loss + ops.sum(self.losses)
            return loss
        return super().compute_loss(x, y, y_pred[self.prediction_key], sample_weight, training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, y_pred[self.prediction_key], sample_weight)

    # === Hugging Face checkpoints ===
    @classmethod
    def from_pretrained(cls, path_or_repo_id, **kwargs):
        """Builds the model from a Hugging Face checkpoint directory or Hub repo id.

        Reads `config.json` and `model.safetensors` (sharded too), `tf_model.h5` or
        `pytorch_model.bin` (torch `weights_only=True` only); see `keras_vit.checkpoints`.

        Args:
            path_or_repo_id: local directory, or "org/name" resolved with huggingface_hub.
            **kwargs: `ignore_mismatched_sizes`, `revision`, `cache_dir`,
                `local_files_only`; config fields to override (`num_labels`, `id2label`,
                ...); and constructor arguments (`data_format`, `output_attentions`,
                `interpolate_pos_encoding`, ...).

        Raises:
            FileNotFoundError: no such directory or cached repo (offline), or no weights.
            ValueError: missing, unexpected or mis-shaped tensors, listed.
        """
        from keras_vit.checkpoints import from_pretrained

        return from_pretrained(cls, path_or_repo_id, **kwargs)

    def save_pretrained(self, directory):
        """Writes `config.json` + `model.safetensors` that transformers' same-named class loads."""
        from keras_vit.checkpoints import save_pretrained

        return save_pretrained(self, directory)

    # === Serialization ===
    def flag_config(self):
        """The constructor arguments besides `config` (subclasses add theirs)."""
        return {
            "output_hidden_states": self.output_hidden_states,
            "output_attentions": self.output_attentions,
            "interpolate_pos_encoding": self.interpolate_pos_encoding,
            "data_format": self.data_format,
        }

    def get_config(self):
        return {
            "config": self.config.to_dict(),
            **self.flag_config(),
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.layer_dtype_policies()),
        }

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
