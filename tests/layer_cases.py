"""The public layers with the tiny arguments and inputs the shared layer test runs them on.

One list for the test in this process (tests/test_layers.py, TensorFlow) and for the check run
under JAX and PyTorch (tests/layer_check.py).
"""

import numpy as np

from keras_vit import layers

RNG = np.random.default_rng(0)
TOKENS = RNG.normal(size=(2, 5, 16)).astype("float32")
IMAGES = RNG.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
MIM_TOKENS = RNG.normal(size=(2, 1 + 6, 16)).astype("float32")

# name: (layer class, constructor arguments, inputs by name, first output's shape, call arguments)
LAYER_CASES = {
    "patch_embedding": (
        layers.PatchEmbedding,
        dict(image_size=(32, 32), patch_size=(8, 8), hidden_size=16, use_distillation_token=True, dropout=0.1),
        {"pixel_values": IMAGES},
        (2, 18, 16),
        {},
    ),
    "attention": (
        layers.MultiHeadSelfAttention,
        dict(hidden_size=16, num_attention_heads=4, qkv_bias=False, attention_dropout=0.1),
        {"tokens": TOKENS},
        (2, 5, 16),
        {},
    ),
    "transformer_block": (
        layers.TransformerBlock,
        dict(
            hidden_size=16, num_attention_heads=4, intermediate_size=24, dropout=0.1, attention_dropout=0.1, drop_path_rate=0.1
        ),
        {"tokens": TOKENS},
        (2, 5, 16),
        {},
    ),
    "pooler": (layers.Pooler, dict(units=8, activation="tanh"), {"tokens": TOKENS}, (2, 8), {}),
    "distillation_head": (layers.DistillationHead, dict(num_labels=3), {"tokens": TOKENS}, (2, 3), {}),
    "mim_decoder": (
        layers.MaskedImageModelingDecoder,
        dict(encoder_stride=4, num_channels=3, patch_size=(8, 8)),
        {"tokens": MIM_TOKENS, "pixel_values": np.zeros((2, 16, 24, 3), "float32")},
        (2, 8, 12, 3),
        dict(num_prefix_tokens=1),
    ),
    "layer_normalization": (layers.LayerNormalization, dict(epsilon=1e-6), {"tokens": TOKENS}, (2, 5, 16), {}),
    "drop_path": (layers.DropPath, dict(rate=0.3, seed=2), {"tokens": TOKENS}, TOKENS.shape, {}),
}
