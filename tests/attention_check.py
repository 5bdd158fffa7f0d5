"""Run under each Keras backend by test_attention.py: fused and explicit attention paths agree.

Prints one JSON line: the largest |Δ| per comparison (values and gradients), which path the
layer took, and on JAX how many (seq, seq) tensors each path keeps for the backward pass.
Usage: KERAS_BACKEND=torch python tests/attention_check.py
"""

import json

import keras
import numpy as np

from keras_vit.layers import attention
from tests.gradients import jax_saved_residual_types, value_and_gradients

SEQ = 197


def seq_by_seq_residuals(fn, *arrays):
    """Number of (…, seq, seq) tensors JAX keeps for the backward pass of fn."""
    return sum(kind.endswith(f",{SEQ},{SEQ}]") for kind in jax_saved_residual_types(fn, *arrays))


def explicit(query, key, value):
    return attention.explicit_attention(query, key, value)[0]


def main():
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    calls = []
    fused = attention.fused_attention
    attention.fused_attention = lambda *args: calls.append(1) or fused(*args)
    q, k, v, upstream = (rng.normal(size=(2, SEQ, 6, 64)).astype("float32") for _ in range(4))
    (fused_value, fused_grads), (explicit_value, explicit_grads) = (
        value_and_gradients(fn, q, k, v, upstream=upstream) for fn in (fused, explicit)
    )
    diffs = {"functions": np.abs(fused_value - explicit_value).max()}
    for name, a, b in zip(("d_query", "d_key", "d_value"), fused_grads, explicit_grads):
        diffs[f"gradient {name}"] = np.abs(a - b).max()
    tokens = rng.normal(size=(2, SEQ, 384)).astype("float32")
    for rate in (0.0, 0.1):
        layer = attention.MultiHeadSelfAttention(384, 6, attention_dropout=rate)
        for training in (False, True) if rate == 0 else (False,):
            plain = keras.ops.convert_to_numpy(layer(tokens, training=training))
            with_probs, _ = layer(tokens, return_attention_scores=True, training=training)
            diffs[f"layer rate={rate} training={training}"] = np.abs(plain - keras.ops.convert_to_numpy(with_probs)).max()
    result = {"diffs": {k: float(d) for k, d in diffs.items()}, "fused_calls": len(calls)}
    if keras.backend.backend() == "jax":
        result["seq_by_seq_residuals"] = {
            "fused": seq_by_seq_residuals(lambda *a: fused(*a).sum(), q, k, v),
            "explicit": seq_by_seq_residuals(lambda *a: explicit(*a).sum(), q, k, v),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
