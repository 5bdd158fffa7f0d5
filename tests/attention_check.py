"""Run under each Keras backend by test_attention.py: fused and explicit attention paths agree.

Prints one JSON line: the largest |Δ| per comparison and which path the layer took.
Usage: KERAS_BACKEND=torch python tests/attention_check.py
"""

import json

import keras
import numpy as np

from keras_vit.layers import attention


def main():
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    calls = []
    fused = attention.fused_attention
    attention.fused_attention = lambda *args: calls.append(1) or fused(*args)
    q, k, v = (rng.normal(size=(2, 197, 6, 64)).astype("float32") for _ in range(3))
    diffs = {
        "functions": np.abs(
            keras.ops.convert_to_numpy(attention.fused_attention(q, k, v))
            - keras.ops.convert_to_numpy(attention.explicit_attention(q, k, v)[0])
        ).max()
    }
    calls.clear()
    tokens = rng.normal(size=(2, 197, 384)).astype("float32")
    for rate in (0.0, 0.1):
        layer = attention.MultiHeadSelfAttention(384, 6, attention_dropout=rate)
        for training in (False, True) if rate == 0 else (False,):
            plain = keras.ops.convert_to_numpy(layer(tokens, training=training))
            explicit, _ = layer(tokens, return_attention_scores=True, training=training)
            diffs[f"layer rate={rate} training={training}"] = np.abs(plain - keras.ops.convert_to_numpy(explicit)).max()
    print(json.dumps({"diffs": {k: float(d) for k, d in diffs.items()}, "fused_calls": len(calls)}))


if __name__ == "__main__":
    main()
