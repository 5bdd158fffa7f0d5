"""One EXIF orientation rule (keras_vit.exif) for the PIL processor and the serving graph:
both read the same orientation from the same bytes, for every container that carries EXIF
and for malformed ones, and both decode the same upright pixels."""

import io
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_vit import exif
from keras_vit.image_decoding import decode_image, exif_orientation
from keras_vit.processors import load_image

graph_orientation = tf.function(exif_orientation, input_signature=[tf.TensorSpec((), tf.string)])


def tiff(orientation, order="II", kind=exif.SHORT, entries_before=1):
    """A TIFF header and IFD0 with `entries_before` other entries, then the orientation entry."""
    fmt = "<" if order == "II" else ">"
    value = struct.pack(fmt + "I", orientation) if kind == exif.LONG else struct.pack(fmt + "HH", orientation, 0)
    entries = [struct.pack(fmt + "HHI", 0x010F + i, 2, 1) + b"a\x00\x00\x00" for i in range(entries_before)]
    entries.append(struct.pack(fmt + "HHI", exif.ORIENTATION_TAG, kind, 1) + value)
    return order.encode() + struct.pack(fmt + "HIH", 42, 8, len(entries)) + b"".join(entries) + b"\x00" * 4


def _image(seed=0, shape=(12, 20, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _encode(array, fmt, **options):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


def _segment(marker, payload):
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_with(*segments, quality=100):
    """A JPEG of `_image()` with `segments` inserted after SOI."""
    data = _encode(_image(), "JPEG", quality=quality, subsampling=0)
    return data[:2] + b"".join(segments) + data[2:]


def _chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_with(chunk, after_idat=False):
    data = _encode(_image(), "PNG")
    at = data.index(b"IDAT") - 4
    if after_idat:
        at = data.index(b"IEND") - 4
    return data[:at] + chunk + data[at:]


def webp_with(payload):
    return _encode(_image(), "WEBP", lossless=True, exif=payload)


XMP = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><rdf:Description tiff:Orientation=\"6\"/></x:xmpmeta>"
CASES = {
    # name: (bytes, expected orientation)
    **{f"jpeg_app1_{order}_{name}_{o}": (jpeg_with(_segment(exif.JPEG_APP1, exif.EXIF_HEADER + tiff(o, order, kind))), o)
       for order in ("II", "MM") for name, kind in (("short", exif.SHORT), ("long", exif.LONG)) for o in (3, 6, 8)},
    **{f"png_exif_{order}_{o}": (png_with(_chunk(b"eXIf", tiff(o, order))), o) for order in ("II", "MM") for o in (2, 6)},
    "png_exif_with_header": (png_with(_chunk(b"eXIf", exif.EXIF_HEADER + tiff(5, "MM", exif.LONG))), 5),
    "png_exif_after_idat": (png_with(_chunk(b"eXIf", tiff(6)), after_idat=True), 1),
    **{f"webp_exif_{order}_{o}": (webp_with(tiff(o, order)), o) for order in ("II", "MM") for o in (4, 7)},
    "webp_exif_with_header": (webp_with(exif.EXIF_HEADER + tiff(8, "MM")), 8),
    "jpeg_com_holding_exif_bytes": (jpeg_with(_segment(0xFE, exif.EXIF_HEADER + tiff(6))), 1),
    "jpeg_xmp_orientation": (jpeg_with(_segment(exif.JPEG_APP1, XMP)), 1),
    "jpeg_xmp_holding_exif_bytes": (jpeg_with(_segment(exif.JPEG_APP1, XMP + exif.EXIF_HEADER + tiff(6))), 1),
    "jpeg_exif_after_com": (jpeg_with(_segment(0xFE, b"Exif"), _segment(exif.JPEG_APP1, exif.EXIF_HEADER + tiff(6))), 6),
    "jpeg_second_exif_ignored": (jpeg_with(_segment(exif.JPEG_APP1, exif.EXIF_HEADER + tiff(3)),
                                           _segment(exif.JPEG_APP1, exif.EXIF_HEADER + tiff(6))), 3),
    # An APP1 whose length field stops before the orientation entry: the entry is outside the payload.
    "jpeg_app1_length_too_short": (jpeg_with(b"\xff\xe1\x00\x14" + exif.EXIF_HEADER + tiff(6, entries_before=2)), 1),
    # An APP1 whose length runs past the end of the file: the entries inside it are still read.
    "jpeg_app1_length_past_the_end": (b"\xff\xd8\xff\xe1\xff\xf0" + exif.EXIF_HEADER + tiff(6), 6),
    "orientation_9_is_upright": (jpeg_with(_segment(exif.JPEG_APP1, exif.EXIF_HEADER + tiff(9))), 1),
    "orientation_as_ascii_is_ignored": (jpeg_with(_segment(exif.JPEG_APP1, exif.EXIF_HEADER + tiff(6, kind=2))), 1),
    "bad_byte_order": (jpeg_with(_segment(exif.JPEG_APP1, exif.EXIF_HEADER + b"XX" + tiff(6)[2:])), 1),
    "ifd_offset_past_the_end": (jpeg_with(_segment(exif.JPEG_APP1, exif.EXIF_HEADER + b"II*\x00\xff\xff\xff\x7f")), 1),
    "gif": (_encode(_image(), "GIF"), 1),
    "empty": (b"", 1),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_processor_rule_and_serving_graph_read_the_same_orientation(name):
    data, expected = CASES[name]
    assert exif.orientation(data) == expected
    assert int(graph_orientation(tf.constant(data))) == expected


def load_image_upright(data):
    """The image without its orientation applied."""
    return Image.open(io.BytesIO(data)).convert("RGB")


DECODABLE = [name for name in sorted(CASES) if not name.startswith(("jpeg_app1_length_past", "empty", "gif"))]


@pytest.mark.parametrize("name", DECODABLE)
def test_processor_and_serving_graph_decode_the_same_upright_pixels(tmp_path, name):
    data, expected = CASES[name]
    (tmp_path / "image").write_bytes(data)
    offline = np.asarray(load_image(tmp_path / "image"), np.float32)
    served = decode_image(tf.constant(data), 10**6).numpy().astype(np.float32)
    assert offline.shape == served.shape == ((20, 12, 3) if expected >= 5 else (12, 20, 3))
    # Lossless formats: equal. JPEG: PIL's and TensorFlow's decoders differ by a few grey levels on
    # these noise pixels, while a wrong transpose of them differs by about 85.
    tolerance = 15 if name.startswith(("jpeg", "orientation", "bad", "ifd")) else 0
    assert np.abs(offline - served).mean() <= tolerance, name
    if expected in (2, 3, 4):
        assert np.abs(offline - np.asarray(load_image_upright(data), np.float32)).mean() > 50
