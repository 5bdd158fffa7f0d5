"""Stochastic depth: drop a residual branch per example (timm `DropPath`)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class DropPath(keras.layers.Layer):
    """Zeroes a whole residual branch for a random subset of examples while training.

    Huang et al. 2016, "Deep Networks with Stochastic Depth"; timm `DropPath` as used by
    DeiT (Touvron et al. 2021, Table 9: stochastic depth 0.1). In training each example's
    branch is kept with probability 1 - rate and then divided by 1 - rate, so its
    expectation is unchanged; at inference the layer is the identity.

    Args:
        rate: float in [0, 1), probability of dropping the branch of one example.
        seed: optional int, seed of the layer's random generator.

    Call arguments:
        inputs: tensor (batch, ...), the residual branch.
        training: bool, drop only when True.

    Returns:
        tensor of the input's shape and dtype.

    Raises:
        ValueError: if `rate` is not in [0, 1).

    >>> layer = DropPath(0.5, seed=1)
    >>> x = keras.ops.ones((4, 3))
    >>> bool(keras.ops.all(layer(x) == x))
    True
    >>> sorted(set(keras.ops.convert_to_numpy(layer(x, training=True))[:, 0].tolist()) - {0.0, 2.0})
    []
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"Expected rate to be a float in [0, 1). Received: rate={rate!r}")
        self.rate = rate
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if rate else None
        self.supports_masking = True
        self.built = True

    def call(self, inputs, training=None):
        if not training or not self.rate:
            return inputs
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        keep = 1.0 - self.rate
        mask = ops.floor(keep + keras.random.uniform(shape, seed=self.seed_generator, dtype=inputs.dtype))
        return inputs * mask / keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config

