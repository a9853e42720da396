"""Companion hashes: what a list built from pictures adds so private matching survives
orientation and scale.

A hotline's PDQ is the hash of the picture as it was found. Plaintext matching undoes a
mirror or a 90° turn by hashing the query in all 8 orientations; private matching cannot
afford to spend its fixed probe budget on 8 orientations (docs/protocol.md §11). So both
sides put the picture in one **canonical orientation** first, a pose decided by the
picture's own content and the same whichever of the 8 orientations it arrives in:

* turn it landscape (a square-ish picture: the way its luma is spread wider);
* mirror it so that its luma's centre of mass lies right of centre and below centre.

The hash of the picture in that pose at a fixed small size (a thumbnail's hash sits
closer to a small copy's than to the full-size hash) is the picture's *companion
hash*: the table builder adds its lookup keys beside the PDQ's,
and the client probes its own companions with the same budget it spends on its own hash
(:func:`blindmatch.private.query_hashes`). A list of bare PDQs has no companions — a
companion needs the picture.

Each decision has a *margin* (how far the deciding quantity is from the tie); an edit
can tip a decision whose margin is small, so the client also looks up the other pose of
a close decision, at a lower prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from blindmatch.hashing.image import MIN_QUALITY, PDQ, pdq_from_rgb, pdq_with_vector_from_rgb

# The picture is analysed at this size (area-averaged luma): cheap, and the same for a
# thumbnail and the full-size picture.
_ANALYSIS = 64
# The companion is the PDQ of the canonical pose fitted (Lanczos) inside this many pixels:
# PDQ keeps only a 64x64 picture's lowest frequencies, so nothing it uses is lost, and a
# thumbnail, a re-encode and the original all come to nearly the same 64-px picture
# (measured on 40 corpus photos: median distance 0-4 bits after JPEG 40-95, resizes to
# 0.25, greyscale, noise and blur, where the full-size hash moves 14-19 bits on resizes).
COMPANION_SIDE = 64
# A picture whose sides differ by less than this ratio counts as square: its pose is
# decided by content, not by aspect (a resize may round either side).
_SQUARE = 1.03


@dataclass(frozen=True, slots=True)
class Pose:
    """A canonical pose: transpose first, then mirror left-right, then top-bottom."""

    transpose: bool
    flip_x: bool
    flip_y: bool

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        a = pixels.transpose(1, 0, 2) if self.transpose else pixels
        if self.flip_x:
            a = a[:, ::-1]
        if self.flip_y:
            a = a[::-1]
        return np.ascontiguousarray(a)


# A decision whose margin is below this may be tipped by an edit (measured on 150 corpus
# photos x 4 edits: the 7 of 600 copies whose pose differed from the original's had a
# margin below 0.005 but one); the client also looks up the other pose of such a decision.
CLOSE_MARGIN = 0.005


@dataclass(frozen=True, slots=True)
class Decision:
    """The canonical pose of one picture and how close each of its three choices was:
    ``margins`` (transpose, flip_x, flip_y), each ≥ 0, in units of the quantity it
    compares (0 = a tie; ``inf`` = decided by aspect). ``alternatives`` are the poses
    with one close choice (margin < :data:`CLOSE_MARGIN`) made the other way."""

    pose: Pose
    margins: tuple[float, float, float]
    alternatives: tuple[Pose, ...] = ()


def _luma(pixels: np.ndarray, side: int) -> np.ndarray:
    im = Image.fromarray(np.ascontiguousarray(pixels[..., :3], dtype=np.uint8)).convert("L")
    small = im.resize((side, side), Image.Resampling.BOX)
    a = np.asarray(small, dtype=np.float64)
    return a - a.mean()


def _moments(luma: np.ndarray) -> tuple[float, float, float, float]:
    """Centre of mass of |luma − mean| along x and y (−1..1), and the spread of
    that mass along x and y (second moments), all scale-free."""
    n = luma.shape[0]
    c = (np.arange(n) - (n - 1) / 2) / (n / 2)
    w = np.abs(luma)
    total = float(w.sum()) or 1.0
    cols, rows = w.sum(axis=0), w.sum(axis=1)
    signed_cols, signed_rows = luma.sum(axis=0), luma.sum(axis=1)
    scale = float(np.abs(luma).sum()) or 1.0
    mx = float(signed_cols @ c) / scale  # where the bright side is, along x
    my = float(signed_rows @ c) / scale
    sx = float(cols @ (c * c)) / total  # how widely the detail is spread along x
    sy = float(rows @ (c * c)) / total
    return mx, my, sx, sy


def decide(pixels: np.ndarray) -> Decision:
    """The canonical pose of an ``(h, w, 3)`` picture (see the module docstring)."""
    h, w = pixels.shape[:2]
    luma = _luma(pixels, _ANALYSIS)
    mx, my, sx, sy = _moments(luma)
    ratio = max(w, h) / max(1, min(w, h))
    if ratio >= _SQUARE:
        transpose, m_t = h > w, float("inf")
    else:  # square-ish: wider spread of detail along x in the canonical pose
        transpose, m_t = sy > sx, abs(sx - sy)

    def pose(t: bool) -> Pose:
        x, y = (my, mx) if t else (mx, my)  # the moments of the (transposed) picture
        return Pose(t, x < 0, y < 0)

    chosen = pose(transpose)
    x, y = (my, mx) if transpose else (mx, my)
    margins = (m_t, abs(x), abs(y))
    alternatives = []
    if m_t < CLOSE_MARGIN:
        alternatives.append(pose(not transpose))
    if margins[1] < CLOSE_MARGIN:
        alternatives.append(Pose(transpose, not chosen.flip_x, chosen.flip_y))
    if margins[2] < CLOSE_MARGIN:
        alternatives.append(Pose(transpose, chosen.flip_x, not chosen.flip_y))
    return Decision(chosen, margins, tuple(alternatives))


def _small(pixels: np.ndarray) -> np.ndarray:
    """A copy fitted (Lanczos) inside :data:`COMPANION_SIDE`, or the array itself."""
    h, w = pixels.shape[:2]
    if max(h, w) <= COMPANION_SIDE:
        return np.ascontiguousarray(pixels)
    s = COMPANION_SIDE / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


def undo_gamma(pixels: np.ndarray, gamma: float) -> np.ndarray:
    """``255 · (p / 255) ** gamma`` per channel (a lookup table): the client's guess at
    undoing a brightness curve applied to a listed picture."""
    lut = np.clip(np.rint(255.0 * (np.arange(256) / 255.0) ** gamma), 0, 255).astype(np.uint8)
    return lut[pixels]


def companion_pixels(pixels: np.ndarray, pose: Pose | None = None) -> np.ndarray:
    """The picture in ``pose`` (default: its canonical pose) fitted inside
    :data:`COMPANION_SIDE`: what the companion hash is the PDQ of."""
    return _small((pose or decide(pixels).pose).apply(pixels))


def companion_trusted(companion: PDQ, picture: PDQ) -> bool:
    """Whether a companion is used (listed, or probed by a client): a 64-px picture scores
    lower on PDQ's quality than the picture it stands for, so it counts when either passes
    :data:`MIN_QUALITY` (a flat picture's fails both: its companion would be a lookup key
    for every flat picture). The list side and the client apply this same rule."""
    return max(companion.quality, picture.quality) >= MIN_QUALITY


def companion_pdq(pixels: np.ndarray) -> PDQ:
    """The list side: a listed picture's companion hash."""
    return pdq_from_rgb(companion_pixels(pixels))


def companion_with_vector(
    pixels: np.ndarray, pose: Pose, gamma: float = 1.0
) -> tuple[PDQ, np.ndarray]:
    """The client side: the companion hash of ``pose`` with its DCT values (confidence);
    with ``gamma`` ≠ 1, of the picture after :func:`undo_gamma` (at full size: a curve
    applied before a resize is undone only before it)."""
    if gamma != 1.0:
        pixels = undo_gamma(pixels, gamma)
    return pdq_with_vector_from_rgb(companion_pixels(pixels, pose))


__all__ = [
    "CLOSE_MARGIN",
    "COMPANION_SIDE",
    "Decision",
    "Pose",
    "companion_pdq",
    "companion_pixels",
    "companion_trusted",
    "companion_with_vector",
    "decide",
    "undo_gamma",
]
