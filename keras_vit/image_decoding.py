"""Decoding encoded images inside a TensorFlow graph, as the PIL image processor reads files.

`decode_image` is what the served `serving_default` signature runs on each request image:

1. the pixels the decoder would allocate are read from the headers with string ops
   (`declared_pixels`: PNG IHDR, JPEG SOF via `tf.image.extract_jpeg_shape`, BMP info
   header, WebP VP8/VP8L/VP8X, and for a GIF every frame: the logical screen plus each
   image descriptor's width x height, summed over the frames) and checked against a
   pixel limit *before* anything is decoded, so a small decompression bomb (a 24 KB PNG
   declaring 14000 x 14000, a GIF whose frame is larger than its screen, a GIF of many
   large frames) fails the request with `InvalidArgument` instead of allocating
   gigabytes. Bytes the check cannot read are refused the same way: JPEG XL (which
   `tf.io.decode_image` accepts, but whose size this check does not parse), animated
   WebP, a GIF whose block structure is broken, any other format;
2. the image is decoded to RGB (alpha dropped, grayscale repeated);
3. the EXIF orientation (JPEG APP1, PNG eXIf, WebP EXIF; TIFF IFD0 tag 0x0112, SHORT or
   LONG, either byte order) is read by the rules of `keras_vit.exif`, which the PIL
   processor follows too, and applied as `PIL.ImageOps.exif_transpose` does.

Reference: PNG spec (IHDR), JPEG/JFIF and Exif 2.3 (APP1, TIFF 6.0 IFD), GIF89a, BMP
BITMAPINFOHEADER, WebP container spec.
"""

import tensorflow as tf

from keras_vit import exif
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


_GIF_TRAILER, _GIF_EXTENSION, _GIF_IMAGE = 0x3B, 0x21, 0x2C
UNREADABLE = -1  # what `declared_pixels` returns for bytes whose size it cannot read


def _gif_pixels(data, size, stop_above):
    """Sum over the frames of a GIF of (screen width x height + frame width x height).

    TensorFlow's GIF decoder (giflib) holds every frame's raster at its own size and makes
    one screen-sized RGB image per frame. Walks the blocks (GIF89a: extensions and image
    descriptors, each followed by data sub-blocks, until the trailer); UNREADABLE when the
    walk meets an unknown block or runs past the end. Stops early above `stop_above`.
    """
    screen = _uint(data, 6, 2, True) * _uint(data, 8, 2, True)
    flags = _uint(data, 10, 1, True)
    start = 13 + tf.where(flags >= 128, 3 * 2 ** (flags % 8 + 1), tf.constant(0, tf.int64))

    def step(offset, in_sub_blocks, pixels, status):
        byte = _uint(data, offset, 1, True)
        past_end = offset >= size

        def sub_block():  # a length byte then that many bytes; 0 ends the sub-blocks
            return offset + byte + 1, byte != 0, pixels, tf.cast(tf.where(past_end, UNREADABLE, 0), tf.int64)

        def block():
            descriptor = _uint(data, offset + 9, 1, True)
            table = tf.where(descriptor >= 128, 3 * 2 ** (descriptor % 8 + 1), tf.constant(0, tf.int64))
            frame = _uint(data, offset + 5, 2, True) * _uint(data, offset + 7, 2, True)
            image = byte == _GIF_IMAGE
            status = tf.where(byte == _GIF_TRAILER, 1, tf.where(image | (byte == _GIF_EXTENSION), 0, UNREADABLE))
            return (
                tf.where(image, offset + 11 + table, offset + 2),  # past the LZW code size / the label
                tf.constant(True),
                pixels + tf.where(image, screen + frame, tf.constant(0, tf.int64)),
                tf.cast(tf.where(past_end, UNREADABLE, status), tf.int64),
            )

        return tf.cond(in_sub_blocks, sub_block, block)

    _, _, pixels, status = tf.while_loop(
        lambda offset, in_sub_blocks, pixels, status: (status == 0) & (pixels <= stop_above),
        step,
        (start, tf.constant(False), tf.constant(0, tf.int64), tf.constant(0, tf.int64)),
    )
    return tf.where(status == UNREADABLE, tf.constant(UNREADABLE, tf.int64), pixels)


def declared_pixels(encoded, stop_above=2**62):
    """The pixels decoding `encoded` (tf.string scalar) would produce, read from its headers
    without decoding; int64 scalar, `UNREADABLE` (-1) for bytes this cannot bound.

    Height x width for PNG, JPEG, BMP and still WebP; for a GIF, per frame the screen plus
    the frame (see `_gif_pixels`; the walk stops once the count passes `stop_above`).
    UNREADABLE for JPEG XL (codestream or container), animated WebP, broken GIFs and
    anything else.
    """
    data = tf.strings.join([encoded, b"\x00" * _PADDING])
    size = tf.cast(tf.strings.length(encoded), tf.int64)
    height, width = image_hw_from_header(encoded)
    known = tf.logical_or(
        tf.reduce_any([_starts_with(data, magic) for magic in (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM")]),
        tf.logical_and(_starts_with(data, b"RIFF"), _starts_with(data, b"WEBP", 8)),
    )
    animated_webp = tf.logical_and(_starts_with(data, b"VP8X", 12), _uint(data, 20, 1, True) // 2 % 2 == 1)
    still = tf.where(known & ~animated_webp & (height * width > 0), height * width, tf.constant(UNREADABLE, tf.int64))
    return tf.cond(_starts_with(data, b"GIF8"), lambda: _gif_pixels(data, size, stop_above), lambda: still)


def _walk(data, start, step):
    """Runs `step(offset) -> (next offset, found (start, end) or (-1, -1), stop)` from `start`
    until it stops or finds; returns the (start, end) found or (-1, -1). Offsets only grow."""

    def body(offset, found, stop):
        next_offset, found, stop = step(offset)
        return tf.maximum(next_offset, offset + 1), found, stop | (found[0] >= 0)

    none = tf.constant([-1, -1], tf.int64)
    _, found, _ = tf.while_loop(
        lambda offset, found, stop: ~stop, body, (tf.cast(start, tf.int64), none, tf.constant(False))
    )
    return found


def _jpeg_exif(data, size):
    """`keras_vit.exif.tiff_payload` for a JPEG: the segments up to SOS/EOI, the first APP1 "Exif"."""

    def step(offset):
        marker = _uint(data, offset + 1, 1, False)
        length = _uint(data, offset + 2, 2, False)
        not_marker = (offset + 4 > size) | (_uint(data, offset, 1, False) != 0xFF)
        stop = not_marker | (marker == exif.JPEG_SOS) | (marker == exif.JPEG_EOI)
        fill, standalone = marker == 0xFF, tf.reduce_any(tf.equal(marker, exif.JPEG_STANDALONE))
        is_exif = (marker == exif.JPEG_APP1) & _starts_with(data, exif.EXIF_HEADER, offset + 4) & ~stop
        found = tf.where(is_exif, tf.stack([offset + 10, offset + 2 + length]), tf.constant([-1, -1], tf.int64))
        next_offset = tf.where(fill, offset + 1, tf.where(standalone, offset + 2, offset + 2 + length))
        return next_offset, found, stop

    return _walk(data, 2, step)


def _skip_exif_header(data, start, end):
    skip = tf.where(_starts_with(data, exif.EXIF_HEADER, start), tf.constant(6, tf.int64), 0)
    return tf.stack([start + skip, end])


def _png_exif(data, size):
    """`keras_vit.exif.tiff_payload` for a PNG: the chunks up to IDAT/IEND, an eXIf chunk."""

    def step(offset):
        length, kind = _uint(data, offset, 4, False), _substr(data, offset + 4, 4)
        stop = (offset + 8 > size) | tf.reduce_any(tf.equal(kind, exif.PNG_STOP))
        found = tf.where(
            tf.equal(kind, exif.PNG_EXIF) & ~stop,
            _skip_exif_header(data, offset + 8, offset + 8 + length),
            tf.constant([-1, -1], tf.int64),
        )
        return offset + 12 + length, found, stop

    return _walk(data, 8, step)


def _webp_exif(data, size):
    """`keras_vit.exif.tiff_payload` for a WebP: the RIFF chunks, an EXIF chunk."""

    def step(offset):
        kind, length = _substr(data, offset, 4), _uint(data, offset + 4, 4, True)
        stop = offset + 8 > size
        found = tf.where(
            tf.equal(kind, exif.WEBP_EXIF) & ~stop,
            _skip_exif_header(data, offset + 8, offset + 8 + length),
            tf.constant([-1, -1], tf.int64),
        )
        return offset + 8 + length + length % 2, found, stop

    return _walk(data, 12, step)


def exif_orientation(encoded):
    """The EXIF orientation (int32 1-8) of a JPEG, PNG or WebP image; 1 when absent or invalid.

    The rules of `keras_vit.exif` (the PIL processor's), in string ops: the container's
    segments or chunks are walked to the TIFF payload, whose IFD0 orientation entry
    (SHORT or LONG, inside the payload) is read.
    """
    data = tf.strings.join([encoded, b"\x00" * _PADDING])
    size = tf.cast(tf.strings.length(encoded), tf.int64)
    none = lambda: tf.constant([-1, -1], tf.int64)  # noqa: E731
    payload = tf.case(
        [
            (_starts_with(data, exif.JPEG_SOI), lambda: _jpeg_exif(data, size)),
            (_starts_with(data, exif.PNG_SIGNATURE), lambda: _png_exif(data, size)),
            (_starts_with(data, b"RIFF") & _starts_with(data, b"WEBP", 8), lambda: _webp_exif(data, size)),
        ],
        default=none,
        exclusive=True,
    )
    start, end = payload[0], tf.minimum(payload[1], size)
    order = _substr(data, start, 2)
    little = tf.equal(order, b"II")
    found = (start >= 0) & (little | tf.equal(order, b"MM"))

    def read():
        ifd = start + _uint(data, start + 4, 4, little)
        count = _uint(data, ifd, 2, little)
        available = tf.maximum(end - (ifd + 2), 0) // 12  # whole entries inside the payload
        entries = _bytes(data, ifd + 2, 12 * tf.minimum(count, available))
        entries = tf.reshape(entries[: tf.size(entries) // 12 * 12], (-1, 12))

        def field(first, length):  # an unsigned field of every entry, in the file's byte order
            columns = entries[:, first : first + length]
            weights = tf.constant([[256**i for i in range(length)], [256**i for i in reversed(range(length))]], tf.int64)
            return tf.reduce_sum(columns * tf.where(little, weights[0], weights[1]), axis=1)

        matches = tf.where(tf.equal(field(0, 2), exif.ORIENTATION_TAG))[:, 0]
        first = tf.cond(tf.size(matches) > 0, lambda: matches[0], lambda: tf.constant(-1, tf.int64))

        def value():
            kind = field(2, 2)[first]
            short, long = field(8, 2)[first], field(8, 4)[first]
            return tf.where(kind == exif.SHORT, short, tf.where(kind == exif.LONG, long, tf.constant(1, tf.int64)))

        value = tf.cond(first >= 0, value, lambda: tf.constant(1, tf.int64))
        return tf.cast(tf.where((value >= 1) & (value <= 8), value, 1), tf.int32)

    return tf.cond(found, read, lambda: tf.constant(1, tf.int32))


_HEX = [f"{i:02x}" for i in range(256)]


def _describe_start(encoded):
    """The first bytes of `encoded` in hex, e.g. "ff0a fa7f..." for a JPEG XL codestream."""
    head = tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, 0, 8), tf.uint8), tf.int32)
    return tf.strings.reduce_join(tf.gather(tf.constant(_HEX), head))


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


def decode_image(encoded, max_image_pixels, name="image"):
    """One encoded image (tf.string scalar) -> uint8 (height, width, 3), EXIF orientation applied.

    Fails (`InvalidArgumentError`, naming `name`), before decoding: when the headers declare
    more than `max_image_pixels` pixels (`declared_pixels`; the message gives the size and
    the limit), for an empty string, and for bytes whose size cannot be read (JPEG XL,
    animated WebP, a broken GIF, other formats); then for an image cut short or a 16-bit
    grayscale PNG (`is_complete_image`); and, as `tf.io.decode_image` does, on a JPEG, PNG,
    GIF, BMP or WebP image that does not decode.
    """
    height, width = image_hw_from_header(encoded)
    pixels = declared_pixels(encoded, stop_above=max_image_pixels)
    number = tf.strings.as_string
    empty = tf.strings.length(encoded) == 0
    received = tf.where(empty, "an empty string", tf.strings.join(["bytes starting with hex ", _describe_start(encoded)]))
    unreadable = tf.strings.join([
        "Expected ", name, " to be a JPEG, PNG, GIF, BMP or still WebP image whose size can be read before decoding "
        "(JPEG XL, animated WebP and other formats are refused). Received: ", received,
    ])
    too_large = tf.strings.join([
        "Expected ", name, f" to have at most {max_image_pixels} pixels (max_image_pixels, decompression-bomb limit). "
        "Received: ", number(pixels), " pixels declared in its header, ", number(width), " x ", number(height),
        " (a GIF counts its screen plus each frame's size, for every frame)",
    ])
    readable = pixels != UNREADABLE
    check = tf.debugging.Assert(readable & (pixels <= max_image_pixels), [tf.where(readable, too_large, unreadable)])
    with tf.control_dependencies([check]):  # then, the size known to be bounded: is the file whole?
        incomplete = tf.strings.join(
            ["Expected ", name, " to be a complete JPEG, PNG, GIF, BMP or WebP image of 8 bits per channel."]
        )
        check = tf.debugging.Assert(is_complete_image(encoded), [incomplete])
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
