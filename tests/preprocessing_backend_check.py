"""Run under another Keras backend by test_preprocessing.py: ImagePreprocessing gives TensorFlow's pixels.

Usage: KERAS_BACKEND=jax python tests/preprocessing_backend_check.py CASES.npz
Prints `max_abs_diff=<float>` over every case in the file (inputs and TensorFlow outputs).
"""

import json
import sys

import numpy as np

from keras_vit.layers import ImagePreprocessing


def main(path):
    data = np.load(path, allow_pickle=False)
    worst = 0.0
    for i, config in enumerate(json.loads(str(data["configs"]))):
        layer = ImagePreprocessing.from_config(config)
        got = np.asarray(layer(data[f"input_{i}"]))
        assert got.shape == data[f"output_{i}"].shape, (config, got.shape)
        worst = max(worst, float(np.abs(got - data[f"output_{i}"]).max()))
    print(f"max_abs_diff={worst:.3e}")


if __name__ == "__main__":
    main(sys.argv[1])
