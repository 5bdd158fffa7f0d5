"""Fashion-MNIST: a CNN teacher and one small DeiT trained three ways (no, soft, hard distillation); serve it.

DeiT's claim (Touvron et al. 2021, "Training data-efficient image transformers &
distillation through attention", section 5.2 and Table 3) on a data set that fits two CPU
cores: a vision transformer trained with limited data gains from distillation through
attention from a convnet teacher, most with hard distillation. The job:

1. loads Zalando's Fashion-MNIST (60,000 + 10,000 grey 28x28 images of 10 clothing
   classes; MIT licence) from Debian's `dataset-fashion-mnist` package
   (`/usr/share/datasets/fashion-mnist/`, the original idx `.gz` files). Without the
   package it says so and falls back to scikit-learn's 8x8 digits;
2. trains a small CNN teacher on all 58,000 training images but the 2,000 validation ones
   (as DeiT's RegNetY teacher, a convnet clearly better than the student), then the same
   small `DeiTForImageClassificationWithTeacher` three times on only `--train-size` of those
   images (data-limited, where DeiT shows the gain) with
   `keras_vit.distillation.DistillationTrainer`: labels only (`distillation="none"`), soft
   distillation (the paper's temperature 3) and hard distillation from the teacher. The DeiT
   recipe, scaled down: AdamW (weight decay 0.05), linear warm-up then cosine decay, label
   smoothing 0.1 on the labels, stochastic depth, random flips, shifts and RandomErasing
   (Keras layers). With the TensorFlow backend a `--seed` gives the same numbers each run;
3. prints the held-out accuracy of the teacher and each student on the test images, and
   this run next to `benchmarks/distillation.py`'s mean ± std over seeds (the JSON it writes);
4. saves the hard-distilled DeiT as `.keras`; a fresh Python process reloads it, classifies
   test PNG files (the first test image of each class), exports it for TF Serving
   (`keras_vit.export.export_saved_model`) and sends the PNG bytes through the SavedModel's
   `serving_default` signature, checking that both agree;
5. writes an attention-rollout figure (input and [CLS] rollout overlay of those test
   images, with a colour bar) and the training curves (validation accuracy per student, the
   class-head loss all students share; matplotlib PNGs), and prints where each file went.

Run:  python examples/train_fashion_mnist.py [--epochs 36] [--train-size 5000] [--output runs/fashion_mnist]
Quick check:  python examples/train_fashion_mnist.py --subset 512 --epochs 1 --teacher-epochs 1
"""

import argparse
import collections
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras_vit_quiet  # noqa: E402

keras_vit_quiet.quiet_tensorflow_logs()  # before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

import keras_vit  # noqa: E402
from keras_vit.atomic import atomic_path  # noqa: E402
from keras_vit.attention_maps import attention_maps, attention_rollout, cls_attention_map  # noqa: E402
from keras_vit.distillation import DistillationTrainer  # noqa: E402
from keras_vit.export import export_saved_model  # noqa: E402

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
GRID = 4  # patches per side: 28 px -> patch 7, 8 px (digits fallback) -> patch 2
STUDENTS = ("none", "soft", "hard")
RESULT_NAMES = {  # result key -> table column
    "teacher": "CNN teacher",
    "deit_none": "DeiT, no distillation",
    "deit_soft": "DeiT, soft distillation",
    "deit_hard": "DeiT, hard distillation",
}
REFERENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "distillation_seeds.json"

Dataset = collections.namedtuple(
    "Dataset", "name x_train y_train x_teacher y_teacher x_val y_val x_test y_test class_names"
)


# === Data ===
def read_idx(path):
    """Reads a gzipped idx file (the MNIST format): two zero bytes, type 0x08 (uint8), rank, big-endian dims, data.

    Returns:
        uint8 array of the stored shape, e.g. (60000, 28, 28) images or (60000,) labels.

    Raises:
        ValueError: a file that is not a uint8 idx file or whose size does not match its dims.
    """
    data = gzip.decompress(Path(path).read_bytes())
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise ValueError(f"Expected a uint8 idx file (header 00 00 08). Received: {path} starting {data[:4].hex()}")
    rank = data[3]
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=rank, offset=4))
    values = np.frombuffer(data, np.uint8, offset=4 + 4 * rank)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"Expected {int(np.prod(shape))} values for shape {shape}. Received: {values.size} in {path}")
    return values.reshape(shape)


def load_dataset(train_size, val_size, seed, directory=FASHION_MNIST_DIR):
    """Fashion-MNIST from Debian's package (or scikit-learn's digits without it), split for the job.

    The training images are shuffled with `seed`; the last `val_size` (never trained on)
    give the per-epoch validation curve, all the others train the teacher (`x_teacher`) and
    the first `train_size` of them the students (`x_train`, data-limited). The test images
    are the held-out set.

    Returns:
        `Dataset`: uint8 images (n, height, width) in [0, 255], int32 labels (n,), class names.
    """
    paths = {key: Path(directory) / name for key, name in FASHION_MNIST_FILES.items()}
    if all(path.is_file() for path in paths.values()):
        name, arrays, class_names = "Fashion-MNIST", {k: read_idx(p) for k, p in paths.items()}, FASHION_MNIST_CLASSES
    else:
        print(
            f"Fashion-MNIST is not installed in {directory} (Debian: apt-get install -y dataset-fashion-mnist); "
            "falling back to scikit-learn's 8x8 handwritten digits (1,797 images)."
        )
        name, arrays, class_names = "scikit-learn digits", _digits(seed), tuple(str(i) for i in range(10))
    order = np.random.default_rng(seed).permutation(len(arrays["x_train"]))
    val_size = min(val_size, len(order) // 5)
    teacher, val = order[: len(order) - val_size], order[len(order) - val_size :]
    train = teacher[:train_size]
    x, y = arrays["x_train"], arrays["y_train"].astype("int32")
    x_test, y_test = arrays["x_test"], arrays["y_test"].astype("int32")
    return Dataset(name, x[train], y[train], x[teacher], y[teacher], x[val], y[val], x_test, y_test, class_names)


def _digits(seed):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images / 16.0 * 255).astype("uint8")  # ink counts 0..16 -> 0..255
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.25, random_state=seed, stratify=digits.target
    )
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def to_pixel_values(images):
    """uint8 (n, height, width) -> float32 (n, height, width, 1) in [-1, 1].

    The `ViTImageProcessor` defaults (rescale by 1/255, normalise with mean = std = 0.5),
    which `export_saved_model` applies to served image bytes when given no processor.
    """
    return (np.asarray(images, "float32")[..., None] / 127.5 - 1.0).astype("float32")


def make_augmentation(seed):
    """Light augmentation on pixel_values in [-1, 1]: horizontal flips, shifts of up to 10 %, RandomErasing.

    RandomErasing as DeiT (Zhong et al. 2020; probability 0.25, random-normal fill).
    """
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", fill_value=-1.0, seed=seed),
            keras.layers.RandomErasing(factor=(0.1, 0.1), scale=(0.02, 0.2), value_range=(-1.0, 1.0), seed=seed),
        ],
        name="augmentation",
    )


def training_batches(images, labels, batch_size, seed, augment=True):
    """A shuffled `tf.data.Dataset` of (pixel_values, labels) batches, reshuffled every epoch, augmented if `augment`.

    No MixUp/CutMix: at this budget the students underfit (training accuracy below
    validation accuracy), and mixing lowered every student by about 2 points (seeds 0-1).
    `keras.layers.MixUp` / `CutMix` on {"images", "labels"} with one-hot labels would go here;
    `DistillationTrainer` takes the soft labels.
    """
    dataset = tf.data.Dataset.from_tensor_slices((to_pixel_values(images), labels))
    dataset = dataset.shuffle(len(images), seed=seed).batch(batch_size)
    if augment:
        augmentation = make_augmentation(seed)
        dataset = dataset.map(lambda x, y: (augmentation(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


# === Models ===
def make_teacher(image_size, num_labels):
    """A small convnet (two conv-BatchNorm-ReLU-max-pool stages, a linear classifier), the DeiT teacher.

    The paper's teacher is a RegNetY; what matters is a convnet clearly better than the student.
    The job trains it a few epochs on all its training images without augmentation: with 58,000
    images it does not overfit in that time, and shifted or erased images slowed it down
    (`benchmarks/README.md`, the main job's recipe table).
    """
    layers = [keras.Input((image_size, image_size, 1))]
    for filters in (32, 64):
        layers += [
            keras.layers.Conv2D(filters, 3, padding="same", use_bias=False),
            keras.layers.BatchNormalization(momentum=0.9),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D(),
        ]
    layers += [keras.layers.Flatten(), keras.layers.Dropout(0.3), keras.layers.Dense(num_labels)]
    return keras.Sequential(layers, name="cnn_teacher")


def make_student(image_size, class_names, hidden_size, seed):
    """The DeiT student: a 4x4 patch grid, `hidden_size` wide, 4 blocks of 4 heads, grey input, stochastic depth 0.1."""
    keras.utils.set_random_seed(seed)
    config = keras_vit.DeiTConfig(
        image_size=image_size,
        patch_size=image_size // GRID,
        encoder_stride=image_size // GRID,
        num_channels=1,
        hidden_size=hidden_size,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=2 * hidden_size,
        drop_path_rate=0.1,
        id2label=dict(enumerate(class_names)),
    )
    return keras_vit.DeiTForImageClassificationWithTeacher(config)


def fit(model, train, val, epochs, learning_rate, loss=None):
    """AdamW (weight decay 0.05) with one epoch of linear warm-up, then cosine decay to 0; returns the History."""
    steps_per_epoch = int(train.cardinality())
    warmup = steps_per_epoch if epochs > 1 else 0
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else learning_rate,
        decay_steps=max(epochs * steps_per_epoch - warmup, 1),
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    model.compile(keras.optimizers.AdamW(schedule, weight_decay=0.05), loss=loss, metrics=["accuracy"])
    verbose = 1 if sys.stdout.isatty() else 2
    return model.fit(train, epochs=epochs, validation_data=val, validation_batch_size=500, verbose=verbose)


def train_students(data, teacher, args):
    """The same student (same initial weights) trained without, with soft and with hard distillation.

    Returns:
        dict mode -> (trained student, History).
    """
    students = {}
    val = (to_pixel_values(data.x_val), data.y_val)
    for mode in STUDENTS:
        print(f"\n=== DeiT student, distillation={mode!r} ===")
        student = make_student(data.x_train.shape[1], data.class_names, args.hidden_size, args.seed)
        trainer = DistillationTrainer(
            student,
            teacher if mode != "none" else None,
            distillation=mode,
            temperature=args.temperature,
            label_smoothing=0.1,
        )
        train = training_batches(data.x_train, data.y_train, args.batch_size, args.seed)
        students[mode] = (student, fit(trainer, train, val, args.epochs, args.learning_rate))
    return students


def accuracy(model, images, labels):
    """Top-1 accuracy of `model` (logits, or a dict with `logits`) on uint8 images."""
    outputs = model.predict(to_pixel_values(images), batch_size=500, verbose=0)
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


# === Saving, reloading and serving ===
def write_pngs(images, directory):
    """Writes uint8 grey images as `test_00.png`, ...; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        paths.append(directory / f"test_{i:02d}.png")
        Image.fromarray(image, mode="L").save(paths[-1])
    return paths


def serve(model_path, export_base, png_paths):
    """Reloads a `.keras` DeiT, classifies PNG files, exports it for TF Serving and serves the PNG bytes.

    Runs in a fresh process (`--serve`): nothing but the files on disk is shared with the
    training run. Prints one line per image for each path and whether they agree.
    """
    model = keras.saving.load_model(model_path)
    id2label = model.config.id2label
    pixel_values = to_pixel_values(np.stack([np.asarray(Image.open(p).convert("L")) for p in png_paths]))
    probabilities = np.asarray(keras.ops.softmax(model.predict(pixel_values, verbose=0)["logits"], axis=-1))
    for path, p in zip(png_paths, probabilities):
        print(f"{Path(path).name}: reloaded .keras predicts {id2label[int(p.argmax())]} (confidence {p.max():.3f})")

    encoded = [Path(p).read_bytes() for p in png_paths]
    version = export_saved_model(model, export_base, version=1, overwrite=True, sample_images=encoded, verbose=False)
    served = tf.saved_model.load(str(version)).signatures["serving_default"](images=tf.constant(encoded))
    for path, label, score in zip(png_paths, served["label"].numpy(), served["score"].numpy()):
        print(f"{Path(path).name}: SavedModel serving_default predicts {label.decode()} (score {score:.3f})")
    same = np.argmax(served["probabilities"].numpy(), -1) == probabilities.argmax(-1)
    difference = np.max(np.abs(served["probabilities"].numpy() - probabilities))
    print(
        f"SavedModel {version} agrees with the reloaded .keras model on {int(same.sum())}/{len(same)} images "
        f"(max |probability difference| {difference:.1e})"
    )


# === Figures ===
def plot_attention_rollout(student, images, labels, class_names, path):
    """Input and [CLS] attention-rollout overlay (Abnar & Zuidema 2020) for each image, one colour scale for all."""
    import matplotlib.pyplot as plt

    pixel_values = to_pixel_values(images)
    predicted = np.argmax(student.predict(pixel_values, verbose=0)["logits"], axis=-1)
    rollout = attention_rollout(attention_maps(student, pixel_values))
    maps = keras.ops.convert_to_numpy(cls_attention_map(rollout, student.config.grid_size, num_prefix_tokens=2))
    height, width = images.shape[1:]
    figure, axes = plt.subplots(
        2, len(images), figsize=(1.7 * len(images) + 1.2, 4.8), squeeze=False, layout="constrained"
    )
    for i, (image, attention) in enumerate(zip(images, maps)):
        top, bottom = axes[0, i], axes[1, i]
        top.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        top.set_title(f"{class_names[labels[i]]}\npredicted: {class_names[predicted[i]]}", fontsize=9)
        bottom.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        overlay = bottom.imshow(
            attention, cmap="jet", alpha=0.5, vmin=0, vmax=maps.max(), interpolation="nearest",
            extent=(-0.5, width - 0.5, height - 0.5, -0.5),
        )  # fmt: skip
        for axis in (top, bottom):
            axis.set_xticks([])
            axis.set_yticks([])
    axes[0, 0].set_ylabel("input", fontsize=10)
    axes[1, 0].set_ylabel("[CLS] attention rollout", fontsize=10)
    figure.colorbar(overlay, ax=axes[1, :].tolist(), shrink=0.9, label="rollout weight of the patch")
    figure.suptitle("DeiT (hard distillation): where the class token looks, one held-out test image per class")
    figure.text(
        0.5, -0.02, "Attention rollout (Abnar & Zuidema 2020): each layer's head-averaged attention plus the identity "
        "(the residual path), multiplied through the layers; the [CLS] row says how much each patch flows into it.",
        ha="center", va="top", fontsize=9,
    )  # fmt: skip
    _save_figure(figure, path)


def plot_training_curves(histories, path):
    """Validation accuracy per student (the teacher's last one as a line) and the students' class-head loss.

    The class head's cross-entropy with the labels is the one term all three students'
    objectives share (their totals differ), so it is the loss compared.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for name, history in histories.items():
        if "cls_loss" not in history.history:  # the teacher: other images, other epochs
            left.axhline(history.history["val_accuracy"][-1], color="grey", linestyle="--", label=f"{name} (final)")
            continue
        epochs = np.arange(1, len(history.history["loss"]) + 1)
        (line,) = left.plot(epochs, history.history["val_accuracy"], marker="o", markersize=3, label=name)
        right.plot(epochs, history.history["cls_loss"], color=line.get_color(), marker="o", markersize=3, label=name)
        right.plot(epochs, history.history["val_cls_loss"], color=line.get_color(), linestyle="--")
    left.set(xlabel="epoch", ylabel="accuracy", title="Validation accuracy (held-out training images)")
    right.set(xlabel="epoch", ylabel="cross-entropy", title="Class-head cross-entropy with the labels\n(solid: training, dashed: validation)")
    for axis in (left, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    _save_figure(figure, path)


def _save_figure(figure, path):
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)


# === The job ===
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=36, help="epochs for each student")
    parser.add_argument("--teacher-epochs", type=int, default=3, help="epochs for the teacher (all training images)")
    parser.add_argument("--train-size", type=int, default=5000, help="training images (data-limited students)")
    parser.add_argument("--subset", type=int, help="quick run: at most this many training and test images")
    parser.add_argument("--hidden-size", type=int, default=64, help="DeiT width")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="peak learning rate")
    parser.add_argument("--temperature", type=float, default=3.0, help="soft distillation's temperature")
    parser.add_argument("--output", type=Path, default=Path("runs/fashion_mnist"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--serve", type=Path, metavar="OUTPUT", help=argparse.SUPPRESS)  # the fresh process
    args = parser.parse_args(argv)
    for name in ("epochs", "teacher_epochs", "train_size", "subset", "hidden_size", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"Expected --{name.replace('_', '-')} >= 1. Received: {value}")
    for name in ("learning_rate", "temperature"):
        if not getattr(args, name) > 0:
            parser.error(f"Expected --{name.replace('_', '-')} > 0. Received: {getattr(args, name)}")
    return args


def run(args):
    """Trains the teacher and the three students; returns (data, teacher, students, results)."""
    train_size = min(args.train_size, args.subset or args.train_size)
    data = load_dataset(train_size, val_size=2000, seed=args.seed)
    if args.subset:
        data = data._replace(
            x_teacher=data.x_teacher[: args.subset],
            y_teacher=data.y_teacher[: args.subset],
            x_test=data.x_test[: args.subset],
            y_test=data.y_test[: args.subset],
        )
    print(
        f"{data.name}: {len(data.x_train)} training images for the students, {len(data.x_teacher)} for the teacher, "
        f"{len(data.x_val)} validation, {len(data.x_test)} held-out test images of "
        f"{data.x_train.shape[1]}x{data.x_train.shape[2]} px"
    )
    keras.utils.set_random_seed(args.seed)
    if keras.backend.backend() == "tensorflow":
        tf.config.experimental.enable_op_determinism()  # same --seed, same numbers (TensorFlow backend)
    print(f"\n=== CNN teacher, {len(data.x_teacher)} training images ===")
    teacher = make_teacher(data.x_train.shape[1], len(data.class_names))
    histories = {
        "CNN teacher": fit(
            teacher,
            training_batches(data.x_teacher, data.y_teacher, args.batch_size, args.seed, augment=False),
            (to_pixel_values(data.x_val), data.y_val),
            args.teacher_epochs,
            args.learning_rate,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    }
    students = train_students(data, teacher, args)
    histories.update({f"DeiT, distillation={mode}": history for mode, (_, history) in students.items()})
    results = {"teacher": accuracy(teacher, data.x_test, data.y_test)}
    results.update({f"deit_{mode}": accuracy(s, data.x_test, data.y_test) for mode, (s, _) in students.items()})
    return data, teacher, {mode: s for mode, (s, _) in students.items()}, histories, results


def one_per_class(labels, num_classes):
    """Indices of the first image of each class, in class order (classes absent from `labels` skipped)."""
    return np.array([np.flatnonzero(labels == c)[0] for c in range(num_classes) if np.any(labels == c)])


def budget(args):
    """The flags that set the numbers of a run (all but --seed and where files go), as a dict."""
    names = ("train_size", "subset", "epochs", "teacher_epochs", "hidden_size", "batch_size", "learning_rate", "temperature")
    return {name: getattr(args, name) for name in names}


def print_reference(results, args, path=REFERENCE):
    """Prints this run's held-out accuracies next to `benchmarks/distillation.py`'s mean ± std over seeds.

    The reference is the JSON that benchmark writes; a reference made with other flags is
    shown with those flags, a missing or single-seed one is named.
    """
    if not Path(path).is_file():
        print(f"\nNo reference over seeds yet ({path}): run benchmarks/distillation.py to write it.")
        return
    reference = json.loads(Path(path).read_text())
    summary, seeds = reference["summary"], reference["seeds"]
    if summary is None:
        print(f"\nThe reference ({path}) has one seed, {seeds}: merge more with benchmarks/distillation.py --merge.")
        return
    print(
        f"\n=== This run (seed {args.seed}) next to benchmarks/distillation.py over seeds {seeds} "
        f"({reference['date']}; {reference['machine']}) ==="
    )
    if reference["budget"] != budget(args):
        print(f"The reference ran other flags: {reference['budget']}; this run: {budget(args)}.")
    print(f"| setting | this run | reference, mean ± std over {len(seeds)} seeds |")
    print("| --- | --- | --- |")
    for key, name in RESULT_NAMES.items():
        print(f"| {name} | {results[key]:.4f} | {summary[key]['mean']:.4f} ± {summary[key]['std']:.4f} |")
    difference = summary["hard_minus_none"]
    print(
        f"| hard − none (points) | {100 * (results['deit_hard'] - results['deit_none']):+.2f} | "
        f"{100 * difference['mean']:+.2f} ± {100 * difference['standard_error']:.2f} (mean ± standard error), "
        f"hard above none in {difference['seeds_above']}/{len(seeds)} seeds |"
    )


def main(argv=None):
    args = parse_args(argv)
    if args.serve:
        return serve(args.serve / "deit_hard.keras", args.serve / "serving" / "deit", sorted((args.serve / "png").glob("*.png")))
    start = time.time()
    data, _, students, histories, results = run(args)
    print(f"\n=== Held-out accuracy on the {len(data.x_test)} test images ({data.name}) ===")
    print("| " + " | ".join(RESULT_NAMES.values()) + " |")
    print("| --- | --- | --- | --- |")
    print("| " + " | ".join(f"{results[k]:.4f}" for k in RESULT_NAMES) + " |")

    output = args.output
    model_path = output / "deit_hard.keras"
    with atomic_path(model_path) as tmp:
        students["hard"].save(tmp)
    shown = one_per_class(data.y_test, len(data.class_names))  # served and shown in the rollout figure
    pngs = write_pngs(data.x_test[shown], output / "png")
    print(f"\n=== Reloading {model_path} in a fresh process, exporting and serving {len(pngs)} test PNGs ===")
    subprocess.run([sys.executable, __file__, "--serve", str(output)], check=True)

    files = {
        "the hard-distilled DeiT": model_path,
        "its TF Serving SavedModel": output / "serving" / "deit" / "1",
        "the served test PNGs (one per class)": output / "png",
        "the attention-rollout figure": output / "attention_rollout.png",
        "the training curves": output / "training_curves.png",
    }
    plot_attention_rollout(
        students["hard"], data.x_test[shown], data.y_test[shown], data.class_names, files["the attention-rollout figure"]
    )
    plot_training_curves(histories, files["the training curves"])
    print()
    for what, path in files.items():
        print(f"Wrote {what}: {path}")
    print("\nHeld-out accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()))
    print_reference(results, args)
    print(f"Wall time: {time.time() - start:.0f} s")
    return results


if __name__ == "__main__":
    main()
