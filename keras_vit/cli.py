"""The `keras-vit` command line: `convert`, `export`, `predict` (see `keras-vit --help`).

Exit status: 0 on success, 2 for a usage error (argparse's message), 1 for bad data (a
missing or unreadable file, a bad checkpoint, an output path that is a directory, ...),
reported on one line `keras-vit: error: ...` without a traceback.

`predict` writes one line per image to stdout (`--format text|json|csv`); an image that is
missing, unreadable or undecodable gets an error line and the others go on; the exit status
is 1 at the end if any failed. Installed as the `keras-vit` command, it starts through
`keras_vit_quiet.main`, which keeps TensorFlow's C++ log lines off stderr.
"""

import argparse
import contextlib
import csv
import io
import json
import os
import re
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


def _decoder_message(error):
    """The first line of a TensorFlow decoding error, without the graph's node names."""
    line = error.message.strip().splitlines()[0]
    line = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", line)
    line = re.sub(r"^assertion failed: \[(.*)\]$", r"\1", line)
    return line.replace("image 0 of the batch (counting from 0)", "the image")


def _saved_model_predictor(version_dir):
    """id2label and a function: list of encoded images -> probabilities (batch, classes).

    Raises:
        ValueError: for a SavedModel without a valid labels.json.
    """
    import tensorflow as tf

    from keras_vit.export import SERVING_SIGNATURE

    id2label = _saved_model_labels(version_dir)
    serve = tf.saved_model.load(str(version_dir)).signatures[SERVING_SIGNATURE]

    def probabilities(encoded):
        result = serve(images=tf.constant(encoded))["probabilities"].numpy()
        if result.shape[-1] != len(id2label):
            raise ValueError(f"Expected {len(id2label)} classes (labels.json). Received: {result.shape[-1]} probabilities.")
        return result

    return id2label, probabilities


def _saved_model_results(version_dir):
    """A function: batch of paths -> a result dict per path (`keras_vit.cli._Report` keywords).

    A batch the SavedModel refuses is retried image by image, so only the bad image fails.
    """
    import tensorflow as tf

    id2label, probabilities = _saved_model_predictor(version_dir)

    def one(data):
        try:
            return {"probabilities": probabilities([data])[0], "id2label": id2label}
        except tf.errors.InvalidArgumentError as error:
            return {"error": f"the SavedModel cannot decode it: {_decoder_message(error)}"}

    def results(paths):
        out, encoded = {}, {}
        for path in paths:
            try:
                encoded[path] = path.read_bytes()
            except OSError as error:
                out[path] = {"error": f"cannot read it: {error.strerror or error}"}
        if encoded:
            try:
                rows = probabilities(list(encoded.values()))
                out.update({path: {"probabilities": row, "id2label": id2label} for path, row in zip(encoded, rows)})
            except tf.errors.InvalidArgumentError:
                out.update({path: one(data) for path, data in encoded.items()})
        return [out[path] for path in paths]

    return results


def _keras_results(source, model_class, batch_size):
    """A function: batch of paths -> a result dict per path, for a .keras file or checkpoint.

    Images are decoded with PIL (`keras_vit.processors.load_image`); one it cannot decode
    gets an error and the others of the batch go on.
    """
    import numpy as np

    from keras_vit.export import split_preprocessing
    from keras_vit.processors import load_image

    model = load_model(source, model_class)
    vit_model, layer = split_preprocessing(model)
    if "logits" not in vit_model.output_names:
        raise ValueError(f"Expected a classification model. Received: {type(vit_model).__name__}")
    processor = load_processor(source, model) if layer is None else None
    id2label = vit_model.config.id2label

    def results(paths):
        out, images = {}, {}
        for path in paths:
            try:
                images[path] = load_image(path, "the image")
            except (OSError, ValueError) as error:
                out[path] = {"error": " ".join(str(error).split())}
        if not images:
            return [out[path] for path in paths]
        if processor is not None:
            pixel_values = processor(list(images.values()))["pixel_values"]
            logits = np.asarray(model.predict(pixel_values, verbose=0, batch_size=batch_size)["logits"])
        else:  # the model preprocesses: each decoded image (uint8, any size) as a batch of one
            logits = [np.asarray(model.predict(np.asarray(image)[None], verbose=0)["logits"])[0] for image in images.values()]
        out.update({path: {"probabilities": row, "id2label": id2label} for path, row in zip(images, _softmax(logits))})
        return [out[path] for path in paths]

    return results


def _batches(items, size):
    return [items[i : i + size] for i in range(0, len(items), size)]


def image_files(paths, recursive=True):
    """The image files named by `paths`, and error messages for the paths that name none.

    Files are taken as given; a directory gives its image files (extensions PIL opens:
    .jpg, .png, .webp, ...), sorted, searched through subdirectories when `recursive`;
    hidden files and directories are skipped.

    Returns:
        (files, problems): a list of `Path`s, and a list of (path, message) for paths that do
        not exist or directories without image files.
    """
    from PIL import Image

    Image.init()
    extensions = {ext for ext, image_format in Image.registered_extensions().items() if image_format in Image.OPEN}
    files, problems = [], []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(
                p for p in (path.rglob("*") if recursive else path.iterdir())
                if p.is_file() and p.suffix.lower() in extensions
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                where = "" if recursive else " (without subdirectories: --no-recursive)"
                problems.append((path, f"no image files in this directory{where}"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append((path, "no such file or directory"))
    return files, problems


def _softmax(logits):
    import numpy as np

    logits = np.asarray(logits, dtype="float64")
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    return probabilities / probabilities.sum(-1, keepdims=True)


class _Report:
    """Writes one line per image to stdout (text, JSON Lines or CSV) and counts the failures."""

    def __init__(self, output_format, k):
        self.format, self.k, self.failed = output_format, k, 0
        if output_format == "csv":
            self.csv = csv.writer(sys.stdout, lineterminator="\n")
            self.csv.writerow(["path", *[f"{name}_{i}" for i in range(1, k + 1) for name in ("label", "score")], "error"])

    def __call__(self, path, probabilities=None, id2label=None, error=None):
        path = os.fsdecode(path)
        best = [] if error else top_k(probabilities[None], id2label, self.k)[0]
        self.failed += bool(error)
        if self.format == "json":  # ensure_ascii: a non-UTF-8 file name round-trips as its escapes
            record = {"path": path, "error": error} if error else {
                "path": path, "labels": [label for label, _ in best], "scores": [score for _, score in best]
            }
            print(json.dumps(record))
        elif self.format == "csv":
            cells = [cell for label, score in best for cell in (label, f"{score:.4f}")]
            self.csv.writerow([path, *cells, *[""] * (2 * self.k - len(cells)), error or ""])
        elif error:
            print(f"{path}: error: {error}")
        else:
            print(f"{path}: " + ", ".join(f"{_one_line(label)} {score:.4f}" for label, score in best))
        sys.stdout.flush()


def _progress(total):
    """A keras.utils.Progbar on the terminal's stderr, or None when stderr is not a terminal."""
    import keras

    from keras_vit_quiet import stderr_is_terminal, terminal_stderr

    if not stderr_is_terminal():
        return None
    stream = terminal_stderr()
    with contextlib.redirect_stdout(stream):
        bar = keras.utils.Progbar(total, unit_name="image")

    def advance(count):
        with contextlib.redirect_stdout(stream):
            bar.add(count)

    return advance


def _predict(args):
    files, problems = image_files(args.images, args.recursive)
    report = _Report(args.format, args.top_k)
    for path, message in problems:
        report(path, error=message)
    if files:
        if (Path(args.source) / "saved_model.pb").is_file():
            results = _saved_model_results(Path(args.source))
        else:
            results = _keras_results(args.source, args.model_class, args.batch_size)
        advance = _progress(len(files))
        for batch in _batches(files, args.batch_size):
            for path, result in zip(batch, results(batch)):
                report(path, **result)
            if advance:
                advance(len(batch))
    if report.failed:
        raise ValueError(f"{report.failed} of {len(files) + len(problems)} images failed (see their lines).")


def _export(args):
    from keras_vit.export import export_saved_model, split_preprocessing

    model = load_model(args.source, args.model_class)
    _, layer = split_preprocessing(model)
    processor = load_processor(args.source, model) if layer is None else None  # else the model's layer
    try:
        export_saved_model(
            model, args.export_base, version=args.version, processor=processor, overwrite=args.overwrite,
            jit_compile=args.jit_compile,
        )
    except ValueError as error:  # name the flags, not export_saved_model's keywords
        message = str(error).replace("overwrite=True", "--overwrite").replace("Received: version=", "Received: --version ")
        raise ValueError(message) from None


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


def _positive_int(text):
    """argparse type: an int >= 1 (else a usage error, exit status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1. Received: {value}")
    return value


def build_parser():
    from keras_vit import __version__

    parser = argparse.ArgumentParser(
        prog="keras-vit",
        description="ViT/DeiT for Keras 3: convert, export, predict.",
        epilog="Exit status: 0 on success, 1 for bad data (predict: any image that failed), 2 for usage errors.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
    export.add_argument(
        "--jit-compile", action="store_true",
        help="XLA-compile the model in the signatures (TF Serving then needs --xla_cpu_compilation_enabled=true)",
    )
    export.set_defaults(run=_export)
    predict = commands.add_parser("predict", help="image files or directories -> top-k labels with scores")
    predict.add_argument("source", help=".keras file, checkpoint directory, Hub repo id, or exported SavedModel version dir")
    predict.add_argument("images", nargs="+", type=Path, help="image files (JPEG, PNG, ...) or directories of them")
    predict.add_argument("--top-k", type=_positive_int, default=5, help="labels to print per image (default 5)")
    predict.add_argument("--model-class", help="keras_vit class name; default: the config's architectures")
    predict.add_argument("--recursive", action=argparse.BooleanOptionalAction, default=True,
                         help="search directories' subdirectories too (default: yes)")
    predict.add_argument("--format", choices=("text", "json", "csv"), default="text",
                         help="text: 'path: label score, ...'; json: JSON Lines {path, labels, scores} or {path, "
                              "error}; csv: path, label_i, score_i, error (default text)")
    predict.add_argument("--batch-size", type=_positive_int, default=32, help="images per model call (default 32)")
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
    if isinstance(sys.stdout, io.TextIOWrapper):  # file names that are not UTF-8 print as their bytes
        sys.stdout.reconfigure(errors="surrogateescape")
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
