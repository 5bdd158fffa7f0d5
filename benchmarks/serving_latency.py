"""Served latency on CPU: keras_vit's SavedModel exports against ONNX Runtime on transformers' export.

One DeiT classifier (random weights, 1000 classes) is exported five ways with
`keras_vit.export.export_saved_model`:

    default       float32, no XLA (runs on a stock TF Serving)
    jit_compile   jit_compile=True (TF Serving needs --xla_cpu_compilation_enabled=true)
    bf16          dtype="bfloat16", no XLA
    int8          the model after quantize("int8") (Keras' int8 Dense), no XLA
    int8 jit_compile  the same int8 model with jit_compile=True

and each `predict_pixels` signature is run the way TF Serving runs it: loaded with
`tf.compat.v1.saved_model.loader` (tag "serve") into a TF1 session with intra/inter op threads
`--threads`. The same weights go through `save_pretrained` into transformers'
`DeiTForImageClassification`, `torch.onnx.export` (opset 17) and ONNX Runtime
(`intra_op_num_threads=--threads`), in float32 and after `onnxruntime.quantization.quantize_dynamic`
(int8 weights, QInt8). All runners alternate in one process; the table gives the median of
`--rounds` rounds in ms per batch and the ratio to ONNX Runtime float32. Accuracy drift is
measured on real photos (scikit-learn's two sample images, cut into 224 x 224 crops on a 3 x 3
grid, 18 crops): max |Δ logits| and top-1 agreement against ONNX Runtime float32. Random
weights give logits close together, so top-1 agreement is a harsh test here. `--profile` prints, for the default export, the op types that take the most time
(TF1 step stats) and the op count per encoder block; for the `jit_compile` export, whose model is
one XLA op there, the XLA:CPU thunks that take the most time in a TensorFlow profiler trace,
summed over the threads that run them; then exits.

Run: KERAS_BACKEND=tensorflow python benchmarks/serving_latency.py [--batches 1 8 32] [--rounds 9]
Needs: pip install 'keras-vit[benchmark]' (onnx, onnxruntime, transformers, torch).
"""

import argparse
import collections
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
from keras_vit.export import PIXELS_INPUT, PIXELS_SIGNATURE, export_saved_model  # noqa: E402


class SessionRunner:
    """`predict_pixels` of the SavedModel at `path`, run in a TF1 session as TF Serving does."""

    def __init__(self, path, threads):
        self.graph = tf.Graph()
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)
        self.session = tf.compat.v1.Session(graph=self.graph, config=config)
        with self.graph.as_default():
            meta_graph = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], str(path))
        signature = meta_graph.signature_def[PIXELS_SIGNATURE]
        self.feed = signature.inputs[PIXELS_INPUT].name
        self.fetch = signature.outputs["logits"].name

    def __call__(self, pixel_values, **run_kwargs):
        return self.session.run(self.fetch, feed_dict={self.feed: pixel_values}, **run_kwargs)


class OnnxRunner:
    """An ONNX Runtime session on `path` with `threads` intra-op threads; NCHW float32 in, logits out."""

    def __init__(self, path, threads):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, pixel_values):
        return self.session.run(["logits"], {"pixel_values": pixel_values.transpose(0, 3, 1, 2)})[0]


def onnx_exports(model, directory):
    """(float32, int8) ONNX files of `model`'s weights through transformers and torch.onnx.export."""
    import torch
    import transformers
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model.save_pretrained(directory / "checkpoint")
    torch_model = transformers.DeiTForImageClassification.from_pretrained(directory / "checkpoint").eval()
    float32, int8 = directory / "deit.onnx", directory / "deit-int8.onnx"
    height, width = model.config.image_hw
    with torch.no_grad():
        torch.onnx.export(
            torch_model, (torch.zeros(1, 3, height, width),), str(float32), input_names=["pixel_values"],
            output_names=["logits"], dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17, dynamo=False,
        )
    quantize_dynamic(str(float32), str(int8), weight_type=QuantType.QInt8)
    return float32, int8


def photo_crops(height, width):
    """(18, height, width, 3) float32 crops of scikit-learn's sample photos, scaled to [-1, 1]."""
    from sklearn.datasets import load_sample_images

    crops = []
    for image in load_sample_images().images:
        for top in np.linspace(0, image.shape[0] - height, 3).astype(int):
            for left in np.linspace(0, image.shape[1] - width, 3).astype(int):
                crops.append(image[top : top + height, left : left + width])
    return (np.stack(crops) / 127.5 - 1).astype("float32")


def profile(runner, pixel_values, depth, top=12):
    """Prints the op types taking the most time in one session run, and the op count per encoder block."""
    options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
    runner(pixel_values)
    metadata = tf.compat.v1.RunMetadata()
    runner(pixel_values, options=options, run_metadata=metadata)
    micros, counts, total = collections.Counter(), collections.Counter(), 0
    for device in metadata.step_stats.dev_stats:
        for node in device.node_stats:
            op = node.timeline_label.split("(")[0].split(" = ")[-1].strip() or node.node_name
            micros[op] += node.op_end_rel_micros
            counts[op] += 1
            total += node.op_end_rel_micros
    print(f"batch {len(pixel_values)}: {sum(counts.values())} ops executed, {total / 1e3:.1f} ms summed over ops")
    print("| op | count | per block | ms | share |\n| --- | --- | --- | --- | --- |")
    for op, us in micros.most_common(top):
        print(f"| {op} | {counts[op]} | {counts[op] / depth:.1f} | {us / 1e3:.2f} | {us / total:.0%} |")


def profile_xla(runner, pixel_values, top=8, rounds=3):
    """Prints the XLA:CPU thunks taking the most time over `rounds` session runs (TensorFlow profiler trace)."""
    import glob

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    runner(pixel_values)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        for _ in range(rounds):
            runner(pixel_values)
        wall = (time.perf_counter() - start) / rounds
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(Path(sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1]).read_bytes())
    micros, counts, threads = collections.Counter(), collections.Counter(), set()
    for plane in space.planes:
        for line in plane.lines:
            if "Eigen" not in line.name:  # XLA:CPU runs its thunks on the intra-op (Eigen) threads
                continue
            threads.add(line.name)
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name.split(".")[0]  # MatMul.112 -> MatMul
                micros[name] += event.duration_ps / 1e6 / rounds
                counts[name] += 1 / rounds
    executed = micros.pop("ThunkExecutor::Execute", 0.0)
    print(
        f"batch {len(pixel_values)}: {wall * 1e3:.1f} ms per request; the thunk executor ran {executed / 1e3:.1f} ms "
        f"summed over {len(threads)} threads"
    )
    print("| XLA:CPU thunk | count | ms summed over threads | share of the executor's time |\n| --- | --- | --- | --- |")
    for name, us in micros.most_common(top):
        print(f"| {name} | {counts[name]:.0f} | {us / 1e3:.2f} | {us / max(executed, 1e-9):.0%} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="deit-small-patch16-224")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="profile the default and jit_compile exports instead")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    config = keras_vit.DeiTConfig.from_preset(args.preset, num_labels=1000)
    model = keras_vit.DeiTForImageClassification(config)
    int8_model = keras_vit.DeiTForImageClassification(config)
    int8_model.set_weights(model.get_weights())
    int8_model.quantize("int8")
    exports = {
        "default": dict(model=model),
        "jit_compile": dict(model=model, jit_compile=True),
        "bf16": dict(model=model, dtype="bfloat16"),
        "int8": dict(model=int8_model),
        "int8 jit_compile": dict(model=int8_model, jit_compile=True),
    }
    if args.profile:
        exports = {"default": exports["default"], "jit_compile": exports["jit_compile"]}
    rng = np.random.default_rng(0)
    height, width = config.image_hw
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        runners = {}
        for name, kwargs in exports.items():
            path = export_saved_model(**kwargs, export_base=directory / name.replace(" ", "_"), verbose=False)
            runners[f"SavedModel {name}"] = SessionRunner(path, args.threads)
        if args.profile:
            for batch in args.batches:
                pixel_values = rng.uniform(-1, 1, (batch, height, width, 3)).astype("float32")
                profile(runners["SavedModel default"], pixel_values, config.num_hidden_layers)
                profile_xla(runners["SavedModel jit_compile"], pixel_values)
            return
        float32_onnx, int8_onnx = onnx_exports(model, directory)
        runners["ONNX Runtime float32"] = OnnxRunner(float32_onnx, args.threads)
        runners["ONNX Runtime int8"] = OnnxRunner(int8_onnx, args.threads)

        crops = photo_crops(height, width)
        reference = runners["ONNX Runtime float32"](crops)
        drift = {}
        for name, run in runners.items():
            logits = run(crops)
            drift[name] = (np.max(np.abs(logits - reference)), np.mean(logits.argmax(-1) == reference.argmax(-1)))
        results = {}
        for batch in args.batches:
            pixel_values = rng.uniform(-1, 1, (batch, height, width, 3)).astype("float32")
            for run in runners.values():  # warm-up (and XLA compilation)
                run(pixel_values)
            times = {name: [] for name in runners}
            for _ in range(args.rounds):
                for name, run in runners.items():
                    start = time.perf_counter()
                    run(pixel_values)
                    times[name].append(time.perf_counter() - start)
            for name in runners:
                results[name, batch] = statistics.median(times[name])

    load = os.getloadavg()[0]
    print(
        f"{platform.machine()}, {os.cpu_count()} cores (load average {load:.2f}), {args.threads} threads; "
        f"tensorflow {tf.__version__}, keras {keras.__version__}; {args.preset} random weights; "
        f"median of {args.rounds} alternated rounds; ms per batch (ratio to ONNX Runtime float32); drift "
        f"against ONNX Runtime float32 on {len(crops)} photo crops"
    )
    header = " | ".join(f"batch {b}" for b in args.batches)
    print(f"| runner | {header} | max abs Δ logits | top-1 agreement |\n|{' --- |' * (len(args.batches) + 3)}")
    for name in runners:
        cells = [
            f"{results[name, b] * 1e3:.1f} ({results[name, b] / results['ONNX Runtime float32', b]:.2f}x)"
            for b in args.batches
        ]
        error, agreement = drift[name]
        print(f"| {name} | {' | '.join(cells)} | {error:.2g} | {agreement:.0%} |")


if __name__ == "__main__":
    main()
