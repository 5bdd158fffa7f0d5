"""timm state dicts and Google ViT `.npz` files, in and out, against timm itself (random weights)."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import keras_vit
from keras_vit.checkpoints import save_pretrained
from keras_vit.cli import main
from keras_vit.conversion_npz import save_npz
from keras_vit.processors import ViTImageProcessor

import timm
from timm.models.vision_transformer import _load_weights

TOL = 1e-4
# (timm architecture, create_model kwargs that keep it small, keras_vit class it loads as)
PEERS = {
    "vit_tiny_patch16_224": (dict(img_size=32, depth=2, num_classes=5), keras_vit.ViTForImageClassification),
    "vit_small_patch16_384": (dict(img_size=48, depth=1, num_classes=4), keras_vit.ViTForImageClassification),
    "deit_tiny_distilled_patch16_224": (
        dict(img_size=32, depth=2, num_classes=3),
        keras_vit.DeiTForImageClassificationWithTeacher,
    ),
    "vit_base_patch32_224": (dict(img_size=64, depth=1, num_classes=6), keras_vit.ViTForImageClassification),
}


def _timm_model(name, **kwargs):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, **{**PEERS[name][0], **kwargs}).eval()
    with torch.no_grad():  # timm initialises cls/dist tokens and biases near zero: make them count
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    return model


def _pixels(model, batch=2):
    height, width = model.patch_embed.img_size
    return np.random.default_rng(0).normal(size=(batch, height, width, 3)).astype("float32")


def _timm_logits(model, pixels):
    with torch.no_grad():
        return model(torch.from_numpy(pixels).permute(0, 3, 1, 2)).numpy()


def _keras_logits(model, pixels):
    return np.asarray(model(pixels)["logits"])


def _save(model, tmp_path, layout):
    """Writes the timm model's state dict in `layout`; returns the path from_pretrained reads."""
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    tmp_path.mkdir(parents=True, exist_ok=True)
    if layout == "safetensors file":
        save_file(state, tmp_path / "weights.safetensors")
        return tmp_path / "weights.safetensors"
    if layout == "DeiT release .pth":
        torch.save({"model": state, "epoch": 3}, tmp_path / "checkpoint.pth")
        return tmp_path / "checkpoint.pth"
    if layout == "state_dict .bin":
        torch.save({"state_dict": state}, tmp_path / "pytorch_model.bin")
        return tmp_path
    save_file(state, tmp_path / "model.safetensors")  # timm's Hub layout
    config = {"architecture": model.default_cfg["architecture"], "num_classes": model.num_classes,
              "pretrained_cfg": dict(model.pretrained_cfg)}
    (tmp_path / "config.json").write_text(json.dumps(config, default=list))
    return tmp_path


@pytest.mark.parametrize("layout", ["safetensors file", "DeiT release .pth", "state_dict .bin", "timm hub dir"])
@pytest.mark.parametrize("name", sorted(PEERS))
def test_timm_checkpoints_load_with_timm_outputs(name, layout, tmp_path):
    peer = _timm_model(name)
    pixels = _pixels(peer)
    model = PEERS[name][1].from_pretrained(_save(peer, tmp_path, layout))
    assert model.config.num_attention_heads == peer.blocks[0].attn.num_heads
    assert model.config.layer_norm_eps == peer.norm.eps
    delta = np.abs(_keras_logits(model, pixels) - _timm_logits(peer, pixels)).max()
    assert delta <= TOL, delta


@pytest.mark.parametrize("name", sorted(PEERS))
def test_save_pretrained_timm_loads_in_timm_create_model(name, tmp_path):
    peer = _timm_model(name)
    model = PEERS[name][1].from_pretrained(_save(peer, tmp_path / "in", "safetensors file"))
    model.save_pretrained(tmp_path / "out", format="timm")  # the model method, as users call it
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    fresh = timm.create_model(config["architecture"], pretrained=False, num_classes=config["num_classes"],
                              **config["model_args"]).eval()
    fresh.load_state_dict(load_file(tmp_path / "out" / "model.safetensors"))  # strict: every tensor, no other
    pixels = _pixels(peer)
    assert np.abs(_timm_logits(fresh, pixels) - _keras_logits(model, pixels)).max() <= TOL
    assert np.abs(_timm_logits(fresh, pixels) - _timm_logits(peer, pixels)).max() <= TOL
    reloaded = PEERS[name][1].from_pretrained(tmp_path / "out")  # timm's config.json names the heads
    assert reloaded.config.num_attention_heads == peer.blocks[0].attn.num_heads
    assert np.abs(_keras_logits(reloaded, pixels) - _keras_logits(model, pixels)).max() == 0


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "vit_base_patch32_224"])
def test_npz_in_google_naming_loads_here_and_in_timm(name, tmp_path):
    peer = _timm_model(name)
    model = keras_vit.ViTForImageClassification.from_pretrained(_save(peer, tmp_path, "safetensors file"))
    save_pretrained(model, tmp_path / "npz", format="npz")
    names = set(np.load(tmp_path / "npz" / "model.npz").files)
    assert "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel" in names
    assert {"embedding/kernel", "cls", "Transformer/posembed_input/pos_embedding", "head/kernel"} <= names
    fresh = timm.create_model(name, pretrained=False, **PEERS[name][0]).eval()
    _load_weights(fresh, str(tmp_path / "npz" / "model.npz"))  # timm's own .npz loader
    reloaded = keras_vit.ViTForImageClassification.from_pretrained(tmp_path / "npz")
    pixels = _pixels(peer)
    timm_npz = _timm_logits(fresh, pixels)
    assert np.abs(timm_npz - _keras_logits(reloaded, pixels)).max() <= TOL
    assert np.abs(timm_npz - _timm_logits(peer, pixels)).max() <= TOL
    assert reloaded.config.num_attention_heads == peer.blocks[0].attn.num_heads


def test_big_vision_npz_names_load(tmp_path):
    """big_vision's names (`pos_embedding`, MultiHeadDotProductAttention_0, LayerNorm_1, MlpBlock_0) under `params/`."""
    peer = _timm_model("vit_tiny_patch16_224")
    model = keras_vit.ViTForImageClassification.from_pretrained(_save(peer, tmp_path, "safetensors file"))
    save_npz(model, tmp_path / "vit.npz")
    renames = (
        ("Transformer/posembed_input/pos_embedding", "pos_embedding"),
        ("MultiHeadDotProductAttention_1", "MultiHeadDotProductAttention_0"),
        ("LayerNorm_2", "LayerNorm_1"),
        ("MlpBlock_3", "MlpBlock_0"),
    )
    arrays = {}
    for key, value in np.load(tmp_path / "vit.npz").items():
        for old, new in renames:
            key = key.replace(old, new)
        arrays["params/" + key] = value
    np.savez(tmp_path / "big_vision.npz", **arrays)
    fresh = timm.create_model("vit_tiny_patch16_224", pretrained=False, **PEERS["vit_tiny_patch16_224"][0]).eval()
    _load_weights(fresh, str(tmp_path / "big_vision.npz"))
    reloaded = keras_vit.ViTForImageClassification.from_pretrained(tmp_path / "big_vision.npz")
    pixels = _pixels(peer)
    assert np.abs(_timm_logits(fresh, pixels) - _keras_logits(reloaded, pixels)).max() <= TOL


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(class_token=False, global_pool="avg", fc_norm=True), r"no class token \(class_token=False\).*fc_norm"),
        (dict(no_embed_class=True), r"one per patch only \(4; no_embed_class=True"),
        (dict(init_values=1e-5), r"layer scale \(init_values\)"),
        (dict(reg_tokens=2), r"register tokens"),
    ],
)
def test_variants_the_models_cannot_run_are_refused(kwargs, message, tmp_path):
    peer = _timm_model("vit_tiny_patch16_224", **kwargs)
    with pytest.raises(ValueError, match=message):
        keras_vit.ViTForImageClassification.from_pretrained(_save(peer, tmp_path, "safetensors file"))


def test_heads_of_an_unnamed_width_are_asked_for(tmp_path):
    peer = _timm_model("vit_tiny_patch16_224", embed_dim=32, num_heads=4)
    path = _save(peer, tmp_path, "safetensors file")
    with pytest.raises(ValueError, match="width 32.*num_attention_heads"):
        keras_vit.ViTForImageClassification.from_pretrained(path)
    model = keras_vit.ViTForImageClassification.from_pretrained(path, num_attention_heads=4)
    pixels = _pixels(peer)
    assert np.abs(_keras_logits(model, pixels) - _timm_logits(peer, pixels)).max() <= TOL


def test_passed_config_wins_and_is_checked_against_shapes(tmp_path, caplog):
    peer = _timm_model("vit_tiny_patch16_224")
    path = _save(peer, tmp_path, "safetensors file")
    with pytest.raises(ValueError, match=r"Expected hidden_size=192.*Received: hidden_size=384"):
        keras_vit.ViTForImageClassification.from_pretrained(path, hidden_size=384)
    model = keras_vit.ViTForImageClassification.from_pretrained(path, image_size=48, drop_path_rate=0.1)
    assert model.config.image_size == 48 and model.config.drop_path_rate == 0.1
    assert "Resampling position embeddings from a 2x2 to a 3x3" in caplog.text
    new_head = keras_vit.ViTForImageClassification.from_pretrained(path, num_labels=7, ignore_mismatched_sizes=True)
    pixels = _pixels(peer)
    with torch.no_grad():
        features = peer.forward_head(peer.forward_features(torch.from_numpy(pixels).permute(0, 3, 1, 2)), pre_logits=True)
    kernel, bias = (np.asarray(w) for w in new_head.get_layer("classifier").weights)
    assert np.abs(_keras_logits(new_head, pixels) - (features.numpy() @ kernel + bias)).max() <= TOL
    npz = tmp_path / "vit.npz"
    save_npz(keras_vit.ViTForImageClassification.from_pretrained(path), npz)
    with pytest.raises(ValueError, match=r"Expected num_attention_heads=3.*Received: num_attention_heads=6"):
        keras_vit.ViTForImageClassification.from_pretrained(npz, num_attention_heads=6)


def test_timm_pretrained_cfg_gives_the_preprocessing_of_timm_eval_transform(tmp_path):
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    peer = _timm_model("vit_tiny_patch16_224")
    peer.pretrained_cfg = {**peer.pretrained_cfg, "input_size": (3, 32, 32), "crop_pct": 0.8,
                           "interpolation": "bilinear", "mean": (0.4, 0.5, 0.6), "std": (0.2, 0.25, 0.3)}
    directory = _save(peer, tmp_path, "timm hub dir")
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (57, 45, 3), dtype=np.uint8))
    expected = create_transform(**resolve_data_config({}, model=peer))(image).permute(1, 2, 0).numpy()
    processor = ViTImageProcessor.from_pretrained(directory)
    assert processor.size == {"shortest_edge": 40} and processor.resample == 2
    pixels = processor(image)["pixel_values"][0]
    assert np.abs(pixels - expected).max() <= 1e-5
    model = keras_vit.ViTForImageClassification.from_pretrained(directory)
    assert np.abs(_keras_logits(model, pixels[None]) - _timm_logits(peer, expected[None])).max() <= TOL
    with_layer = keras_vit.ViTForImageClassification.from_pretrained(directory, include_preprocessing=True)
    assert with_layer.layers[1].spec == processor.spec


def test_cli_converts_timm_and_npz_files(tmp_path, capsys):
    peer = _timm_model("deit_tiny_distilled_patch16_224")
    assert main(["convert", str(_save(peer, tmp_path, "DeiT release .pth")), str(tmp_path / "deit.keras")]) == 0
    assert "DeiTForImageClassificationWithTeacher" in capsys.readouterr().out
    model = keras_vit.ViTForImageClassification.from_pretrained(_save(_timm_model("vit_tiny_patch16_224"), tmp_path,
                                                                      "safetensors file"))
    save_npz(model, tmp_path / "vit.npz")
    assert main(["convert", str(tmp_path / "vit.npz"), str(tmp_path / "vit.keras")]) == 0
    assert "ViTForImageClassification" in capsys.readouterr().out
