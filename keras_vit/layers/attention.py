"""Multi-head self-attention of ViT/DeiT with a fused query/key/value projection."""

import functools

import keras
from keras import ops

from keras_vit.layers.custom_gradient import cast_like, custom_gradient
from keras_vit.layers.drop_path import regularized
from keras_vit.layers.layer_normalization import (
    fuses_with_projection,
    layer_norm_dense,
    layer_norm_matmul_backward,
    normalized_tokens,
)
from keras_vit.layers.projection import project
from keras_vit.layers.recomputation import after_gradient, recomputes


# Backends with a fused attention kernel that never materialises the (batch, heads, seq,
# seq) probabilities for the backward pass: PyTorch's `scaled_dot_product_attention`
# (flash / memory-efficient kernels on CPU and GPU). On TensorFlow and JAX
# `keras.ops.dot_product_attention` is the explicit math.
SDPA_BACKENDS = ("torch",)
# `MultiHeadSelfAttention` takes `fused_attention` when it may on the backends in
# `SDPA_BACKENDS` and wherever gradients recompute (`recomputation.recomputes`: JAX, and
# TensorFlow inside XLA-compiled functions). On JAX, `_attention_saving_logsumexp` with the
# layer norm and GELU recomputations brought a DeiT-S/16 training step at 384 px from
# 5.65 GiB peak RSS to 2.48 GiB (benchmarks/README.md). TensorFlow graphs without XLA keep
# the explicit path: there the same attention ran slower and kept as much memory (11.2 s,
# 4.02 GiB against 10.3 s, 3.87 GiB explicit).

# Backends on which `_attention_saving_logsumexp`'s backward pass takes rowsum(dP ∘ P) as
# FlashAttention's rowsum(dO ∘ O) (Dao et al. 2022, appendix B.2), a (seq, head_dim) product
# per query instead of a (seq, seq) one, over the context that the forward pass then keeps
# too. On JAX a DeiT-S/16 step at 384 px batch 8 took 5.68 s against 6.15 s (224 px batch
# 16: 3.22 s against 3.27 s) at the same peak RSS (±0.02 GiB), for 5-6 % more planned
# temporary buffers (XLA keeps the context apart from the output projection's copy).
# XLA-compiled TensorFlow took the same time (4.90 s both) for 6 % more temporaries, so it
# keeps the (seq, seq) sum (benchmarks/README.md).
CONTEXT_ROWSUM_BACKENDS = ("jax",)


# Backends on which `MultiHeadSelfAttention`, given its `input_norm`, runs the layer norm, the
# qkv projection and `fused_attention` as one custom gradient that keeps only the tokens and
# the log-sum-exp, and recomputes q, k and v in the backward pass
# (`_attention_recomputing_qkv`): three (batch·seq, hidden) tensors fewer per block for one
# more qkv matmul. On XLA-compiled TensorFlow a DeiT-S/16 step at 224 px batch 16 peaked at
# 1.87-1.89 GiB against 2.07-2.10 GiB for 2-6 % more step time, in three runs (384 px batch 8:
# 2.26-2.30 against 2.50-2.53 GiB), where transformers peaks at 1.71 and 2.25 GiB:
# TensorFlow's runtime alone holds 0.3 GiB more than PyTorch's, so without it the step used
# 1.21-1.24x transformers' memory (benchmarks/README.md). JAX keeps q, k and v: its step is
# under transformers' memory already (0.95x), and the matmul would only cost time.
QKV_RECOMPUTING_BACKENDS = ("tensorflow",)


def _recomputes_qkv(norm, dense, tokens):
    """Whether `_attention_recomputing_qkv(norm, dense, tokens, …)` may run here."""
    return keras.backend.backend() in QKV_RECOMPUTING_BACKENDS and fuses_with_projection(norm, dense, tokens)


def takes_fused_path():
    """Whether `MultiHeadSelfAttention` calls traced here may take `fused_attention`."""
    return keras.backend.backend() in SDPA_BACKENDS or recomputes()


def explicit_attention(query, key, value, head_mask=None, dropout=None):
    """softmax(q·kᵀ/√d)·v written out, returning the probabilities too.

    Args:
        query, key, value: tensors (batch, seq, heads, head_dim).
        head_mask: optional tensor broadcastable to (batch, heads, seq, seq), multiplied into
            the probabilities after dropout (Hugging Face `ViTSelfAttention`).
        dropout: optional callable applied to the probabilities.

    Returns:
        (context (batch, seq, heads, head_dim), float32 probabilities (batch, heads, seq, seq)
        before dropout and head_mask). The softmax runs in float32.
    """
    query = ops.transpose(query, (0, 2, 1, 3))
    key = ops.transpose(key, (0, 2, 3, 1))
    value = ops.transpose(value, (0, 2, 1, 3))
    scores = ops.matmul(query, key) * ops.cast(_scale(query), query.dtype)
    probs = ops.softmax(ops.cast(scores, "float32"), axis=-1)
    weights = probs if dropout is None else dropout(probs)
    if head_mask is not None:
        weights = weights * ops.cast(head_mask, weights.dtype)
    context = ops.matmul(ops.cast(weights, value.dtype), value)
    return ops.transpose(context, (0, 2, 1, 3)), probs


def fused_attention(query, key, value):
    """softmax(q·kᵀ/√d)·v whose backward pass keeps no (seq, seq) tensor (no dropout, no mask).

    On PyTorch this is `torch.nn.functional.scaled_dot_product_attention` on (batch, heads,
    seq, head_dim) views of the inputs (`_torch_sdpa`), as Hugging Face `ViTAttention` calls
    it with `attn_implementation="sdpa"`. On TensorFlow and JAX it is
    `_attention_saving_logsumexp`: the memory-efficient attention gradient of FlashAttention
    (Dao et al. 2022, section 3.1 and algorithm 4) without tiling. The backward pass keeps
    the inputs as given (on the layer's path, views of its qkv projection), one float32
    log-sum-exp per query and on JAX the output (`CONTEXT_ROWSUM_BACKENDS`), and recomputes
    the probabilities from them. `MultiHeadSelfAttention` with an `input_norm` in
    XLA-compiled TensorFlow runs the same math inside `_attention_recomputing_qkv`, which
    keeps its input tokens instead of q, k and v.

    Args:
        query, key, value: tensors (batch, seq, heads, head_dim).

    Returns:
        context (batch, seq, heads, head_dim), the same function as `explicit_attention`.
    """
    if keras.backend.backend() in SDPA_BACKENDS:
        return _torch_sdpa(query, key, value)
    return _attention_saving_logsumexp(query, key, value)


def _torch_sdpa(query, key, value):
    """PyTorch's fused attention on (batch, seq, heads, head_dim) tensors, without copies.

    `keras.ops.dot_product_attention` makes the transposed inputs contiguous before calling
    PyTorch wherever its CUDA flash-attention check fails (always on CPU). PyTorch's CPU
    flash kernel then keeps those copies and returns its output in (batch, heads, seq,
    head_dim) layout, which the output projection copies once more to (batch·seq, hidden)
    and keeps too. Given transposed views, the kernel keeps the views and writes its output
    in (batch, seq, heads, head_dim) layout, so the projection's input is a view of it: one
    (batch·seq, hidden) tensor fewer per block (tests/test_training_memory.py), and a
    DeiT-S/16 training step at 224 px batch 16 peaked at 2.03 GiB against 2.13 GiB
    (benchmarks/README.md).
    """
    import torch

    views = [ops.transpose(tensor, (0, 2, 1, 3)) for tensor in (query, key, value)]
    context = torch.nn.functional.scaled_dot_product_attention(*views, scale=_scale(query))
    return ops.transpose(context, (0, 2, 1, 3))


def _scale(query):
    """1/√head_dim, the scores' scale."""
    return query.shape[-1] ** -0.5


def _heads_first(tensor):
    """(batch, seq, heads, head_dim) <-> (batch, heads, seq, head_dim)."""
    return ops.transpose(tensor, (0, 2, 1, 3))


def _float32_scores(query, key):
    """(q/√d·kᵀ in float32 (batch, heads, seq, seq), q/√d (batch, heads, seq, head_dim)).

    From query and key (batch, seq, heads, head_dim).
    """
    scaled_query = _heads_first(query) * ops.cast(_scale(query), query.dtype)
    scores = ops.matmul(scaled_query, ops.transpose(key, (0, 2, 3, 1)))
    return ops.cast(scores, "float32"), scaled_query


@custom_gradient
def _attention_saving_logsumexp(query, key, value):
    """softmax(q·kᵀ/√d)·v on (batch, seq, heads, head_dim) tensors."""
    context, logsumexp = _attention_forward(query, key, value)

    def grad(*args, upstream=None):
        upstream = args[0] if upstream is None else upstream
        inputs_ = after_gradient(upstream, query, key, value)
        return _attention_backward(upstream, *inputs_, logsumexp, context)

    return context, grad


def _attention_forward(query, key, value):
    """(context (batch, seq, heads, head_dim), float32 log-sum-exp per query (batch, heads, seq, 1))."""
    scores, _ = _float32_scores(query, key)
    logsumexp = ops.logsumexp(scores, axis=-1, keepdims=True)
    probs = ops.cast(ops.exp(scores - logsumexp), value.dtype)
    return _heads_first(ops.matmul(probs, _heads_first(value))), logsumexp


def _attention_backward(upstream, query, key, value, logsumexp, context):
    """(d_query, d_key, d_value) from the context's gradient; recomputes the probabilities.

    All tensors (batch, seq, heads, head_dim) but `logsumexp` (`_attention_forward`). `context`
    is read only on the backends in `CONTEXT_ROWSUM_BACKENDS`.
    """
    scores, scaled_query = _float32_scores(query, key)
    probs = ops.exp(scores - logsumexp)  # recomputed, not kept
    d_context = _heads_first(upstream)
    d_value = ops.matmul(ops.swapaxes(ops.cast(probs, value.dtype), -1, -2), d_context)
    d_probs = ops.cast(ops.matmul(d_context, ops.transpose(value, (0, 2, 3, 1))), "float32")
    # Softmax backward, dS = P ∘ (dP − rowsum(dP ∘ P)).
    if keras.backend.backend() in CONTEXT_ROWSUM_BACKENDS:
        rowsum = ops.sum(ops.cast(upstream, "float32") * ops.cast(context, "float32"), axis=-1)
        rowsum = ops.expand_dims(ops.transpose(rowsum, (0, 2, 1)), -1)  # (batch, heads, seq, 1)
    else:
        rowsum = ops.sum(d_probs * probs, axis=-1, keepdims=True)
    d_scores = ops.cast(probs * (d_probs - rowsum), query.dtype)
    d_query = ops.matmul(d_scores, _heads_first(key)) * ops.cast(_scale(query), query.dtype)
    d_key = ops.matmul(ops.swapaxes(d_scores, -1, -2), scaled_query)
    return _heads_first(d_query), _heads_first(d_key), _heads_first(d_value)


def _split_heads(qkv, heads_shape):
    """(query, key, value), each (batch, seq, heads, head_dim), from the qkv projection (batch·seq, 3·hidden).

    Views, by `ops.unstack`: on PyTorch its gradient is one `stack` of the three, where slicing
    fills three zero (batch, seq, 3, heads, head_dim) tensors and adds them up.
    """
    return tuple(ops.unstack(ops.reshape(qkv, heads_shape), 3, axis=2))


def _attention_recomputing_qkv(norm, dense, tokens, heads_shape):
    """`fused_attention` over `dense(norm(tokens))` whose backward pass keeps only `tokens`.

    The forward pass runs the operations of `layer_norm_dense` and `fused_attention`; the
    backward pass recomputes the layer norm and q, k, v from `tokens` after the incoming
    gradient (`recomputation.after_gradient`), then runs both gradients. Keeps `tokens` and
    the float32 log-sum-exp per query (and the context on `CONTEXT_ROWSUM_BACKENDS`).

    Args:
        norm: a `LayerNormalization` and `dense` the qkv `keras.layers.Dense`, for which
            `layer_normalization.fuses_with_projection` holds.
        tokens: float tensor (batch·seq, hidden).
        heads_shape: (batch, seq, 3, heads, head_dim), the projection's split into q, k, v.

    Returns:
        context (batch, seq, heads, head_dim) of `dense`'s compute dtype.
    """
    kernel = ops.cast(dense.kernel, dense.compute_dtype)  # the property: LoRA factors included
    bias = ops.zeros(kernel.shape[-1:], kernel.dtype) if dense.bias is None else ops.cast(dense.bias, kernel.dtype)
    dtypes, epsilon = (norm.compute_dtype, kernel.dtype), norm.epsilon

    @custom_gradient
    def fused(x, gamma, beta, kernel, bias):
        gamma32 = ops.cast(gamma, "float32")

        def projected(x):
            """((q, k, v), the normalised tokens, (x̂, rstd)) from x."""
            normalized, stats = normalized_tokens(x, gamma32, beta, epsilon, dtypes)
            return _split_heads(ops.add(ops.matmul(normalized, kernel), bias), heads_shape), normalized, stats

        context, logsumexp = _attention_forward(*projected(x)[0])

        def grad(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            (x_,) = after_gradient(upstream, x)
            qkv_, normalized_, stats_ = projected(x_)
            d_qkv = ops.stack(_attention_backward(upstream, *qkv_, logsumexp, context), axis=2)
            d_qkv = ops.reshape(d_qkv, (-1, kernel.shape[-1]))
            d_x, d_gamma, d_beta, d_kernel = layer_norm_matmul_backward(d_qkv, normalized_, stats_, gamma32, kernel)
            return (*cast_like((d_x, d_gamma, d_beta), (x, gamma, beta)), d_kernel, ops.sum(d_qkv, axis=0))

        return context, grad

    # γ, β as tensors, not variables (see `LayerNormalization.call`).
    return fused(tokens, ops.copy(norm.gamma), ops.copy(norm.beta), kernel, bias)


@keras.saving.register_keras_serializable(package="keras_vit")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Scaled dot-product self-attention over all tokens (Vaswani et al. 2017, section 3.2).

    Queries, keys and values come from one fused projection `qkv` (kernel (hidden,
    3·hidden), blocks ordered query, key, value; heads contiguous inside each block, as in
    timm). Scores are scaled by head_dim^-0.5, the softmax runs in float32 under mixed
    precision, then attention dropout and the optional `head_mask` are applied to the
    probabilities, as in Hugging Face `ViTSelfAttention` (transformers 4.x, which had
    `head_mask`). The output projection `output` is followed by dropout.

    Two paths compute the same function. When neither the probabilities nor `head_mask`
    are requested and attention dropout is inactive, `fused_attention` runs where
    `takes_fused_path()`; its backward pass keeps no (seq, seq) tensor: PyTorch's
    `scaled_dot_product_attention`, and on JAX and in XLA-compiled TensorFlow functions
    (`jit_compile=True`) a memory-efficient gradient that recomputes the probabilities from a
    saved log-sum-exp. Otherwise, and in TensorFlow graphs without XLA, the math runs
    as two batched matmuls around a float32 softmax (`explicit_attention`), the path that
    returns probabilities and applies `head_mask`. The projections run on the
    (batch·seq, hidden) reshape of the tokens (faster gradients on JAX, same speed elsewhere).

    Args:
        hidden_size: int, token width; divisible by `num_attention_heads`.
        num_attention_heads: int, number of heads.
        qkv_bias: bool, bias on the query/key/value projection.
        attention_dropout: float in [0, 1), dropout on attention probabilities.
        dropout: float in [0, 1), dropout on the output.
        initializer_range: float, std of the truncated-normal kernel initializer.

    Call arguments:
        hidden_states: tensor (batch, seq, hidden_size).
        head_mask: optional float tensor (num_heads,) or (batch, num_heads), 1 keeps a head
            and 0 silences it.
        return_attention_scores: bool, also return the probabilities.
        training: bool, enables dropout.
        input_norm: optional `layers.LayerNormalization` to attend over
            `input_norm(hidden_states)` instead, as a pre-norm block does: computed with the
            qkv projection by `layer_norm_dense`, so that training on JAX and in
            XLA-compiled TensorFlow keeps `hidden_states` and not the normalised tokens too.
            On the fused path in XLA-compiled TensorFlow, the norm, the projection and the
            attention are one custom gradient that recomputes q, k and v as well
            (`QKV_RECOMPUTING_BACKENDS`).
            For calls inside a layer that owns the norm (`TransformerBlock`); a functional
            model would not track the norm's weights, so there it raises `ValueError`.

    Returns:
        tensor (batch, seq, hidden_size); with `return_attention_scores`, also the float
        probabilities (batch, num_heads, seq, seq) whose rows sum to 1 (before head_mask).

    >>> layer = MultiHeadSelfAttention(hidden_size=16, num_attention_heads=4)
    >>> out, probs = layer(keras.ops.ones((2, 5, 16)), return_attention_scores=True)
    >>> tuple(probs.shape)
    (2, 4, 5, 5)
    """

    def __init__(
        self,
        hidden_size,
        num_attention_heads,
        qkv_bias=True,
        attention_dropout=0.0,
        dropout=0.0,
        initializer_range=0.02,
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
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.head_dim = hidden_size // num_attention_heads
        self.qkv_bias = qkv_bias
        self.attention_dropout = attention_dropout
        self.dropout = dropout
        self.initializer_range = initializer_range
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

    def call(self, hidden_states, head_mask=None, return_attention_scores=False, training=None, input_norm=None):
        shape = ops.shape(hidden_states)
        batch, seq = shape[0], shape[1]
        tokens = ops.reshape(hidden_states, (-1, self.hidden_size))
        explicit = (
            return_attention_scores
            or head_mask is not None
            or (training and self.attention_dropout > 0)
            or not takes_fused_path()
        )
        heads_shape = (batch, seq, 3, self.num_attention_heads, self.head_dim)
        if not explicit and input_norm is not None and _recomputes_qkv(input_norm, self.qkv, tokens):
            context = _attention_recomputing_qkv(input_norm, self.qkv, tokens, heads_shape)
        else:
            qkv = project(self.qkv, tokens) if input_norm is None else layer_norm_dense(input_norm, self.qkv, tokens)
            query, key, value = _split_heads(qkv, heads_shape)
            if explicit:
                if head_mask is not None:
                    head_mask = self._head_mask(head_mask)
                dropout = functools.partial(regularized, self.attention_dropout_layer, training=training)
                context, probs = explicit_attention(query, key, value, head_mask=head_mask, dropout=dropout)
            else:
                context = fused_attention(query, key, value)
        context = ops.reshape(context, (-1, self.hidden_size))
        output = ops.reshape(project(self.output_dense, context), (batch, seq, self.hidden_size))
        output = regularized(self.output_dropout, output, training)
        if return_attention_scores:
            return output, probs
        return output

    def compute_output_spec(self, *args, input_norm=None, **kwargs):
        # Keras calls this for symbolic (functional-model) inputs only; calls inside another
        # layer's `call` get backend tensors and run `call`.
        if input_norm is not None:
            raise ValueError(
                "Expected input_norm=None in a functional model, which would not track the norm's "
                "weights; call attention(norm(x)) there. Received: input_norm="
                f"{type(input_norm).__name__}(name={input_norm.name!r})"
            )
        return super().compute_output_spec(*args, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size,
            num_attention_heads=self.num_attention_heads,
            qkv_bias=self.qkv_bias,
            attention_dropout=self.attention_dropout,
            dropout=self.dropout,
            initializer_range=self.initializer_range,
        )
        return config
