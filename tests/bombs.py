"""Small files that declare huge images (decompression bombs), one per format TensorFlow decodes."""

import io
import struct
import zlib

from PIL import Image

from tests.test_preprocessing import bomb_png


def _gif_frame(left, top, width, height):
    """An image descriptor and its LZW data: one clear code then end (no pixel data), 2-bit codes."""
    descriptor = b"\x2c" + struct.pack("<HHHHB", left, top, width, height, 0)
    return descriptor + b"\x02\x02\x4c\x01\x00"


def gif(screen, frames):
    """A GIF89a with a `screen` (width, height) and one frame per (width, height) in `frames`."""
    header = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    return header + b"".join(_gif_frame(0, 0, w, h) for w, h in frames) + b"\x3b"


def gif_of_many_frames(count=40, side=1500):
    """`count` frames of side x side on a side x side screen (one PIL-encoded frame, repeated)."""
    buffer = io.BytesIO()
    Image.new("P", (side, side)).save(buffer, "GIF")
    data = buffer.getvalue()
    start = data.index(b"\x2c", 13)  # the image descriptor, after the header and colour table
    return data[:start] + data[start:-1] * count + b"\x3b"


def jpeg_xl(width=10000, height=10000):
    """A JPEG XL codestream whose SizeHeader declares width x height (both multiples of 8, <= 256)."""
    bits = [1, *((height // 8 - 1) >> i & 1 for i in range(5)), 0, 0, 0, *((width // 8 - 1) >> i & 1 for i in range(5))]
    if width > 256 or height > 256:  # U32 selector 3: 30 bits
        bits = [0, 1, 1, *((height - 1) >> i & 1 for i in range(30)), 0, 0, 0, 1, 1, *((width - 1) >> i & 1 for i in range(30))]
    value = sum(bit << i for i, bit in enumerate(bits))
    return b"\xff\x0a" + value.to_bytes((len(bits) + 7) // 8 + 1, "little") + b"\x00" * 360


def bmp(width, height):
    """A BMP info header declaring width x height (24-bit), with no pixel data."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 16, 0, 0, 54) + info + b"\x00" * 16


def webp_lossless(width, height):
    """A VP8L WebP header declaring width x height (at most 16384 each)."""
    bits = (width - 1) | (height - 1) << 14
    payload = b"\x2f" + struct.pack("<I", bits) + b"\x00" * 16
    chunk = b"VP8L" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def jpeg(width, height):
    """An 8 x 8 JPEG whose SOF0 header is patched to declare width x height."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG")
    data = buffer.getvalue()
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


BOMBS = {
    "png": lambda: bomb_png(14000, 14000),
    "gif_frame_larger_than_screen": lambda: gif((64, 64), [(10000, 10000)]),
    "gif_of_many_frames": gif_of_many_frames,
    "jpeg_xl": jpeg_xl,
    "bmp": lambda: bmp(20000, 20000),
    "webp": lambda: webp_lossless(16384, 16384),
    "jpeg": lambda: jpeg(20000, 20000),
}


def png_rows(width, height):
    """A valid RGB PNG of zeros, width x height, compressed row by row (a few MB for 30000 x 30000)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * width)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
