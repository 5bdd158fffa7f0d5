"""The `keras-vit` command line: convert checkpoints (and more, see `keras-vit --help`)."""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def load_model(source, model_class=None):
    """Loads a `.keras` file, or a Hugging Face directory / repo id with the class named in its config.

    Args:
        source: path to a `.keras` file, a checkpoint directory, or a Hub repo id.
        model_class: optional class name (e.g. "ViTForImageClassification"), overriding the
            config's `architectures` entry.

    Raises:
        ValueError: the architecture is not one of keras_vit's model classes.
    """
    import keras

    import keras_vit
    from keras_vit.checkpoints import read_config, resolve_checkpoint

    if str(source).endswith(".keras"):
        return keras.saving.load_model(source)
    directory = resolve_checkpoint(source)
    config = read_config(directory)
    names = {cls.__name__: cls for cls in keras_vit.MODEL_CLASSES}
    name = model_class or (config.extra.get("architectures") or [None])[0]
    if name not in names:
        raise ValueError(f"Expected an architecture among {sorted(names)} (use --model-class). Received: {name!r}")
    return names[name].from_pretrained(directory)


def _convert(args):
    if args.output.suffix != ".keras":
        raise ValueError(f"Expected an output path ending in .keras. Received: {str(args.output)!r}")
    from keras_vit.atomic import atomic_path

    model = load_model(args.source, args.model_class)
    with atomic_path(args.output) as tmp:
        model.save(tmp)
    print(f"Saved {type(model).__name__} ({model.count_params():,} parameters) to {args.output}")


def build_parser():
    parser = argparse.ArgumentParser(prog="keras-vit", description="ViT/DeiT for Keras 3: convert, export, predict.")
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert", help="Hugging Face checkpoint directory or repo id -> .keras file")
    convert.add_argument("source", help="checkpoint directory (config.json + weights) or Hub repo id")
    convert.add_argument("output", type=Path, help="path of the .keras file to write")
    convert.add_argument("--model-class", help="keras_vit class name; default: the config's architectures")
    convert.set_defaults(run=_convert)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"keras-vit: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
