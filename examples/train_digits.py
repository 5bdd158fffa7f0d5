"""Train a ViT and DeiT students (with and without a CNN teacher) on real digits; save, reload, serve.

The digits (1,797 real 8x8 grayscale scans, UCI "Optical Recognition of Handwritten
Digits", shipped inside the scikit-learn wheel; no network) are split 75/25 with a fixed
seed and preprocessed by `keras_vit.ViTImageProcessor`. The job:

1. trains a ViT with `model.fit` (Keras progress bars), reports held-out accuracy, saves a
   `.keras` file, and a fresh Python process reloads it and classifies held-out PNG files;
2. trains a small CNN teacher, then two DeiT students with the same recipe: one on labels
   only (`distillation="none"`) and one with DeiT hard distillation from the teacher, and
   prints the held-out accuracies side by side; writes an attention-rollout overlay PNG;
3. exports the ViT as a versioned TF Serving SavedModel and classifies the PNG files'
   encoded bytes through its `serving_default` signature.

Run:  python examples/train_digits.py [--epochs 50] [--output runs/digits]
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
from keras_vit.attention_maps import attention_maps, attention_rollout, cls_attention_map, save_attention_overlay  # noqa: E402
from keras_vit.distillation import DistillationTrainer  # noqa: E402
from keras_vit.export import export_saved_model  # noqa: E402

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


def augment(x_train, y_train, seed):
    """Doubles the training set with random shifts of up to one pixel."""
    shift = keras.layers.RandomTranslation(0.125, 0.125, fill_mode="constant", fill_value=-1.0, seed=seed)
    return np.concatenate([x_train, np.asarray(shift(x_train, training=True))]), np.concatenate([y_train, y_train])


def train(model, x_train, y_train, x_test, y_test, epochs, loss="sparse_ce"):
    """Fits with AdamW + cosine decay; returns held-out accuracy of `logits`.

    `loss=None` keeps the model's own loss (DistillationTrainer's distillation losses).
    """
    schedule = keras.optimizers.schedules.CosineDecay(1e-3, epochs * int(np.ceil(len(x_train) / 64)))
    if loss == "sparse_ce":
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.05), loss=loss, metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, validation_data=(x_test, y_test), verbose=1)
    return model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]


def make_teacher():
    """A small convnet on 8x8x3 digits, the DeiT teacher (the paper uses a RegNet)."""
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ],
        name="cnn_teacher",
    )


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
    parser.add_argument("--epochs", type=int, default=50)
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
    pixels_aug, labels_aug = augment(pixels_train, y_train, args.seed)
    args.output.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(args.output)
    pngs = write_pngs(x_test, y_test, args.output / "png", count=5)
    results = {}

    print(f"\n=== ViTForImageClassification on digits ({len(x_train)} train / {len(x_test)} held out) ===")
    vit = keras_vit.ViTForImageClassification(make_config(keras_vit.ViTConfig), name="vit_digits")
    results["vit"] = train(vit, pixels_aug, labels_aug, pixels_test, y_test, args.epochs)
    vit_path = args.output / "vit_digits.keras"
    vit.save(vit_path)
    print(f"ViT: held-out accuracy {results['vit']:.4f}; saved {vit_path}")
    print(f"Reloading {vit_path} in a fresh process and classifying {len(pngs)} held-out PNG files:")
    subprocess.run([sys.executable, __file__, "--classify", str(vit_path), *map(str, pngs)], check=True)

    print("\n=== CNN teacher, then DeiT students with and without hard distillation ===")
    teacher = make_teacher()
    results["teacher"] = train(teacher, pixels_aug, labels_aug, pixels_test, y_test, args.epochs)
    students = {}
    for mode in ("none", "hard"):
        keras.utils.set_random_seed(args.seed)
        student = keras_vit.DeiTForImageClassificationWithTeacher(make_config(keras_vit.DeiTConfig), name=f"deit_{mode}")
        trainer = DistillationTrainer(student, teacher, distillation=mode)
        results[f"deit_{mode}"] = train(trainer, pixels_aug, labels_aug, pixels_test, y_test, args.epochs, loss=None)
        students[mode] = student
    deit_path = args.output / "deit_digits.keras"
    students["hard"].save(deit_path)
    print(
        f"Held-out accuracy: CNN teacher {results['teacher']:.4f} | DeiT without distillation "
        f"{results['deit_none']:.4f} | DeiT with hard distillation {results['deit_hard']:.4f}; saved {deit_path}"
    )
    rollout = attention_rollout(attention_maps(students["hard"], pixels_test[:1]))
    overlay = save_attention_overlay(
        np.repeat(x_test[0][..., None], 3, axis=-1),
        cls_attention_map(rollout, (4, 4), num_prefix_tokens=2)[0],
        args.output / "attention_overlay.png",
    )
    print(f"Attention rollout of the [CLS] token for held-out image 0 (label {y_test[0]}): {overlay}")

    print("\n=== TF Serving export of the ViT ===")
    version = export_saved_model(vit, args.output / "serving" / "vit", processor=processor, overwrite=True, version=1)
    classify_with_saved_model(version, pngs)

    print("\nHeld-out accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()))
    print(f"Wall time: {time.time() - start:.0f} s")
    return results


def classify_with_saved_model(version_dir, png_paths):
    """Sends the PNG files' encoded bytes through the SavedModel's serving_default signature."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    out = serve(images=tf.constant([Path(p).read_bytes() for p in png_paths]))
    for path, label, score in zip(png_paths, out["label"].numpy(), out["score"].numpy()):
        print(f"{Path(path).name}: SavedModel predicts {label.decode()} (score {score:.3f})")


if __name__ == "__main__":
    main()
