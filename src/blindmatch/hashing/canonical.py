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

    def apply_image(self, image: Image.Image) -> Image.Image:
        """The pose of a Pillow image (Pillow's transposes: ~15x faster than numpy copies)."""
        if self.transpose:
            image = image.transpose(Image.Transpose.TRANSPOSE)
        if self.flip_x:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.flip_y:
            image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        return image


def as_image(pixels: np.ndarray | Image.Image) -> Image.Image:
    """A Pillow image of an ``(h, w, 3)`` picture (the image itself if it is one): convert
    once when several companions are made from one picture."""
    if isinstance(pixels, Image.Image):
        return pixels
    return Image.fromarray(np.ascontiguousarray(pixels[..., :3], dtype=np.uint8))


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


def _luma(image: Image.Image, side: int) -> np.ndarray:
    small = image.convert("L").resize((side, side), Image.Resampling.BOX)
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
    mx = float(signed_cols @ c) / total  # where the bright side is, along x
    my = float(signed_rows @ c) / total
    sx = float(cols @ (c * c)) / total  # how widely the detail is spread along x
    sy = float(rows @ (c * c)) / total
    return mx, my, sx, sy


def decide(pixels: np.ndarray | Image.Image) -> Decision:
    """The canonical pose of an ``(h, w, 3)`` picture (see the module docstring)."""
    image = as_image(pixels)
    w, h = image.size
    luma = _luma(image, _ANALYSIS)
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


def fit_inside(image: Image.Image, side: int = COMPANION_SIDE) -> Image.Image:
    """Fitted (Lanczos) inside ``side`` pixels, or the image itself. Pillow's
    ``reducing_gap`` first box-reduces by an integer factor (10x faster on a 1024-px
    picture); for a companion it runs on the posed picture, so every orientation gets the
    same result."""
    w, h = image.size
    if max(w, h) <= side:
        return image
    s = side / max(w, h)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


def _gamma_table(gamma: float) -> list[int]:
    """``255 · (p / 255) ** gamma`` per channel (Pillow's ``point`` table): the client's
    guess at undoing a brightness curve applied to a listed picture."""
    return [min(255, max(0, round(255.0 * (i / 255.0) ** gamma))) for i in range(256)] * 3


def undo_gamma(image: Image.Image, gamma: float) -> Image.Image:
    """The picture after ``255 · (p / 255) ** gamma`` per channel (the image itself at 1)."""
    return image if gamma == 1.0 else image.point(_gamma_table(gamma))


def companion_pixels(pixels: np.ndarray | Image.Image, pose: Pose | None = None) -> np.ndarray:
    """The picture in ``pose`` (default: its canonical pose) fitted inside
    :data:`COMPANION_SIDE`: what the companion hash is the PDQ of. A client undoing a
    brightness curve passes the picture after :func:`undo_gamma` at full size (a curve
    applied before a resize is undone only before it)."""
    image = as_image(pixels)
    if pose is None:
        pose = decide(image).pose
    return np.asarray(fit_inside(pose.apply_image(image)))


def companion_trusted(companion: PDQ, picture: PDQ) -> bool:
    """Whether a companion is used (listed, or probed by a client): a 64-px picture scores
    lower on PDQ's quality than the picture it stands for, so it counts when either passes
    :data:`MIN_QUALITY` (a flat picture's fails both: its companion would be a lookup key
    for every flat picture). The list side and the client apply this same rule."""
    return max(companion.quality, picture.quality) >= MIN_QUALITY


def companion_pdq(pixels: np.ndarray) -> PDQ:
    """The list side: a listed picture's companion hash."""
    return pdq_from_rgb(companion_pixels(pixels))


def companion_with_vector(pixels: np.ndarray | Image.Image, pose: Pose) -> tuple[PDQ, np.ndarray]:
    """The client side: the companion hash of ``pose`` with its DCT values (confidence)."""
    return pdq_with_vector_from_rgb(companion_pixels(pixels, pose))


__all__ = [
    "CLOSE_MARGIN",
    "COMPANION_SIDE",
    "Decision",
    "Pose",
    "as_image",
    "companion_pdq",
    "companion_pixels",
    "companion_trusted",
    "companion_with_vector",
    "decide",
    "fit_inside",
    "undo_gamma",
]
