"""Fine-tune a small ViT on a folder of images, then serve it from a SavedModel.

1. Makes a folder of real photos offline: random 120 x 160 tiles of scikit-learn's two sample
   photos (china.jpg, flower.jpg), one class per photo, saved as JPEGs in
   `<output>/images/<class>/`.
2. Reads it with `keras.utils.image_dataset_from_directory` (float 0-255 batches) and maps
   `keras_vit.layers.ImagePreprocessing` over it in `tf.data` (resize to the model's 32 x 32,
   rescale, normalise), then trains a small `ViTForImageClassification` with `model.fit`.
3. Exports it for TF Serving with `export_saved_model` (same preprocessing layer in the
   graph) and sends the held-out JPEG files' bytes through the SavedModel's
   `serving_default` signature, printing each prediction next to the Keras model's.

Run: KERAS_BACKEND=tensorflow python examples/finetune_folder.py [--epochs 4] [--output runs/folder]
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.datasets import load_sample_images  # noqa: E402

import keras_vit  # noqa: E402
from keras_vit.export import export_saved_model  # noqa: E402
from keras_vit.layers import ImagePreprocessing  # noqa: E402

CLASSES = ("china", "flower")
TILE = (120, 160)


def make_folder(directory, tiles_per_class, seed):
    """Writes random JPEG tiles of each sample photo to directory/<class>/; returns the directory."""
    rng = np.random.default_rng(seed)
    for name, photo in zip(CLASSES, load_sample_images().images):
        (directory / name).mkdir(parents=True, exist_ok=True)
        for i in range(tiles_per_class):
            top, left = rng.integers(0, photo.shape[0] - TILE[0]), rng.integers(0, photo.shape[1] - TILE[1])
            tile = photo[top : top + TILE[0], left : left + TILE[1]]
            Image.fromarray(tile).save(directory / name / f"{i:03d}.jpg", quality=90)
    return directory


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--output", type=Path, default=Path("runs/folder"))
    parser.add_argument("--tiles", type=int, default=60, help="images per class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)

    folder = make_folder(args.output / "images", args.tiles, args.seed)
    train, held_out = keras.utils.image_dataset_from_directory(
        folder, image_size=TILE, batch_size=16, validation_split=0.25, subset="both", seed=args.seed
    )
    config = keras_vit.ViTConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, image_size=32,
        patch_size=8, id2label=dict(enumerate(train.class_names)),
    )
    preprocessing = ImagePreprocessing(size=config.image_hw)
    model = keras_vit.ViTForImageClassification(config)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    to_pixels = lambda images, labels: (preprocessing(images), labels)  # noqa: E731
    model.fit(train.map(to_pixels), validation_data=held_out.map(to_pixels), epochs=args.epochs, verbose=2)

    version = export_saved_model(model, args.output / "serving", processor=None, overwrite=True, version=1, verbose=False)
    print(f"Exported {version}")
    serve = tf.saved_model.load(str(version)).signatures["serving_default"]
    files = [Path(p) for p in held_out.file_paths[:8]]
    served = serve(images=tf.constant([f.read_bytes() for f in files]))
    pixels = preprocessing(np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]))
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(model(pixels)["logits"]))
    correct = 0
    for file, label, score, keras_row in zip(files, served["label"].numpy(), served["score"].numpy(), probabilities):
        truth, keras_label = file.parent.name, config.id2label[int(keras_row.argmax())]
        correct += label.decode() == truth
        print(f"{file.parent.name}/{file.name}: SavedModel {label.decode()} ({score:.3f}), "
              f"Keras {keras_label} ({keras_row.max():.3f})")
    print(f"SavedModel accuracy on {len(files)} held-out files: {correct / len(files):.2f}")


if __name__ == "__main__":
    main()
