"""Memory that each trained and deleted model leaves behind on TensorFlow: keras_vit vs keras-hub.

A process that builds, trains and deletes models one after another (k-fold cross-validation,
hyperparameter search, a notebook re-running a cell) should not grow with each model. Each
framework runs in its own subprocess, which builds a DeiT-S/16-sized classifier (hidden 384,
12 layers, 6 heads) at 64 px, trains it for one step (`fit`, AdamW, 10 classes, batch 4),
predicts, deletes it, calls `keras.backend.clear_session()` and `gc.collect()`, and repeats.
The table gives the resident set size after the first model, the mean growth per further
model (after the last minus after the first, over the models between), and the growth's ratio
to keras-hub's in the same run.

keras_vit runs with Keras' defaults (`compile()`: TensorFlow graphs on a machine without a GPU),
with `gradient_checkpointing=True` (`keras.remat`, a `tf.custom_gradient` per block) and with
`compile(jit_compile=True)` (XLA-compiled steps); keras-hub's `ViTImageClassifier` with Keras'
defaults, as its users get it, and with `jit_compile=True`.

Peers install with:  pip install keras-hub
Run:  python benchmarks/model_churn.py --models 4
Before/after in one run: --baseline DIR adds keras_vit from another checkout (`git archive`).
"""

import argparse
import gc
import json
import os
import platform
import sys
from pathlib import Path

from cpu_training import DEIT_SMALL, NUM_LABELS, keras_hub_classifier, load, run_worker, versions

RES, BATCH = 64, 4
FRAMEWORKS = ("keras_vit", "keras_vit-checkpointing", "keras_vit-xla", "keras-hub", "keras-hub-xla")
PEER = "keras-hub"


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _model(framework):
    import keras

    jit_compile = True if framework.endswith("-xla") else "auto"
    if framework.startswith(PEER):
        model = keras_hub_classifier(RES)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(keras.optimizers.AdamW(1e-4), loss=loss, jit_compile=jit_compile)
        return model
    import keras_vit

    config = keras_vit.ViTConfig(**DEIT_SMALL, image_size=RES, num_labels=NUM_LABELS)
    model = keras_vit.ViTForImageClassification(config, gradient_checkpointing=framework == "keras_vit-checkpointing")
    model.compile(keras.optimizers.AdamW(1e-4), jit_compile=jit_compile)
    return model


def worker(framework, models):
    """Runs in the subprocess: prints one JSON line with the RSS after each deleted model."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (BATCH, RES, RES, 3)).astype("float32")
    y = rng.integers(0, NUM_LABELS, (BATCH,))
    rss = []
    for _ in range(models):
        model = _model(framework)
        model.fit(x, y, batch_size=BATCH, verbose=0)
        model.predict(x, verbose=0)
        del model
        keras.backend.clear_session()
        gc.collect()
        rss.append(_rss_bytes())
    print(json.dumps({"rss_bytes": rss}), flush=True)


def run_one(framework, models, baseline=None):
    """Returns (RSS after the first model, mean growth per further model) in MiB, or None."""
    out = run_worker(__file__, framework, f"{models} models", "tensorflow", (models,), baseline)
    if out is None:
        return None
    rss = [b / 2**20 for b in out["rss_bytes"]]
    print(f"  {framework}: RSS after each model {[round(r) for r in rss]} MiB", file=sys.stderr, flush=True)
    return rss[0], (rss[-1] - rss[0]) / (len(rss) - 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=FRAMEWORKS)
    parser.add_argument("--models", type=int, default=4, help="models built, trained and deleted per process (>= 2)")
    parser.add_argument("--baseline", type=Path, help="another keras_vit checkout, run as keras_vit-*@baseline")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker[0], int(args.worker[1]))
    if args.models < 2:
        parser.error(f"--models must be at least 2 to measure growth; received {args.models}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; {load()}")
    print(f"versions: {versions()}; python {platform.python_version()}")
    frameworks = list(args.frameworks)
    if args.baseline:
        frameworks += [f"{f}@baseline" for f in args.frameworks if f.startswith("keras_vit")]
    results = {f: run_one(f, args.models, args.baseline) for f in frameworks}
    peer = results.get(PEER)
    print(f"DeiT-S/16 at {RES} px, batch {BATCH}, one fit step + predict per model, {args.models} models per process")
    print("| framework | RSS after the first model | growth per further model | growth vs keras-hub |")
    print("| --- | --- | --- | --- |")
    for framework, result in results.items():
        if result is None:
            print(f"| {framework} | failed | | |")
            continue
        ratio = f"{result[1] / peer[1]:.2f}x" if peer and peer[1] > 0 else "n/a"
        print(f"| {framework} | {result[0]:.0f} MiB | {result[1]:+.0f} MiB | {ratio} |")


if __name__ == "__main__":
    main()
