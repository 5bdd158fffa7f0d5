"""The inputs a model takes: a tensor, a list or a dict, Hugging Face call keywords, and their checks.

`standardize_inputs` turns what a user passes to a model into the inputs of its functional
graph, or raises an error that names the value and what was expected.
"""

import keras
import numpy as np
from keras import ops

_DTYPES = {
    "pixel_values": (("float", "bfloat"), "float (normalised images; use the image processor on uint8 pixels)"),
    "bool_masked_pos": (("bool", "int", "uint"), "bool or int (1 = masked patch)"),
    "head_mask": (("float", "bfloat", "int"), "float or int (1 = keep the head)"),
}
# The construction flag that adds each optional input.
_INPUT_FLAGS = {"head_mask": "use_head_mask", "bool_masked_pos": "use_mask_token"}
# Call-time Hugging Face flags that are construction arguments here: they shape the graph.
GRAPH_FLAGS = ("output_attentions", "output_hidden_states", "interpolate_pos_encoding")
# Keywords Keras itself passes to `__call__` / `call`.
KERAS_CALL_ARGS = ("training", "mask")


def dtype_name(tensor):
    """Keras' name of `tensor`'s dtype ("float32"), or NumPy's where Keras has none (strings)."""
    try:
        return keras.backend.standardize_dtype(tensor.dtype)
    except ValueError:  # e.g. strings, which Keras has no name for
        return str(tensor.dtype)


def standardize_inputs(model, inputs, call_kwargs):
    """`model.standardize_inputs`: the tensor, list or dict `inputs` and keywords, as the graph's inputs.

    Returns:
        (inputs, keras_kwargs): `pixel_values` alone for a one-input model, else the list of
        inputs in the order of `model.input_names` (None for an absent optional input); and the
        keywords left for Keras (`training`, `mask`).
    """
    given = named_inputs(model, inputs)
    keras_kwargs = {k: call_kwargs.pop(k) for k in KERAS_CALL_ARGS if k in call_kwargs}
    _take_call_keywords(model, given, call_kwargs)
    check_inputs(model, given)
    if given.get("head_mask") is not None:
        given["head_mask"] = _batched_head_mask(model, given["head_mask"], given["pixel_values"])
    values = [given.get(name) for name in model.input_names]
    present = [v for v in values if v is not None]
    if not any(keras.backend.is_keras_tensor(v) for v in present):
        # Keras refuses a call that mixes arrays and tensors.
        values = [None if v is None else ops.convert_to_tensor(v) for v in values]
    return (values[0] if len(values) == 1 else values), keras_kwargs


def named_inputs(model, inputs):
    """A tensor, list or dict of inputs as a dict by input name.

    Raises:
        ValueError: unknown dict keys or too many list entries, naming the construction flag
            that adds an optional input the model was built without.
    """
    names = model.input_names
    if isinstance(inputs, dict):
        unknown = sorted(set(inputs) - set(names))
        if unknown:
            raise ValueError(
                f"Expected input names among {names}. Received unknown keys: {unknown}.{_flag_hint(model, unknown)}"
            )
        return dict(inputs)
    if isinstance(inputs, (list, tuple)):
        if not 1 <= len(inputs) <= len(names):
            raise ValueError(
                f"Expected a list of 1 to {len(names)} inputs in the order {names}. Received {len(inputs)}."
                + (_flag_hint(model, _INPUT_FLAGS) if len(inputs) > len(names) else "")
            )
        return dict(zip(names, inputs))
    return {"pixel_values": inputs}


def _flag_hint(model, names):
    """How to build `model` with those of the optional inputs `names` that it lacks ("" if none)."""
    hints = [f"{_INPUT_FLAGS[n]}=True to pass {n}" for n in names if n in _INPUT_FLAGS and n not in model.input_names]
    return f" Build the model with {' and '.join(hints)}." if hints else ""


def _take_call_keywords(model, given, call_kwargs):
    """Moves `head_mask=` / `bool_masked_pos=` into `given`; accepts graph flags equal to the built ones."""
    cls = type(model).__name__
    for name, flag in _INPUT_FLAGS.items():
        value = call_kwargs.pop(name, None)
        if value is None:
            continue
        if name not in model.input_names:
            raise TypeError(f"{cls} was built without a {name} input; build it with {flag}=True to pass {name}.")
        if given.get(name) is not None:
            raise TypeError(f"{name} was given twice: in the inputs and as a keyword argument.")
        given[name] = value
    for flag in GRAPH_FLAGS:
        if flag in call_kwargs:
            value = call_kwargs.pop(flag)
            if value is not None and value != getattr(model, flag):
                raise TypeError(
                    f"{flag}={value!r} at call time: {flag} shapes the graph here, so it is a construction "
                    f"argument. Build the model with {cls}(config, {flag}={value!r}) (weights transfer with "
                    f"set_weights, or from_pretrained(..., {flag}={value!r}))."
                )
    if call_kwargs:
        raise TypeError(
            f"{cls} got unexpected call keyword argument(s) {sorted(call_kwargs)}. Expected inputs "
            f"{model.input_names} (as a tensor, list or dict), training, or the Hugging Face flags {list(GRAPH_FLAGS)}."
        )


def check_inputs(model, given):
    """Checks the dtypes and static shapes of `given` (a dict by input name: arrays, tensors or specs).

    Raises:
        ValueError: missing pixel_values; a dtype, rank, channel count, image size, batch size
            or mask shape the model cannot take.
    """
    if given.get("pixel_values") is None:
        raise ValueError("Expected pixel_values in the inputs. Received None.")
    for name, value in given.items():
        kinds, expected = _DTYPES[name]
        if value is not None and not dtype_name(value).startswith(kinds):
            raise ValueError(f"Expected {name} of dtype {expected}. Received: dtype={dtype_name(value)}")
    _check_shapes(model, given)


def _check_shapes(model, given):
    shape = tuple(given["pixel_values"].shape)
    check_image_shape(model, shape)
    height, width = shape[1:3] if model.data_format == "channels_last" else shape[2:4]
    mask = given.get("bool_masked_pos")
    if mask is None:
        return
    mask_shape = tuple(mask.shape)
    if len(mask_shape) != 2:
        raise ValueError(f"Expected bool_masked_pos of shape (batch, num_patches). Received: shape={mask_shape}")
    if None not in (mask_shape[0], shape[0]) and mask_shape[0] != shape[0]:
        raise ValueError(
            "Expected bool_masked_pos with the batch size of pixel_values. Received: "
            f"bool_masked_pos shape={mask_shape}, pixel_values shape={shape}"
        )
    if None not in (height, width, mask_shape[1]):
        patch_h, patch_w = model.config.patch_hw
        num_patches = (height // patch_h) * (width // patch_w)
        if mask_shape[1] != num_patches:
            raise ValueError(
                f"Expected bool_masked_pos of shape (batch, {num_patches}), one entry per patch. "
                f"Received: shape={mask_shape}"
            )


def check_image_shape(model, shape):
    """Checks the shape (a tuple, None where unknown) of a batch of `pixel_values`.

    Raises:
        ValueError: a rank, channel count, image size or empty batch the model cannot take.
    """
    channels_last = model.data_format == "channels_last"
    layout = "(batch, height, width, channels)" if channels_last else "(batch, channels, height, width)"
    if len(shape) != 4:
        raise ValueError(f"Expected pixel_values of rank 4, {layout}. Received: shape={shape}")
    if shape[0] == 0:
        raise ValueError(f"Expected a batch of at least one image. Received: pixel_values of shape={shape}")
    channels = shape[3] if channels_last else shape[1]
    if channels is not None and channels != model.config.num_channels:
        raise ValueError(
            f"Expected pixel_values with {model.config.num_channels} channels, {layout} "
            f"(data_format={model.data_format!r}). Received: shape={shape}"
        )
    height, width = shape[1:3] if channels_last else shape[2:4]
    getattr(model, "backbone", model).get_layer("embeddings").check_image_size(
        height, width, model.interpolate_pos_encoding
    )


def _batched_head_mask(model, head_mask, pixel_values):
    """(heads,), (layers, heads) or (batch, layers, heads) -> float32 (batch, layers, heads)."""
    layers, heads = model.config.num_hidden_layers, model.config.num_attention_heads
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


def in_memory_batch_length(model, x):
    """The batch length of `x` when it is NumPy arrays or tensors (alone, in a list or a dict), else None.

    Raises:
        ValueError: arrays without a batch axis or with different batch lengths, naming each
            input's length (Keras' array adapter fails on them with an IndexError or
            AttributeError).
    """
    if isinstance(x, (list, tuple)) and len(x) == len(model.input_names):
        x = dict(zip(model.input_names, x))
    named = x if isinstance(x, dict) and x else {"pixel_values": x}
    if not all(isinstance(v, np.ndarray) or ops.is_tensor(v) for v in named.values()):
        return None
    lengths = {name: int(v.shape[0]) if len(v.shape) else None for name, v in named.items()}
    if None in lengths.values() or len(set(lengths.values())) != 1:
        raise ValueError(
            "Expected inputs with a batch axis of one length, e.g. pixel_values of shape (batch, height, width, "
            f"channels). Received batch lengths {lengths} (None: a scalar without a batch axis)"
        )
    return next(iter(lengths.values()))
