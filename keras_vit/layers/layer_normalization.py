"""Layer normalisation over the last axis whose backward pass keeps one full-size tensor."""

import keras
from keras import ops

from keras_vit.layers.custom_gradient import custom_gradient
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
    backend run the Keras layer.

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
        own_gradient = (
            keras.backend.backend() in OWN_GRADIENT_BACKENDS
            and self.axis in ([-1], [len(inputs.shape) - 1])  # `build` made it a list
            and self.center
            and self.scale
        )
        if not own_gradient:
            return super().call(inputs)
        # Tensors, not variables: TensorFlow's custom gradient would otherwise ask for the
        # variables' gradients through a separate protocol.
        outputs = layer_norm_closed_form_gradient(inputs, ops.copy(self.gamma), ops.copy(self.beta), self.epsilon)
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        del config["rms_scaling"]
        return config


def layer_norm_closed_form_gradient(x, gamma, beta, epsilon):
    """Layer norm of x (..., hidden) with γ, β (hidden,), computed and differentiated in float32.

    Returns a tensor of x's shape and dtype.
    """

    def statistics(x32):
        """(x − mean, rstd = 1/√(var + ε)) over the last axis."""
        centered = x32 - ops.mean(x32, axis=-1, keepdims=True)
        return centered, ops.rsqrt(ops.mean(ops.square(centered), axis=-1, keepdims=True) + epsilon)

    @custom_gradient
    def normalize(x, gamma, beta):
        x32 = ops.cast(x, "float32")
        centered, rstd = statistics(x32)
        normalized = centered * rstd  # kept with rstd unless recomputes()
        gamma32 = ops.cast(gamma, "float32")
        outputs = normalized * gamma32 + ops.cast(beta, "float32")

        def grad(*args, upstream=None):
            upstream = ops.cast(args[0] if upstream is None else upstream, "float32")
            if recomputes():
                x32_, gamma32_ = after_gradient(upstream, x32, gamma32)
                centered_, rstd_ = statistics(x32_)
                normalized_ = centered_ * rstd_
            else:
                normalized_, rstd_, gamma32_ = normalized, rstd, gamma32
            width = normalized_.shape[-1]
            flat_upstream = ops.reshape(upstream, (-1, width))
            flat_normalized_ = ops.reshape(normalized_, (-1, width))
            d_normalized = upstream * gamma32_
            d_x = rstd_ * (
                d_normalized
                - ops.mean(d_normalized, axis=-1, keepdims=True)
                - normalized_ * ops.mean(d_normalized * normalized_, axis=-1, keepdims=True)
            )
            d_gamma = ops.sum(flat_upstream * flat_normalized_, axis=0)
            d_beta = ops.sum(flat_upstream, axis=0)
            return ops.cast(d_x, x.dtype), ops.cast(d_gamma, gamma.dtype), ops.cast(d_beta, beta.dtype)

        return ops.cast(outputs, x.dtype), grad

    return normalize(x, gamma, beta)
