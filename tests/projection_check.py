"""Run under the PyTorch backend by test_layers.py: `projection.project` against `Dense.__call__`.

(On the other backends `project` is `dense(tokens)`, and no call is counted.)

For each variant of a Dense(24) on tokens (51, 64) (plain, with LoRA, without bias, int8, and
under the mixed_bfloat16 policy) prints one JSON line: the largest |Δ| between
`project(dense, tokens)` and `dense(tokens)`, in value and in the gradients with respect to
the tokens and every trainable variable, the largest |dense(tokens)|, and how many
`torch.addmm` calls `project` made. Then, for a TransformerBlock with and without qkv bias and
a MultiHeadSelfAttention called alone, how many `torch.addmm` calls the forward pass made.
Usage: KERAS_BACKEND=torch python tests/projection_check.py
"""

import json

import keras
import numpy as np

from keras_vit.layers import MultiHeadSelfAttention, TransformerBlock
from keras_vit.layers.projection import project
from tests.gradients import value_and_gradients

ROWS, WIDTH, UNITS = 51, 64, 24


def dense_layer(variant):
    """A built Dense(UNITS) with random weights, set up as `variant` says."""
    dense = keras.layers.Dense(
        UNITS,
        use_bias=variant != "no_bias",
        bias_initializer="random_normal",
        dtype="mixed_bfloat16" if variant == "mixed_bfloat16" else None,
    )
    dense.build((None, WIDTH))
    if variant == "lora":
        dense.enable_lora(4)
        dense.lora_kernel_b.assign(np.random.default_rng(1).normal(size=(4, UNITS)))
    if variant == "int8":
        dense.quantize("int8")
    return dense


def through(dense, fn):
    """fn'(tokens, *trainable weights): `fn(dense, tokens)` with those weights (stateless)."""

    def applied(tokens, *weights):
        with keras.StatelessScope(list(zip(dense.trainable_variables, weights))):
            return keras.ops.cast(fn(dense, keras.ops.cast(tokens, dense.compute_dtype)), "float32")

    return applied


def counting_addmm():
    """Wraps `torch.addmm` (PyTorch backend) to count calls; returns the list of calls."""
    calls = []
    if keras.backend.backend() == "torch":
        import torch

        addmm = torch.addmm
        torch.addmm = lambda *args: calls.append(1) or addmm(*args)
    return calls


def main():
    calls = counting_addmm()
    tokens = np.random.default_rng(0).normal(size=(ROWS, WIDTH)).astype("float32")
    upstream = np.random.default_rng(2).normal(size=(ROWS, UNITS)).astype("float32")
    for variant in ("plain", "lora", "no_bias", "int8", "mixed_bfloat16"):
        dense = dense_layer(variant)
        weights = [np.asarray(keras.ops.convert_to_numpy(w), "float32") for w in dense.trainable_variables]
        before = len(calls)
        projected = value_and_gradients(through(dense, project), tokens, *weights, upstream=upstream)
        addmm_calls = len(calls) - before
        called = value_and_gradients(through(dense, lambda d, t: d(t)), tokens, *weights, upstream=upstream)
        pairs = zip([projected[0], *projected[1]], [called[0], *called[1]])
        diffs = [float(np.abs(np.float32(a) - np.float32(b)).max()) for a, b in pairs]
        scale = float(np.abs(np.float32(called[0])).max())
        print(json.dumps(dict(variant=variant, value=diffs[0], gradients=diffs[1:], scale=scale, addmm_calls=addmm_calls)))
    layers = {
        "qkv_bias=True": TransformerBlock(32, 4, 64),
        "qkv_bias=False": TransformerBlock(32, 4, 64, qkv_bias=False),
        "attention": MultiHeadSelfAttention(32, 4),
    }
    hidden_states = keras.ops.ones((2, 5, 32))
    for name, layer in layers.items():
        layer(hidden_states)  # builds
        before = len(calls)
        layer(hidden_states, training=True)
        print(json.dumps(dict(block=name, addmm_calls=len(calls) - before)))


if __name__ == "__main__":
    main()
