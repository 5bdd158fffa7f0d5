"""Run on TensorFlow by test_training_memory.py: what deleted models leave in memory.

Predicts (with the argument `train`: trains and evaluates too) with tiny
`ViTForImageClassification`s (graph mode and `jit_compile="auto"`, without and with gradient
checkpointing) and with a user's Keras model built from a checkpointed `TransformerBlock`,
deletes them all and prints one JSON line: the TensorFlow graphs (`FuncGraph`) still alive and
the gradient-registry names added, which should both be none
(`keras_vit/layers/custom_gradient.py`). With the argument `unprotected`, the block's
`graphs_own_custom_gradients` is replaced by one that does nothing, to show what it avoids.
Usage: KERAS_BACKEND=tensorflow python tests/graph_release_check.py [train] [unprotected]
"""

import contextlib
import gc
import json
import sys

import keras
import numpy as np
from tensorflow.python.framework import func_graph

import keras_vit
from keras_vit.layers import transformer_block
from keras_vit.layers.custom_gradient import _gradient_registry
from tests.conftest import tiny_config


def use_and_delete_models(train):
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    labels = np.array([0, 2])
    for jit_compile, checkpointing in ((False, False), ("auto", False), (False, True), ("auto", True)):
        config = tiny_config(keras_vit.ViTForImageClassification)
        model = keras_vit.ViTForImageClassification(config, gradient_checkpointing=checkpointing)
        model.compile(optimizer="adamw", jit_compile=jit_compile)
        if train:
            model.fit(images, labels, verbose=0)
            model.evaluate(images, labels, verbose=0)
        model.predict(images, verbose=0)
    # Our layers in a user's own Keras model: each op's gradient is registered when traced.
    inputs = keras.Input((5, 8))
    block = keras_vit.layers.TransformerBlock(hidden_size=8, num_attention_heads=2, intermediate_size=16, gradient_checkpointing=True)
    keras.Model(inputs, block(inputs)).predict(np.ones((2, 5, 8), "float32"), verbose=0)


def main():
    args = sys.argv[1:]
    if "unprotected" in args:
        transformer_block.graphs_own_custom_gradients = contextlib.nullcontext
    names_before = set(_gradient_registry())
    use_and_delete_models(train="train" in args)
    gc.collect()
    graphs = [o.name for o in gc.get_objects() if isinstance(o, func_graph.FuncGraph)]
    added = sorted(set(_gradient_registry()) - names_before)
    print(json.dumps({"graphs_alive": len(graphs), "graph_names": graphs[:5], "gradients_added": added[:5]}))


if __name__ == "__main__":
    main()
