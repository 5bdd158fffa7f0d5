"""The EXIF orientation of an encoded image: where it is read, and how.

The rules, shared by the PIL processor (`orientation`, here, in Python) and the serving
graph (`keras_vit.image_decoding.exif_orientation`, the same walk in TensorFlow string ops),
so that both turn the same bytes the same way:

- JPEG: the segments are walked from SOI by their length fields, up to the first scan
  (SOS) or EOI; the first APP1 segment whose payload starts with "Exif\\0\\0" holds the
  TIFF data (its payload only: bytes past the segment's length are not read). Bytes that
  merely look like EXIF in a COM or XMP segment, or in the scan, are not read.
- PNG: the chunks are walked from the signature up to IDAT or IEND; an `eXIf` chunk holds
  the TIFF data.
- WebP: the RIFF chunks are walked; an `EXIF` chunk holds the TIFF data.
  In PNG and WebP an "Exif\\0\\0" prefix some writers add is skipped.
- TIFF (Exif 2.3, TIFF 6.0): "II" (little-endian) or "MM" (big-endian), 42, the offset of
  IFD0; the first IFD0 entry with tag 0x0112 gives the orientation when its type is SHORT
  (3) or LONG (4) and the entry lies inside the payload. A value outside 1-8, or none,
  is 1 (upright).

Orientation values and transposes are those of `PIL.ImageOps.exif_transpose`.
"""

JPEG_SOI = b"\xff\xd8"
JPEG_APP1, JPEG_SOS, JPEG_EOI = 0xE1, 0xDA, 0xD9
JPEG_STANDALONE = (0x01, *range(0xD0, 0xD8))  # TEM, RST0-7: markers without a length field
EXIF_HEADER = b"Exif\x00\x00"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_EXIF, PNG_STOP = b"eXIf", (b"IDAT", b"IEND")
WEBP_EXIF = b"EXIF"
ORIENTATION_TAG = 0x0112
SHORT, LONG = 3, 4


def _uint(data, offset, length, little_endian=False):
    """An unsigned integer of `length` bytes at `offset`; missing bytes (past the end) read as 0."""
    chunk = data[offset : offset + length].ljust(length, b"\x00") if offset >= 0 else b"\x00" * length
    return int.from_bytes(chunk, "little" if little_endian else "big")


def tiff_payload(data):
    """(start, end) of the TIFF data of a JPEG, PNG or WebP image, or None."""
    if data.startswith(JPEG_SOI):
        offset = 2
        while offset + 4 <= len(data) and data[offset] == 0xFF:
            marker = data[offset + 1]
            if marker == 0xFF:  # fill byte
                offset += 1
                continue
            if marker in (JPEG_SOS, JPEG_EOI):
                return None
            if marker in JPEG_STANDALONE:
                offset += 2
                continue
            length = _uint(data, offset + 2, 2)
            if marker == JPEG_APP1 and data[offset + 4 : offset + 10] == EXIF_HEADER:
                return offset + 10, offset + 2 + length
            offset += 2 + length
        return None
    if data.startswith(PNG_SIGNATURE):
        offset = 8
        while offset + 8 <= len(data):
            length, kind = _uint(data, offset, 4), data[offset + 4 : offset + 8]
            if kind == PNG_EXIF:
                return _skip_exif_header(data, offset + 8, offset + 8 + length)
            if kind in PNG_STOP:
                return None
            offset += 12 + length
        return None
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        offset = 12
        while offset + 8 <= len(data):
            kind, size = data[offset : offset + 4], _uint(data, offset + 4, 4, little_endian=True)
            if kind == WEBP_EXIF:
                return _skip_exif_header(data, offset + 8, offset + 8 + size)
            offset += 8 + size + size % 2
    return None


def _skip_exif_header(data, start, end):
    return (start + 6, end) if data[start : start + 6] == EXIF_HEADER else (start, end)


def orientation(data):
    """The EXIF orientation (1-8) of an encoded image (bytes); 1 when absent or invalid."""
    payload = tiff_payload(data)
    if payload is None:
        return 1
    start, end = payload
    end = min(end, len(data))
    order = data[start : start + 2]
    if order not in (b"II", b"MM"):
        return 1
    little = order == b"II"
    ifd = start + _uint(data, start + 4, 4, little)
    count = _uint(data, ifd, 2, little)
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        if entry + 12 > end:
            break
        if _uint(data, entry, 2, little) != ORIENTATION_TAG:
            continue
        kind = _uint(data, entry + 2, 2, little)
        value = {SHORT: _uint(data, entry + 8, 2, little), LONG: _uint(data, entry + 8, 4, little)}.get(kind, 1)
        return value if 1 <= value <= 8 else 1
    return 1
