"""Run under another Keras backend by test_backends.py: same weights, same outputs as TensorFlow.

Usage: KERAS_BACKEND=jax python tests/backend_check.py WEIGHTS.npz
"""

import sys

import keras
import numpy as np

import keras_vit
from tests.conftest import tiny_config


def main(path):
    data = np.load(path, allow_pickle=False)
    images = data["images"]
    worst = 0.0
    for cls in keras_vit.MODEL_CLASSES:
        model = cls(tiny_config(cls), output_attentions=True)
        model.set_weights([data[f"{cls.__name__}/{i}"] for i in range(len(model.weights))])
        out = model.predict(images, verbose=0)
        for key in sorted(k for k in data.files if k.startswith(f"{cls.__name__}:")):
            name = key.split(":", 1)[1]
            got = out[name][0] if name == "attentions" else out[name]
            worst = max(worst, float(np.abs(np.asarray(got) - data[key]).max()))
        if "logits" in out:
            model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            loss = model.fit(images, np.array([0, 1]), epochs=1, verbose=0).history["loss"][0]
            assert np.isfinite(loss), (cls.__name__, loss)
    print(f"max_abs_diff={worst:.3e}")


if __name__ == "__main__":
    main(sys.argv[1])
