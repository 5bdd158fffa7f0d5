"""int8 vs float32: file size, CPU latency and top-1 agreement, in Keras and as a TF Serving SavedModel.

The int8 model is `model.quantize("int8")` (Keras' per-channel int8 Dense kernels, activations
quantized on the fly). Images are real photos: scikit-learn's two sample images, whole and
cut into 224 px tiles every 112 px, and mirrored (36 images), preprocessed by `keras_vit.processors.ViTImageProcessor`.

Reported per model size:
- size: the `.keras` file, and the SavedModel's `variables/` written by `export_saved_model`;
- latency: median ms per batch of `predict_on_batch` (in process) and of the exported
  `predict_pixels` signature (`tf.saved_model.load`), float32 and int8 alternated;
- agreement: the share of images whose top-1 class is the same for int8 and float32, and the
  largest |Δ logit|, for the Keras model and for the SavedModel.

`--jit-compile` runs both models XLA-compiled: Keras' `compile(jit_compile=True)` for
`predict_on_batch` and `export_saved_model(..., jit_compile=True)` for the SavedModel (which TF
Serving runs with `--xla_cpu_compilation_enabled=true`). Keras' default graph runs TensorFlow's
int8 MatMul kernel; XLA compiles the int8 dot itself.

Without `--checkpoint` the weights are random (no pretrained checkpoint is reachable
offline), which makes top-1 a harsher test: random logits have small margins. With
`--checkpoint DIR` (a Hugging Face checkpoint directory) the model is `from_pretrained(DIR)`.

Run: KERAS_BACKEND=tensorflow python benchmarks/quantization.py [--sizes DeiT-S/16] [--repeats 5] [--jit-compile]
"""

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_vit  # noqa: E402
from keras_vit.export import export_saved_model  # noqa: E402
from keras_vit.processors import ViTImageProcessor  # noqa: E402

SIZES = {
    "ViT-B/16": (keras_vit.ViTConfig, "vit-base-patch16-224", keras_vit.ViTForImageClassification),
    "DeiT-S/16": (keras_vit.DeiTConfig, "deit-small-patch16-224", keras_vit.DeiTForImageClassification),
    "DeiT-Ti/16": (keras_vit.DeiTConfig, "deit-tiny-patch16-224", keras_vit.DeiTForImageClassification),
}


def photos(tile=224, stride=112):
    """The sample photos whole and as tile x tile crops every `stride` px, each also mirrored.

    Returns a list of uint8 (height, width, 3) arrays (36 images for the two photos).
    """
    from sklearn.datasets import load_sample_images

    images = []
    for image in load_sample_images().images:
        images.append(image)
        for top in range(0, image.shape[0] - tile + 1, stride):
            for left in range(0, image.shape[1] - tile + 1, stride):
                images.append(image[top : top + tile, left : left + tile])
    return images + [image[:, ::-1] for image in images]


def size_mib(path):
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def median_ms(runners, batch, repeats):
    times = {name: [] for name in runners}
    for i in range(repeats + 2):
        for name, run in runners.items():
            start = time.perf_counter()
            run(batch)
            if i >= 2:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def compare(size, args, pixel_values, workdir):
    config_class, preset, model_class = SIZES[size]
    if args.checkpoint:
        float_model = model_class.from_pretrained(args.checkpoint)
    else:
        float_model = model_class(config_class.from_preset(preset, num_labels=1000))
    weights = float_model.get_weights()
    int8_model = model_class.from_config(float_model.get_config())
    int8_model.set_weights(weights)
    int8_model.quantize("int8")
    for model in (float_model, int8_model):
        model.compile(jit_compile=True if args.jit_compile else "auto")  # "auto": Keras' default
    row = {}
    logits, served = {}, {}
    for name, model in (("float32", float_model), ("int8", int8_model)):
        model.save(workdir / f"{name}.keras")
        row[f"{name} .keras MiB"] = size_mib(workdir / f"{name}.keras")
        export = export_saved_model(model, workdir / name, version=1, verbose=False, jit_compile=args.jit_compile)
        row[f"{name} variables MiB"] = size_mib(export / "variables")
        logits[name] = np.asarray(model.predict(pixel_values, batch_size=8, verbose=0)["logits"])
        signature = tf.saved_model.load(str(export)).signatures["predict_pixels"]
        served[name] = signature
        chunks = [pixel_values[i : i + 8] for i in range(0, len(pixel_values), 8)]
        served[name + " logits"] = np.concatenate(
            [signature(pixel_values=tf.constant(chunk))["logits"].numpy() for chunk in chunks]
        )
    batch = pixel_values[: args.batch]
    latency = median_ms(
        {
            "float32 keras": lambda x: float_model.predict_on_batch(x),
            "int8 keras": lambda x: int8_model.predict_on_batch(x),
            "float32 savedmodel": lambda x: served["float32"](pixel_values=tf.constant(x)),
            "int8 savedmodel": lambda x: served["int8"](pixel_values=tf.constant(x)),
        },
        batch,
        args.repeats,
    )
    row.update({f"{k} ms": v for k, v in latency.items()})
    for where, a, b in (
        ("keras", logits["float32"], logits["int8"]),
        ("savedmodel", served["float32 logits"], served["int8 logits"]),
    ):
        row[f"top-1 agreement {where}"] = float(np.mean(a.argmax(-1) == b.argmax(-1)))
        row[f"max |Δlogit| {where}"] = float(np.abs(a - b).max())
    keras.backend.clear_session()
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["DeiT-S/16"], choices=list(SIZES))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--checkpoint", help="Hugging Face checkpoint directory (one size only)")
    parser.add_argument("--jit-compile", action="store_true", help="XLA-compiled Keras model and SavedModel")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; load average {os.getloadavg()}")
    print(f"versions: keras {keras.__version__}, tensorflow {tf.__version__}, keras_vit {keras_vit.__version__}")
    images = photos()
    pixel_values = np.asarray(ViTImageProcessor()(images)["pixel_values"], dtype="float32")
    print(f"{len(images)} real images (2 photos, 224 px tiles, mirrored); batch {args.batch} for latency; "
          f"{'checkpoint ' + args.checkpoint if args.checkpoint else 'random weights, 1000 classes'}; "
          f"jit_compile={args.jit_compile}\n")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            workdir = Path(tmp) / size.replace("/", "_")
            workdir.mkdir()
            row = compare(size, args, pixel_values, workdir)
            print(f"## {size}\n\n| measure | float32 | int8 | int8 / float32 |\n| --- | --- | --- | --- |")
            for measure in (".keras MiB", "variables MiB", "keras ms", "savedmodel ms"):
                a, b = row[f"float32 {measure}"], row[f"int8 {measure}"]
                print(f"| {measure} | {a:.1f} | {b:.1f} | {b / a:.2f} |")
            for where in ("keras", "savedmodel"):
                print(f"| top-1 agreement ({where}) | - | {row[f'top-1 agreement {where}']:.3f} | - |")
                print(f"| max abs logit change ({where}) | - | {row[f'max |Δlogit| {where}']:.4f} | - |")
            print(flush=True)
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
