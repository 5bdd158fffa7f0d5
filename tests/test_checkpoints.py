"""Numerical parity with Hugging Face transformers (PyTorch) through checkpoint files."""

import json
import pathlib
import logging
import time

import numpy as np
import keras
import pytest
import torch
import transformers
from transformers.models.vit import modeling_vit

import keras_vit
from keras_vit import MODEL_CLASSES
from keras_vit.checkpoints import read_state_dict
from keras_vit.hub import resolve_checkpoint
from keras_vit.conversion import to_hf_state_dict
from tests.conftest import TINY

TOL = 1e-4
FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures" / "hf_tf_checkpoints"
BASE = TINY
CONFIGS = {
    "tiny": {},
    "patch4_nonsquare_1ch": dict(image_size=[16, 24], patch_size=4, encoder_stride=4, num_channels=1),
    "no_qkv_bias_gelu_new": dict(qkv_bias=False, hidden_act="gelu_new", pooler_output_size=24, pooler_act="relu"),
    "relu_silu": dict(hidden_act="silu", layer_norm_eps=1e-6),
}


def _hf_class(cls):
    return getattr(transformers, cls.__name__)


def _hf_model(cls, overrides, **kwargs):
    config = getattr(transformers, cls.config_class.__name__)(**{**BASE, **overrides})
    torch.manual_seed(0)
    model = _hf_class(cls)(config, **kwargs).eval()
    model.set_attn_implementation("eager")  # the attention path that returns probabilities
    with torch.no_grad():  # random, non-zero tokens so the test sees them
        for name, param in model.named_parameters():
            if name.endswith(("cls_token", "distillation_token", "mask_token", "position_embeddings")):
                param.normal_(0, 0.5)
    return model


def _pixels(config, batch=2, size=None):
    height, width = size or config.image_hw
    return np.random.default_rng(0).normal(size=(batch, config.num_channels, height, width)).astype("float32")


def _max_diffs(ours, theirs):
    diffs = {}
    for key, value in ours.items():
        ref = getattr(theirs, key)
        if isinstance(value, (tuple, list)):
            diffs[key] = max(float(np.abs(keras.ops.convert_to_numpy(v) - r.detach().numpy()).max()) for v, r in zip(value, ref))
            assert len(value) == len(ref), key
        else:
            diffs[key] = float(np.abs(keras.ops.convert_to_numpy(value) - ref.detach().numpy()).max())
    return diffs


def _compare(cls, overrides, tmp_path, hf_kwargs=None, inputs=None, ours_kwargs=None):
    hf = _hf_model(cls, overrides, **(hf_kwargs or {}))
    hf.save_pretrained(tmp_path)
    ours = cls.from_pretrained(
        tmp_path, output_hidden_states=True, output_attentions=True, data_format="channels_first", **(ours_kwargs or {})
    )
    pixels = _pixels(ours.config)
    inputs = inputs or {}
    torch_inputs = {k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items() if k != "head_mask"}
    with torch.no_grad():
        theirs = hf(
            pixel_values=torch.from_numpy(pixels), output_hidden_states=True, output_attentions=True, **torch_inputs
        )
    out = ours({"pixel_values": pixels, **inputs})
    diffs = _max_diffs(out, theirs)
    assert max(diffs.values()) <= TOL, diffs
    return diffs


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@pytest.mark.parametrize("cls", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_parity_with_transformers(cls, config_name, tmp_path):
    overrides = CONFIGS[config_name]
    if "MaskedImageModeling" in cls.__name__ and "image_size" in overrides:
        # transformers' SimMIM decoder reshapes to a square grid (floor(sqrt(seq))), so it
        # cannot run a non-square image; ours can, and is compared on a square one here.
        overrides = {**overrides, "image_size": 16}
    _compare(cls, overrides, tmp_path)


@pytest.mark.parametrize(
    "cls", [keras_vit.ViTForMaskedImageModeling, keras_vit.DeiTForMaskedImageModeling], ids=lambda c: c.__name__
)
def test_parity_with_bool_masked_pos(cls, tmp_path):
    mask = np.random.default_rng(3).uniform(size=(2, 16)) > 0.5
    _compare(cls, {}, tmp_path, inputs={"bool_masked_pos": mask})


def test_parity_base_model_with_mask_token(tmp_path):
    mask = np.random.default_rng(4).uniform(size=(2, 16)) > 0.5
    _compare(
        keras_vit.ViTModel,
        {},
        tmp_path,
        hf_kwargs=dict(use_mask_token=True),
        inputs={"bool_masked_pos": mask},
        ours_kwargs=dict(use_mask_token=True),
    )


@pytest.mark.parametrize("cls", [keras_vit.ViTForImageClassification, keras_vit.DeiTModel], ids=lambda c: c.__name__)
def test_parity_with_interpolate_pos_encoding(cls, tmp_path):
    hf = _hf_model(cls, {})
    hf.save_pretrained(tmp_path)
    ours = cls.from_pretrained(tmp_path, interpolate_pos_encoding=True, data_format="channels_first")
    pixels = _pixels(ours.config, size=(48, 48))
    with torch.no_grad():
        theirs = hf(pixel_values=torch.from_numpy(pixels), interpolate_pos_encoding=True)
    diffs = _max_diffs(ours(pixels), theirs)
    assert max(diffs.values()) <= TOL, diffs


def test_parity_with_head_mask(tmp_path, monkeypatch):
    """transformers 5 dropped head_mask; the reference applies 4.x semantics (probs · mask) in its eager attention."""
    head_mask = np.array([[1, 0, 1, 1], [0.5, 1, 0, 1]], "float32")
    hf = _hf_model(keras_vit.ViTForImageClassification, {})
    layer_of = {id(layer.attention): i for i, layer in enumerate(hf.vit.layers)}
    eager = modeling_vit.eager_attention_forward

    def masked_eager(module, query, key, value, attention_mask, **kwargs):
        output, weights = eager(module, query, key, value, attention_mask, **kwargs)
        weights = weights * torch.from_numpy(head_mask[layer_of[id(module)]])[None, :, None, None]
        return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights

    monkeypatch.setattr(modeling_vit, "eager_attention_forward", masked_eager)
    hf.save_pretrained(tmp_path)
    ours = keras_vit.ViTForImageClassification.from_pretrained(tmp_path, data_format="channels_first", use_head_mask=True)
    pixels = _pixels(ours.config)
    with torch.no_grad():
        theirs = hf(pixel_values=torch.from_numpy(pixels))
    got = keras.ops.convert_to_numpy(ours([pixels, head_mask])["logits"])
    assert np.abs(got - theirs.logits.numpy()).max() <= TOL
    unmasked = keras.ops.convert_to_numpy(ours(pixels, head_mask=np.ones_like(head_mask))["logits"])
    assert np.abs(got - unmasked).max() > 3 * TOL  # the mask matters


@pytest.mark.parametrize(
    "folder, cls, outputs",
    [
        ("tf-vit-classifier", keras_vit.ViTForImageClassification, ["logits"]),
        ("tf-deit-with-teacher", keras_vit.DeiTForImageClassificationWithTeacher, ["logits", "cls_logits", "distillation_logits"]),
    ],
)
def test_tf_h5_checkpoints_reproduce_original_outputs(folder, cls, outputs):
    directory = FIXTURES / folder
    model = cls.from_pretrained(directory, data_format="channels_first")
    out = model(np.load(directory / "input_pixel_values.npy"))
    for name in outputs:
        expected = np.load(directory / f"expected_{name}.npy")
        assert np.abs(keras.ops.convert_to_numpy(out[name]) - expected).max() <= TOL, name


@pytest.mark.parametrize("cls", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_save_pretrained_loads_in_transformers(cls, tmp_path):
    # transformers' SimMIM decoder needs a square grid (see test_parity_with_transformers).
    image_size = 16 if "MaskedImageModeling" in cls.__name__ else [16, 24]
    config = cls.config_class(**{**BASE, "image_size": image_size, "patch_size": 4, "encoder_stride": 4})
    ours = cls(config, data_format="channels_first")
    ours.save_pretrained(tmp_path)
    theirs = _hf_class(cls).from_pretrained(tmp_path).eval()
    pixels = _pixels(config)
    with torch.no_grad():
        reference = theirs(pixel_values=torch.from_numpy(pixels))
    diffs = _max_diffs(ours(pixels), reference)
    assert max(diffs.values()) <= TOL, diffs
    reloaded = cls.from_pretrained(tmp_path, data_format="channels_first")
    np.testing.assert_array_equal(reloaded.get_weights()[0], ours.get_weights()[0])


TRANSFORMERS_AFTER_TENSORFLOW = """
import sys
import numpy as np
import tensorflow as tf  # first, as in a keras_vit program; its LLVM symbols are then global
import torch
from tests.torchvision_ops import declare_missing_torchvision_ops
declare_missing_torchvision_ops()  # transformers imports torchvision when it is installed
import transformers
model = transformers.ViTForImageClassification.from_pretrained(sys.argv[1]).eval()
with torch.no_grad():
    logits = model(pixel_values=torch.from_numpy(np.load(sys.argv[2]))).logits.numpy()
np.save(sys.argv[3], logits)
print(torch.__version__, "triton" in sys.modules)
"""


def test_transformers_runs_after_tensorflow_in_one_process(tmp_path):
    """The torch the test command installs must survive transformers' import after TensorFlow (README)."""
    import subprocess
    import sys

    ours = keras_vit.ViTForImageClassification(keras_vit.ViTConfig(**BASE), data_format="channels_first")
    ours.save_pretrained(tmp_path / "hf")
    pixels = _pixels(ours.config)
    np.save(tmp_path / "pixels.npy", pixels)
    result = subprocess.run(
        [sys.executable, "-c", TRANSFORMERS_AFTER_TENSORFLOW, tmp_path / "hf", tmp_path / "pixels.npy", tmp_path / "out.npy"],
        capture_output=True, text=True, timeout=600, cwd=pathlib.Path(__file__).parents[1],
    )
    assert result.returncode == 0, f"exit status {result.returncode} (-11: SIGSEGV): {result.stderr[-2000:]}"
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), keras.ops.convert_to_numpy(ours(pixels)["logits"]), atol=TOL)


def _perturbed_lora_classifier(rank=2):
    model = keras_vit.ViTForImageClassification(keras_vit.ViTConfig(**BASE), data_format="channels_first")
    model.enable_lora(rank)
    rng = np.random.default_rng(1)
    for variable in model.weights:
        if "lora_kernel" in variable.path:  # B starts at zero: make the low-rank product non-zero
            variable.assign(rng.normal(0, 0.3, variable.shape))
    return model


def _transformers_logits(directory, pixels):
    with torch.no_grad():
        return transformers.ViTForImageClassification.from_pretrained(directory).eval()(
            pixel_values=torch.from_numpy(pixels)
        ).logits.numpy()


def test_save_pretrained_of_lora_model_writes_merged_kernels(tmp_path):
    ours = _perturbed_lora_classifier()
    pixels = _pixels(ours.config)
    logits = keras.ops.convert_to_numpy(ours(pixels)["logits"])
    ours.save_pretrained(tmp_path / "hf")
    assert np.abs(_transformers_logits(tmp_path / "hf", pixels) - logits).max() <= TOL
    reloaded = keras_vit.ViTForImageClassification.from_pretrained(tmp_path / "hf", data_format="channels_first")
    assert np.abs(keras.ops.convert_to_numpy(reloaded(pixels)["logits"]) - logits).max() <= TOL
    qkv = ours.backbone.get_layer("encoder_layer_0").attention.qkv
    merged = qkv._kernel.numpy() + (qkv.lora_alpha / qkv.lora_rank) * qkv.lora_kernel_a.numpy() @ qkv.lora_kernel_b.numpy()
    state = read_state_dict(tmp_path / "hf")
    np.testing.assert_allclose(state["vit.encoder.layer.0.attention.attention.query.weight"], merged[:, :32].T, atol=1e-6)
    ours.save(tmp_path / "lora.keras")  # the .keras file keeps the factors apart
    restored = keras.saving.load_model(tmp_path / "lora.keras")
    assert restored.lora_rank == 2 and restored.backbone.get_layer("encoder_layer_0").attention.qkv.lora_enabled
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(pixels)["logits"]), logits, atol=TOL)


def test_save_pretrained_of_int8_model_writes_dequantized_kernels(tmp_path):
    ours = keras_vit.ViTForImageClassification(keras_vit.ViTConfig(**BASE), data_format="channels_first")
    ours.quantize("int8")
    fc1 = ours.backbone.get_layer("encoder_layer_0").fc1
    ours.save_pretrained(tmp_path)
    state = read_state_dict(tmp_path)
    dequantized = fc1._kernel.numpy().astype("float32") / fc1.kernel_scale.numpy()
    np.testing.assert_allclose(state["vit.encoder.layer.0.intermediate.dense.weight"], dequantized.T, rtol=1e-6)
    pixels = _pixels(ours.config)
    logits = keras.ops.convert_to_numpy(ours(pixels)["logits"])  # int8 also quantizes activations: parity within that rounding
    np.testing.assert_allclose(_transformers_logits(tmp_path, pixels), logits, atol=5e-3)


def test_save_pretrained_refuses_other_quantization_modes(tmp_path):
    model = keras_vit.ViTForImageClassification(keras_vit.ViTConfig(**BASE))
    model.quantize("int4")
    with pytest.raises(ValueError, match=r"quantization_mode='int4'.*\.keras"):
        model.save_pretrained(tmp_path)
    assert not any(tmp_path.iterdir())


def test_base_checkpoint_into_classifier_initialises_head(tmp_path, caplog):
    _hf_model(keras_vit.ViTModel, {}).save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="keras_vit"):
        model = keras_vit.ViTForImageClassification.from_pretrained(tmp_path)
    assert "classifier.weight" in caplog.text and "newly initialised" in caplog.text
    assert "pooler.dense.weight" in caplog.text  # a base checkpoint's pooler is not used
    assert model.config.num_labels == 3


def test_new_num_labels_needs_ignore_mismatched_sizes(tmp_path):
    _hf_model(keras_vit.ViTForImageClassification, {}).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"mis-shaped tensors.*classifier.weight: checkpoint \(32, 5\)|classifier.weight"):
        keras_vit.ViTForImageClassification.from_pretrained(tmp_path, num_labels=5)
    model = keras_vit.ViTForImageClassification.from_pretrained(tmp_path, num_labels=5, ignore_mismatched_sizes=True)
    assert tuple(model.get_layer("classifier").kernel.shape) == (32, 5)
    assert model.config.id2label[4] == "LABEL_4"


def test_missing_and_unexpected_tensors_are_listed(tmp_path):
    from safetensors.numpy import save_file

    hf = _hf_model(keras_vit.ViTForImageClassification, {})
    state = {k: v.numpy() for k, v in hf.state_dict().items()}
    del state["vit.layers.1.mlp.fc2.weight"]  # transformers 5 in-memory names are accepted
    state["vit.encoder.layer.7.extra"] = np.zeros(3, "float32")
    hf.config.save_pretrained(tmp_path)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing tensors: \['encoder.layer.1.output.dense.weight'\].*unexpected tensors: \['encoder.layer.7.extra'\]"):
        keras_vit.ViTForImageClassification.from_pretrained(tmp_path)


def test_position_embeddings_resampled_for_other_resolution(tmp_path):
    hf = _hf_model(keras_vit.ViTModel, {})
    hf.save_pretrained(tmp_path)
    model = keras_vit.ViTModel.from_pretrained(tmp_path, image_size=48, data_format="channels_first")
    pixels = _pixels(model.config)
    with torch.no_grad():
        reference = hf(pixel_values=torch.from_numpy(pixels), interpolate_pos_encoding=True)
    assert np.abs(keras.ops.convert_to_numpy(model(pixels)["last_hidden_state"]) - reference.last_hidden_state.numpy()).max() <= TOL


def test_sharded_safetensors_and_pytorch_bin(tmp_path):
    hf = _hf_model(keras_vit.DeiTForImageClassificationWithTeacher, {})
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    hf.config.save_pretrained(tmp_path / "bin")
    torch.save(hf.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    expected = to_hf_state_dict(keras_vit.DeiTForImageClassificationWithTeacher.from_pretrained(tmp_path / "sharded"))
    got = to_hf_state_dict(keras_vit.DeiTForImageClassificationWithTeacher.from_pretrained(tmp_path / "bin"))
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_array_equal(expected[key], got[key])


def test_corrupted_and_missing_files_give_clear_errors(tmp_path):
    hf = _hf_model(keras_vit.ViTModel, {})
    hf.save_pretrained(tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted safetensors"):
        keras_vit.ViTModel.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="No weights in .*model.safetensors, model.safetensors.index.json, tf_model.h5"):
        keras_vit.ViTModel.from_pretrained(tmp_path)
    (tmp_path / "tf_model.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(ValueError, match="truncated or corrupted HDF5"):
        keras_vit.ViTModel.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="Missing config.json"):
        keras_vit.ViTModel.from_pretrained(tmp_path / "..")
    with pytest.raises(ValueError, match="model_type='vit' for ViTConfig. Received: model_type='deit'"):
        keras_vit.ViTModel.from_pretrained(FIXTURES / "tf-deit-with-teacher")


def test_hub_repo_id_resolves_from_local_cache_layout(tmp_path, monkeypatch):
    """A Hub cache directory (models--org--name/snapshots/<rev>, refs/main) resolves without network."""
    repo = tmp_path / "models--acme--tiny-vit"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    _hf_model(keras_vit.ViTForImageClassification, {}).save_pretrained(snapshot)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_checkpoint("acme/tiny-vit", cache_dir=tmp_path) == snapshot
    model = keras_vit.ViTForImageClassification.from_pretrained("acme/tiny-vit", cache_dir=tmp_path)
    assert model.config.num_labels == 3
    assert json.loads((snapshot / "config.json").read_text())["model_type"] == "vit"
    assert set(read_state_dict(snapshot)) == set(to_hf_state_dict(model))


def test_uncached_repo_offline_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match=r"'google/vit-base-patch16-224' are not in the local Hub cache .*offline"):
        keras_vit.ViTModel.from_pretrained("google/vit-base-patch16-224", cache_dir=tmp_path)
    assert time.monotonic() - start < 5
    with pytest.raises(FileNotFoundError, match="not a Hub repo id"):
        keras_vit.ViTModel.from_pretrained(str(tmp_path / "nowhere" / "x" / "y"))


def test_config_from_pretrained(tmp_path):
    _hf_model(keras_vit.DeiTModel, dict(hidden_act="gelu_new")).save_pretrained(tmp_path)
    config = keras_vit.DeiTConfig.from_pretrained(tmp_path)
    assert config.hidden_act == "gelu_new" and config.model_type == "deit"
