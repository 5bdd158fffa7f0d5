"""Decodes each bomb of tests/bombs.py in this process and prints, as JSON, per format and
path ("graph": `keras_vit.image_decoding.decode_image`, "pil": `keras_vit.processors.load_image`)
the error raised, the growth of peak resident memory (VmHWM, MiB) and the resident memory
the result holds (VmRSS)."""

import json
import os
import sys
import tempfile

import numpy as np
import tensorflow as tf
from PIL import Image

from keras_vit.image_decoding import decode_image
from keras_vit.preprocessor_config import MAX_IMAGE_PIXELS
from keras_vit.processors import load_image
from tests.bombs import BOMBS


def status_mib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def main():
    graph = tf.function(lambda encoded: decode_image(encoded, MAX_IMAGE_PIXELS, name="images[0]"))
    graph.get_concrete_function(tf.TensorSpec((), tf.string))
    path = os.path.join(tempfile.mkdtemp(), "image")
    # The control comes last: an image under the limit, which must be decoded (and cost memory).
    control = np.zeros((4000, 4000, 3), np.uint8)
    Image.fromarray(control).save(path + ".png")
    cases = {**{name: make() for name, make in BOMBS.items()}, "control": open(path + ".png", "rb").read()}
    results = {}
    decoders = {"pil": lambda data: load_image(path), "graph": lambda data: graph(tf.constant(data))}
    for kind, decode in decoders.items():  # PIL first: TensorFlow may keep freed memory for itself
        for name, data in cases.items():
            with open(path, "wb") as f:
                f.write(data)
            peak, resident = status_mib("VmHWM"), status_mib("VmRSS")
            try:
                decoded = decode(data)
                error = None
            except (tf.errors.InvalidArgumentError, ValueError) as e:
                decoded, error = None, str(e)
            results[f"{name}/{kind}"] = {
                "error": error,
                "growth_mib": status_mib("VmHWM") - peak,  # peak RSS growth
                "held_mib": status_mib("VmRSS") - resident,  # what the decoded image holds
            }
            del decoded
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
