"""The functional ViT/DeiT encoder graph: inputs, embeddings, transformer blocks, final LayerNorm, pooler.

`model_inputs` makes the `keras.Input`s a model takes and `encoder_outputs` lays the encoder
out on them; the backbones (`ViTModel`, `DeiTModel`) are built from these two functions.
"""

import keras

from keras_vit.layers.heads import Pooler
from keras_vit.layers.layer_normalization import LayerNormalization
from keras_vit.layers.patch_embedding import PatchEmbedding
from keras_vit.layers.transformer_block import TransformerBlock


def model_inputs(config, *, use_mask_token, use_head_mask, interpolate_pos_encoding, data_format):
    """Returns the list of `keras.Input`s, `pixel_values` first (Hugging Face's argument order).

    - `pixel_values`: float (batch, height, width, channels), or (batch, channels, height,
      width) for channels_first; height and width are dynamic with `interpolate_pos_encoding`.
    - `bool_masked_pos` (with `use_mask_token`): bool (batch, num_patches), optional.
    - `head_mask` (with `use_head_mask`): float (batch, num_hidden_layers, num_attention_heads).
    """
    height, width = (None, None) if interpolate_pos_encoding else config.image_hw
    if data_format == "channels_last":
        shape = (height, width, config.num_channels)
    else:
        shape = (config.num_channels, height, width)
    inputs = [keras.Input(shape, name="pixel_values")]
    if use_mask_token:
        patches = None if interpolate_pos_encoding else config.num_patches
        inputs.append(keras.Input((patches,), dtype="bool", name="bool_masked_pos", optional=True))
    if use_head_mask:
        inputs.append(keras.Input((config.num_hidden_layers, config.num_attention_heads), name="head_mask"))
    return inputs


def drop_path_rates(config):
    """Stochastic-depth rate of each block: linear from 0 to `drop_path_rate` (timm, DeiT)."""
    layers = config.num_hidden_layers
    return [config.drop_path_rate * i / max(layers - 1, 1) for i in range(layers)]


def encoder_outputs(
    config,
    inputs,
    *,
    use_distillation_token,
    add_pooling_layer,
    output_hidden_states,
    output_attentions,
    interpolate_pos_encoding,
    data_format,
    dtype,
):
    """Builds embeddings → transformer blocks → final LayerNorm (→ pooler) on `inputs`.

    Args:
        inputs: dict of the tensors `model_inputs` made, by name.

    Returns:
        dict with `last_hidden_state` (batch, seq, hidden), and as requested
        `pooler_output` (batch, pooler_output_size), `hidden_states` (tuple of
        num_hidden_layers + 1 tensors (batch, seq, hidden): the embeddings and each block's
        output) and `attentions` (tuple of num_hidden_layers tensors (batch, heads, seq, seq)).
    """
    pixel_values = inputs["pixel_values"]
    if data_format == "channels_first":
        pixel_values = keras.layers.Permute((2, 3, 1), dtype=dtype, name="to_channels_last")(pixel_values)
    hidden = PatchEmbedding(
        config.image_hw,
        config.patch_hw,
        config.hidden_size,
        use_distillation_token=use_distillation_token,
        use_mask_token="bool_masked_pos" in inputs,
        dropout=config.hidden_dropout_prob,
        initializer_range=config.initializer_range,
        dtype=dtype,
        name="embeddings",
    )(pixel_values, bool_masked_pos=inputs.get("bool_masked_pos"), interpolate_pos_encoding=interpolate_pos_encoding)
    hidden_states, attentions = [hidden], []
    for i, rate in enumerate(drop_path_rates(config)):
        block = TransformerBlock(
            config.hidden_size,
            config.num_attention_heads,
            config.intermediate_size,
            hidden_act=config.hidden_act,
            qkv_bias=config.qkv_bias,
            dropout=config.hidden_dropout_prob,
            attention_dropout=config.attention_probs_dropout_prob,
            drop_path_rate=rate,
            layer_norm_eps=config.layer_norm_eps,
            initializer_range=config.initializer_range,
            dtype=dtype,
            name=f"encoder_layer_{i}",
        )
        head_mask = inputs["head_mask"][:, i] if "head_mask" in inputs else None
        hidden = block(hidden, head_mask=head_mask, return_attention_scores=output_attentions)
        if output_attentions:
            hidden, probs = hidden
            attentions.append(probs)
        hidden_states.append(hidden)
    outputs = {
        "last_hidden_state": LayerNormalization(
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
    return outputs
