"""Run under JAX and PyTorch by test_layers.py: the shared layer test's path comparison on that backend.

Prints one JSON line: {case: {variant: [value |Δ|, gradient |Δ|]}}, relative to the float32
explicit path without gradient checkpointing (`layer_test_helper.path_differences`), for
every case of `layer_cases.LAYER_CASES`.
Usage: KERAS_BACKEND=jax python tests/layer_check.py
"""

import json

from tests.layer_cases import LAYER_CASES
from tests.layer_test_helper import path_differences


def main():
    results = {}
    for name, (layer_cls, init_kwargs, inputs, _, call_kwargs) in LAYER_CASES.items():
        results[name] = path_differences(layer_cls, init_kwargs, inputs, call_kwargs)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
