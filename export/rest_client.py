"""Query a keras_vit model served by TensorFlow Serving's REST API (port 8501).

    python export/rest_client.py http://localhost:8501/v1/models/vit:predict cat.jpg dog.png

Request bodies use TF Serving's row format:
`{"signature_name": "serving_default", "instances": [{"b64": "<base64 JPEG/PNG>"}, ...]}` for
encoded images, `{"signature_name": "predict_pixels", "instances": [<pixel_values row>, ...]}`
for preprocessed float pixels. The reply is `{"predictions": [{"label": ..., "score": ...,
"probabilities": [...], "logits": [...]}, ...]}`, one object per instance.
"""

import argparse
import base64
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path


def images_payload(images, signature_name="serving_default"):
    """The JSON body (a dict) for encoded images: `images` is a list of JPEG/PNG bytes."""
    return {
        "signature_name": signature_name,
        "instances": [{"b64": base64.b64encode(image).decode("ascii")} for image in images],
    }


def pixels_payload(pixel_values, signature_name="predict_pixels"):
    """The JSON body (a dict) for float32 `pixel_values` of shape (batch, ...) in the model's layout."""
    return {"signature_name": signature_name, "instances": [row.tolist() for row in pixel_values]}


def predict(url, payload, timeout=30):
    """POSTs `payload` to a TF Serving `:predict` URL; returns the list of `predictions`.

    Raises:
        RuntimeError: with the server's error message (e.g. undecodable image bytes).
        ConnectionError: naming the URL and the reason when no server answers (refused,
            unknown host, timeout).
    """
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode("utf-8"), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())["predictions"]
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"TF Serving answered {e.code}: {e.read().decode('utf-8', 'replace')}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ConnectionError(f"No answer from {url}: {reason}") from None


def main():
    """Prints one line per image; a failed request prints one `error:` line and exits 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="e.g. http://localhost:8501/v1/models/vit:predict")
    parser.add_argument("images", nargs="+", help="JPEG/PNG files")
    args = parser.parse_args()
    try:
        images = [Path(path).read_bytes() for path in args.images]
        predictions = predict(args.url, images_payload(images))
    except (OSError, RuntimeError) as e:
        sys.exit(f"{parser.prog}: error: {' '.join(str(e).split())}")
    for path, row in zip(args.images, predictions):
        print(f"{path}: {row['label']} ({row['score']:.3f})")


if __name__ == "__main__":
    main()
