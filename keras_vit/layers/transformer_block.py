"""Pre-norm transformer encoder block of ViT/DeiT."""

import keras
from keras import ops

from keras_vit.layers.activations import get_activation
from keras_vit.layers.attention import MultiHeadSelfAttention
from keras_vit.layers.custom_gradient import graphs_own_custom_gradients
from keras_vit.layers.drop_path import DropPath
from keras_vit.layers.layer_normalization import LayerNormalization


@keras.saving.register_keras_serializable(package="keras_vit")
class TransformerBlock(keras.layers.Layer):
    """x + Attention(LayerNorm(x)), then x + MLP(LayerNorm(x)) (Dosovitskiy et al. 2021, eq. 2-3).

    `call` is the two residual lines of a pre-norm block, as timm's `Block` and Hugging
    Face's `ViTLayer` / `DeiTLayer`: `x = x + drop_path(dropout(attention(layernorm_before(x))))`
    and `x = x + drop_path(dropout(fc2(activation(fc1(layernorm_after(x))))))`. Dropout
    follows the attention output and the MLP output (Hugging Face's `ViTSelfOutput` and
    `ViTOutput`); stochastic depth (`DropPath`, timm's `Block`) drops both residual branches
    per example while training (Hugging Face has none: drop_path_rate=0). The layer norms
    compute in float32 under mixed precision.

    With `gradient_checkpointing` (Hugging Face's name), training recomputes each branch's
    deterministic part in the backward pass instead of keeping its intermediates
    (`keras.remat`, Chen et al. 2016): `layernorm_before` → `attention`, and
    `layernorm_after` → `fc1` → activation → `fc2`. Dropout and stochastic depth stay
    outside, so their masks are drawn once; the attention branch is not recomputed in calls
    that return probabilities (they are outputs, kept anyway) or whose attention dropout is
    active. Values and gradients are those without it.

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
        flash_attention: None, True or False, `MultiHeadSelfAttention`'s switch.
        gradient_checkpointing: bool, recompute the branches in the backward pass.

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
        flash_attention=None,
        gradient_checkpointing=False,
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
        self.flash_attention = flash_attention
        self.gradient_checkpointing = gradient_checkpointing
        init = keras.initializers.TruncatedNormal(stddev=initializer_range)
        policy = self.dtype_policy
        self.layernorm_before = LayerNormalization(epsilon=layer_norm_eps, dtype=policy, name="layernorm_before")
        self.attention = MultiHeadSelfAttention(
            hidden_size,
            num_attention_heads,
            qkv_bias=qkv_bias,
            attention_dropout=attention_dropout,
            initializer_range=initializer_range,
            flash_attention=flash_attention,
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
        def attention(x):
            return self.attention(self.layernorm_before(x), head_mask, return_attention_scores=return_attention_scores)

        keeps_attention = return_attention_scores or (training and self.attention_dropout > 0)
        attended = (attention if keeps_attention else self._checkpointed(attention))(hidden_states)
        attended, probs = attended if return_attention_scores else (attended, None)
        hidden_states = hidden_states + self.drop_path(self.dropout_layer(attended))
        hidden_states = hidden_states + self.drop_path(self.dropout_layer(self._checkpointed(self._mlp)(hidden_states)))
        return (hidden_states, probs) if return_attention_scores else hidden_states

    def _mlp(self, hidden_states):
        """fc2(activation(fc1(layernorm_after(x)))) on the (batch·seq, hidden) tokens.

        On TensorFlow a `Dense` on a 3-D input goes through `tensordot`, whose reshape between
        the matmul and the bias keeps grappler/oneDNN from fusing matmul, bias and GELU
        (`benchmarks/serving_latency.py --profile`); the attention's projections do the same.
        """
        tokens = ops.reshape(self.layernorm_after(hidden_states), (-1, self.hidden_size))
        return ops.reshape(self.fc2(self.activation(self.fc1(tokens))), ops.shape(hidden_states))

    def _checkpointed(self, branch):
        """`branch`, recomputed in the backward pass with `gradient_checkpointing` (`keras.remat`).

        On TensorFlow `keras.remat` is `tf.recompute_grad`, a `tf.custom_gradient`: traced
        in a graph, it registers a gradient that would keep the graph alive
        (`custom_gradient.graphs_own_custom_gradients`).
        """
        if not self.gradient_checkpointing:
            return branch
        recomputed = keras.remat(branch)

        def checkpointed(x):
            with graphs_own_custom_gradients():
                return recomputed(x)

        return checkpointed

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
            flash_attention=self.flash_attention,
            gradient_checkpointing=self.gradient_checkpointing,
        )
        return config
