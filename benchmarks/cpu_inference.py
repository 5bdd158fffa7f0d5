"""CPU inference latency: keras_vit vs keras-hub's ViT and Hugging Face transformers (PyTorch).

Same architecture for every peer (ViT-B/16, DeiT-S/16, DeiT-Ti/16 at 224 px, 1000 classes,
random weights, float32; keras-hub has no DeiT, so its ViT with the same dimensions stands in,
one token shorter). keras_vit and keras-hub run on the Keras backend of `KERAS_BACKEND`
(default tensorflow; jax and torch work too) through both `predict_on_batch` and `predict`
(what users call); transformers runs eagerly under
`torch.inference_mode()`. Repeats are interleaved round-robin across peers in one process so
background load hits all of them alike, each round in its own seeded random order, so no peer
always runs right after another: PyTorch's OpenMP threads spin on after each call (libgomp's
default wait policy) and slowed whichever TensorFlow call came next by ~6 ms at DeiT-Ti/16
batch 1 (`benchmarks/README.md`). The table shows the median latency per batch and
the ratios keras_vit / peer for the same entry point (below 1.0: keras_vit is faster).

Peers install with:  pip install keras-hub transformers torch==2.13.0
Run:                 KERAS_BACKEND=tensorflow python benchmarks/cpu_inference.py [--repeats 10]
                     (KERAS_BACKEND=jax for the JAX backend)
"""

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_vit  # noqa: E402

SIZES = {
    # name: (preset, keras_vit class name, transformers class name)
    "ViT-B/16": ("vit-base-patch16-224", "ViTForImageClassification", "ViTForImageClassification"),
    "DeiT-S/16": ("deit-small-patch16-224", "DeiTForImageClassification", "DeiTForImageClassification"),
    "DeiT-Ti/16": ("deit-tiny-patch16-224", "DeiTForImageClassification", "DeiTForImageClassification"),
}


def keras_vit_runners(config, class_name):
    model = getattr(keras_vit, class_name)(config)
    return {
        "keras_vit predict_on_batch": lambda x: model.predict_on_batch(x)["logits"],
        "keras_vit predict": lambda x: model.predict(x, batch_size=len(x), verbose=0)["logits"],
    }


def keras_hub_runners(config):
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(224, 224, 3),
        patch_size=config.patch_size,
        num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        hidden_dim=config.hidden_size,
        mlp_dim=config.intermediate_size,
    )
    model = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=config.num_labels, preprocessor=None)
    return {
        "keras-hub predict_on_batch": lambda x: model.predict_on_batch(x),
        "keras-hub predict": lambda x: model.predict(x, batch_size=len(x), verbose=0),
    }


def transformers_runner(config, class_name):
    import torch
    import transformers

    hf_config = getattr(transformers, type(config).__name__)(**config.to_dict())
    model = getattr(transformers, class_name)(hf_config).eval()

    def run(x):
        with torch.inference_mode():
            return model(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).logits

    return run


def measure(runners, batch, repeats, warmup=2):
    """Median seconds per call of each runner; every round runs them in a new random order (seed 0)."""
    x = np.random.default_rng(0).normal(size=(batch, 224, 224, 3)).astype("float32")
    order = np.random.default_rng(0)
    times = {name: [] for name in runners}
    for i in range(warmup + repeats):
        for name in order.permutation(list(runners)):
            start = time.perf_counter()
            runners[name](x)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds per cell, each in a random order")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args()
    import tensorflow as tf
    import torch
    import transformers

    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, {platform.platform()}")
    print(
        f"Keras backend: {keras.backend.backend()}; versions: keras {keras.__version__}, "
        f"tensorflow {tf.__version__}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, keras_vit {keras_vit.__version__}"
    )
    print(f"median of {args.repeats} interleaved runs (random order each run) after 2 warm-up runs; float32; times in ms per batch; "
          f"ratios: predict_on_batch / predict; load average {os.getloadavg()}\n")
    columns = ["keras_vit predict_on_batch", "keras_vit predict", "keras-hub predict_on_batch", "keras-hub predict"]
    print("| model | batch | " + " | ".join(columns) + " | transformers | ratios vs transformers | ratios vs keras-hub |")
    print("| --- " * (len(columns) + 5) + "|")
    for size in args.sizes:
        preset, ours_class, hf_class = SIZES[size]
        config_class = keras_vit.DeiTConfig if preset.startswith("deit") else keras_vit.ViTConfig
        config = config_class.from_preset(preset, num_labels=1000)
        runners = {**keras_vit_runners(config, ours_class), **keras_hub_runners(config)}
        runners["transformers"] = transformers_runner(config, hf_class)
        for batch in args.batches:
            t = measure(runners, batch, args.repeats)
            ours = ("keras_vit predict_on_batch", "keras_vit predict")
            hub = ("keras-hub predict_on_batch", "keras-hub predict")
            cells = [f"{t[name] * 1e3:.0f}" for name in columns + ["transformers"]]
            cells.append(" / ".join(f"{t[name] / t['transformers']:.2f}" for name in ours))
            cells.append(" / ".join(f"{t[a] / t[b]:.2f}" for a, b in zip(ours, hub)))
            print(f"| {size} | {batch} | " + " | ".join(cells) + " |", flush=True)
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
