"""TF Serving export: layout, signatures and outputs, served the way TF Serving loads them."""

import base64
import http.server
import importlib.util
import io
import json
import os
import re
import struct
import subprocess
import sys
import threading
import types
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

import keras_vit
from keras_vit import export
from keras_vit.export import export_saved_model
from keras_vit.processors import load_image
from tests.conftest import tiny_config

REPO = Path(__file__).resolve().parents[1]
LABELS = {0: "cat", 1: "dog", 2: "bird"}
CLASSIFICATION_OUTPUTS = ["label", "logits", "probabilities", "score"]


def _load_script(name):
    """Imports export/<name>.py by path (export/ is a deployment kit, not a package)."""
    spec = importlib.util.spec_from_file_location(f"export_kit_{name}", REPO / "export" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _encode(array, fmt="PNG", **options):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _random_image(seed, shape=(32, 32, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _default_pixels(rgb):
    """ViTImageProcessor defaults on uint8 images already at the model size: (x / 255 - 0.5) / 0.5."""
    return ((np.asarray(rgb, np.float32) / 255 - 0.5) / 0.5).astype(np.float32)


def _keras_outputs(model, pixel_values):
    """What the signatures should return, computed from the Keras model in NumPy."""
    outputs = {k: np.asarray(v) for k, v in model(pixel_values, training=False).items()}
    if "logits" in outputs:
        logits = outputs["logits"].astype(np.float64)
        probabilities = np.exp(logits - logits.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        outputs.update(
            probabilities=probabilities,
            score=probabilities.max(-1),
            label=np.array([model.config.id2label[i].encode() for i in logits.argmax(-1)], dtype=object),
        )
    return outputs


def _assert_outputs_match(outputs, expected, atol=1e-5):
    assert sorted(outputs) == sorted(expected)
    for name, value in outputs.items():
        if name == "label":
            assert list(value) == list(expected[name])
        else:
            np.testing.assert_allclose(value, expected[name], atol=atol, err_msg=name)


class ServingSession:
    """A SavedModel loaded as TF Serving does: a TF1 session on the graph tagged "serve"."""

    def __init__(self, path):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta_graph = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], str(path))
        self.signatures = meta_graph.signature_def

    def run(self, signature, **inputs):
        signature_def = self.signatures[signature]
        feed = {signature_def.inputs[k].name: v for k, v in inputs.items()}
        names = sorted(signature_def.outputs)
        values = self.session.run([signature_def.outputs[k].name for k in names], feed_dict=feed)
        return dict(zip(names, values))


def _served_pixels(model, processor, images):
    """The bytes signature's pixel_values for `images`, computed eagerly."""
    layer = export._preprocessing_layer(model, processor, None)
    return export._preprocess_images(tf.constant(images), layer, model.config.num_channels, 10**8).numpy()


def _saved_model_proto(path):
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    return proto


def _checkpoint_elements(path):
    return sum(
        int(np.prod(shape))
        for name, shape in tf.train.list_variables(str(path / "variables" / "variables"))
        if name.endswith("/.ATTRIBUTES/VARIABLE_VALUE")
    )


def _numeric_dirs_complete(base):
    """Every integer subdirectory of `base` holds saved_model.pb and variables/."""
    numeric = [p for p in base.iterdir() if p.name.isdigit()]
    return all((p / "saved_model.pb").is_file() and (p / "variables" / "variables.index").is_file() for p in numeric)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny ViT classifier exported once with the default processor: (model, version dir, session)."""
    keras.utils.set_random_seed(1)
    model = keras_vit.ViTForImageClassification(tiny_config(keras_vit.ViTForImageClassification, id2label=LABELS))
    base = tmp_path_factory.mktemp("serving") / "vit"
    path = export_saved_model(model, base, verbose=False)
    return model, path, ServingSession(path)


# === Layout, signatures, graph ===
def test_layout_signatures_and_output_names(exported):
    model, path, _ = exported
    assert path == path.parent / "1"
    assert sorted(p.name for p in path.parent.iterdir()) == ["1"]
    assert (path / "saved_model.pb").is_file()
    assert (path / "variables" / "variables.index").is_file()
    assert (path / "assets.extra" / "tf_serving_warmup_requests").is_file()
    (meta_graph,) = _saved_model_proto(path).meta_graphs
    assert list(meta_graph.meta_info_def.tags) == ["serve"]
    signatures = meta_graph.signature_def
    assert {"serving_default", "predict_pixels"} <= set(signatures)
    images, pixels = signatures["serving_default"], signatures["predict_pixels"]
    assert list(images.inputs) == ["images"]
    assert images.inputs["images"].dtype == tf.string.as_datatype_enum
    assert [d.size for d in images.inputs["images"].tensor_shape.dim] == [-1]
    assert list(pixels.inputs) == ["pixel_values"]
    assert pixels.inputs["pixel_values"].dtype == tf.float32.as_datatype_enum
    assert [d.size for d in pixels.inputs["pixel_values"].tensor_shape.dim] == [-1, 32, 32, 3]
    for signature in (images, pixels):
        assert sorted(signature.outputs) == CLASSIFICATION_OUTPUTS
        assert signature.outputs["label"].dtype == tf.string.as_datatype_enum
        assert not any(name == "output_0" or name.endswith("_bytes") for name in signature.outputs)


def test_no_xla_and_each_weight_stored_once(exported):
    model, path, _ = exported
    ops, must_compile = set(), []
    for meta_graph in _saved_model_proto(path).meta_graphs:
        functions = meta_graph.graph_def.library.function
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in functions:
            ops.update(node.op for node in function.node_def)
            if function.attr["_XlaMustCompile"].b:
                must_compile.append(function.signature.name)
            must_compile += [n.name for n in function.node_def if n.attr["_XlaMustCompile"].b]
    assert "XlaCallModule" not in ops
    assert "DecodeImage" in ops and "Softmax" in ops
    assert must_compile == []
    assert _checkpoint_elements(path) == model.count_params() == 20_493


# === Served predictions ===
@pytest.mark.parametrize("batch", [1, 3])
def test_session_bytes_and_pixels_match_keras(exported, batch):
    model, _, session = exported
    arrays = [_random_image(seed) for seed in range(batch)]
    pixel_values = _default_pixels(np.stack(arrays))
    expected = _keras_outputs(model, pixel_values)
    from_bytes = session.run("serving_default", images=[_encode(a) for a in arrays])
    from_pixels = session.run("predict_pixels", pixel_values=pixel_values)
    for outputs in (from_bytes, from_pixels):
        _assert_outputs_match(outputs, expected)
        assert outputs["logits"].shape == (batch, 3) and outputs["score"].shape == (batch,)
        assert set(outputs["label"]) <= {b"cat", b"dog", b"bird"}


def test_grayscale_rgba_jpeg_inputs(exported):
    model, _, session = exported
    gray, rgba, rgb = _random_image(1, (32, 32)), _random_image(2, (32, 32, 4)), _random_image(3)
    jpeg = _encode(rgb, "JPEG")
    # Grayscale is repeated over RGB, alpha is dropped; TF's JPEG decoder is the reference
    # (PIL's chroma upsampling differs by a few levels).
    references = [np.repeat(gray[..., None], 3, -1), rgba[..., :3], tf.io.decode_jpeg(jpeg).numpy()]
    outputs = session.run("serving_default", images=[_encode(gray), _encode(rgba), jpeg])
    _assert_outputs_match(outputs, _keras_outputs(model, _default_pixels(np.stack(references))))


def test_gif_bmp_webp_inputs(exported):
    model, _, session = exported
    rgb = _random_image(4)
    images = [_encode(rgb, "GIF"), _encode(rgb, "BMP"), _encode(rgb, "WEBP", lossless=True)]
    references = [np.asarray(Image.open(io.BytesIO(image)).convert("RGB")) for image in images]
    outputs = session.run("serving_default", images=images)
    _assert_outputs_match(outputs, _keras_outputs(model, _default_pixels(np.stack(references))))


def test_grayscale_model_takes_any_image(tmp_path):
    model_cls = keras_vit.ViTForImageClassification
    model = model_cls(tiny_config(model_cls, num_channels=1))
    path = export_saved_model(model, tmp_path, verbose=False)
    gray, rgb = _random_image(1, (32, 32)), _random_image(2)
    images = [_encode(gray), _encode(np.repeat(gray[..., None], 3, -1)), _encode(rgb)]
    # RGB is converted to luma as PIL's convert("L") does, within one level.
    references = np.stack([gray, gray, np.asarray(Image.fromarray(rgb).convert("L"))])[..., None]
    pixel_values = _served_pixels(model, None, images)
    assert pixel_values.shape == (3, 32, 32, 1)
    np.testing.assert_allclose(pixel_values, _default_pixels(references), atol=2 / 255 + 1e-6)
    np.testing.assert_allclose(pixel_values[:2], _default_pixels(references[:2]), atol=1e-6)
    outputs = ServingSession(path).run("serving_default", images=images)
    _assert_outputs_match(outputs, _keras_outputs(model, pixel_values))


def test_undecodable_bytes_are_an_invalid_argument_error(exported):
    _, _, session = exported
    with pytest.raises(tf.errors.InvalidArgumentError):
        session.run("serving_default", images=[_encode(_random_image(0)), b"not an image"])
    # The session survives the bad request.
    assert session.run("serving_default", images=[_encode(_random_image(0))])["logits"].shape == (1, 3)


def _cut_short_images():
    """Images the PIL processor refuses, by name: each format cut short, text, a 16-bit grayscale PNG."""
    images = {fmt: _encode(_random_image(3), fmt) for fmt in ("PNG", "JPEG", "BMP", "WEBP")}
    cut = {f"{fmt} cut short": data[: len(data) * 2 // 3] for fmt, data in images.items()}
    gray_16_bit = tf.io.encode_png(np.random.default_rng(0).integers(0, 65536, (32, 32, 1), dtype=np.uint16)).numpy()
    return {**cut, "text": b"not an image", "16-bit grayscale PNG": gray_16_bit}


@pytest.mark.parametrize("name", list(_cut_short_images()))
def test_an_undecodable_image_fails_the_batch_naming_its_index(exported, tmp_path, name):
    _, _, session = exported
    bad = _cut_short_images()[name]
    (tmp_path / "bad").write_bytes(bad)
    with pytest.raises(ValueError):  # the processor refuses it too
        load_image(tmp_path / "bad")
    good = [_encode(_random_image(0)), _encode(_random_image(1), "JPEG")]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Expected image 2 of the batch \(counting from 0\)"):
        session.run("serving_default", images=[*good, bad, good[0]])
    assert session.run("serving_default", images=good)["logits"].shape == (2, 3)


def _saved_model_cli(path, images, tmp_path):
    np.save(tmp_path / "images.npy", np.array(images, dtype=object))
    command = [
        str(Path(sys.executable).parent / "saved_model_cli"),
        "run",
        "--dir",
        str(path),
        "--tag_set",
        "serve",
        "--signature_def",
        "serving_default",
        "--inputs",
        f"images={tmp_path / 'images.npy'}",
        "--outdir",
        str(tmp_path / "out"),
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_saved_model_cli_run(exported, tmp_path):
    model, path, _ = exported
    arrays = [_random_image(seed) for seed in (5, 6)]
    result = _saved_model_cli(path, [_encode(arrays[0]), _encode(arrays[1], "JPEG")], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    outputs = {name: np.load(tmp_path / "out" / f"{name}.npy", allow_pickle=True) for name in CLASSIFICATION_OUTPUTS}
    pixel_values = _default_pixels(np.stack([arrays[0], tf.io.decode_jpeg(_encode(arrays[1], "JPEG")).numpy()]))
    _assert_outputs_match(outputs, _keras_outputs(model, pixel_values))


def test_saved_model_cli_reports_undecodable_bytes(exported, tmp_path):
    _, path, _ = exported
    result = _saved_model_cli(path, [b"\x89PNG but truncated"], tmp_path)
    assert result.returncode == 1  # a Python exception, not a signal (negative code)
    assert "InvalidArgument" in result.stderr


# === Warmup and clients ===
def test_warmup_records_replay_through_the_session(exported):
    model, path, session = exported
    records = list(tf.data.TFRecordDataset(str(path / "assets.extra" / "tf_serving_warmup_requests")))
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in records]
    requests = [log.predict_log.request for log in logs]
    assert [r.model_spec.signature_name for r in requests] == ["serving_default", "predict_pixels"]
    assert [list(r.inputs) for r in requests] == [["images"], ["pixel_values"]]
    images = tf.make_ndarray(requests[0].inputs["images"])
    pixel_values = tf.make_ndarray(requests[1].inputs["pixel_values"])
    assert images.shape == (2,) and pixel_values.shape == (2, 32, 32, 3) and pixel_values.dtype == np.float32
    assert [Image.open(io.BytesIO(b)).format for b in images] == ["PNG", "PNG"]
    from_bytes = session.run("serving_default", images=images)
    from_pixels = session.run("predict_pixels", pixel_values=pixel_values)
    _assert_outputs_match(from_bytes, from_pixels)
    _assert_outputs_match(from_pixels, _keras_outputs(model, pixel_values))


def test_rest_client_payloads_for_both_signatures(exported):
    model, _, session = exported
    rest_client = _load_script("rest_client")
    arrays = [_random_image(seed) for seed in (7, 8)]
    images = [_encode(a) for a in arrays]
    body = json.loads(json.dumps(rest_client.images_payload(images)))
    assert body["signature_name"] == "serving_default"
    assert [sorted(instance) for instance in body["instances"]] == [["b64"], ["b64"]]
    decoded = [base64.b64decode(instance["b64"]) for instance in body["instances"]]
    assert decoded == images
    pixel_values = _default_pixels(np.stack(arrays))
    pixels_body = json.loads(json.dumps(rest_client.pixels_payload(pixel_values)))
    assert pixels_body["signature_name"] == "predict_pixels"
    served_pixels = np.array(pixels_body["instances"], np.float32)
    np.testing.assert_array_equal(served_pixels, pixel_values)
    # What the server does with each body: b64 -> bytes, rows -> one tensor.
    expected = _keras_outputs(model, pixel_values)
    _assert_outputs_match(session.run("serving_default", images=decoded), expected)
    _assert_outputs_match(session.run("predict_pixels", pixel_values=served_pixels), expected)


def test_grpc_client_requests(exported):
    model, _, session = exported
    grpc_client = _load_script("grpc_client")
    assert "grpc" not in vars(grpc_client)  # imported only when sending
    images = [_encode(_random_image(9)), _encode(_random_image(10), "JPEG")]
    request = grpc_client.images_request("vit", images)
    assert (request.model_spec.name, request.model_spec.signature_name) == ("vit", "serving_default")
    assert list(tf.make_ndarray(request.inputs["images"])) == images
    pixel_values = _default_pixels(np.stack([_random_image(9)]))
    pixels = grpc_client.pixels_request("vit", pixel_values)
    assert pixels.model_spec.signature_name == "predict_pixels"
    np.testing.assert_array_equal(tf.make_ndarray(pixels.inputs["pixel_values"]), pixel_values)
    served = session.run("serving_default", images=tf.make_ndarray(request.inputs["images"]))
    assert served["label"].shape == (2,)
    served_pixels = session.run("predict_pixels", pixel_values=tf.make_ndarray(pixels.inputs["pixel_values"]))
    _assert_outputs_match(served_pixels, _keras_outputs(model, pixel_values))


def _closed_port():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the socket is closed


def _run_script(name, *args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, str(REPO / "export" / f"{name}.py"), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("name", ["rest_client", "grpc_client"])
def test_clients_print_one_line_and_exit_1_when_no_server_answers(tmp_path, name):
    (tmp_path / "cat.png").write_bytes(_encode(_random_image(0)))
    port = _closed_port()
    target = f"http://127.0.0.1:{port}/v1/models/vit:predict" if name == "rest_client" else f"127.0.0.1:{port}"
    args = [target, tmp_path / "cat.png"] if name == "rest_client" else [target, "vit", tmp_path / "cat.png"]
    result = _run_script(name, *args)
    assert result.returncode == 1 and result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if " error: " in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert target in lines[0] and re.search("refused|UNAVAILABLE", lines[0]), lines[0]


def test_client_help_does_not_import_tensorflow():
    for name in ("rest_client", "grpc_client"):
        code = (
            f"import runpy, sys; sys.argv = ['{name}.py', '--help']\n"
            f"try:\n    runpy.run_path({str(REPO / 'export' / f'{name}.py')!r}, run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print('imported tensorflow:', 'tensorflow' in sys.modules)"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert "usage:" in result.stdout and result.stdout.endswith("imported tensorflow: False\n"), result.stdout


class _FakeRestServer(http.server.ThreadingHTTPServer):
    """TF Serving's REST `:predict` in row format, backed by a ServingSession (for the client's HTTP code)."""

    def __init__(self, session):
        self.session = session
        super().__init__(("127.0.0.1", 0), _FakeRestHandler)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1/models/vit:predict"


class _FakeRestHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        signature = self.server.session.signatures[body["signature_name"]]
        (input_name,) = signature.inputs
        rows = [base64.b64decode(r["b64"]) if isinstance(r, dict) else r for r in body["instances"]]
        try:
            outputs = self.server.session.run(body["signature_name"], **{input_name: rows})
            status, reply = 200, {
                "predictions": [
                    {k: v[i].decode() if k == "label" else v[i].tolist() for k, v in outputs.items()}
                    for i in range(len(rows))
                ]
            }
        except tf.errors.InvalidArgumentError as e:
            status, reply = 400, {"error": e.message}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_rest_client_predict_over_http(exported):
    model, _, session = exported
    rest_client = _load_script("rest_client")
    arrays = [_random_image(seed) for seed in (13, 14)]
    server = _FakeRestServer(session)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        predictions = rest_client.predict(server.url, rest_client.images_payload([_encode(a) for a in arrays]))
        with pytest.raises(RuntimeError, match="TF Serving answered 400"):
            rest_client.predict(server.url, rest_client.images_payload([b"not an image"]))
    finally:
        server.shutdown()
        server.server_close()
    expected = _keras_outputs(model, _default_pixels(np.stack(arrays)))
    assert [p["label"] for p in predictions] == [label.decode() for label in expected["label"]]
    np.testing.assert_allclose([p["probabilities"] for p in predictions], expected["probabilities"], atol=1e-5)


def test_grpc_client_predict_over_grpc(exported):
    import grpc
    from concurrent import futures

    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    model, _, session = exported
    grpc_client = _load_script("grpc_client")

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            try:
                outputs = session.run(request.model_spec.signature_name, **inputs)
            except tf.errors.InvalidArgumentError as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, e.message)
            response = predict_pb2.PredictResponse()
            for name, value in outputs.items():
                response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    target, arrays = f"127.0.0.1:{port}", [_random_image(seed) for seed in (15, 16)]
    try:
        outputs = grpc_client.predict(target, grpc_client.images_request("vit", [_encode(a) for a in arrays]))
        with pytest.raises(grpc.RpcError) as error:
            grpc_client.predict(target, grpc_client.images_request("vit", [b"not an image"]))
    finally:
        server.stop(None)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _assert_outputs_match(outputs, _keras_outputs(model, _default_pixels(np.stack(arrays))))


def test_missing_serving_api_is_reported_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_serving.apis", None)
    model = keras_vit.ViTModel(tiny_config())
    with pytest.raises(ImportError, match=r"keras-vit\[serving\]"):
        export_saved_model(model, tmp_path / "base", verbose=False)
    assert not (tmp_path / "base").exists()

# === Versions, atomicity ===
def test_next_version_skips_non_numeric_entries_and_counts_claims_and_files(tmp_path):
    for name in ("1", "7", "abc", ".tmp-9-x", "10x", "٣"):
        (tmp_path / name).mkdir()
    assert export._next_version(tmp_path) == 8
    (tmp_path / ".tmp-8").mkdir()  # claimed by a running export
    assert export._next_version(tmp_path) == 9
    (tmp_path / "12").write_text("a file, where no version can be published")
    assert export._next_version(tmp_path) == 13
    assert export._next_version(tmp_path / "missing") == 1


def test_refuses_existing_version_before_any_work(exported, monkeypatch):
    model, path, _ = exported
    monkeypatch.setattr(export, "_archive", lambda *a: pytest.fail("traced before refusing"))
    with pytest.raises(ValueError, match=f"Version 1 already exists at {path}.*overwrite=True"):
        export_saved_model(model, path.parent, version=1, verbose=False)
    assert sorted(p.name for p in path.parent.iterdir()) == ["1"]


@pytest.mark.parametrize("step", ["_archive", "_write_warmup", "_verify", "_publish"])
def test_failure_at_any_step_leaves_the_base_unchanged(tmp_path, monkeypatch, step):
    model = keras_vit.ViTForImageClassification(tiny_config(keras_vit.ViTForImageClassification))
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "saved_model.pb").write_bytes(b"old")
    before = sorted(p.name for p in tmp_path.iterdir())

    def fail(*args):
        raise RuntimeError(f"injected failure in {step}")

    monkeypatch.setattr(export, step, fail)
    with pytest.raises(RuntimeError, match="injected failure"):
        export_saved_model(model, tmp_path, verbose=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "3" / "saved_model.pb").read_bytes() == b"old"


def test_failed_verification_publishes_nothing(tmp_path, monkeypatch):
    model = keras_vit.ViTForImageClassification(tiny_config(keras_vit.ViTForImageClassification))
    monkeypatch.setattr(export, "VERIFY_ATOL", -1.0)
    with pytest.raises(ValueError, match="Verification failed: output 'logits' of signature 'serving_default'"):
        export_saved_model(model, tmp_path, verbose=False)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_a_version_and_numeric_dirs_are_always_complete(tmp_path, monkeypatch, capsys):
    config = tiny_config(keras_vit.ViTForImageClassification)
    first, second = (keras_vit.ViTForImageClassification(config) for _ in range(2))
    export_saved_model(first, tmp_path, verbose=False)
    seen = []
    for step in ("_archive", "_write_warmup", "_verify", "_publish"):

        def spy(*args, original=getattr(export, step)):
            seen.append(_numeric_dirs_complete(tmp_path))
            return original(*args)

        monkeypatch.setattr(export, step, spy)
    path = export_saved_model(second, tmp_path, version=1, overwrite=True, verbose=True)
    assert seen == [True] * 4 and _numeric_dirs_complete(tmp_path)
    printed = capsys.readouterr().out
    for step in ("tracing signatures", "saving to", "writing warmup requests", "verifying", "publishing"):
        assert f"export: {step}" in printed
    assert printed.count("done in") == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1"]
    pixel_values = _default_pixels(np.stack([_random_image(0)]))
    served = ServingSession(path).run("predict_pixels", pixel_values=pixel_values)
    np.testing.assert_allclose(served["logits"], _keras_outputs(second, pixel_values)["logits"], atol=1e-5)
    assert np.abs(served["logits"] - _keras_outputs(first, pixel_values)["logits"]).max() > 1e-3


# === Every exportable model class, processors ===
def _hf_processor(name, **kwargs):
    import transformers

    return getattr(transformers, name)(**kwargs)


EXPORTABLE = [
    # (model class, model kwargs, processor factory, image size given to the server)
    (keras_vit.ViTForImageClassification, {}, lambda: _hf_processor("ViTImageProcessor", size=32), (45, 37)),
    (
        keras_vit.DeiTForImageClassification,
        {},
        lambda: _hf_processor("DeiTImageProcessor", size={"height": 40, "width": 40}, crop_size=32),
        (50, 50),
    ),
    (
        keras_vit.DeiTForImageClassificationWithTeacher,
        {"data_format": "channels_first"},
        lambda: types.SimpleNamespace(
            do_resize=True,
            size={"shortest_edge": 36},
            resample=3,
            do_center_crop=True,
            crop_size={"height": 32, "width": 32},
            do_rescale=True,
            rescale_factor=1 / 255,
            do_normalize=True,
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
        ),
        (40, 60),
    ),
    (keras_vit.ViTModel, {"data_format": "channels_first"}, lambda: None, (32, 32)),
    (keras_vit.DeiTModel, {"add_pooling_layer": False}, lambda: None, (32, 32)),
]
OUTPUTS = {
    keras_vit.ViTForImageClassification: CLASSIFICATION_OUTPUTS,
    keras_vit.DeiTForImageClassification: CLASSIFICATION_OUTPUTS,
    keras_vit.DeiTForImageClassificationWithTeacher: sorted(
        CLASSIFICATION_OUTPUTS + ["cls_logits", "distillation_logits"]
    ),
    keras_vit.ViTModel: ["last_hidden_state", "pooler_output"],
    keras_vit.DeiTModel: ["last_hidden_state"],
}


def _reference_pixels(processor, arrays, data_format):
    """pixel_values from transformers (channels_first) or the test's own processor reimplementation."""
    if processor is None:
        pixels = _default_pixels(np.stack(arrays))
    elif isinstance(processor, types.SimpleNamespace):
        pixels = []
        for array in arrays:
            image = Image.fromarray(array)
            short = processor.size["shortest_edge"]
            scale = short / min(image.size)
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
            left, top = (image.width - 32) // 2, (image.height - 32) // 2
            image = np.asarray(image.crop((left, top, left + 32, top + 32)), np.float32) / 255
            pixels.append((image - processor.image_mean) / processor.image_std)
        pixels = np.stack(pixels).astype(np.float32)
    else:
        pixels = processor([Image.fromarray(a) for a in arrays], return_tensors="np")["pixel_values"]
        pixels = np.asarray(pixels).transpose(0, 2, 3, 1)
    return pixels.transpose(0, 3, 1, 2) if data_format == "channels_first" else pixels


@pytest.mark.parametrize(
    "model_cls, kwargs, make_processor, image_hw", EXPORTABLE, ids=[entry[0].__name__ for entry in EXPORTABLE]
)
def test_every_exportable_model_class(tmp_path, model_cls, kwargs, make_processor, image_hw):
    model = model_cls(tiny_config(model_cls, id2label=LABELS), **kwargs)
    processor = make_processor()
    path = export_saved_model(model, tmp_path, processor=processor, verbose=False)
    session = ServingSession(path)
    for signature in ("serving_default", "predict_pixels"):
        assert sorted(session.signatures[signature].outputs) == OUTPUTS[model_cls]
    arrays = [_random_image(seed, (*image_hw, 3)) for seed in (11, 12)]
    images = [_encode(a) for a in arrays]
    reference = _reference_pixels(processor, arrays, model.data_format)
    # The graph's antialiased resize matches PIL's within one 8-bit level for bilinear; for
    # bicubic on noise images, within a few levels on average (PIL clips between passes).
    std = np.array(getattr(processor, "image_std", [0.5] * 3))
    levels = np.abs(_served_pixels(model, processor, images) - reference)
    levels *= 255 * std.reshape((3, 1, 1) if model.data_format == "channels_first" else (3,))
    bilinear = processor is None or processor.resample == 2
    assert levels.mean() < 0.3 and levels.max() < (1.001 if bilinear else 20)
    from_bytes = session.run("serving_default", images=images)
    from_pixels = session.run("predict_pixels", pixel_values=reference)
    _assert_outputs_match(from_pixels, _keras_outputs(model, reference))
    assert sorted(from_bytes) == OUTPUTS[model_cls]
    for name in OUTPUTS[model_cls]:
        if name != "label":
            np.testing.assert_allclose(from_bytes[name], from_pixels[name], atol=2e-3, err_msg=name)


# === Argument errors ===
@pytest.mark.parametrize(
    "make_model, kwargs, message",
    [
        (lambda: keras_vit.ViTForMaskedImageModeling(tiny_config()), {}, "Expected a classification model"),
        (lambda: keras_vit.ViTForImageClassification(tiny_config(num_labels=0)), {}, "num_labels >= 1"),
        (lambda: keras.Sequential([keras.layers.Dense(2)]), {}, "Expected a keras_vit model"),
        (None, {"version": -1}, "version=-1"),
        (None, {"version": True}, "version=True"),
        (None, {"processor": types.SimpleNamespace(do_resize=True, size={"height": 64, "width": 64}, resample=2)},
         r"image_size=32. Received: \(height, width\)=\(64, 64\)"),
        (None, {"processor": types.SimpleNamespace(do_resize=True, size={"height": 32, "width": 32}, resample=5)},
         "resample=5"),
        (None, {"processor": types.SimpleNamespace(do_resize=True, size={"shortest_edge": 32}, resample=2)},
         "every image the same size"),
        (None, {"processor": types.SimpleNamespace(do_resize=False, do_normalize=True, do_center_crop=True,
                                                    crop_size={"height": 32, "width": 32}, image_mean=[0.5, 0.5],
                                                    image_std=0.5)},
         r"image_mean=\[0.5, 0.5\]"),
        (None, {"sample_images": [b"junk"]}, r"sample_images\[0\]"),
        (None, {"sample_images": []}, "non-empty list"),
        (None, {"max_image_pixels": 0}, "max_image_pixels=0"),
        (lambda: keras.Sequential([keras_vit.layers.ImagePreprocessing(size=32)]), {}, "Received: Sequential"),
    ],
)
def test_bad_arguments_raise_before_any_work(tmp_path, monkeypatch, make_model, kwargs, message):
    model = make_model() if make_model else keras_vit.ViTForImageClassification(tiny_config())
    monkeypatch.setattr(export, "_archive", lambda *a: pytest.fail("traced before validating"))
    with pytest.raises(ValueError, match=message):
        export_saved_model(model, tmp_path / "base", verbose=False, **kwargs)
    assert not (tmp_path / "base").exists()


def test_export_base_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    model = keras_vit.ViTForImageClassification(tiny_config())
    with pytest.raises(ValueError, match="Expected export_base to be a directory"):
        export_saved_model(model, tmp_path / "file", verbose=False)


# === EXIF orientation, resource limits, composed models ===
def _exif_jpeg(array, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(array, "JPEG", exif=exif.tobytes(), quality=95, subsampling=0)


def test_served_graph_applies_all_eight_exif_orientations(tmp_path):
    from sklearn.datasets import load_sample_images

    model = keras_vit.ViTForImageClassification(tiny_config(keras_vit.ViTForImageClassification, id2label=LABELS))
    # A sharper head (logits x 100), so that the probabilities depend on the orientation.
    kernel, bias = model.get_layer("classifier").get_weights()
    model.get_layer("classifier").set_weights([kernel * 100, bias])
    processor = keras_vit.ViTImageProcessor(size=32)
    path = export_saved_model(model, tmp_path, processor=processor, verbose=False)
    photo = load_sample_images().images[1][40:340:3, 100:580:3]  # 100 x 160, not square
    files = []
    for orientation in range(1, 9):
        files.append(tmp_path / f"o{orientation}.jpg")
        files[-1].write_bytes(_exif_jpeg(photo, orientation))
    images = [f.read_bytes() for f in files]
    offline_pixels = processor(files)["pixel_values"]  # PIL: ImageOps.exif_transpose
    offline = _keras_outputs(model, offline_pixels)["probabilities"]
    served = ServingSession(path).run("serving_default", images=images)["probabilities"]
    assert np.abs(served - offline).max() <= 0.01
    # Ignoring the tag would be seen: rotated images get other probabilities than the upright one.
    assert np.abs(offline[[2, 4, 5, 6]] - offline[0]).max(-1).min() > 0.03
    # The pixels themselves: within JPEG-decoder and resize differences of PIL's, while
    # ignoring the tag would put other pixels there.
    layer = export._preprocessing_layer(model, processor, None)
    graph_pixels = export._preprocess_images(tf.constant(images), layer, 3, 10**8).numpy()
    upright = np.repeat(graph_pixels[:1], 8, axis=0)
    errors = np.abs(graph_pixels - offline_pixels).mean(axis=(1, 2, 3))
    ignored = np.abs(upright - offline_pixels).mean(axis=(1, 2, 3))
    assert errors.max() < 0.02 and ignored[1:].min() > 0.1, (errors, ignored)


def test_exif_orientation_read_in_both_byte_orders():
    from keras_vit.image_decoding import exif_orientation

    for orientation in range(1, 9):
        little = _exif_jpeg(_random_image(0), orientation)
        ifd = struct.pack(">2sHIH", b"MM", 42, 8, 2)
        ifd += struct.pack(">HHIHH", 0x0110, 2, 2, 0, 0) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
        big = _encode(_random_image(0), "JPEG", exif=b"Exif\x00\x00" + ifd + b"\x00" * 4)
        assert [int(exif_orientation(tf.constant(b))) for b in (little, big)] == [orientation] * 2
    assert int(exif_orientation(tf.constant(_encode(_random_image(0), "JPEG")))) == 1  # no tag
    assert int(exif_orientation(tf.constant(_encode(_random_image(0))))) == 1  # PNG


def test_header_sizes_of_every_format():
    from keras_vit.image_decoding import image_hw_from_header

    array = _random_image(0, (37, 53, 3))
    options = [("PNG", {}), ("JPEG", {}), ("GIF", {}), ("BMP", {}), ("WEBP", {}), ("WEBP", {"lossless": True})]
    for fmt, kwargs in options:
        assert [int(v) for v in image_hw_from_header(tf.constant(_encode(array, fmt, **kwargs)))] == [37, 53], fmt
    alpha = _encode(_random_image(0, (37, 53, 4)), "WEBP")  # extended (VP8X) header
    assert [int(v) for v in image_hw_from_header(tf.constant(alpha))] == [37, 53]
    assert [int(v) for v in image_hw_from_header(tf.constant(b"junk"))] == [0, 0]


def test_served_limits_fail_the_request_with_a_named_invalid_argument(exported, tmp_path):
    from tests.test_preprocessing import bomb_png

    model, _, session = exported
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image 1 of the batch \(counting from 0\) to have at most 89478485 pixels.*196000000 pixels "
                             r"declared in its header, 14000 x"):
        session.run("serving_default", images=[_encode(_random_image(0)), bomb_png(14000, 14000)])
    path = export_saved_model(model, tmp_path / "small", max_image_pixels=40 * 40, verbose=False)
    small = ServingSession(path)
    assert small.run("serving_default", images=[_encode(_random_image(0, (40, 40, 3)))])["logits"].shape == (1, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"at most 1600 pixels.*1640 pixels declared in its header, 41 x 40"):
        small.run("serving_default", images=[_encode(_random_image(0)), _encode(_random_image(1, (40, 41, 3)))])
    edge = types.SimpleNamespace(do_resize=True, size={"shortest_edge": 36}, resample=2, do_center_crop=True,
                                 crop_size={"height": 32, "width": 32}, do_rescale=True, rescale_factor=1 / 255)
    path = export_saved_model(model, tmp_path / "edge", processor=edge, verbose=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"resize to at most 16777216 pixels. Received: 20000 x 1"):
        ServingSession(path).run("serving_default", images=[_encode(np.zeros((1, 20000, 3), np.uint8))])


@pytest.mark.parametrize("bomb", ["gif_frame_larger_than_screen", "gif_of_many_frames", "jpeg_xl", "png_30000"])
def test_served_bombs_of_every_format_are_refused_naming_the_limit(exported, bomb):
    from tests.bombs import BOMBS, png_rows

    _, _, session = exported
    data = png_rows(30000, 30000) if bomb == "png_30000" else BOMBS[bomb]()
    expected = r"to be a JPEG.*size can be read before decoding" if bomb == "jpeg_xl" else r"to have at most 89478485 pixels"
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Expected image 1 of the batch \(counting from 0\) " + expected):
        session.run("serving_default", images=[_encode(_random_image(0)), data])


def test_served_empty_request_and_empty_image_are_named(exported):
    _, _, session = exported
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Expected at least one image in images. Received: an empty"):
        session.run("serving_default", images=np.array([], dtype=object))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"Expected image 2 of the batch \(counting from 0\) to be a JPEG.*Received: an empty string"):
        session.run("serving_default", images=[_encode(_random_image(0))] * 2 + [b""])


def test_export_and_predict_a_model_that_contains_the_layer(tmp_path, capsys):
    from keras_vit.cli import main
    from keras_vit.layers import ImagePreprocessing

    model = keras_vit.ViTForImageClassification(tiny_config(keras_vit.ViTForImageClassification, id2label=LABELS))
    layer = ImagePreprocessing(size=32, resample=3, image_mean=[0.4, 0.5, 0.6])
    images = keras.Input((None, None, 3), dtype="uint8")
    composed = keras.Model(images, model(layer(images)))
    with pytest.raises(ValueError, match="Expected processor=None for a model that already contains ImagePreprocessing"):
        export_saved_model(composed, tmp_path / "x", processor=keras_vit.ViTImageProcessor(size=32), verbose=False)
    path = export_saved_model(composed, tmp_path / "serving", verbose=False)
    arrays = [_random_image(seed, (45, 61, 3)) for seed in (1, 2)]
    served = ServingSession(path).run("serving_default", images=[_encode(a) for a in arrays])
    expected = _keras_outputs(model, np.asarray(layer(np.stack(arrays))))  # preprocessed once
    _assert_outputs_match(served, expected, atol=1e-4)
    composed.save(tmp_path / "composed.keras")
    for i, array in enumerate(arrays):
        Image.fromarray(array).save(tmp_path / f"{i}.png")
    files = [str(tmp_path / f"{i}.png") for i in range(2)]
    assert main(["predict", str(tmp_path / "composed.keras"), *files, "--top-k", "1"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    for line, probabilities, label in zip(printed, expected["probabilities"], expected["label"]):
        assert line.split(": ")[1] == f"{label.decode()} {probabilities.max():.4f}"
    assert main(["export", str(tmp_path / "composed.keras"), str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "1" / "saved_model.pb").is_file()
