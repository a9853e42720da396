"""Client-side query variants that let plain PDQ lists survive common edits.

Hotline lists arrive as one PDQ per image, so robustness has to come from the
query side: from one decoded image we hash

* the 8 dihedral transforms (rotations by 90/180/270 and mirror images), which
  the reference library computes from a single DCT;
* the same picture with its *frame* trimmed: solid or blurred letterbox
  borders, meme caption bars, and the flat bars of a phone screenshot.

A variant is matched exactly like the original hash; each extra variant is an
extra chance of a false match, which the evaluation harness measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pdqhash

from blindmatch.hashing.image import PDQ, pdq_from_rgb

# Dihedral order of pdqhash.compute_dihedral.
DIHEDRAL = ("orig", "rot90", "rot180", "rot270", "flipx", "flipy", "flipplus1", "flipminus1")
_ANALYSIS_SIDE = 512  # frames are found on a luma copy at most this size
_MIN_TRIM = 0.02  # trim less than 2% of a side and the trimmed variant is not worth a hash
_MAX_TRIM = 0.45  # never trim more than this fraction from one side


@dataclass(frozen=True, slots=True)
class Variant:
    label: str  # e.g. "orig", "flipx", "trim:orig"
    pdq: PDQ


def dihedral_pdqs(pixels: np.ndarray) -> list[PDQ]:
    """The 8 dihedral PDQ hashes of an RGB array, in ``DIHEDRAL`` order."""
    hashes, quality = pdqhash.compute_dihedral(np.ascontiguousarray(pixels, dtype=np.uint8))
    return [
        PDQ(np.packbits(np.asarray(h, dtype=np.uint8)).tobytes().hex(), int(quality))
        for h in hashes
    ]


def _luma(pixels: np.ndarray) -> np.ndarray:
    h, w = pixels.shape[:2]
    step = max(1, int(np.ceil(max(h, w) / _ANALYSIS_SIDE)))
    small = pixels[::step, ::step].astype(np.float32)
    return small @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _frame_lines(luma: np.ndarray, axis: int, from_end: bool) -> np.ndarray:
    """For each row (axis=1) or column (axis=0), counted from one edge: does it
    look like frame rather than picture?

    A frame starts at the edge. A line is frame when most of its pixels have the
    colour of the outermost line (solid borders, caption bars with their text,
    flat UI bars), or when the outermost line has almost no fine detail and this
    line has hardly more (a blurred letterbox)."""
    lines = np.moveaxis(luma, 1 - axis, 0)  # one line per row of ``lines``
    if from_end:
        lines = lines[::-1]
    outer = float(np.median(lines[0]))
    solid = (np.abs(lines - outer) <= 10.0).mean(axis=1) >= 0.6
    # Second differences: near zero on blurred (or flat) backgrounds, whatever
    # their slow gradients, and high on real picture detail, noise included.
    detail = np.abs(np.diff(lines, n=2, axis=1)).mean(axis=1)
    n = len(detail)
    ref = float(np.median(detail[n // 4 : max(n // 4 + 1, 3 * n // 4)]))
    if ref <= 0.5 or detail[0] > 0.15 * ref:
        return solid
    return solid | (detail < 0.2 * ref)


def _run(lines: np.ndarray) -> int:
    """How many leading lines are frame, capped."""
    cap = int(len(lines) * _MAX_TRIM)
    n = 0
    while n < cap and lines[n]:
        n += 1
    return n


def find_frame(pixels: np.ndarray) -> tuple[int, int, int, int] | None:
    """The box ``(left, top, right, bottom)`` of the picture inside a frame, in
    pixels of ``pixels``, or None when there is no frame worth trimming."""
    h, w = pixels.shape[:2]
    if min(h, w) < 32:
        return None
    luma = _luma(pixels)
    sh, sw = luma.shape
    top = _run(_frame_lines(luma, axis=1, from_end=False))
    bottom = _run(_frame_lines(luma, axis=1, from_end=True))
    left = _run(_frame_lines(luma, axis=0, from_end=False))
    right = _run(_frame_lines(luma, axis=0, from_end=True))
    fy, fx = h / sh, w / sw
    box = (round(left * fx), round(top * fy), w - round(right * fx), h - round(bottom * fy))
    trimmed = max(left / sw, right / sw, top / sh, bottom / sh)
    if trimmed < _MIN_TRIM or box[2] - box[0] < 16 or box[3] - box[1] < 16:
        return None
    return box


def query_variants(
    pixels: np.ndarray, *, dihedral: bool = True, trim: bool = True
) -> list[Variant]:
    """Every PDQ a client should look up for one upright RGB image."""
    out: list[Variant] = []
    if dihedral:
        out += [Variant(lab, p) for lab, p in zip(DIHEDRAL, dihedral_pdqs(pixels), strict=True)]
    else:
        out.append(Variant("orig", pdq_from_rgb(pixels)))
    if trim:
        box = find_frame(pixels)
        if box is not None:
            left, top, right, bottom = box
            inner = pixels[top:bottom, left:right]
            if dihedral:
                out += [
                    Variant(f"trim:{lab}", p)
                    for lab, p in zip(DIHEDRAL, dihedral_pdqs(inner), strict=True)
                ]
            else:
                out.append(Variant("trim:orig", pdq_from_rgb(inner)))
    return out
