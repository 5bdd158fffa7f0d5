"""Peak memory of the served graph on a decompression-bomb PNG, with and without the pixel limit.

Exports a tiny ViT classifier twice with `keras_vit.export.export_saved_model`: with the
default `max_image_pixels` (PIL's limit, 89,478,485; the header is checked before decoding)
and with the limit off (`max_image_pixels=2**62`, what the graph did before the limit
existed: decode whatever the header declares). Each SavedModel is loaded in a fresh process
the way TF Serving loads it (a TF1 session on the "serve" graph), warmed up on a small PNG,
then sent one 1-bit PNG of ~24 KB that declares 14000 x 14000 pixels. The table gives the
process's peak resident memory (`resource.getrusage(RUSAGE_SELF).ru_maxrss`) after the
warm-up and after the bomb, the request's time and outcome, and the ratio of the memory
added by the bomb without the limit to that with it.

Run: KERAS_BACKEND=tensorflow python benchmarks/serving_memory.py
"""

import argparse
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(path, bomb_path):
    """Serve one warm-up PNG then the bomb from the SavedModel at `path`; print a JSON line."""
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        signature = tf.compat.v1.saved_model.loader.load(session, ["serve"], path).signature_def["serving_default"]
    feed, fetch = signature.inputs["images"].name, signature.outputs["probabilities"].name
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(buffer, format="PNG")
    session.run(fetch, {feed: [buffer.getvalue()]})
    warm = _peak_mb()
    start = time.perf_counter()
    try:
        session.run(fetch, {feed: [Path(bomb_path).read_bytes()]})
        outcome = "decoded and served"
    except tf.errors.InvalidArgumentError as error:
        outcome = "InvalidArgument: " + next(line for line in error.message.splitlines() if "Expected" in line).strip()
    print(json.dumps({"warm_mb": warm, "peak_mb": _peak_mb(), "seconds": time.perf_counter() - start, "outcome": outcome}))


def main():
    import keras
    import tensorflow as tf

    import keras_vit
    from keras_vit.export import export_saved_model
    from tests.conftest import tiny_config
    from tests.test_preprocessing import bomb_png

    with tempfile.TemporaryDirectory() as tmp:
        bomb = Path(tmp, "bomb.png")
        bomb.write_bytes(bomb_png(14000, 14000))
        keras.utils.set_random_seed(0)
        model = keras_vit.ViTForImageClassification(tiny_config(keras_vit.ViTForImageClassification))
        variants = {"limit on (default)": None, "limit off (before)": 2**62}
        rows = {}
        for name, limit in variants.items():
            kwargs = {} if limit is None else {"max_image_pixels": limit}
            path = export_saved_model(model, Path(tmp, name.split()[1]), verbose=False, **kwargs)
            result = subprocess.run(
                [sys.executable, __file__, "--child", str(path), str(bomb)], capture_output=True, text=True, check=True
            )
            rows[name] = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"{platform.machine()}, {os.cpu_count()} cores, tensorflow {tf.__version__}, keras {keras.__version__}")
    print(f"bomb: 1-bit PNG, {bomb_png(14000, 14000).__len__():,} bytes, declares 14000 x 14000 = 196,000,000 pixels")
    print("| served graph | peak RSS after warm-up (MB) | peak RSS after bomb (MB) | added (MB) | seconds | outcome |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, row in rows.items():
        added = row["peak_mb"] - row["warm_mb"]
        print(f"| {name} | {row['warm_mb']:.0f} | {row['peak_mb']:.0f} | {added:.0f} | {row['seconds']:.2f} | {row['outcome']} |")
    on, off = (rows[n]["peak_mb"] - rows[n]["warm_mb"] for n in variants)
    print(f"memory added by the bomb: limit off {off:.0f} MB, limit on {on:.0f} MB (ratio off/on: "
          f"{'inf' if on <= 0 else f'{off / on:.0f}'}; ru_maxrss resolution 1 KiB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs=2, metavar=("SAVED_MODEL", "BOMB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    child(*args.child) if args.child else main()
