"""The `keras-vit` command line: `convert`, `export`, `predict` (see `keras-vit --help`).

Exit status: 0 on success, 2 for a usage error (argparse's message), 1 for bad data (a
missing or unreadable file, a bad checkpoint, an output path that is a directory, ...),
reported on one line `keras-vit: error: ...` without a traceback.
"""

import argparse
import os
import sys
import zipfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def load_model(source, model_class=None, num_attention_heads=None):
    """Loads a `.keras` file, or a checkpoint with the class named in its config (or its tensors' shapes).

    A checkpoint is a Hugging Face directory or repo id, a timm directory or weights file,
    or a Google ViT `.npz` file (see `keras_vit.checkpoints.read_foreign_checkpoint`).

    Args:
        source: path to a `.keras` file, a checkpoint directory, or a Hub repo id.
        model_class: optional class name (e.g. "ViTForImageClassification"), overriding the
            config's `architectures` entry.
        num_attention_heads: optional int, the heads of a timm checkpoint whose width is
            not one of timm's named ones (its tensors do not give them).

    Raises:
        ValueError: the architecture is not one of keras_vit's model classes.
    """
    import keras

    import keras_vit
    from keras_vit.checkpoints import read_foreign_checkpoint
    from keras_vit.config import read_config
    from keras_vit.hub import resolve_checkpoint

    if str(source).endswith(".keras"):
        try:
            return keras.saving.load_model(source)
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise ValueError(f"Could not load {str(source)!r} as a .keras model: {error}") from None
    names = {cls.__name__: cls for cls in keras_vit.MODEL_CLASSES}
    overrides = {} if num_attention_heads is None else {"num_attention_heads": num_attention_heads}
    foreign = read_foreign_checkpoint(source, overrides=overrides)
    if foreign is not None:  # timm or Google .npz: the class follows from the tensors
        directory, name = source, model_class or foreign[1]
    else:
        directory = resolve_checkpoint(source)
        name = model_class or (read_config(directory).extra.get("architectures") or [None])[0]
    if name not in names:
        raise ValueError(f"Expected an architecture among {sorted(names)} (use --model-class). Received: {name!r}")
    return names[name].from_pretrained(directory, **overrides)


def load_processor(source, model):
    """The processor saved beside the model (preprocessor_config.json), else one sized from its config."""
    from keras_vit.hub import PREPROCESSOR_CONFIG_NAME, resolve_checkpoint
    from keras_vit.processors import DeiTImageProcessor, ViTImageProcessor

    directory = Path(source).parent if str(source).endswith(".keras") else resolve_checkpoint(source)
    if (directory / PREPROCESSOR_CONFIG_NAME).is_file():
        processor = ViTImageProcessor.from_pretrained(directory)
    else:
        cls = DeiTImageProcessor if model.config.model_type == "deit" else ViTImageProcessor
        processor = cls.from_config(model.config)
    processor.data_format = model.data_format
    return processor


def top_k(probabilities, id2label, k):
    """Returns, per row of `probabilities`, the k (label, probability) pairs with the highest probability."""
    order = probabilities.argsort(axis=-1)[:, ::-1][:, :k]
    return [[(id2label[int(i)], float(row[i])) for i in idx] for row, idx in zip(probabilities, order)]


def _one_line(label):
    """`label` with line breaks escaped (`\\n`, `\\u2028`, ...), so each image gets one output line."""
    return "".join(repr(c)[1:-1] if len(f"a{c}b".splitlines()) > 1 else c for c in label)


def _print_top_k(paths, probabilities, id2label, k):
    for path, best in zip(paths, top_k(probabilities, id2label, k)):
        print(f"{path}: " + ", ".join(f"{_one_line(label)} {score:.4f}" for label, score in best))


def _saved_model_labels(version_dir):
    """id2label of an exported classifier, from its assets.extra/labels.json ({"0": name, ...})."""
    from keras_vit.hub import read_json_file
    from keras_vit.export import LABELS_FILE

    labels_path = Path(version_dir) / LABELS_FILE
    if not labels_path.is_file():
        raise ValueError(f"Expected a classification SavedModel exported by keras_vit: no {labels_path}")
    labels = read_json_file(labels_path)
    if not (
        isinstance(labels, dict)
        and sorted(labels) == [str(i) for i in range(len(labels))]
        and all(isinstance(name, str) for name in labels.values())
    ):
        raise ValueError(f"Expected {labels_path} to map '0'..'n-1' to label names. Received: {labels!r:.200}")
    return {int(i): name for i, name in labels.items()}


def _saved_model_probabilities(version_dir, images):
    """Class probabilities and id2label of an exported SavedModel, fed the images' encoded bytes.

    Raises:
        ValueError: naming the first image the SavedModel cannot decode.
    """
    import tensorflow as tf

    from keras_vit.export import SERVING_SIGNATURE

    id2label = _saved_model_labels(version_dir)
    serve = tf.saved_model.load(str(version_dir)).signatures[SERVING_SIGNATURE]
    encoded = [p.read_bytes() for p in images]
    try:
        probabilities = serve(images=tf.constant(encoded))["probabilities"].numpy()
    except tf.errors.InvalidArgumentError as error:
        for path, data in zip(images, encoded):
            try:
                tf.io.decode_image(data, expand_animations=False)
            except tf.errors.InvalidArgumentError:
                raise ValueError(
                    f"Expected a JPEG, PNG, GIF, BMP or WebP image. Received: {str(path)!r}, which the SavedModel "
                    "cannot decode."
                ) from None
        raise ValueError(f"The SavedModel rejected the images: {error.message.splitlines()[0]}") from None
    if probabilities.shape[-1] != len(id2label):
        raise ValueError(
            f"Expected {len(id2label)} classes (labels.json). Received: {probabilities.shape[-1]} probabilities."
        )
    return probabilities, id2label


def image_files(paths):
    """The image files named by `paths`: files as given, directories as their image files, sorted.

    An image file in a directory is one whose extension PIL opens (.jpg, .png, .webp, ...);
    hidden files are skipped.

    Raises:
        FileNotFoundError: listing paths that do not exist, or naming a directory without images.
    """
    from PIL import Image

    Image.init()
    extensions = {ext for ext, image_format in Image.registered_extensions().items() if image_format in Image.OPEN}
    files, missing = [], []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith(".")
            )
            if not found:
                raise FileNotFoundError(f"No image files in directory {str(path)!r}.")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            missing.append(str(path))
    if missing:
        raise FileNotFoundError(f"No such image file(s): {missing}")
    return files


def _softmax(logits):
    import numpy as np

    logits = np.asarray(logits, dtype="float64")
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    return probabilities / probabilities.sum(-1, keepdims=True)


def _predict(args):
    import numpy as np

    from keras_vit.export import split_preprocessing
    from keras_vit.processors import load_image

    if args.top_k < 1:
        raise ValueError(f"Expected --top-k >= 1. Received: {args.top_k}")
    args.images = image_files(args.images)
    if (Path(args.source) / "saved_model.pb").is_file():
        _print_top_k(args.images, *_saved_model_probabilities(args.source, args.images), args.top_k)
        return
    model = load_model(args.source, args.model_class)
    vit_model, layer = split_preprocessing(model)
    if "logits" not in vit_model.output_names:
        raise ValueError(f"Expected a classification model. Received: {type(vit_model).__name__}")
    if layer is None:
        pixel_values = load_processor(args.source, model)([str(p) for p in args.images])["pixel_values"]
        logits = model.predict(pixel_values, verbose=0)["logits"]
    else:
        # The model preprocesses: feed it each decoded image (uint8, any size) as a batch of one.
        arrays = [np.asarray(load_image(p, str(p)))[None] for p in args.images]
        logits = np.concatenate([np.asarray(model.predict(a, verbose=0)["logits"]) for a in arrays])
    _print_top_k(args.images, _softmax(logits), vit_model.config.id2label, args.top_k)


def _export(args):
    from keras_vit.export import export_saved_model, split_preprocessing

    model = load_model(args.source, args.model_class)
    _, layer = split_preprocessing(model)
    processor = load_processor(args.source, model) if layer is None else None  # else the model's layer
    export_saved_model(model, args.export_base, version=args.version, processor=processor, overwrite=args.overwrite)


def _convert(args):
    if args.output.suffix != ".keras":
        raise ValueError(f"Expected an output path ending in .keras. Received: {str(args.output)!r}")
    if args.output.is_dir():
        raise ValueError(f"Expected the output path to be a .keras file. Received a directory: {str(args.output)!r}")
    for parent in args.output.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"Expected {str(parent)!r} to be a directory. Received a file (in {str(args.output)!r})")
    from keras_vit.atomic import atomic_path

    model = load_model(args.source, args.model_class, args.num_attention_heads)
    with atomic_path(args.output) as tmp:
        model.save(tmp)
    print(f"Saved {type(model).__name__} ({model.count_params():,} parameters) to {args.output}")


def build_parser():
    parser = argparse.ArgumentParser(prog="keras-vit", description="ViT/DeiT for Keras 3: convert, export, predict.")
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert", help="checkpoint (Hugging Face, timm, Google .npz) -> .keras file")
    convert.add_argument(
        "source", help="checkpoint directory (config.json + weights), Hub repo id, timm weights file or .npz file"
    )
    convert.add_argument("output", type=Path, help="path of the .keras file to write")
    convert.add_argument("--model-class", help="keras_vit class name; default: the config's architectures")
    convert.add_argument("--num-attention-heads", type=int, help="heads of a timm checkpoint of an unnamed width")
    convert.set_defaults(run=_convert)
    export = commands.add_parser("export", help=".keras file or checkpoint -> versioned TF Serving SavedModel")
    export.add_argument("source", help=".keras file, checkpoint directory or Hub repo id")
    export.add_argument("export_base", type=Path, help="TF Serving base path; the version folder goes inside")
    export.add_argument("--version", type=int, help="version number (default: next integer)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing version")
    export.add_argument("--model-class", help="keras_vit class name; default: the config's architectures")
    export.set_defaults(run=_export)
    predict = commands.add_parser("predict", help="image files or directories -> top-k labels with scores")
    predict.add_argument("source", help=".keras file, checkpoint directory, Hub repo id, or exported SavedModel version dir")
    predict.add_argument("images", nargs="+", type=Path, help="image files (JPEG, PNG, ...) or directories of them")
    predict.add_argument("--top-k", type=int, default=5, help="labels to print per image (default 5)")
    predict.add_argument("--model-class", help="keras_vit class name; default: the config's architectures")
    predict.set_defaults(run=_predict)
    return parser


def _data_errors():
    """Exception types that mean bad data (not a bug): reported on one line, exit status 1."""
    errors = [OSError, ValueError, ImportError, RuntimeError, zipfile.BadZipFile]
    if "tensorflow" in sys.modules:
        errors.append(sys.modules["tensorflow"].errors.OpError)
    return tuple(errors)


def main(argv=None):
    """Runs the command line; returns the exit status (0, 1 for bad data, 2 for usage errors)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse printed usage and its message (or --help)
        return exit_.code
    try:
        args.run(args)
    except _data_errors() as error:
        if hasattr(error, "op"):  # a TensorFlow error: its message spans the graph trace
            message = f"{type(error).__name__}: {error.message.strip().splitlines()[0]}"
        else:
            message = " ".join(str(error).split()) or type(error).__name__
        print(f"keras-vit: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
