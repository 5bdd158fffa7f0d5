import json

import keras
import numpy as np
import pytest
import torch

from keras_vit import layers
from keras_vit.layers.activations import ACTIVATIONS, get_activation
from keras_vit.layers.position_interpolation import resample_grid, resample_position_embeddings
from tests import gelu_gradient_check, layer_norm_check
from tests.conftest import run_check
from tests.layer_test_helper import run_layer_test

RNG = np.random.default_rng(0)
TOKENS = RNG.normal(size=(2, 5, 16)).astype("float32")


def test_patch_embedding_layer(tmp_path):
    images = RNG.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    run_layer_test(
        layers.PatchEmbedding,
        dict(image_size=(32, 32), patch_size=(8, 8), hidden_size=16, use_distillation_token=True, dropout=0.1),
        {"pixel_values": images},
        (2, 18, 16),
        tmp_path=tmp_path,
    )


def test_attention_layer(tmp_path):
    run_layer_test(
        layers.MultiHeadSelfAttention,
        dict(hidden_size=16, num_attention_heads=4, qkv_bias=False, attention_dropout=0.1),
        {"tokens": TOKENS},
        (2, 5, 16),
        tmp_path=tmp_path,
    )


def test_transformer_block_layer(tmp_path):
    run_layer_test(
        layers.TransformerBlock,
        dict(hidden_size=16, num_attention_heads=4, intermediate_size=24, hidden_act="gelu_new", dropout=0.1),
        {"tokens": TOKENS},
        (2, 5, 16),
        tmp_path=tmp_path,
    )


def test_pooler_layer(tmp_path):
    run_layer_test(layers.Pooler, dict(units=8, activation="tanh"), {"tokens": TOKENS}, (2, 8), tmp_path=tmp_path)


def test_distillation_head_layer(tmp_path):
    head = run_layer_test(layers.DistillationHead, dict(num_labels=3), {"tokens": TOKENS}, (2, 3), tmp_path=tmp_path)
    out = head(TOKENS)
    np.testing.assert_allclose(out["logits"], (out["cls_logits"] + out["distillation_logits"]) / 2, atol=1e-6)


def test_mim_decoder_layer(tmp_path):
    tokens = RNG.normal(size=(2, 1 + 6, 16)).astype("float32")
    images = np.zeros((2, 16, 24, 3), "float32")
    run_layer_test(
        layers.MaskedImageModelingDecoder,
        dict(encoder_stride=4, num_channels=3, patch_size=(8, 8)),
        {"tokens": tokens, "pixel_values": images},
        (2, 8, 12, 3),
        call_kwargs=dict(num_prefix_tokens=1),
        tmp_path=tmp_path,
    )


def test_pixel_shuffle_matches_torch():
    decoder = layers.MaskedImageModelingDecoder(encoder_stride=2, num_channels=3, patch_size=(2, 2))
    tokens = RNG.normal(size=(1, 1 + 6, 4)).astype("float32")
    ours = np.asarray(decoder(tokens, np.zeros((1, 4, 6, 3), "float32")))
    conv = np.asarray(decoder.conv(tokens[:, 1:].reshape(1, 2, 3, 4)))
    expected = torch.nn.PixelShuffle(2)(torch.from_numpy(conv).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_attention_input_norm_equals_attending_over_the_normalised_tokens():
    layer, norm = layers.MultiHeadSelfAttention(hidden_size=16, num_attention_heads=4), layers.LayerNormalization()
    layer(norm(TOKENS))  # builds both
    norm.set_weights([RNG.normal(size=(16,)).astype("float32") for _ in range(2)])
    expected = np.asarray(layer(norm(TOKENS)))
    np.testing.assert_allclose(np.asarray(layer(TOKENS, input_norm=norm)), expected, atol=1e-6)
    # input_norm comes after the other call arguments: head_mask stays the second positional one.
    silent = np.zeros(4, "float32")
    np.testing.assert_allclose(np.asarray(layer(TOKENS, silent)), np.asarray(layer(TOKENS, head_mask=silent)))
    # A functional model would not track the norm's weights: it says so instead.
    with pytest.raises(ValueError, match=r"attention\(norm\(x\)\).*input_norm=LayerNormalization\(name='layer_normalization"):
        layer(keras.Input((5, 16)), input_norm=norm)


def test_attention_equals_keras_dot_product_attention():
    layer = layers.MultiHeadSelfAttention(hidden_size=16, num_attention_heads=4)
    out, probs = layer(TOKENS, return_attention_scores=True)
    qkv = np.asarray(layer.qkv(TOKENS)).reshape(2, 5, 3, 4, 4)
    context = keras.ops.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
    expected = layer.output_dense(keras.ops.reshape(context, (2, 5, 16)))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(layer(TOKENS), out, atol=1e-6)
    np.testing.assert_allclose(np.asarray(probs).sum(-1), 1.0, atol=1e-5)


def test_attention_matches_reference_math():
    layer = layers.MultiHeadSelfAttention(hidden_size=16, num_attention_heads=4)
    out, probs = layer(TOKENS, return_attention_scores=True)
    kernel, bias = layer.qkv.kernel.numpy(), layer.qkv.bias.numpy()
    qkv = (TOKENS @ kernel + bias).reshape(2, 5, 3, 4, 4).transpose(2, 0, 3, 1, 4)
    scores = qkv[0] @ qkv[1].transpose(0, 1, 3, 2) / 2.0
    expected_probs = np.exp(scores - scores.max(-1, keepdims=True))
    expected_probs /= expected_probs.sum(-1, keepdims=True)
    context = (expected_probs @ qkv[2]).transpose(0, 2, 1, 3).reshape(2, 5, 16)
    expected = context @ layer.output_dense.kernel.numpy() + layer.output_dense.bias.numpy()
    np.testing.assert_allclose(probs, expected_probs, atol=1e-5)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_head_mask_silences_heads():
    layer = layers.MultiHeadSelfAttention(hidden_size=16, num_attention_heads=4)
    layer(TOKENS)
    bias = layer.output_dense.bias.numpy()
    silent = layer(TOKENS, head_mask=np.zeros(4, "float32"))
    np.testing.assert_allclose(silent, np.broadcast_to(bias, silent.shape), atol=1e-6)
    full = layer(TOKENS, head_mask=np.ones((2, 4), "float32"))
    np.testing.assert_allclose(full, layer(TOKENS), atol=1e-5)
    with pytest.raises(ValueError, match=r"head_mask of shape \(4,\)"):
        layer(TOKENS, head_mask=np.ones(3, "float32"))


def test_transformer_block_is_prenorm_residual():
    block = layers.TransformerBlock(16, 4, 24)
    out = np.asarray(block(TOKENS))
    h = TOKENS + np.asarray(block.attention(block.layernorm_before(TOKENS)))
    mlp = block.fc2(get_activation("gelu")(block.fc1(block.layernorm_after(h))))
    np.testing.assert_allclose(out, h + np.asarray(mlp), atol=1e-5)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_match_transformers(name):
    from transformers.activations import ACT2FN

    x = np.linspace(-5, 5, 101).astype("float32")
    expected = ACT2FN[name](torch.from_numpy(x)).numpy() if name != "linear" else x
    np.testing.assert_allclose(np.asarray(get_activation(name)(x)), expected, atol=1e-5)


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_gelu_and_gelu_matmul_gradients_match_torch(backend, tmp_path):
    out = tmp_path / "gelu.npz"
    run_check("gelu_gradient_check.py", backend, out, timeout=300)
    got = np.load(out)
    x = torch.from_numpy(np.linspace(-8, 8, 1601).astype("float32")).requires_grad_()
    expected = torch.nn.functional.gelu(x)
    expected.sum().backward()
    np.testing.assert_allclose(got["value"], expected.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(got["gradient"], x.grad.numpy(), atol=1e-6)
    # gelu_matmul: GELU into the second MLP projection, recomputing GELU(x) in the backward pass
    # on JAX, PyTorch and in XLA-compiled TensorFlow functions.
    # On PyTorch the bias joins the matmul (torch.addmm).
    x, kernel, bias, upstream = (torch.from_numpy(a) for a in gelu_gradient_check.matmul_inputs())
    for tensor in (x, kernel, bias):
        tensor.requires_grad_()
    expected = torch.nn.functional.gelu(x) @ kernel + bias
    expected.backward(upstream)
    runs = {"matmul": False, "matmul_xla": True} if backend == "tensorflow" else {"matmul": True}
    for prefix, recomputed in runs.items():
        assert bool(got[f"{prefix}_recomputed"]) == recomputed, prefix
        np.testing.assert_allclose(got[f"{prefix}_value"], expected.detach().numpy(), rtol=1e-5, atol=1e-5)
        for name, tensor in (("d_x", x), ("d_kernel", kernel), ("d_bias", bias)):
            np.testing.assert_allclose(got[f"{prefix}_{name}"], tensor.grad.numpy(), rtol=1e-5, atol=1e-5, err_msg=prefix + name)
    if backend == "jax":
        # The backward pass keeps GELU's input and the kernel; the composition also keeps GELU(x).
        assert sorted(got["residuals"]) == ["f32[24,40]", "f32[40,8]"], got["residuals"]
        assert sorted(got["composed_residuals"]).count("f32[24,40]") >= 2, got["composed_residuals"]


def test_layer_normalization_layer(tmp_path):
    run_layer_test(layers.LayerNormalization, dict(epsilon=1e-6), {"tokens": TOKENS}, (2, 5, 16), tmp_path=tmp_path)


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_layer_normalization_matches_torch(backend, tmp_path):
    out = tmp_path / "layer_norm.npz"
    run_check("layer_norm_check.py", backend, out, timeout=300)
    got = np.load(out)
    x, gamma, beta, upstream = (torch.from_numpy(a) for a in layer_norm_check.inputs())
    for tensor in (x, gamma, beta):
        tensor.requires_grad_()
    expected = torch.nn.functional.layer_norm(x, x.shape[-1:], gamma, beta, eps=1e-6)
    expected.backward(upstream)
    np.testing.assert_allclose(got["value"], expected.detach().numpy(), rtol=1e-5, atol=1e-5)
    for name, tensor in (("d_x", x), ("d_gamma", gamma), ("d_beta", beta)):
        np.testing.assert_allclose(got[name], tensor.grad.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)
    if backend == "jax":
        # The backward pass keeps one (batch, seq, hidden) tensor, where Keras' layer keeps three.
        assert (int(got["residuals"]), int(got["keras_residuals"])) == (1, 3)
    # layer_norm_dense: the layer norm into a Dense projection, recomputing the normalised
    # tokens in the backward pass on JAX and in XLA-compiled TensorFlow functions.
    x, gamma, beta, kernel, bias, upstream = (torch.from_numpy(a) for a in layer_norm_check.dense_inputs())
    for tensor in (x, gamma, beta, kernel, bias):
        tensor.requires_grad_()
    expected = torch.nn.functional.layer_norm(x, x.shape[-1:], gamma, beta, eps=1e-6) @ kernel + bias
    expected.backward(upstream)
    runs = {"dense": False, "dense_xla": True} if backend == "tensorflow" else {"dense": backend == "jax"}
    for prefix, fused in runs.items():
        assert bool(got[f"{prefix}_fused"]) == fused, prefix
        np.testing.assert_allclose(got[f"{prefix}_value"], expected.detach().numpy(), rtol=1e-5, atol=1e-5)
        for name, tensor in (("d_x", x), ("d_gamma", gamma), ("d_beta", beta), ("d_kernel", kernel), ("d_bias", bias)):
            np.testing.assert_allclose(got[f"{prefix}_{name}"], tensor.grad.numpy(), rtol=1e-5, atol=1e-5, err_msg=prefix + name)
    if backend == "jax":
        # Fused, the backward pass keeps the tokens alone; the composition also keeps the layer norm's output.
        assert (int(got["dense_residuals"]), int(got["composed_dense_residuals"])) == (1, 2)


def test_project_runs_one_addmm_on_torch_with_dense_values_and_gradients():
    # `projection.project(dense, tokens)` against `dense(tokens)` on PyTorch: one addmm for a
    # Dense with a bias (also with LoRA, and in bfloat16), `dense(tokens)` itself without a
    # bias or when quantized; the same value and gradients (tokens and trainable weights).
    lines = [json.loads(line) for line in run_check("projection_check.py", "torch").splitlines()]
    results = {r["variant"]: r for r in lines if "variant" in r}
    # A block's qkv, output, fc1 and fc2 projections (fc2 in `activations.gelu_matmul`); the
    # attention alone, without an input norm: qkv and output.
    assert {r["block"]: r["addmm_calls"] for r in lines if "block" in r} == {
        "qkv_bias=True": 4,
        "qkv_bias=False": 3,
        "attention": 2,
    }
    assert {variant: r["addmm_calls"] for variant, r in results.items()} == {
        "plain": 1,
        "lora": 1,
        "no_bias": 0,
        "int8": 0,
        "mixed_bfloat16": 1,
    }
    assert len(results["lora"]["gradients"]) == 4  # tokens, bias, lora_kernel_a, lora_kernel_b
    for variant, result in results.items():
        # bfloat16: addmm rounds once where matmul then add rounds twice, ≤ 1 ulp = 2^-7·|y|.
        tolerance = result["scale"] * 2**-7 if variant == "mixed_bfloat16" else 1e-6
        assert result["value"] <= tolerance, result
        assert max(result["gradients"]) <= 1e-6, result


@pytest.mark.parametrize("kwargs", [dict(axis=1), dict(center=False), dict(scale=False), dict(epsilon=0.5)])
def test_layer_normalization_equals_keras_layer(kwargs):
    # Settings outside the closed-form gradient's (last axis, centred, scaled) run Keras' code;
    # epsilon=0.5 runs the closed form with an epsilon that dominates the variance.
    ours, theirs = layers.LayerNormalization(**kwargs), keras.layers.LayerNormalization(**kwargs)
    ours.build(TOKENS.shape)
    theirs.build(TOKENS.shape)
    weights = [RNG.normal(size=w.shape).astype("float32") for w in theirs.weights]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    np.testing.assert_allclose(np.asarray(ours(TOKENS)), np.asarray(theirs(TOKENS)), rtol=1e-5, atol=1e-5)


def test_unknown_activation_is_named():
    with pytest.raises(ValueError, match="Received: 'mish2'"):
        get_activation("mish2")


@pytest.mark.parametrize("size", [(4, 4), (7, 5), (2, 3), (12, 12)])
def test_bicubic_resample_matches_torch(size):
    grid = RNG.normal(size=(4, 4, 6)).astype("float32")
    ours = np.asarray(resample_grid(grid, *size))
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(grid).permute(2, 0, 1)[None], size=size, mode="bicubic", align_corners=False
    )[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_resample_keeps_prefix_tokens():
    positions = RNG.normal(size=(1, 2 + 9, 4)).astype("float32")
    out = np.asarray(resample_position_embeddings(positions, (3, 3), (5, 4), 2))
    assert out.shape == (1, 2 + 20, 4)
    np.testing.assert_array_equal(out[:, :2], positions[:, :2])


def test_patch_embedding_interpolates_and_validates():
    layer = layers.PatchEmbedding((32, 32), (8, 8), hidden_size=16)
    assert layer(np.zeros((1, 48, 40, 3), "float32"), interpolate_pos_encoding=True).shape == (1, 1 + 30, 16)
    same = layer(np.ones((1, 32, 32, 3), "float32"), interpolate_pos_encoding=True)
    np.testing.assert_allclose(same, layer(np.ones((1, 32, 32, 3), "float32")), atol=1e-6)
    with pytest.raises(ValueError, match=r"Expected images of size \(32, 32\).*height=48, width=40"):
        layer(np.zeros((1, 48, 40, 3), "float32"))
    with pytest.raises(ValueError, match="multiples of patch_size.*height=33"):
        layer(np.zeros((1, 33, 32, 3), "float32"), interpolate_pos_encoding=True)
    with pytest.raises(ValueError, match="no mask token"):
        layer(np.zeros((1, 32, 32, 3), "float32"), bool_masked_pos=np.zeros((1, 16), bool))


def test_mask_token_replaces_masked_patches():
    layer = layers.PatchEmbedding((16, 16), (8, 8), hidden_size=8, use_mask_token=True)
    images = RNG.normal(size=(1, 16, 16, 3)).astype("float32")
    layer(images)
    layer.mask_token.assign(np.full((1, 1, 8), 7.0, "float32"))
    mask = np.array([[True, False, False, True]])
    out = np.asarray(layer(images, bool_masked_pos=mask)) - layer.position_embeddings.numpy()
    np.testing.assert_allclose(out[0, [1, 4]], 7.0, atol=1e-5)
    assert not np.allclose(out[0, 2], 7.0)
    with pytest.raises(ValueError, match=r"bool_masked_pos of shape \(batch, 4\).*\(1, 5\)"):
        layer(images, bool_masked_pos=np.zeros((1, 5), bool))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: layers.PatchEmbedding((30, 32), (8, 8), 16), r"patch_size to divide image_size.*\(30, 32\)"),
        (lambda: layers.PatchEmbedding((32, 32), (8, 8), 16, dropout=1.0), "dropout in"),
        (lambda: layers.MultiHeadSelfAttention(30, 4), "hidden_size=30, num_attention_heads=4"),
        (lambda: layers.MultiHeadSelfAttention(16, 4, attention_dropout=-0.1), "attention_dropout=-0.1"),
        (lambda: layers.TransformerBlock(16, 4, 0), "intermediate_size=0"),
        (lambda: layers.TransformerBlock(16, 4, 8, hidden_act="nope"), "'nope'"),
        (lambda: layers.DistillationHead(0), "num_labels=0"),
        (lambda: layers.MaskedImageModelingDecoder(0, 3, (8, 8)), "encoder_stride=0"),
        (lambda: layers.LayerNormalization(rms_scaling=True), "RMSNormalization. Received: rms_scaling=True"),
    ],
)
def test_layer_argument_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_layers_compose_in_user_functional_model():
    inputs = keras.Input((32, 32, 3))
    tokens = layers.PatchEmbedding((32, 32), (8, 8), hidden_size=16, name="embed")(inputs)
    tokens = layers.TransformerBlock(16, 4, 32)(tokens)
    outputs = keras.layers.Dense(5)(layers.Pooler(16)(tokens))
    model = keras.Model(inputs, outputs)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = RNG.normal(size=(8, 32, 32, 3)).astype("float32")
    y = np.arange(8) % 5
    losses = model.fit(x, y, epochs=5, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    assert model.get_layer("embed").position_embeddings.path == "embed/position_embeddings"


def test_drop_path_layer(tmp_path):
    run_layer_test(layers.DropPath, dict(rate=0.3, seed=2), {"tokens": TOKENS}, TOKENS.shape, tmp_path=tmp_path)


def test_drop_path_statistics_in_training_and_identity_in_inference():
    rate, batch = 0.25, 4000
    layer = layers.DropPath(rate, seed=7)
    x = np.random.default_rng(0).uniform(1, 2, (batch, 3, 5)).astype("float32")
    np.testing.assert_array_equal(np.asarray(layer(x)), x)  # inference: identity
    y = np.asarray(layer(x, training=True))
    scale = y / x
    kept = np.all(np.isclose(scale, 1 / (1 - rate)), axis=(1, 2))
    dropped = np.all(scale == 0, axis=(1, 2))
    assert np.all(kept | dropped)  # whole examples are dropped or kept, never single tokens
    assert abs(dropped.mean() - rate) < 4 * np.sqrt(rate * (1 - rate) / batch)  # binomial, 4 sigma
    assert abs(y.mean() / x.mean() - 1) < 0.03  # the expectation is unchanged
    with pytest.raises(ValueError, match="rate=1.0"):
        layers.DropPath(1.0)


def test_transformer_block_drop_path_drops_both_residual_branches():
    block = layers.TransformerBlock(16, 4, 32, drop_path_rate=0.5)
    x = np.random.default_rng(1).normal(size=(64, 5, 16)).astype("float32")
    y = np.asarray(block(x, training=True))
    unchanged = np.all(np.isclose(y, x, atol=1e-6), axis=(1, 2))
    assert 0 < unchanged.mean() < 0.6  # both branches dropped for ~25% of examples (0.5 * 0.5)
    np.testing.assert_allclose(np.asarray(block(x)), np.asarray(block(x)))


def test_identity_dropouts_are_not_called(monkeypatch):
    # Keras' Dropout and DropPath are identities outside training and at rate 0; the layers
    # leave those calls out (each is a Layer.__call__ on PyTorch's eager path) and keep the
    # active ones.
    calls = []
    original = keras.layers.Layer.__call__

    def spy(layer, *args, **kwargs):
        calls.append(type(layer).__name__)
        return original(layer, *args, **kwargs)

    x = np.random.default_rng(2).normal(size=(8, 5, 16)).astype("float32")
    regularised = layers.TransformerBlock(16, 4, 32, dropout=0.2, attention_dropout=0.2, drop_path_rate=0.2)
    plain = layers.TransformerBlock(16, 4, 32)
    for block in (regularised, plain):
        block(x)
    plain.set_weights(regularised.get_weights())
    monkeypatch.setattr(keras.layers.Layer, "__call__", spy)
    inference = np.asarray(regularised(x))
    assert [name for name in calls if name in ("Dropout", "DropPath")] == []
    np.testing.assert_array_equal(np.asarray(plain(x, training=True)), inference)  # rate 0 in training: identity
    assert [name for name in calls if name in ("Dropout", "DropPath")] == []
    trained = np.asarray(regularised(x, training=True))
    # Attention probabilities, both residual branches; the attention's own output dropout
    # has rate 0 in a block, which applies `dropout` after it.
    assert sorted(name for name in calls if name in ("Dropout", "DropPath")) == ["DropPath"] * 2 + ["Dropout"] * 3
    assert not np.allclose(trained, inference)
    embedding = layers.PatchEmbedding((16, 16), (8, 8), 16, dropout=0.5)
    pixels = np.ones((2, 16, 16, 3), "float32")
    embedding(pixels)
    calls.clear()
    np.testing.assert_array_equal(np.asarray(embedding(pixels)), np.asarray(embedding(pixels, training=False)))
    assert "Dropout" not in calls
    assert np.any(np.asarray(embedding(pixels, training=True)) == 0) and calls.count("Dropout") == 1
