"""Train a small ViT and a DeiT on scikit-learn's handwritten digits, save, reload, classify PNGs.

The digits (1,797 real 8x8 grayscale scans, UCI "Optical Recognition of Handwritten
Digits", shipped inside the scikit-learn wheel; no network) are split 75/25 with a fixed
seed. Each model trains with `model.fit` (Keras progress bars), reports held-out accuracy,
is saved as a `.keras` file, and a fresh Python process reloads it and classifies a few
held-out images written to PNG files.

Run:  python examples/train_digits.py [--epochs 60] [--output runs/digits]
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import keras_vit  # noqa: E402

DIGIT_MAX = 16.0  # scikit-learn digits are ink counts in 0..16.


def load_digits(seed):
    """Returns (x_train, y_train, x_test, y_test): uint8 images (n, 8, 8) in 0..255 and int labels."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    images = np.round(digits.images / DIGIT_MAX * 255).astype("uint8")
    return train_test_split(images, digits.target, test_size=0.25, random_state=seed, stratify=digits.target)


def make_processor():
    """ViTImageProcessor at 8x8: grayscale → RGB, rescale by 1/255, normalise to [-1, 1]."""
    return keras_vit.ViTImageProcessor(size=8, do_convert_rgb=True)


def make_config(config_class):
    return config_class(
        image_size=8,
        patch_size=2,
        encoder_stride=2,
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=128,
        hidden_dropout_prob=0.1,
        id2label={i: str(i) for i in range(10)},
    )


def train(model, x_train, y_train, x_test, y_test, epochs, seed):
    """Fits with AdamW + cosine decay and light shift augmentation; returns held-out accuracy."""
    augment = keras.layers.RandomTranslation(0.125, 0.125, fill_mode="constant", fill_value=-1.0, seed=seed)
    x_aug = np.concatenate([x_train, np.asarray(augment(x_train, training=True))])
    y_aug = np.concatenate([y_train, y_train])
    schedule = keras.optimizers.schedules.CosineDecay(1e-3, epochs * int(np.ceil(len(x_aug) / 64)))
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_aug, y_aug, epochs=epochs, batch_size=64, validation_data=(x_test, y_test), verbose=1)
    return model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]


def write_pngs(images, labels, directory, count):
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"test_{i:02d}_label_{labels[i]}.png"
        Image.fromarray(images[i], mode="L").save(path)
        paths.append(path)
    return paths


def classify(model_path, png_paths):
    """Reloads a `.keras` file and its processor and prints label and confidence for each PNG.

    Runs in a fresh process: nothing but the files on disk is shared with the training run.
    """
    model = keras.saving.load_model(model_path)
    processor = keras_vit.ViTImageProcessor.from_pretrained(Path(model_path).parent)
    logits = model.predict(processor(list(png_paths))["pixel_values"], verbose=0)["logits"]
    probs = np.asarray(keras.ops.softmax(logits, axis=-1))
    for path, p in zip(png_paths, probs):
        label = model.config.id2label[int(p.argmax())]
        print(f"{Path(path).name}: predicted {label} (confidence {p.max():.3f})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--output", type=Path, default=Path("runs/digits"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classify", nargs="+", metavar=("MODEL", "PNG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.classify:
        return classify(args.classify[0], args.classify[1:])

    keras.utils.set_random_seed(args.seed)
    start = time.time()
    x_train, x_test, y_train, y_test = load_digits(args.seed)
    processor = make_processor()
    pixels_train, pixels_test = (processor(list(x))["pixel_values"] for x in (x_train, x_test))
    args.output.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(args.output)
    pngs = write_pngs(x_test, y_test, args.output / "png", count=5)
    results = {}
    for name, cls, config_class in (
        ("vit", keras_vit.ViTForImageClassification, keras_vit.ViTConfig),
        ("deit", keras_vit.DeiTForImageClassificationWithTeacher, keras_vit.DeiTConfig),
    ):
        print(f"\n=== {cls.__name__} on digits ({len(x_train)} train / {len(x_test)} held out) ===")
        model = cls(make_config(config_class), name=f"{name}_digits")
        results[name] = train(model, pixels_train, y_train, pixels_test, y_test, args.epochs, args.seed)
        path = args.output / f"{name}_digits.keras"
        model.save(path)
        print(f"{cls.__name__}: held-out accuracy {results[name]:.4f}; saved {path}")
        print(f"Reloading {path} in a fresh process and classifying {len(pngs)} held-out PNG files:")
        subprocess.run([sys.executable, __file__, "--classify", str(path), *map(str, pngs)], check=True)
    print("\nHeld-out accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()))
    print(f"Wall time: {time.time() - start:.0f} s")
    return results


if __name__ == "__main__":
    main()
