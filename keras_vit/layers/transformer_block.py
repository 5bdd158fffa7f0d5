"""Pre-norm transformer encoder block of ViT/DeiT."""

import keras
from keras import ops

from keras_vit.layers.activations import gelu_matmul, get_activation
from keras_vit.layers.attention import MultiHeadSelfAttention
from keras_vit.layers.drop_path import DropPath, regularized
from keras_vit.layers.layer_normalization import LayerNormalization, layer_norm_dense
from keras_vit.layers.projection import multiplies_by_kernel


@keras.saving.register_keras_serializable(package="keras_vit")
class TransformerBlock(keras.layers.Layer):
    """x + Attention(LayerNorm(x)), then x + MLP(LayerNorm(x)) (Dosovitskiy et al. 2021, eq. 2-3).

    The MLP is Dense(intermediate_size) → `hidden_act` → Dense(hidden_size); dropout follows
    the attention output and the MLP output, then stochastic depth (`DropPath`, timm's
    `Block`) drops both residual branches per example while training. Matches Hugging
    Face `ViTLayer` / `DeiTLayer` (which have no stochastic depth: drop_path_rate=0).
    LayerNorm runs in float32 under mixed precision (`layers.LayerNormalization`); each is
    computed with the projection after it (`layer_norm_dense`: the qkv projection, through
    the attention's `input_norm`, and fc1), so training on JAX and in XLA-compiled TensorFlow
    keeps the block's input and the residual sum, not the normalised tokens; in XLA-compiled
    TensorFlow the attention recomputes q, k and v too (`attention.QKV_RECOMPUTING_BACKENDS`).
    The MLP runs on the (batch·seq, hidden) reshape of the tokens (faster gradients on JAX,
    same speed elsewhere; benchmarks/cpu_layers.py).

    Args:
        hidden_size: int, token width.
        num_attention_heads: int, heads; must divide `hidden_size`.
        intermediate_size: int, MLP hidden width.
        hidden_act: str, MLP activation name (see `activations.ACTIVATIONS`).
        qkv_bias: bool, bias on the query/key/value projection.
        dropout: float in [0, 1), dropout after attention and MLP.
        attention_dropout: float in [0, 1), dropout on attention probabilities.
        drop_path_rate: float in [0, 1), stochastic depth rate of both residual branches.
        layer_norm_eps: float, LayerNorm epsilon.
        initializer_range: float, std of the truncated-normal kernel initializers.

    Call arguments:
        hidden_states: tensor (batch, seq, hidden_size).
        head_mask: optional tensor (num_heads,) or (batch, num_heads), 1 keeps a head.
        return_attention_scores: bool, also return attention probabilities.
        training: bool, enables dropout.

    Returns:
        tensor (batch, seq, hidden_size), and with `return_attention_scores` the
        probabilities (batch, num_heads, seq, seq).

    >>> block = TransformerBlock(16, 4, 32)
    >>> tuple(block(keras.ops.ones((2, 5, 16))).shape)
    (2, 5, 16)
    """

    def __init__(
        self,
        hidden_size,
        num_attention_heads,
        intermediate_size,
        hidden_act="gelu",
        qkv_bias=True,
        dropout=0.0,
        attention_dropout=0.0,
        drop_path_rate=0.0,
        layer_norm_eps=1e-12,
        initializer_range=0.02,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.activation = get_activation(hidden_act)
        if intermediate_size <= 0:
            raise ValueError(f"Expected intermediate_size > 0. Received: intermediate_size={intermediate_size}")
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.qkv_bias = qkv_bias
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.drop_path_rate = drop_path_rate
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        init = keras.initializers.TruncatedNormal(stddev=initializer_range)
        policy = self.dtype_policy
        self.layernorm_before = LayerNormalization(epsilon=layer_norm_eps, dtype=policy, name="layernorm_before")
        self.attention = MultiHeadSelfAttention(
            hidden_size,
            num_attention_heads,
            qkv_bias=qkv_bias,
            attention_dropout=attention_dropout,
            initializer_range=initializer_range,
            dtype=policy,
            name="attention",
        )
        self.layernorm_after = LayerNormalization(epsilon=layer_norm_eps, dtype=policy, name="layernorm_after")
        self.fc1 = keras.layers.Dense(intermediate_size, kernel_initializer=init, dtype=policy, name="fc1")
        self.fc2 = keras.layers.Dense(hidden_size, kernel_initializer=init, dtype=policy, name="fc2")
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=policy, name="dropout")
        self.drop_path = DropPath(drop_path_rate, dtype=policy, name="drop_path")

    def build(self, input_shape):
        for layer in (self.layernorm_before, self.attention, self.layernorm_after, self.fc1):
            layer.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.intermediate_size,))

    def call(self, hidden_states, head_mask=None, return_attention_scores=False, training=None):
        attended = self.attention(
            hidden_states,
            input_norm=self.layernorm_before,
            head_mask=head_mask,
            return_attention_scores=return_attention_scores,
            training=training,
        )
        attended, probs = attended if return_attention_scores else (attended, None)
        hidden_states = hidden_states + self._residual(attended, training)
        tokens = ops.reshape(hidden_states, (-1, self.hidden_size))  # (batch·seq, hidden)
        mlp = ops.reshape(self._mlp(tokens), ops.shape(hidden_states))
        hidden_states = hidden_states + self._residual(mlp, training)
        if return_attention_scores:
            return hidden_states, probs
        return hidden_states

    def _mlp(self, tokens):
        """fc2(activation(fc1(layernorm_after(tokens)))).

        Through `layer_norm_dense`, and `gelu_matmul` for exact GELU into an unquantized fc2.
        """
        hidden = layer_norm_dense(self.layernorm_after, self.fc1, tokens)
        if self.hidden_act != "gelu" or not multiplies_by_kernel(self.fc2):
            return self.fc2(self.activation(hidden))
        kernel, bias = (ops.cast(weight, hidden.dtype) for weight in (self.fc2.kernel, self.fc2.bias))
        return gelu_matmul(hidden, kernel, bias)

    def _residual(self, branch, training):
        """A residual branch after dropout and stochastic depth."""
        return regularized(self.drop_path, regularized(self.dropout_layer, branch, training), training)

    def enable_lora(self, rank, lora_alpha=None):
        """Low-rank adaptation (Hu et al. 2021) of the block's four projections.

        Enables Keras' `Dense.enable_lora(rank, lora_alpha)` on the attention's `qkv` and
        `output` projections and the MLP's `fc1` and `fc2`, then freezes everything else in
        the block (their kernels and biases, both LayerNorms): only the LoRA factors
        `lora_kernel_a` (in, rank) and `lora_kernel_b` (rank, out) stay trainable.

        Raises:
            ValueError: if the block is not built or LoRA is already enabled (Keras' message).
        """
        projections = (self.attention.qkv, self.attention.output_dense, self.fc1, self.fc2)
        for layer in (self.layernorm_before, self.layernorm_after):
            layer.trainable = False
        for dense in projections:
            dense.enable_lora(rank, lora_alpha=lora_alpha)
            if dense.bias is not None:
                dense.bias.trainable = False

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            qkv_bias=self.qkv_bias,
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            drop_path_rate=self.drop_path_rate,
            layer_norm_eps=self.layer_norm_eps,
            initializer_range=self.initializer_range,
        )
        return config
