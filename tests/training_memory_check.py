"""Run on JAX by test_training_memory.py: the memory XLA plans for a transformer block's training.

Compiles the gradient of a stack of `TransformerBlock`s (hidden 64, 4 heads, MLP 256, batch 8,
65 tokens) with 2 and with 4 blocks, reads XLA's planned peak of temporary buffers
(`memory_analysis().temp_size_in_bytes`) and prints one JSON line: what two more blocks add,
per token and per block, in units of one float32 hidden vector. Deterministic: no step runs.
Usage: KERAS_BACKEND=jax python tests/training_memory_check.py
"""

import json

import jax
import keras
import numpy as np

from keras_vit.layers import TransformerBlock

HIDDEN, HEADS, MLP, BATCH, SEQ = 64, 4, 256, 8, 65


def planned_temp_bytes(num_blocks):
    blocks = [TransformerBlock(HIDDEN, HEADS, MLP) for _ in range(num_blocks)]
    tokens = np.random.default_rng(0).normal(size=(BATCH, SEQ, HIDDEN)).astype("float32")
    for block in blocks:
        block.build(tokens.shape)
    weights = [[v.value for v in block.trainable_variables] for block in blocks]

    def loss(weights, hidden_states):
        for block, block_weights in zip(blocks, weights):
            hidden_states, _ = block.stateless_call(block_weights, [], hidden_states, training=True)
        return keras.ops.sum(keras.ops.square(hidden_states))

    compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(weights, tokens).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def main():
    per_block = (planned_temp_bytes(4) - planned_temp_bytes(2)) / 2
    print(json.dumps({"hidden_vectors_per_token_per_block": per_block / (BATCH * SEQ * HIDDEN * 4)}))


if __name__ == "__main__":
    main()
