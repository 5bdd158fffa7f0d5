"""Query a keras_vit model served by TensorFlow Serving's gRPC API (port 8500).

    python export/grpc_client.py localhost:8500 vit cat.jpg dog.png

Needs `pip install 'keras-vit[serving]'` (tensorflow-serving-api, which brings grpcio).
TensorFlow is imported only to build and read requests: tensorflow-serving-api's protos
import `tensorflow.core.framework`, which runs TensorFlow's `__init__`; `--help` stays fast.
"""

import argparse
import sys
from pathlib import Path


def _request(model_name, signature_name, input_name, tensor_proto):
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs[input_name].CopyFrom(tensor_proto)
    return request


def images_request(model_name, images, signature_name="serving_default"):
    """A PredictRequest feeding encoded JPEG/PNG `images` (list of bytes) to the `images` input."""
    import tensorflow as tf

    return _request(model_name, signature_name, "images", tf.make_tensor_proto(images, dtype=tf.string))


def pixels_request(model_name, pixel_values, signature_name="predict_pixels"):
    """A PredictRequest feeding float32 `pixel_values` (batch, ...) in the model's layout."""
    import tensorflow as tf

    return _request(model_name, signature_name, "pixel_values", tf.make_tensor_proto(pixel_values, dtype=tf.float32))


def predict(target, request, timeout=30):
    """Sends `request` to TF Serving at "host:port"; returns {output name: numpy array}.

    Raises:
        grpc.RpcError: e.g. status INVALID_ARGUMENT for undecodable image bytes, UNAVAILABLE
            when no server answers.
    """
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=timeout)
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def main():
    """Prints one line per image; a failed request prints one `error:` line and exits 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="host:port of TF Serving's gRPC API, e.g. localhost:8500")
    parser.add_argument("model_name", help="the --model_name (or models.config name) of the served model")
    parser.add_argument("images", nargs="+", help="JPEG/PNG files")
    args = parser.parse_args()
    import grpc

    try:
        images = [Path(path).read_bytes() for path in args.images]
        outputs = predict(args.target, images_request(args.model_name, images))
    except OSError as e:
        sys.exit(f"{parser.prog}: error: {e}")
    except grpc.RpcError as e:
        details = " ".join(str(e.details()).split())
        sys.exit(f"{parser.prog}: error: {args.target}: {e.code().name}: {details}")
    for path, label, score in zip(args.images, outputs["label"], outputs["score"]):
        print(f"{path}: {label.decode()} ({score:.3f})")


if __name__ == "__main__":
    main()
