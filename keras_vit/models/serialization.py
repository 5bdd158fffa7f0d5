"""Saving and rebuilding models: `get_config` / `from_config` for `.keras` files, and the Hugging Face checkpoints.

A model's config is its `ViTConfig` / `DeiTConfig` dict plus its construction arguments;
its dtype policy becomes a `DTypePolicyMap` by layer path once layers are quantized, and
`layers_trainable` records the sublayers frozen (or unfrozen) after construction, e.g.
`model.backbone.trainable = False`, so that a reloaded model trains the same weights and
its optimizer state reloads.
"""

import keras

from keras_vit import checkpoints
from keras_vit.layers.preprocessing import ImagePreprocessing


def model_config(model):
    """`model.get_config()`: the config dict, every construction argument and `layers_trainable`."""
    config = {"config": model.config.to_dict()}
    for name in model.construction_arguments():
        if name == "dtype":
            config[name] = keras.dtype_policies.serialize(layer_dtype_policies(model))
        else:
            config[name] = getattr(model, name)
    config["layers_trainable"] = {
        key: layer.trainable for key, parent, layer in _sublayers(model) if layer.trainable != parent.trainable
    }
    return config


def _sublayers(layer, prefix=""):
    """(key, parent, sublayer) for every sublayer of `layer`, parents first; keys join the names with "/"."""
    for sublayer in layer._flatten_layers(include_self=False, recursive=False):
        key = prefix + sublayer.name
        yield key, layer, sublayer
        yield from _sublayers(sublayer, key + "/")


def restore_trainable(model, layers_trainable):
    """Sets each sublayer's `trainable` to `layers_trainable[key]`, else to its parent's (`model_config`).

    Only layers whose state differs are set: Keras' setter also sets every variable of the
    layer, which would undo the frozen kernels of LoRA projections.
    """
    for key, parent, layer in _sublayers(model):
        trainable = layers_trainable.get(key, parent.trainable)
        if layer.trainable != trainable:
            layer.trainable = trainable


def layer_dtype_policies(model):
    """The model's dtype policy, as a `DTypePolicyMap` by layer path once layers are quantized.

    After `quantize("int8")` the quantized Dense layers (also those inside our layers) have
    their own policies; the map records them so that `from_config` rebuilds those layers
    with quantized weights (the keras-hub backbone pattern).
    """
    if isinstance(model.dtype_policy, keras.dtype_policies.DTypePolicyMap):
        return model.dtype_policy
    quantized = {
        layer.path: layer.dtype_policy for layer in model._flatten_layers() if layer.quantization_mode is not None
    }
    if not quantized:
        return model.dtype_policy
    return keras.dtype_policies.DTypePolicyMap(default_policy=model.dtype_policy, policy_map=quantized)


def model_from_config(cls, config):
    """`cls.from_config(config)`: builds the model, quantizes the layers the dtype policy map
    records and restores `layers_trainable`."""
    config = dict(config)
    layers_trainable = config.pop("layers_trainable", None)  # None: a file saved before it was recorded
    if isinstance(config.get("dtype"), dict):
        config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
    policy_map = config.get("dtype")
    if not isinstance(policy_map, keras.dtype_policies.DTypePolicyMap):
        model = cls(**config)
    else:
        # Build in the default policy, then quantize the recorded layers (Keras' own
        # `quantize`, so every layer keeps one concrete policy); loading sets their weights.
        model = cls(**{**config, "dtype": policy_map.default_policy})
        modes = {path: policy.quantization_mode for path, policy in policy_map.items()}
        for mode in sorted({m for m in modes.values() if m is not None}):
            model.quantize(mode, filters=lambda layer, mode=mode: modes.get(layer.path) == mode)
    if layers_trainable is not None:
        restore_trainable(model, layers_trainable)
    return model


def from_pretrained(cls, path_or_repo_id, include_preprocessing=False, **kwargs):
    """`cls.from_pretrained`: the model, optionally behind the checkpoint's `ImagePreprocessing` layer."""
    model = checkpoints.from_pretrained(cls, path_or_repo_id, **kwargs)
    if not include_preprocessing:
        return model
    hub_kwargs = {k: kwargs[k] for k in ("revision", "cache_dir", "local_files_only") if k in kwargs}
    layer = ImagePreprocessing.from_pretrained(path_or_repo_id, data_format=model.data_format, **hub_kwargs)
    images = keras.Input((None, None, model.config.num_channels), name="images")
    return keras.Model(images, model(layer(images)), name=f"{model.name}_with_preprocessing")
