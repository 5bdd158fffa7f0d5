"""Layer normalisation over the last axis: Keras' layer under keras_vit's registered name."""

import keras


@keras.saving.register_keras_serializable(package="keras_vit")
class LayerNormalization(keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` registered as `keras_vit>LayerNormalization`.

    Same arguments, weights (`gamma`, `beta`) and values as the Keras layer (Ba et al.
    2016), without Keras' deprecated `rms_scaling` (use `keras.layers.RMSNormalization`).
    The registered name keeps `.keras` files of earlier keras_vit versions loading. Keras'
    `ops.layer_normalization` computes in float32 under mixed precision and casts the
    output to the layer's compute dtype.

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

    def get_config(self):
        config = super().get_config()
        del config["rms_scaling"]
        return config

