"""CPU inference latency: keras_vit vs keras-hub's ViT and Hugging Face transformers (PyTorch).

Same architecture for every peer (ViT-B/16, DeiT-S/16, DeiT-Ti/16 at 224 px, 1000 classes,
random weights, float32). keras_vit and keras-hub run on the TensorFlow backend through
`predict_on_batch` (Keras' compiled predict function); transformers runs eagerly under
`torch.inference_mode()`. Repeats are interleaved round-robin across peers so background load
hits all of them alike; the table shows the median latency per batch and the ratio
keras_vit / peer (below 1.0: keras_vit is faster).

Peers install with:  pip install keras-hub transformers torch==2.13.0
Run:                 KERAS_BACKEND=tensorflow python benchmarks/cpu_inference.py [--repeats 5]
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


def keras_vit_runner(config, class_name):
    model = getattr(keras_vit, class_name)(config)
    return lambda x: model.predict_on_batch(x)["logits"]


def keras_hub_runner(config):
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
    return lambda x: model.predict_on_batch(x)


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
    x = np.random.default_rng(0).normal(size=(batch, 224, 224, 3)).astype("float32")
    times = {name: [] for name in runners}
    for i in range(warmup + repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run(x)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args()
    import tensorflow as tf
    import torch
    import transformers

    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, {platform.platform()}")
    print(
        f"versions: keras {keras.__version__}, tensorflow {tf.__version__}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, keras_vit {keras_vit.__version__}"
    )
    print(f"median of {args.repeats} interleaved runs after 2 warm-up runs; float32; times in ms per batch\n")
    print("| model | batch | keras_vit | keras-hub | transformers | vs keras-hub | vs transformers |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for size in args.sizes:
        preset, ours_class, hf_class = SIZES[size]
        config_class = keras_vit.DeiTConfig if preset.startswith("deit") else keras_vit.ViTConfig
        config = config_class.from_preset(preset, num_labels=1000)
        runners = {"keras_vit": keras_vit_runner(config, ours_class)}
        if size.startswith("ViT"):
            runners["keras-hub"] = keras_hub_runner(config)
        runners["transformers"] = transformers_runner(config, hf_class)
        for batch in args.batches:
            t = measure(runners, batch, args.repeats)
            hub = t.get("keras-hub")
            cells = [
                f"{t['keras_vit'] * 1e3:.0f}",
                f"{hub * 1e3:.0f}" if hub else "n/a (no DeiT)",
                f"{t['transformers'] * 1e3:.0f}",
                f"{t['keras_vit'] / hub:.2f}" if hub else "-",
                f"{t['keras_vit'] / t['transformers']:.2f}",
            ]
            print(f"| {size} | {batch} | " + " | ".join(cells) + " |", flush=True)
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
