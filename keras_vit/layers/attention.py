"""Multi-head self-attention of ViT/DeiT with a fused query/key/value projection."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Scaled dot-product self-attention over all tokens (Vaswani et al. 2017, section 3.2).

    Queries, keys and values come from one fused projection `qkv` (kernel (hidden,
    3·hidden), blocks ordered query, key, value; heads contiguous inside each block, as in
    timm's `Attention`), split into heads (batch, seq, heads, head_dim). The queries are
    scaled by head_dim^-0.5 before q·kᵀ (timm's order), so no (seq, seq) tensor is scaled.
    The output projection `output` is followed by dropout. As Hugging Face
    `ViTSelfAttention` (transformers 4.x, which had `head_mask`) and timm's `Attention`, two
    paths compute the same function:

    - `keras.ops.dot_product_attention` (Keras dispatches to PyTorch's
      `scaled_dot_product_attention`, to cuDNN flash attention on JAX GPUs where
      `flash_attention` allows it, and to its einsum/softmax math on TensorFlow and JAX CPUs,
      with the logits and the softmax in float32 and the probabilities cast back to the
      inputs' dtype before they meet the values) when neither the probabilities nor
      `head_mask` are asked for and attention dropout is inactive;
    - otherwise the explicit math: scores in the compute dtype, scaled and passed through
      softmax in float32, attention dropout and `head_mask` applied to the probabilities,
      which are cast to the compute dtype before they meet the values.

    Args:
        hidden_size: int, token width; divisible by `num_attention_heads`.
        num_attention_heads: int, number of heads.
        qkv_bias: bool, bias on the query/key/value projection.
        attention_dropout: float in [0, 1), dropout on attention probabilities.
        dropout: float in [0, 1), dropout on the output.
        initializer_range: float, std of the truncated-normal kernel initializer.
        flash_attention: None, True or False, as for `keras.layers.MultiHeadAttention`
            (`flash_attention or keras.config.is_flash_attention_enabled()`): True asks
            `keras.ops.dot_product_attention` for flash attention, which raises where it
            cannot run (Keras' error, e.g. on TensorFlow); None, or False while Keras' global
            setting is unset (`keras.config.enable_flash_attention()`), lets it use flash
            attention where the backend, device and dtype allow it; after
            `keras.config.disable_flash_attention()`, None turns it off. Calls that ask for
            probabilities, `head_mask` or active attention dropout take the explicit path
            whatever its value.

    Call arguments:
        hidden_states: tensor (batch, seq, hidden_size).
        head_mask: optional float tensor (num_heads,) or (batch, num_heads), 1 keeps a head
            and 0 silences it.
        return_attention_scores: bool, also return the probabilities.
        training: bool, enables dropout.

    Returns:
        tensor (batch, seq, hidden_size); with `return_attention_scores`, also the float32
        probabilities (batch, num_heads, seq, seq) whose rows sum to 1 (before head_mask).

    Raises:
        ValueError: `hidden_size` not divisible by `num_attention_heads`, a dropout rate
            outside [0, 1), or a `head_mask` of another shape.

    >>> layer = MultiHeadSelfAttention(hidden_size=16, num_attention_heads=4)
    >>> out, probs = layer(keras.ops.ones((2, 5, 16)), return_attention_scores=True)
    >>> tuple(out.shape), tuple(probs.shape)
    ((2, 5, 16), (2, 4, 5, 5))
    """

    def __init__(
        self,
        hidden_size,
        num_attention_heads,
        qkv_bias=True,
        attention_dropout=0.0,
        dropout=0.0,
        initializer_range=0.02,
        flash_attention=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if hidden_size % num_attention_heads:
            raise ValueError(
                "Expected hidden_size to be divisible by num_attention_heads. Received: "
                f"hidden_size={hidden_size}, num_attention_heads={num_attention_heads}"
            )
        for name, rate in (("attention_dropout", attention_dropout), ("dropout", dropout)):
            if not 0 <= rate < 1:
                raise ValueError(f"Expected {name} in [0, 1). Received: {name}={rate}")
        if flash_attention is not None and not isinstance(flash_attention, bool):
            raise ValueError(f"Expected flash_attention to be None, True or False. Received: flash_attention={flash_attention!r}")
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.head_dim = hidden_size // num_attention_heads
        self.qkv_bias = qkv_bias
        self.attention_dropout = attention_dropout
        self.dropout = dropout
        self.initializer_range = initializer_range
        self.flash_attention = flash_attention
        # As `keras.layers.MultiHeadAttention`: the argument, else the global setting.
        self._flash_attention = flash_attention or keras.config.is_flash_attention_enabled()
        init = keras.initializers.TruncatedNormal(stddev=initializer_range)
        self.qkv = keras.layers.Dense(
            3 * hidden_size, use_bias=qkv_bias, kernel_initializer=init, dtype=self.dtype_policy, name="qkv"
        )
        self.output_dense = keras.layers.Dense(hidden_size, kernel_initializer=init, dtype=self.dtype_policy, name="output")
        self.attention_dropout_layer = keras.layers.Dropout(
            attention_dropout, dtype=self.dtype_policy, name="attention_dropout"
        )
        self.output_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy, name="output_dropout")

    def build(self, input_shape):
        self.qkv.build(input_shape)
        self.output_dense.build(tuple(input_shape[:-1]) + (self.hidden_size,))

    def call(self, hidden_states, head_mask=None, return_attention_scores=False, training=None):
        batch, seq = ops.shape(hidden_states)[0], ops.shape(hidden_states)[1]
        tokens = ops.reshape(hidden_states, (-1, self.hidden_size))  # (batch·seq, hidden), as `TransformerBlock`'s MLP
        qkv = ops.reshape(self.qkv(tokens), (batch, seq, 3, self.num_attention_heads, self.head_dim))
        query, key, value = ops.unstack(qkv, 3, axis=2)  # each (batch, seq, heads, head_dim)
        query = query * ops.cast(self.head_dim**-0.5, query.dtype)  # as timm's `Attention`: scaled before q·kᵀ
        if return_attention_scores or head_mask is not None or (training and self.attention_dropout > 0):
            context, probs = self._explicit_attention(query, key, value, head_mask, training)
        else:
            context = ops.dot_product_attention(query, key, value, scale=1.0, flash_attention=self._flash_attention)
        output = ops.reshape(self.output_dense(ops.reshape(context, (-1, self.hidden_size))), (batch, seq, self.hidden_size))
        output = self.output_dropout(output, training=training)
        return (output, probs) if return_attention_scores else output

    def _explicit_attention(self, query, key, value, head_mask, training):
        """(context (batch, seq, heads, head_dim), float32 probabilities (batch, heads, seq, seq)).

        softmax(q·kᵀ) of the scaled queries in float32, then attention dropout and `head_mask`
        on the probabilities (Hugging Face `ViTSelfAttention`); the probabilities returned are before both.
        """
        scores = ops.cast(ops.einsum("btnh,bsnh->bnts", query, key), "float32")
        probs = ops.softmax(scores, axis=-1)
        weights = self.attention_dropout_layer(probs, training=training)
        if head_mask is not None:
            weights = weights * ops.cast(self._head_mask(head_mask), weights.dtype)
        context = ops.einsum("bnts,bsnh->btnh", ops.cast(weights, value.dtype), value)
        return context, probs

    def _head_mask(self, head_mask):
        """Reshapes (heads,) or (batch, heads) to broadcast over (batch, heads, seq, seq)."""
        if head_mask.shape[-1] not in (None, self.num_attention_heads) or len(head_mask.shape) not in (1, 2):
            raise ValueError(
                f"Expected head_mask of shape ({self.num_attention_heads},) or (batch, {self.num_attention_heads}). "
                f"Received: shape={tuple(head_mask.shape)}"
            )
        if len(head_mask.shape) == 1:
            return ops.reshape(head_mask, (1, -1, 1, 1))
        return head_mask[:, :, None, None]

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size,
            num_attention_heads=self.num_attention_heads,
            qkv_bias=self.qkv_bias,
            attention_dropout=self.attention_dropout,
            dropout=self.dropout,
            initializer_range=self.initializer_range,
            flash_attention=self.flash_attention,
        )
        return config
