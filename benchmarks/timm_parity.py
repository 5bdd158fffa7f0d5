"""Max |Δ| of logits between keras_vit and timm, per timm architecture and checkpoint layout.

Random-init timm models (the small variants of `tests/test_timm_checkpoints.py`), saved in
each layout timm users keep, loaded by keras_vit; then keras_vit's timm and `.npz` writers,
read back by timm (`create_model(...).load_state_dict`, `_load_weights`) and by keras_vit.
Prints one Markdown table row per (architecture, layout).
Usage: PYTHONPATH=. KERAS_BACKEND=tensorflow python benchmarks/timm_parity.py
"""

import json
import tempfile
from pathlib import Path

import numpy as np

import tests.conftest  # noqa: F401 (lets torchvision import beside CPU torch: tests/torchvision_ops.py)
from safetensors.torch import load_file
from tests import test_timm_checkpoints as peers

import keras_vit
from keras_vit.checkpoints import save_pretrained

LAYOUTS = ("safetensors file", "DeiT release .pth", "state_dict .bin", "timm hub dir")


def main():
    print("| timm architecture (small kwargs) | layout | max abs Δ logits |\n| --- | --- | --- |")
    for name in sorted(peers.PEERS):
        timm_model = peers._timm_model(name)
        pixels = peers._pixels(timm_model)
        reference = peers._timm_logits(timm_model, pixels)
        rows = []
        for layout in LAYOUTS:
            model = peers.PEERS[name][1].from_pretrained(peers._save(timm_model, Path(tempfile.mkdtemp()), layout))
            rows.append((f"timm {layout} -> keras_vit", peers._keras_logits(model, pixels)))
        out = Path(tempfile.mkdtemp())
        save_pretrained(model, out / "timm", format="timm")
        config = json.loads((out / "timm" / "config.json").read_text())
        written = peers.timm.create_model(
            config["architecture"], pretrained=False, num_classes=config["num_classes"], **config["model_args"]
        ).eval()
        written.load_state_dict(load_file(out / "timm" / "model.safetensors"))
        rows.append(("keras_vit format='timm' -> timm", peers._timm_logits(written, pixels)))
        if "distilled" not in name:  # Google's ViT has no distillation token
            save_pretrained(model, out / "npz", format="npz")
            google = peers.timm.create_model(name, pretrained=False, **peers.PEERS[name][0]).eval()
            peers._load_weights(google, str(out / "npz" / "model.npz"))
            rows.append(("keras_vit .npz -> timm _load_weights", peers._timm_logits(google, pixels)))
            back = keras_vit.ViTForImageClassification.from_pretrained(out / "npz")
            rows.append(("keras_vit .npz -> keras_vit", peers._keras_logits(back, pixels)))
        kwargs = ", ".join(f"{k}={v}" for k, v in peers.PEERS[name][0].items())
        for layout, logits in rows:
            print(f"| {name} ({kwargs}) | {layout} | {np.abs(logits - reference).max():.2e} |")


if __name__ == "__main__":
    main()
