"""Tell what a file is from its first bytes, never from its name."""

from __future__ import annotations

from typing import Literal

Kind = Literal["image", "video"]

_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif"}


def sniff(head: bytes) -> tuple[Kind, str] | None:
    """Return ``(kind, format)`` for the first bytes of a file, or None if unknown.

    ``head`` should hold at least the first 32 bytes.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image", "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "webp"
    if head[:2] == b"BM" and len(head) >= 14:
        return "image", "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image", "tiff"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIF_BRANDS:
            return "image", "heif"
        return "video", "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video", "matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video", "avi"
    if head.startswith(b"FLV"):
        return "video", "flv"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return "video", "mpeg"
    if head.startswith(b"\x47") and len(head) > 188 and head[188:189] == b"\x47":
        return "video", "mpegts"
    if head.startswith(b"OggS"):
        return "video", "ogg"
    return None
