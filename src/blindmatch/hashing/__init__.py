"""Perceptual and cryptographic hashing of images and videos.

``hash_bytes`` is the one entry point for images held in memory; videos need a
path because the reference vPDQ decoder reads files itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blindmatch.errors import EmptyFile, UnsupportedFormat
from blindmatch.hashing.canonical import companion_pdq, companion_trusted
from blindmatch.hashing.hot import MIN_HOT_SIDE, hot_companions
from blindmatch.hashing.image import (
    DEFAULT_MAX_PIXELS,
    MIN_QUALITY,
    PDQ,
    open_image,
    pdq_distance,
    pdq_from_image_bytes,
    pdq_from_rgb,
)
from blindmatch.hashing.keypoints import Keypoints, mirrored_keypoints, work_copy
from blindmatch.hashing.robust import query_variants
from blindmatch.hashing.sniff import Kind, sniff
from blindmatch.hashing.video import VpdqFrame, vpdq_from_path

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MIN_QUALITY",
    "PDQ",
    "Hashes",
    "Keypoints",
    "Kind",
    "VpdqFrame",
    "hash_bytes",
    "open_image",
    "pdq_distance",
    "pdq_from_image_bytes",
    "pdq_from_rgb",
    "sniff",
    "vpdq_from_path",
]


@dataclass(frozen=True, slots=True)
class Hashes:
    """Every hash of one file."""

    kind: Kind
    format: str
    md5: str
    sha256: str
    pdq: str | None = None
    pdq_quality: int | None = None
    vpdq: tuple[VpdqFrame, ...] = field(default_factory=tuple)
    # Extra PDQ hashes a client looks up (flips, rotations, trimmed frames):
    # (label, hex, quality). Not part of the JSON output.
    variants: tuple[tuple[str, str, int], ...] = ()
    # ORB keypoints of the image and of its mirror image, for finding a listed
    # picture inside a crop or rotation (see ``blindmatch.index.keypoints``).
    keypoints: tuple[Keypoints, Keypoints] | None = None
    # The image's companion hash (``blindmatch.hashing.canonical.companion_pdq``), which a
    # list built from pictures carries; only with ``hash_bytes(..., companion=True)``, and
    # None unless ``companion_trusted`` (the client's rule). Not part of the JSON output.
    pdq_companion: str | None = None
    # A hot picture's hot companion hashes (``blindmatch.hashing.hot.hot_companions``):
    # only with ``hash_bytes(..., hot=True)``; empty for videos, for pictures whose short
    # side is below ``MIN_HOT_SIDE`` and when no grid edit's companion is trusted. Not
    # part of the JSON output.
    pdq_hot: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "md5": self.md5, "sha256": self.sha256}
        if self.kind == "image":
            out["pdq"] = self.pdq
            out["pdq_quality"] = self.pdq_quality
        else:
            out["vpdq"] = [
                {"pdq": f.pdq, "quality": f.quality, "timestamp": f.timestamp} for f in self.vpdq
            ]
        return out


def hash_bytes(
    data: bytes,
    *,
    video_path: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft: bool = True,
    variants: bool = False,
    keypoints: bool | None = None,
    companion: bool = False,
    hot: bool = False,
) -> Hashes:
    """Hash a whole file's bytes. For videos, ``video_path`` must name the same file.

    With ``variants``, images also get the robust query variants that matching
    looks up (see ``blindmatch.hashing.robust``) and, unless ``keypoints`` is False,
    their keypoints (see ``blindmatch.hashing.keypoints``; a matcher computes them
    itself when it needs them and they are absent).

    With ``companion`` (the list side: ``lists add``), images also get their companion
    hash (:func:`blindmatch.hashing.canonical.companion_pdq`), from the same decoded
    pixels a client's query hashes are made of; left out (None) unless
    :func:`~blindmatch.hashing.canonical.companion_trusted`, the rule a client applies to
    its own (a flat picture's companion would be a lookup key for every flat picture).
    Videos have none.

    With ``hot`` (``lists add --hot``), images also get their hot companion hashes
    (:func:`blindmatch.hashing.hot.hot_companions`: the picture cropped and turned by a
    fixed grid, up to 91 hashes: ~1 s a photo-sized picture) from the same decoded pixels.
    Videos, and pictures whose short side is below
    :data:`~blindmatch.hashing.hot.MIN_HOT_SIDE`, have none."""
    if not data:
        raise EmptyFile("file is empty")
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    sha256 = hashlib.sha256(data).hexdigest()
    found = sniff(data[:512])
    if found is None:
        raise UnsupportedFormat("not an image or video format blindmatch recognises")
    kind, fmt = found
    if kind == "image":
        rgb = np.asarray(open_image(data, max_pixels=max_pixels, draft=draft))
        pdq = pdq_from_rgb(rgb)
        comp = companion_pdq(rgb) if companion else None
        comp_hex = comp.hex if comp is not None and companion_trusted(comp, pdq) else None
        hot_hex = (
            tuple(h.hex for h in hot_companions(rgb))
            if hot and min(rgb.shape[:2]) >= MIN_HOT_SIDE
            else ()
        )
        if not variants:
            return Hashes(kind, fmt, md5, sha256, pdq.hex, pdq.quality, pdq_companion=comp_hex,
                          pdq_hot=hot_hex)  # fmt: skip
        extra = tuple(
            (v.label, v.pdq.hex, v.pdq.quality) for v in query_variants(rgb) if v.pdq.hex != pdq.hex
        )
        kps = None if keypoints is False else mirrored_keypoints(work_copy(rgb))
        return Hashes(kind, fmt, md5, sha256, pdq.hex, pdq.quality, variants=extra, keypoints=kps,
                      pdq_companion=comp_hex, pdq_hot=hot_hex)  # fmt: skip
    if video_path is None:
        raise UnsupportedFormat("videos can only be hashed from a file path")
    frames = vpdq_from_path(video_path)
    return Hashes(kind, fmt, md5, sha256, vpdq=tuple(frames))
