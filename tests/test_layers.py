import json

import keras
import numpy as np
import pytest
import torch

from keras_vit import layers
from keras_vit.layers.activations import ACTIVATIONS, get_activation
from keras_vit.layers.position_interpolation import resample_grid, resample_position_embeddings
from tests.conftest import run_check
from tests.layer_cases import LAYER_CASES
from tests.layer_test_helper import TOLERANCES, assert_paths_agree, path_variants, run_layer_test

RNG = np.random.default_rng(0)
TOKENS = RNG.normal(size=(2, 5, 16)).astype("float32")


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_layer(case, tmp_path):
    layer_cls, init_kwargs, inputs, shape, call_kwargs = LAYER_CASES[case]
    run_layer_test(layer_cls, init_kwargs, inputs, shape, call_kwargs=call_kwargs, tmp_path=tmp_path)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_layer_paths_on_other_backends(backend):
    # The same values and gradients through every path (attention, gradient checkpointing,
    # float32 / mixed_bfloat16) on JAX and PyTorch as `run_layer_test` checks here.
    results = json.loads(run_check("layer_check.py", backend).strip().splitlines()[-1])
    assert set(results) == set(LAYER_CASES)
    for case, differences in results.items():
        layer_cls, init_kwargs = LAYER_CASES[case][:2]
        assert set(differences) == set(path_variants(layer_cls, init_kwargs)), case
        assert_paths_agree({f"{name} {case}": tuple(d) for name, d in differences.items()})


def test_path_variants_cover_attention_paths_checkpointing_and_dtypes():
    layer_cls, init_kwargs = LAYER_CASES["transformer_block"][:2]
    variants = path_variants(layer_cls, init_kwargs)
    assert len(variants) == 2 * 2 * len(TOLERANCES)
    assert variants["float32 explicit"][1]["head_mask"].tolist() == [1.0] * 4
    assert variants["mixed_bfloat16 fused checkpointing"] == (
        dict(init_kwargs, dtype="mixed_bfloat16", gradient_checkpointing=True),
        {},
    )


def test_distillation_head_averages_its_heads():
    head = layers.DistillationHead(num_labels=3)
    out = head(TOKENS)
    np.testing.assert_allclose(out["logits"], (out["cls_logits"] + out["distillation_logits"]) / 2, atol=1e-6)


def test_pixel_shuffle_matches_torch():
    decoder = layers.MaskedImageModelingDecoder(encoder_stride=2, num_channels=3, patch_size=(2, 2))
    tokens = RNG.normal(size=(1, 1 + 6, 4)).astype("float32")
    ours = np.asarray(decoder(tokens, np.zeros((1, 4, 6, 3), "float32")))
    conv = np.asarray(decoder.conv(tokens[:, 1:].reshape(1, 2, 3, 4)))
    expected = torch.nn.PixelShuffle(2)(torch.from_numpy(conv).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-6)


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


def test_layer_normalization_matches_torch():
    layer = layers.LayerNormalization(epsilon=1e-6)
    layer.build(TOKENS.shape)
    gamma, beta = (RNG.normal(size=(16,)).astype("float32") for _ in range(2))
    layer.set_weights([gamma, beta])
    expected = torch.nn.functional.layer_norm(torch.from_numpy(TOKENS), (16,), *map(torch.from_numpy, (gamma, beta)), eps=1e-6)
    np.testing.assert_allclose(np.asarray(layer(TOKENS)), expected.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(axis=1), dict(center=False), dict(scale=False), dict(epsilon=0.5)])
def test_layer_normalization_equals_keras_layer(kwargs):
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
