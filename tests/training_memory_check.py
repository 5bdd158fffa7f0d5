"""Run on JAX by test_training_memory.py: what a transformer block keeps for its backward pass.

Lists the residuals JAX saves for the gradient of a `TransformerBlock` (hidden 64, 4 heads, MLP
256, batch 8, 65 tokens; `jax.ad_checkpoint.print_saved_residuals`) without and with
`gradient_checkpointing`, and prints one JSON line: their activation-sized bytes (tensors of at
least batch·seq elements: not the weights) per token, in units of one float32 hidden vector,
and the largest difference between the two settings' gradients with the largest gradient.
Usage: KERAS_BACKEND=jax python tests/training_memory_check.py
"""

import json
import math

import jax
import keras
import numpy as np

from keras_vit.layers import TransformerBlock
from tests.gradients import jax_saved_residual_types

HIDDEN, HEADS, MLP, BATCH, SEQ = 64, 4, 256, 8, 65
BYTES = {"f32": 4, "bf16": 2, "bool": 1}


def block_loss(checkpointing):
    """(weights, tokens, loss(weights, tokens): sum of squares after the block); seeded."""
    keras.utils.set_random_seed(0)
    block = TransformerBlock(HIDDEN, HEADS, MLP, gradient_checkpointing=checkpointing)
    tokens = np.random.default_rng(0).normal(size=(BATCH, SEQ, HIDDEN)).astype("float32")
    block.build(tokens.shape)

    def loss(weights, hidden_states):
        hidden_states, _ = block.stateless_call(weights, [], hidden_states, training=True)
        return keras.ops.sum(keras.ops.square(hidden_states))

    return [v.value for v in block.trainable_variables], tokens, loss


def hidden_vectors_per_token(checkpointing):
    weights, tokens, loss = block_loss(checkpointing)
    total = 0
    for kind in jax_saved_residual_types(loss, weights, tokens):  # e.g. "f32[8,65,64]"
        dtype, shape = kind.rstrip("]").split("[")
        elements = math.prod(int(n) for n in shape.split(",") if n)
        if elements >= BATCH * SEQ:
            total += elements * BYTES[dtype]
    return total / (BATCH * SEQ * HIDDEN * 4)


def gradients(checkpointing):
    weights, tokens, loss = block_loss(checkpointing)
    return jax.tree_util.tree_leaves(jax.jit(jax.grad(loss, argnums=(0, 1)))(weights, tokens))


def main():
    out = {"hidden_vectors_per_token": hidden_vectors_per_token(False), "checkpointing": hidden_vectors_per_token(True)}
    keeping, recomputing = gradients(False), gradients(True)
    out["gradient_leaves"] = len(recomputing)
    out["max_gradient_difference"] = max(float(np.abs(a - b).max()) for a, b in zip(keeping, recomputing))
    out["max_gradient"] = max(float(np.abs(a).max()) for a in keeping)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
