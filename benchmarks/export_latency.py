"""TF Serving export: export time, SavedModel size against the weights, serving latency against Keras.

Exports a classifier (random weights, float32, 1000 classes) with `keras_vit.export`, loads it
the way TensorFlow Serving does (a TF1 session on the "serve" graph) and times, on one batch:

    keras call         model(pixel_values, training=False), eager
    predict_on_batch   Keras' compiled predict function
    predict_pixels     the SavedModel signature on the same pixel_values (session.run)
    serving_default    the SavedModel signature on JPEG bytes (decode + resize + normalise in the graph)

Repeats are interleaved round-robin so background load hits every runner alike; the table shows
median milliseconds per batch and the ratios to the eager Keras call and to predict_on_batch.

Run: KERAS_BACKEND=tensorflow python benchmarks/export_latency.py [--preset vit-tiny-patch16-224] [--batch 8]
"""

import argparse
import io
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
from PIL import Image  # noqa: E402

import keras_vit  # noqa: E402
from keras_vit.export import export_saved_model  # noqa: E402


def session_runner(path, signature, input_value):
    """A callable running `signature` of the SavedModel at `path` in a TF1 session, as TF Serving does."""
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        signature_def = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(path)).signature_def[signature]
    (input_info,) = signature_def.inputs.values()
    fetch = signature_def.outputs["logits"].name
    return lambda: session.run(fetch, feed_dict={input_info.name: input_value})


def directory_bytes(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="vit-tiny-patch16-224")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    config = keras_vit.ViTConfig.from_preset(args.preset, num_labels=1000)
    model = keras_vit.ViTForImageClassification(config)
    rng = np.random.default_rng(0)
    height, width = config.image_hw
    arrays = rng.integers(0, 256, (args.batch, height, width, 3), dtype=np.uint8)
    jpegs = []
    for array in arrays:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    pixel_values = ((arrays / 255 - 0.5) / 0.5).astype("float32")

    with tempfile.TemporaryDirectory() as base:
        start = time.perf_counter()
        path = export_saved_model(model, base, verbose=False)
        export_seconds = time.perf_counter() - start
        weight_bytes = sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in model.weights)
        saved_bytes = directory_bytes(path)
        variables_bytes = directory_bytes(path / "variables")
        graph_bytes = (path / "saved_model.pb").stat().st_size
        warmup_bytes = (path / "assets.extra" / "tf_serving_warmup_requests").stat().st_size

        runners = {
            "keras call": lambda: model(pixel_values, training=False)["logits"].numpy(),
            "predict_on_batch": lambda: model.predict_on_batch(pixel_values)["logits"],
            "predict_pixels": session_runner(path, "predict_pixels", pixel_values),
            "serving_default": session_runner(path, "serving_default", jpegs),
        }
        for run in runners.values():  # warm-up
            run()
            run()
        times = {name: [] for name in runners}
        for _ in range(args.repeats):
            for name, run in runners.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)

    print(
        f"{platform.machine()}, {os.cpu_count()} cores, keras {keras.__version__}, tensorflow {tf.__version__}; "
        f"{args.preset}, batch {args.batch}, median of {args.repeats} interleaved repeats"
    )
    print(f"export time (trace, save, warmup, verify): {export_seconds:.1f} s")
    print(
        f"weights {weight_bytes / 2**20:.2f} MiB ({model.count_params():,} float32 parameters); SavedModel "
        f"{saved_bytes / 2**20:.2f} MiB = variables {variables_bytes / 2**20:.2f} MiB + saved_model.pb "
        f"{graph_bytes / 2**20:.2f} MiB + warmup {warmup_bytes / 2**20:.2f} MiB; "
        f"variables / weights = {variables_bytes / weight_bytes:.3f}"
    )
    medians = {name: statistics.median(samples) for name, samples in times.items()}
    print("| runner | ms per batch | ratio to keras call | ratio to predict_on_batch |\n| --- | --- | --- | --- |")
    for name, median in medians.items():
        print(
            f"| {name} | {median * 1e3:.1f} | {median / medians['keras call']:.2f} "
            f"| {median / medians['predict_on_batch']:.2f} |"
        )


if __name__ == "__main__":
    main()
