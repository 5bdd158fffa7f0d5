"""XLA's memory plan for a keras_vit training gradient on JAX: this tree against another checkout.

Compiles (does not run) the gradient of the classification loss of DeiT-S/16 dimensions
(hidden 384, 12 layers, 6 heads, MLP 1536, 10 classes, float32) and prints XLA's planned peak
of temporary buffers (`memory_analysis().temp_size_in_bytes`: activations kept for the
backward pass plus the transients live with them; weights and inputs not counted). The plan
is deterministic, so one process per setting suffices and background load does not matter.
It explains peak RSS in `cpu_training.py`; it is not a substitute for it.
`--gradient-checkpointing` adds a column for this tree's model built with
`gradient_checkpointing=True` (`keras.remat` around each block's branches) and its ratio to
the plain plan.

Usage:  python benchmarks/jax_memory_plan.py --settings 224x16 384x8 224x4 384x4 512x4 [--baseline DIR]
        [--gradient-checkpointing]
"""

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from cpu_training import DEIT_SMALL, ROOT  # benchmarks/ is sys.path[0] when run as a script


def worker(res, batch, checkpointing):
    import jax
    import keras
    import numpy as np

    import keras_vit

    config = keras_vit.ViTConfig(**DEIT_SMALL, image_size=res, num_labels=10)
    model = keras_vit.ViTForImageClassification(config, gradient_checkpointing=checkpointing)
    pixels = np.zeros((batch, res, res, 3), "float32")
    labels = np.zeros((batch,), "int32")
    model(pixels[:1])
    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss(trainable, pixels, labels):
        logits = model.stateless_call(trainable, non_trainable, pixels, training=True)[0]["logits"]
        return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))

    trainable = [v.value for v in model.trainable_variables]
    compiled = jax.jit(jax.grad(loss)).lower(trainable, pixels, labels).compile()
    print(json.dumps({"temp_bytes": compiled.memory_analysis().temp_size_in_bytes}))


def planned_gib(tree, res, batch, checkpointing=False):
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(tree)}
    command = [sys.executable, __file__, "--worker", str(res), str(batch), str(int(checkpointing))]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode or not lines:
        raise SystemExit(f"{tree} {res} px batch {batch} failed:\n{result.stderr[-2000:]}")
    return json.loads(lines[-1])["temp_bytes"] / 2**30


def setting(text):
    try:
        res, batch = (int(part) for part in text.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected RESxBATCH such as 224x16, received {text!r}") from None
    if res % DEIT_SMALL["patch_size"] or batch < 1:
        raise argparse.ArgumentTypeError(
            f"expected a resolution divisible by {DEIT_SMALL['patch_size']} and batch >= 1, received {text!r}"
        )
    return res, batch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", type=setting, nargs="+", default=[(224, 16), (384, 8)], metavar="RESxBATCH")
    parser.add_argument("--baseline", type=Path, help="another keras_vit checkout to compare with")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="add this tree with gradient_checkpointing")
    args = parser.parse_args()
    versions = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in ("keras", "jax", "jaxlib"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; {versions}; python {platform.python_version()}")
    print("DeiT-S/16 dims, 10 classes, float32; cells: XLA's planned temporary buffers of the training gradient\n")
    columns = [("this tree", ROOT, False)] + ([("baseline", args.baseline, False)] if args.baseline else [])
    columns += [("this tree, gradient_checkpointing", ROOT, True)] if args.gradient_checkpointing else []
    ratios = [name for name, _, _ in columns[1:]]
    header = [name for name, _, _ in columns] + [f"{name} / this tree" for name in ratios]
    print("| resolution (tokens), batch | " + " | ".join(header) + " |")
    print("| --- " * (len(header) + 1) + "|")
    for res, batch in args.settings:
        gib = [planned_gib(tree, res, batch, checkpointing) for _, tree, checkpointing in columns]
        cells = [f"{g:.3f} GiB" for g in gib] + [f"{g / gib[0]:.2f}x" for g in gib[1:]]
        print(f"| {res} px ({(res // DEIT_SMALL['patch_size']) ** 2 + 1}), {batch} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), int(sys.argv[3]), bool(int(sys.argv[4])))
    else:
        main()
