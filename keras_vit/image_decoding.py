"""Decoding encoded images inside a TensorFlow graph, as the PIL image processor reads files.

`decode_image` is what the served `serving_default` signature runs on each request image:

1. the width and height are read from the header with string ops (PNG IHDR, JPEG SOF via
   `tf.image.extract_jpeg_shape`, GIF logical screen, BMP info header, WebP VP8/VP8L/VP8X)
   and checked against a pixel limit *before* anything is decoded, so a small
   decompression bomb (a 24 KB PNG declaring 14000 x 14000) fails the request with
   `InvalidArgument` instead of allocating gigabytes;
2. the image is decoded to RGB (alpha dropped, grayscale repeated);
3. the JPEG EXIF orientation tag (APP1 "Exif", TIFF IFD0 tag 0x0112, either byte order) is
   applied, as `PIL.ImageOps.exif_transpose` does in the processor.

Reference: PNG spec (IHDR), JPEG/JFIF and Exif 2.3 (APP1, TIFF 6.0 IFD), GIF89a, BMP
BITMAPINFOHEADER, WebP container spec.
"""

import tensorflow as tf

_EXIF_HEADER = b"Exif\x00\x00"
_ORIENTATION_TAG = 0x0112
_PADDING = 64  # bytes appended before reading headers, so that short inputs read zeros


def _bytes(data, offset, length):
    """Up to `length` bytes of `data` from `offset`, as int64 (<= length,); fewer past the end.

    Offsets come from the file, so they are clamped: a bad one reads nothing rather than
    failing the op.
    """
    size = tf.cast(tf.strings.length(data), tf.int64)
    offset = tf.clip_by_value(tf.cast(offset, tf.int64), 0, size)
    length = tf.minimum(tf.cast(length, tf.int64), size - offset)
    return tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, length), tf.uint8), tf.int64)


def _uint(data, offset, length, little_endian):
    """An unsigned integer of `length` bytes at `offset`, in the given byte order (int64 scalar)."""
    values = _bytes(data, offset, length)
    values = tf.pad(values, [[0, length - tf.size(values, tf.int64)]])
    little = tf.reduce_sum(values * tf.constant([256**i for i in range(length)], tf.int64))
    big = tf.reduce_sum(values * tf.constant([256**i for i in reversed(range(length))], tf.int64))
    return tf.where(little_endian, little, big)


def _substr(data, offset, length):
    size = tf.cast(tf.strings.length(data), tf.int64)
    return tf.strings.substr(data, tf.clip_by_value(tf.cast(offset, tf.int64), 0, size), length)


def _starts_with(data, prefix, offset=0):
    return tf.equal(_substr(data, offset, len(prefix)), prefix)


def image_hw_from_header(encoded):
    """(height, width) int64 scalars read from the header of a PNG, JPEG, GIF, BMP or WebP
    image without decoding it; (0, 0) for other data (decoding then fails by itself)."""
    data = tf.strings.join([encoded, b"\x00" * _PADDING])

    def png():
        return _uint(data, 20, 4, False), _uint(data, 16, 4, False)

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(encoded), tf.int64)
        return shape[0], shape[1]

    def gif():
        return _uint(data, 8, 2, True), _uint(data, 6, 2, True)

    def bmp():
        height = _uint(data, 22, 4, True)
        height = tf.where(height >= 2**31, 2**32 - height, height)  # top-down bitmaps store -height
        return height, _uint(data, 18, 4, True)

    def webp():
        lossy = (_uint(data, 28, 2, True) % 2**14, _uint(data, 26, 2, True) % 2**14)
        bits = _uint(data, 21, 4, True)
        lossless = (bits // 2**14 % 2**14 + 1, bits % 2**14 + 1)
        extended = (_uint(data, 27, 3, True) + 1, _uint(data, 24, 3, True) + 1)
        chunk = _substr(data, 12, 4)
        return tuple(
            tf.where(tf.equal(chunk, b"VP8L"), l, tf.where(tf.equal(chunk, b"VP8X"), x, tf.where(tf.equal(chunk, b"VP8 "), y, 0)))
            for y, l, x in zip(lossy, lossless, extended)
        )

    def unknown():
        return tf.constant(0, tf.int64), tf.constant(0, tf.int64)

    return tf.case(
        [
            (_starts_with(data, b"\x89PNG\r\n\x1a\n"), png),
            (_starts_with(data, b"\xff\xd8\xff"), jpeg),
            (_starts_with(data, b"GIF8"), gif),
            (_starts_with(data, b"BM"), bmp),
            (tf.logical_and(_starts_with(data, b"RIFF"), _starts_with(data, b"WEBP", 8)), webp),
        ],
        default=unknown,
        exclusive=True,
    )


def exif_orientation(encoded):
    """The EXIF orientation (int32 1-8) of a JPEG; 1 when absent, invalid, or not a JPEG."""
    data = tf.strings.join([encoded, b"\x00" * _PADDING])
    # The APP1 segment: FF E1, 2-byte length, "Exif\0\0", then a TIFF header.
    head = tf.strings.split(tf.reshape(data, (1,)), sep=_EXIF_HEADER, maxsplit=1).values
    found = tf.logical_and(tf.shape(head)[0] == 2, _starts_with(data, b"\xff\xd8"))
    start = tf.cast(tf.strings.length(head[0]), tf.int64)
    found = tf.logical_and(found, start >= 6)
    marker = _substr(data, start - 4, 2)
    found = tf.logical_and(found, tf.equal(marker, b"\xff\xe1"))
    tiff = start + len(_EXIF_HEADER)
    order = _substr(data, tiff, 2)
    little = tf.equal(order, b"II")
    found = tf.logical_and(found, tf.logical_or(little, tf.equal(order, b"MM")))

    def read():
        ifd = tiff + _uint(data, tiff + 4, 4, little)
        count = _uint(data, ifd, 2, little)
        entries = _bytes(data, ifd + 2, 12 * tf.minimum(count, 1000))
        entries = tf.reshape(entries[: tf.size(entries) // 12 * 12], (-1, 12))
        tags = tf.where(little, entries[:, 0] + 256 * entries[:, 1], 256 * entries[:, 0] + entries[:, 1])
        values = tf.where(little, entries[:, 8] + 256 * entries[:, 9], 256 * entries[:, 8] + entries[:, 9])
        matches = tf.boolean_mask(values, tf.equal(tags, _ORIENTATION_TAG))
        value = tf.cond(tf.size(matches) > 0, lambda: matches[0], lambda: tf.constant(1, tf.int64))
        return tf.cast(tf.where((value >= 1) & (value <= 8), value, 1), tf.int32)

    return tf.cond(found, read, lambda: tf.constant(1, tf.int32))


def apply_orientation(image, orientation):
    """`image` (height, width, channels) transposed as `PIL.ImageOps.exif_transpose` does for
    EXIF orientation 1-8 (1 unchanged, 6: rotated 90 degrees clockwise, 8: counter-clockwise)."""
    transposed = lambda: tf.transpose(image, (1, 0, 2))  # noqa: E731
    branches = [
        lambda: image,  # 1
        lambda: tf.reverse(image, [1]),  # 2 mirror left-right
        lambda: tf.reverse(image, [0, 1]),  # 3 rotate 180
        lambda: tf.reverse(image, [0]),  # 4 mirror top-bottom
        transposed,  # 5 transpose
        lambda: tf.reverse(transposed(), [1]),  # 6 rotate 90 clockwise
        lambda: tf.reverse(transposed(), [0, 1]),  # 7 transverse
        lambda: tf.reverse(transposed(), [0]),  # 8 rotate 90 counter-clockwise
    ]
    return tf.switch_case(orientation - 1, branches)


def decode_image(encoded, max_image_pixels):
    """One encoded image (tf.string scalar) -> uint8 (height, width, 3), EXIF orientation applied.

    Fails (`InvalidArgumentError`) when the header declares more than `max_image_pixels`
    pixels, before decoding, with a message giving the size and the limit; and, as
    `tf.io.decode_image` does, on bytes that are not a JPEG, PNG, GIF, BMP or WebP image.
    """
    height, width = image_hw_from_header(encoded)
    pixels = height * width
    message = tf.strings.format(
        f"Expected an image of at most {max_image_pixels} pixels (max_image_pixels, decompression-bomb limit). "
        "Received: {} x {} = {} pixels declared in its header",
        (width, height, pixels),
    )
    check = tf.debugging.Assert(pixels <= max_image_pixels, [message])
    with tf.control_dependencies([check]):
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return apply_orientation(image, exif_orientation(encoded))


def is_complete_image(encoded):
    """Whether `encoded` (tf.string scalar) is, by its structure, an image `decode_image` reads as
    the PIL processor does: a JPEG, PNG, GIF, BMP or WebP, not cut short, and no 16-bit
    grayscale PNG (the processor refuses it: converting to RGB would clip above 255).

    "Not cut short": a PNG holds its IEND chunk, a JPEG an EOI marker (FF D9), a BMP or WebP
    at least the size its header declares. Damage inside the compressed data is left to the
    decoder. Returns a bool scalar.
    """
    data = tf.strings.join([encoded, b"\x00" * _PADDING])
    size = tf.cast(tf.strings.length(encoded), tf.int64)

    def contains(marker):
        return tf.shape(tf.strings.split(tf.reshape(encoded, (1,)), sep=marker, maxsplit=1).values)[0] == 2

    def png():
        gray_16_bit = tf.logical_and(tf.equal(_uint(data, 24, 1, False), 16), tf.equal(_uint(data, 25, 1, False), 0))
        return tf.logical_and(tf.logical_not(gray_16_bit), contains(b"IEND"))

    return tf.case(
        [
            (_starts_with(data, b"\x89PNG\r\n\x1a\n"), png),
            (_starts_with(data, b"\xff\xd8\xff"), lambda: contains(b"\xff\xd9")),
            (_starts_with(data, b"GIF8"), lambda: tf.constant(True)),
            (_starts_with(data, b"BM"), lambda: _uint(data, 2, 4, True) <= size),
            (tf.logical_and(_starts_with(data, b"RIFF"), _starts_with(data, b"WEBP", 8)),
             lambda: _uint(data, 4, 4, True) + 8 <= size),
        ],
        default=lambda: tf.constant(False),
        exclusive=True,
    )
