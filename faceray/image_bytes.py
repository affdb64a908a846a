"""Facts about encoded image bytes read from their headers, without decoding (pure Python).

Ingest uses them to reject truncated files and to pick a JPEG decoding scale; serving uses them to refuse a
decompression bomb (a small file declaring a huge image) before decoding it.
"""

from __future__ import annotations

_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"
_PNG_START = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers that carry the image size (baseline, progressive, lossless, ...).
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def is_truncated_jpeg(data: bytes) -> bool:
    """True for JPEG bytes without the end-of-image marker (trailing zero padding allowed).

    OpenCV decodes such files "successfully", filling the missing part with grey, so callers check first.
    """
    return data.startswith(_JPEG_START) and data.rstrip(b"\x00")[-2:] != _JPEG_END


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG header without decoding, or None when it is not a JPEG or unreadable."""
    if not data.startswith(_JPEG_START):
        return None
    position = 2
    length = len(data)
    while position + 9 < length:
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _SOF_MARKERS:
            height = int.from_bytes(data[position + 5 : position + 7], "big")
            width = int.from_bytes(data[position + 7 : position + 9], "big")
            return (height, width) if height and width else None
        segment = int.from_bytes(data[position + 2 : position + 4], "big")
        position += 2 + segment
    return None


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG SOF or PNG IHDR header, read without decoding; None for other formats."""
    if data.startswith(_PNG_START) and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    return jpeg_size(data)
