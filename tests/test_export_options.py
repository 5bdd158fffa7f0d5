"""export_saved_model's serving options on a tiny model: jit_compile, dtype, int8 models."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vit
from keras_vit import export
from keras_vit.cli import main
from keras_vit.export import export_saved_model
from tests.conftest import tiny_config
from tests.test_export import ServingSession, _saved_model_proto

MODEL_OPS = {"MatMul", "Softmax"}


def _classifier(**kwargs):
    keras.utils.set_random_seed(3)
    return keras_vit.ViTForImageClassification(tiny_config(keras_vit.ViTForImageClassification), **kwargs)


def _pixels(batch=4):
    return np.random.default_rng(0).uniform(-1, 1, (batch, 32, 32, 3)).astype("float32")


def _png(seed):
    array = np.random.default_rng(seed).integers(0, 256, (40, 36, 3), dtype=np.uint8)
    return tf.io.encode_png(array).numpy()


def _functions(path):
    """{function name: (must compile, op types)} of the SavedModel's graph library, and the top-level op types."""
    (meta_graph,) = _saved_model_proto(path).meta_graphs
    functions = {
        f.signature.name: (f.attr["_XlaMustCompile"].b, {n.op for n in f.node_def})
        for f in meta_graph.graph_def.library.function
    }
    return functions, {n.op for n in meta_graph.graph_def.node}


def _served_logits(path, pixel_values):
    return ServingSession(path).run("predict_pixels", pixel_values=pixel_values)["logits"]


def _float32_logits(model, pixel_values):
    return model(pixel_values, training=False)["logits"].numpy()


# === jit_compile ===
def test_default_export_has_no_must_compile_function(tmp_path):
    functions, top_level = _functions(export_saved_model(_classifier(), tmp_path, verbose=False))
    assert not [name for name, (must_compile, _) in functions.items() if must_compile]
    assert "XlaCallModule" not in top_level.union(*(ops for _, ops in functions.values()))


def test_jit_compile_export_compiles_the_model_and_matches_keras_in_a_session(tmp_path):
    model = _classifier()
    path = export_saved_model(model, tmp_path, verbose=False, jit_compile=True)
    functions, top_level = _functions(path)
    compiled = [ops for must_compile, ops in functions.values() if must_compile]
    assert len(compiled) == 1 and MODEL_OPS <= compiled[0]
    assert "DecodeImage" not in compiled[0]  # decoding stays outside XLA, and so does the label lookup
    all_ops = top_level.union(*(ops for _, ops in functions.values()))
    assert "XlaCallModule" not in all_ops and "DecodeImage" in all_ops

    session = ServingSession(path)  # TF Serving's way: TF1 session, tag "serve"
    for batch in (1, 3):  # compiled per batch size
        pixel_values = _pixels(batch)
        outputs = session.run("predict_pixels", pixel_values=pixel_values)
        expected = model(pixel_values, training=False)["logits"].numpy()
        np.testing.assert_allclose(outputs["logits"], expected, atol=1e-5)
        np.testing.assert_allclose(outputs["probabilities"].sum(-1), 1.0, atol=1e-6)
        labels = [model.config.id2label[i] for i in expected.argmax(-1)]
        assert [label.decode() for label in outputs["label"]] == labels
    images = session.run("serving_default", images=np.array([_png(0), _png(1)], dtype=object))
    assert images["logits"].shape == (2, model.config.num_labels)


def test_jit_compile_export_is_verified_before_publishing(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "VERIFY_ATOL", -1.0)  # every comparison fails
    with pytest.raises(ValueError, match="Verification failed: output 'logits' of signature 'serving_default'"):
        export_saved_model(_classifier(), tmp_path / "vit", verbose=False, jit_compile=True)
    assert not (tmp_path / "vit").exists()


def test_cli_jit_compile_flag(tmp_path):
    _classifier().save(tmp_path / "m.keras")
    assert main(["export", str(tmp_path / "m.keras"), str(tmp_path / "serving"), "--jit-compile"]) == 0
    functions, _ = _functions(tmp_path / "serving" / "1")
    assert [must_compile for must_compile, _ in functions.values()].count(True) == 1
    assert main(["export", str(tmp_path / "m.keras"), str(tmp_path / "serving")]) == 0
    functions, _ = _functions(tmp_path / "serving" / "2")
    assert not any(must_compile for must_compile, _ in functions.values())


# === Precision ===
# Tiny random models: logits of order 1; bfloat16 keeps 8 significant bits.
BFLOAT16_ATOL = 0.05
INT8_ATOL = 0.05


def _stored_dtypes(path):
    reader = tf.train.load_checkpoint(str(path / "variables" / "variables"))
    return {
        dtype.name for name, dtype in reader.get_variable_to_dtype_map().items()
        if name.endswith("/.ATTRIBUTES/VARIABLE_VALUE")
    }


@pytest.mark.parametrize("dtype, stored", [("bfloat16", {"bfloat16"}), ("mixed_bfloat16", {"float32"})])
def test_bfloat16_export_against_float32(tmp_path, dtype, stored):
    model = _classifier()
    pixel_values = _pixels()
    path = export_saved_model(model, tmp_path, verbose=False, dtype=dtype)
    assert _stored_dtypes(path) == stored
    served = ServingSession(path).run("predict_pixels", pixel_values=pixel_values)
    assert served["logits"].dtype == np.float32 and served["probabilities"].dtype == np.float32
    expected = _float32_logits(model, pixel_values)
    error = np.max(np.abs(served["logits"] - expected))
    assert 0 < error <= BFLOAT16_ATOL  # rounded, within the stated tolerance
    assert model.dtype_policy.name == "float32"  # the user's model is left as it was


def test_mixed_bfloat16_model_exports_in_its_own_policy(tmp_path):
    model = _classifier(dtype="mixed_bfloat16")
    pixel_values = _pixels()
    path = export_saved_model(model, tmp_path, verbose=False)
    logits = _served_logits(path, pixel_values)
    np.testing.assert_allclose(logits, _float32_logits(model, pixel_values), atol=export.VERIFY_ATOL_LOW_PRECISION)


def test_int8_export_against_float32(tmp_path):
    model = _classifier()
    pixel_values = _pixels()
    expected = _float32_logits(model, pixel_values)
    model.quantize("int8")
    path = export_saved_model(model, tmp_path, verbose=False)
    logits = _served_logits(path, pixel_values)
    error = np.max(np.abs(logits - expected))
    assert 0 < error <= INT8_ATOL
    np.testing.assert_allclose(logits, _float32_logits(model, pixel_values), atol=export.VERIFY_ATOL_LOW_PRECISION)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(jit_compile="yes"), "Expected jit_compile to be True or False. Received: jit_compile='yes'"),
        (dict(dtype="float16"), "Expected dtype to be None or one of"),
    ],
)
def test_bad_options_raise_before_any_work(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        export_saved_model(_classifier(), tmp_path / "vit", verbose=False, **kwargs)
    assert not (tmp_path / "vit").exists()


def test_dtype_of_a_quantized_model_is_refused(tmp_path):
    model = _classifier()
    model.quantize("int8")
    with pytest.raises(ValueError, match="Expected dtype=None for a quantized model"):
        export_saved_model(model, tmp_path / "vit", verbose=False, dtype="bfloat16")
    assert not (tmp_path / "vit").exists()
