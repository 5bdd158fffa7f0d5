"""Layer normalisation over the last axis whose backward pass keeps one full-size tensor (none with the next projection)."""

import keras
from keras import ops

from keras_vit.layers.custom_gradient import cast_like, custom_gradient
from keras_vit.layers.projection import multiplies_by_kernel, project
from keras_vit.layers.recomputation import after_gradient, recomputes

# Backends whose autodiff of `keras.ops.layer_normalization` keeps several full-size
# temporaries (x − mean, the broadcast γ·rsqrt(var + ε), …) for the backward pass; PyTorch
# runs its fused `layer_norm` kernel, which keeps the input and two per-row statistics.
OWN_GRADIENT_BACKENDS = ("tensorflow", "jax")


@keras.saving.register_keras_serializable(package="keras_vit")
class LayerNormalization(keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` with a hand-written gradient on TensorFlow and JAX.

    Same arguments, weights (`gamma`, `beta`) and values as the Keras layer (Ba et al.
    2016), without Keras' deprecated `rms_scaling` (use `keras.layers.RMSNormalization`).
    With the last axis, centring and scaling (the defaults) on TensorFlow and JAX, the
    layer computes in float32 and its backward pass is the closed form
    dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) with x̂ = (x − mean)·rstd, rstd = 1/√(var + ε),
    g = dy·γ, dγ = Σ dy·x̂ and dβ = Σ dy (as in PyTorch's `layer_norm` kernel). TensorFlow
    keeps x̂ and the per-row rstd for it; JAX, and TensorFlow inside XLA-compiled functions,
    keep only the input and recompute both in the backward pass
    (`recomputation.recomputes`). Training then keeps one (batch, seq, hidden) float32
    tensor per layer norm where JAX's autodiff of Keras' layer keeps three
    (tests/test_layers.py, tests/test_training_memory.py). Other settings and the PyTorch
    backend run the Keras layer. `layer_norm_dense` computes the layer with the projection
    that reads it, so that not even the output is kept.

    Input: float tensor (..., hidden), any range. Output: same shape, the layer's compute
    dtype; values within 1e-5 of `torch.nn.functional.layer_norm` (tests/test_layers.py).

    Raises:
        ValueError: for `rms_scaling=True`.

    >>> layer = LayerNormalization(epsilon=1e-12)
    >>> y = layer(keras.ops.convert_to_tensor([[1.0, 2.0, 3.0, 6.0]]))
    >>> [round(float(v), 4) for v in keras.ops.convert_to_numpy(y)[0]]
    [-1.069, -0.5345, 0.0, 1.6036]
    """

    def __init__(
        self,
        axis=-1,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        if kwargs.pop("rms_scaling", False):
            raise ValueError(
                "Expected rms_scaling=False (deprecated in Keras); use keras.layers.RMSNormalization. "
                "Received: rms_scaling=True"
            )
        super().__init__(
            axis=axis,
            epsilon=epsilon,
            center=center,
            scale=scale,
            beta_initializer=beta_initializer,
            gamma_initializer=gamma_initializer,
            beta_regularizer=beta_regularizer,
            gamma_regularizer=gamma_regularizer,
            beta_constraint=beta_constraint,
            gamma_constraint=gamma_constraint,
            **kwargs,
        )

    def call(self, inputs):
        if not self._computes_own_gradient(inputs):
            return super().call(inputs)
        # Tensors, not variables: TensorFlow's custom gradient would otherwise ask for the
        # variables' gradients through a separate protocol.
        outputs = layer_norm_closed_form_gradient(inputs, ops.copy(self.gamma), ops.copy(self.beta), self.epsilon)
        return ops.cast(outputs, self.compute_dtype)

    def _computes_own_gradient(self, inputs):
        """Whether `call` runs the closed-form gradient (TensorFlow, JAX)."""
        return keras.backend.backend() in OWN_GRADIENT_BACKENDS and self._normalizes_last_axis(inputs)

    def _normalizes_last_axis(self, inputs):
        """Whether the layer is built for the last axis of `inputs`, centred and scaled."""
        last_axis = self.axis in ([-1], [len(inputs.shape) - 1])  # `build` made it a list
        return self.built and last_axis and self.center and self.scale

    def get_config(self):
        config = super().get_config()
        del config["rms_scaling"]
        return config


def layer_norm_closed_form_gradient(x, gamma, beta, epsilon):
    """Layer norm of x (..., hidden) with γ, β (hidden,), computed and differentiated in float32.

    Returns a tensor of x's shape and dtype.
    """

    @custom_gradient
    def normalize(x, gamma, beta):
        x32 = ops.cast(x, "float32")
        normalized, rstd = _normalized(x32, epsilon)  # kept unless recomputes()
        gamma32 = ops.cast(gamma, "float32")
        outputs = normalized * gamma32 + ops.cast(beta, "float32")

        def grad(*args, upstream=None):
            upstream = ops.cast(args[0] if upstream is None else upstream, "float32")
            if recomputes():
                x32_, gamma32_ = after_gradient(upstream, x32, gamma32)
                normalized_, rstd_ = _normalized(x32_, epsilon)
            else:
                normalized_, rstd_, gamma32_ = normalized, rstd, gamma32
            return cast_like(_layer_norm_backward(upstream, normalized_, rstd_, gamma32_), (x, gamma, beta))

        return ops.cast(outputs, x.dtype), grad

    return normalize(x, gamma, beta)


def layer_norm_dense(norm, dense, tokens):
    """`dense(norm(tokens))`, keeping only `tokens` for the backward pass where it can.

    The projection's kernel gradient reads the layer norm's output, a tensor as large as its
    input, which the layer norm's own gradient keeps too. Where gradients recompute
    (`recomputation.recomputes`: JAX, and XLA-compiled TensorFlow functions), one custom
    gradient computes the pair with the closed form of `LayerNormalization`, and its backward
    pass recomputes the layer norm from `tokens` after the incoming gradient
    (`recomputation.after_gradient`). A ViT block's training then keeps two (batch·seq,
    hidden) tensors fewer, one per layer norm (selective activation recomputation,
    Korthikanti et al. 2022; tests/test_training_memory.py), and a DeiT-S/16 step peaks
    0.05-0.19 GiB lower (benchmarks/README.md). The forward pass runs the operations of the
    composition, so values are equal; gradients equal the composition's to float32 rounding
    (tests/test_layers.py). Elsewhere this is `dense(norm(tokens))`, through
    `projection.project` (one `addmm` on PyTorch): in TensorFlow graphs
    without XLA, where `LayerNormalization` keeps x̂; on PyTorch, where the same
    recomputation with PyTorch's native layer norm kernels left the step's peak memory
    unchanged (benchmarks/README.md); and when `norm` is not built for the last axis,
    centred and scaled, or `dense` is quantized or has an activation.

    Args:
        norm: a `LayerNormalization`.
        dense: a `keras.layers.Dense` whose input width is the tokens' width.
        tokens: float tensor (rows, hidden), any range.

    Returns:
        (rows, dense.units) tensor of `dense`'s compute dtype.

    >>> norm, dense = LayerNormalization(epsilon=1e-12), keras.layers.Dense(1, kernel_initializer="ones")
    >>> tokens = keras.ops.convert_to_tensor([[1.0, 3.0]])
    >>> round(float(keras.ops.convert_to_numpy(layer_norm_dense(norm, dense, tokens))[0, 0]), 4)  # -1 + 1
    0.0
    """
    if not fuses_with_projection(norm, dense, tokens):
        return project(dense, norm(tokens))
    kernel = ops.cast(dense.kernel, dense.compute_dtype)  # the property: LoRA factors included
    gamma, beta = ops.copy(norm.gamma), ops.copy(norm.beta)  # float32 (autocast=False); tensors, see `call`
    outputs = _layer_norm_matmul(tokens, gamma, beta, kernel, norm.epsilon, norm.compute_dtype)
    if dense.bias is not None:
        outputs = ops.add(outputs, ops.cast(dense.bias, dense.compute_dtype))
    return outputs


def fuses_with_projection(norm, dense, tokens):
    """Whether `dense(norm(tokens))` may run as one custom gradient that recomputes the norm.

    Where gradients recompute (`recomputation.recomputes`), for a `norm` built for the last
    axis, centred and scaled, and a built, unquantized `dense` without activation.
    """
    return recomputes() and norm._normalizes_last_axis(tokens) and multiplies_by_kernel(dense)


def _layer_norm_matmul(x, gamma, beta, kernel, epsilon, norm_dtype):
    """(layer norm of x (rows, hidden)) @ kernel; the backward pass recomputes the layer norm."""

    @custom_gradient
    def fused(x, gamma, beta, kernel):
        gamma32 = ops.cast(gamma, "float32")

        def grad(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            (x_,) = after_gradient(upstream, x)
            normalized_tokens_, stats_ = normalized_tokens(x_, gamma32, beta, epsilon, (norm_dtype, kernel.dtype))
            d_x, d_gamma, d_beta, d_kernel = layer_norm_matmul_backward(upstream, normalized_tokens_, stats_, gamma32, kernel)
            return (*cast_like((d_x, d_gamma, d_beta), (x, gamma, beta)), d_kernel)

        normalized_tokens_, _ = normalized_tokens(x, gamma32, beta, epsilon, (norm_dtype, kernel.dtype))
        return ops.matmul(normalized_tokens_, kernel), grad

    return fused(x, gamma, beta, kernel)


def normalized_tokens(x, gamma32, beta, epsilon, dtypes):
    """A layer norm's output as the next projection receives it, and (x̂, rstd) for its gradient.

    Args:
        x: tokens (rows, hidden); gamma32: float32 γ; beta: β; epsilon: the norm's ε.
        dtypes: the casts after the closed form's own to x's dtype: the norm layer's compute
            dtype, then the projection's.
    """
    normalized, rstd = _normalized(ops.cast(x, "float32"), epsilon)
    outputs = normalized * gamma32 + ops.cast(beta, "float32")
    for dtype in (x.dtype, *dtypes):
        outputs = ops.cast(outputs, dtype)
    return outputs, (normalized, rstd)


def layer_norm_matmul_backward(upstream, norm_outputs, stats, gamma32, kernel):
    """(dx, dγ, dβ in float32, d_kernel) of `norm_outputs @ kernel` from its output's gradient.

    `norm_outputs` and `stats` (x̂, rstd) as `normalized_tokens` returns them.
    """
    d_kernel = ops.matmul(ops.transpose(norm_outputs), upstream)
    d_outputs = ops.cast(ops.matmul(upstream, ops.transpose(kernel)), "float32")
    return (*_layer_norm_backward(d_outputs, *stats, gamma32), d_kernel)


def _normalized(x32, epsilon):
    """(x̂ = (x − mean)·rstd, rstd = 1/√(var + ε)) over the last axis of float32 x."""
    centered = x32 - ops.mean(x32, axis=-1, keepdims=True)
    rstd = ops.rsqrt(ops.mean(ops.square(centered), axis=-1, keepdims=True) + epsilon)
    return centered * rstd, rstd


def _layer_norm_backward(upstream, normalized, rstd, gamma32):
    """(dx, dγ, dβ) in float32 from the float32 gradient of the layer norm's output (PyTorch's closed form)."""
    width = normalized.shape[-1]
    flat_upstream = ops.reshape(upstream, (-1, width))
    d_normalized = upstream * gamma32
    d_x = rstd * (
        d_normalized
        - ops.mean(d_normalized, axis=-1, keepdims=True)
        - normalized * ops.mean(d_normalized * normalized, axis=-1, keepdims=True)
    )
    d_gamma = ops.sum(flat_upstream * ops.reshape(normalized, (-1, width)), axis=0)
    return d_x, d_gamma, ops.sum(flat_upstream, axis=0)
