"""Run on JAX by test_training_memory.py: the memory XLA plans for a transformer block's training.

Compiles the gradient of a stack of `TransformerBlock`s (hidden 64, 4 heads, MLP 256, batch 8,
65 tokens) with 2 and with 4 blocks, reads XLA's planned peak of temporary buffers
(`memory_analysis().temp_size_in_bytes`) and prints one JSON line: what two more blocks add,
per token and per block, in units of one float32 hidden vector, as JAX runs the blocks and with
the attention recomputing q, k and v as on XLA-compiled TensorFlow
(`attention.QKV_RECOMPUTING_BACKENDS`), and the largest difference between the two settings'
gradients of a 2-block stack with the largest gradient. Deterministic: no step runs.
Usage: KERAS_BACKEND=jax python tests/training_memory_check.py
"""

import json

import jax
import keras
import numpy as np

from keras_vit.layers import TransformerBlock, attention

HIDDEN, HEADS, MLP, BATCH, SEQ = 64, 4, 256, 8, 65


def block_stack(num_blocks):
    """(the blocks' weights, tokens, gradient of a sum of squares after the blocks); seeded."""
    keras.utils.set_random_seed(0)
    blocks = [TransformerBlock(HIDDEN, HEADS, MLP) for _ in range(num_blocks)]
    tokens = np.random.default_rng(0).normal(size=(BATCH, SEQ, HIDDEN)).astype("float32")
    for block in blocks:
        block.build(tokens.shape)
    weights = [[v.value for v in block.trainable_variables] for block in blocks]

    def loss(weights, hidden_states):
        for block, block_weights in zip(blocks, weights):
            hidden_states, _ = block.stateless_call(block_weights, [], hidden_states, training=True)
        return keras.ops.sum(keras.ops.square(hidden_states))

    return weights, tokens, jax.grad(loss, argnums=(0, 1))


def planned_temp_bytes(num_blocks):
    weights, tokens, gradient = block_stack(num_blocks)
    compiled = jax.jit(gradient).lower(weights, tokens).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def hidden_vectors_per_token_per_block():
    return (planned_temp_bytes(4) - planned_temp_bytes(2)) / 2 / (BATCH * SEQ * HIDDEN * 4)


def gradients():
    weights, tokens, gradient = block_stack(2)
    return jax.tree_util.tree_leaves(jax.jit(gradient)(weights, tokens))


def main():
    out = {"hidden_vectors_per_token_per_block": hidden_vectors_per_token_per_block()}
    keeping = gradients()
    attention.QKV_RECOMPUTING_BACKENDS = ("jax",)
    out["recomputing_qkv"] = hidden_vectors_per_token_per_block()
    recomputing = gradients()
    out["gradient_leaves"] = len(recomputing)
    out["max_gradient_difference"] = max(float(np.abs(a - b).max()) for a, b in zip(keeping, recomputing))
    out["max_gradient"] = max(float(np.abs(a).max()) for a in keeping)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
