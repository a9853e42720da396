"""Hot companions: the extra hashes a *hot* listed picture carries so that private
matching survives crops and small rotations (issue 12, item 4).

Private matching opens a voucher only when a client's lookup key exactly equals a listed
key, which in practice needs a client hash within a few bits of a listed hash. A crop or
a small rotation moves the picture's PDQ (and its companion, :mod:`.canonical`) 20-60
bits: far out of reach. Plaintext matching finds such copies by keypoints; the private
tier instead lists, for the most re-shared pictures, the companion hashes of the picture
edited by a fixed, generic **grid** of crops and rotations, so that a client's ordinary
companion of a cropped or rotated copy lands within a few bits of one of them. The client
is unchanged.

The grid (:func:`hot_edits`), applied to the picture fitted inside :data:`HOT_SIDE`:

* **corner crops**: for each fraction ``f`` in :data:`HOT_CROPS` and each of the 4
  corners, ``round(f·W)`` columns off one side and ``round(f·H)`` rows off one side (the
  kept part is anchored in that corner);
* **centred crops**: the same fractions split evenly between both sides;
* **rotations**: ``±d`` degrees for each ``d`` in :data:`HOT_ROTATIONS` (bicubic), cropped
  to the largest centred rectangle of the picture's aspect inside the rotated picture,
  less 1 px per side (no fill is ever visible).

The grid is generic — a constant step, chosen without regard to any evaluation's
parameters (bench/bench_hot_tier.py measures edits between its points). Each edited
picture's companion hash (canonical pose, fitted inside 64 px) is kept when it is trusted
(:func:`~blindmatch.hashing.canonical.companion_trusted`), and duplicates are dropped: at
most 91 hashes (~3.6 KB of table keys at ~40 B a key) per hot picture.

What it reaches (80 corpus photos, bench/bench_hot_tier.py, client unchanged): with the
table's k=72 keys 0.11-0.69 of crops of 5-20% and 0.43-0.47 of rotations of 2-10° open
(none did before), 0.49-0.91 and 0.71-0.80 with k=40 keys; edits of two parameters that
the grid does not enumerate (a crop of 12% of the width and 4% of the height, a rotation
followed by a corner crop) still open ~0%. See the notes of issue 12, item 4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from blindmatch.errors import BadDimensions, InvalidArgument
from blindmatch.hashing.canonical import (
    as_image,
    companion_pdq,
    companion_trusted,
    fit_inside,
)
from blindmatch.hashing.image import MIN_QUALITY, PDQ, pdq_from_rgb

# Crop fractions of the grid (of each side): a constant step of 0.015 up to 0.225. The
# companion moves ~4 bits per 0.25% of corner crop, ~10 per 0.5%, ~19 per 1% (median of 24
# corpus photos, bench/bench_hot_tier.py --sensitivity); a step of 0.03 left copies between
# two points ~20 bits away and opened 0-3% of corner crops.
HOT_CROPS = tuple(round(0.015 * i, 3) for i in range(1, 16))
# Rotation angles of the grid (degrees; each with both signs): a constant step of 1.5
# (the companion moves ~6 bits per 0.25 degree, ~10 per 0.5, ~20 per 1).
HOT_ROTATIONS = tuple(0.75 + 1.5 * i for i in range(8))
# The picture is fitted (Lanczos) inside this many pixels before it is edited: the hashes
# see at most 512 px (a companion 64 px), and the grid costs a tenth of full size.
HOT_SIDE = 512
# A picture smaller than this on its short side has no hot companions (a 21% crop of it
# would be a few pixels).
MIN_HOT_SIDE = 32


@dataclass(frozen=True, slots=True)
class HotEdit:
    """One point of the grid: ``kind`` "corner" (``amount`` = fraction, ``corner`` 0-3:
    bit 0 set = cut the left side, bit 1 set = cut the top), "centre" (``amount`` =
    fraction) or "rotate" (``amount`` = signed degrees)."""

    kind: str
    amount: float
    corner: int = 0

    @property
    def label(self) -> str:
        if self.kind == "corner":
            return f"corner{self.amount:g}@{self.corner}"
        if self.kind == "centre":
            return f"centre{self.amount:g}"
        return f"rot{self.amount:+g}"


def hot_edits(
    crops: tuple[float, ...] = HOT_CROPS, rotations: tuple[float, ...] = HOT_ROTATIONS
) -> tuple[HotEdit, ...]:
    """The grid: 4 corner crops and a centred crop per fraction, ± each angle."""
    out: list[HotEdit] = []
    for f in crops:
        if not 0.0 < f < 0.5:
            raise InvalidArgument(f"crop fraction {f} is not in (0, 0.5)")
        out += [HotEdit("corner", f, c) for c in range(4)]
        out.append(HotEdit("centre", f))
    for d in rotations:
        if not 0.0 < d < 45.0:
            raise InvalidArgument(f"rotation {d} is not in (0, 45) degrees")
        out += [HotEdit("rotate", d), HotEdit("rotate", -d)]
    return tuple(out)


def _inner_size(w: int, h: int, degrees: float) -> tuple[int, int]:
    """The largest centred w:h rectangle inside a w x h picture rotated by ``degrees``,
    less 1 px per side."""
    a = math.radians(abs(degrees))
    c, s = math.cos(a), math.sin(a)
    k = min(w / (w * c + h * s), h / (w * s + h * c))
    return max(1, math.floor(k * w) - 2), max(1, math.floor(k * h) - 2)


def rotate_inscribed(image: Image.Image, degrees: float) -> Image.Image:
    """``image`` turned ``degrees`` counter-clockwise (bicubic) and cropped to the largest
    centred rectangle of its aspect inside the turned picture, less 1 px per side: no fill
    is ever visible. Exactly ``image.rotate(degrees, BICUBIC).crop(box)``, resampling only
    the kept box (Pillow's rotation matrix with the output shifted). The evaluation's small
    rotations (:mod:`blindmatch.eval.transforms`) are this function too."""
    w, h = image.size
    cw, ch = _inner_size(w, h, degrees)
    left, top = (w - cw) // 2, (h - ch) // 2
    a = -math.radians(degrees)
    cos, sin = math.cos(a), math.sin(a)
    cx, cy = w / 2, h / 2
    matrix = (
        cos,
        sin,
        cos * (left - cx) + sin * (top - cy) + cx,
        -sin,
        cos,
        -sin * (left - cx) + cos * (top - cy) + cy,
    )
    return image.transform((cw, ch), Image.Transform.AFFINE, matrix, Image.Resampling.BICUBIC)


def apply_edit(image: Image.Image, edit: HotEdit) -> Image.Image:
    """``edit`` applied to an RGB Pillow image."""
    w, h = image.size
    if edit.kind in ("corner", "centre"):
        cut_w, cut_h = round(edit.amount * w), round(edit.amount * h)
        if edit.kind == "corner":
            left = cut_w if edit.corner & 1 else 0
            top = cut_h if edit.corner & 2 else 0
        else:
            left, top = cut_w // 2, cut_h // 2
        return image.crop((left, top, left + w - cut_w, top + h - cut_h))
    return rotate_inscribed(image, edit.amount)


def fitted(pixels: np.ndarray | Image.Image, side: int = HOT_SIDE) -> Image.Image:
    """An ``(h, w, 3)`` picture as an RGB Pillow image fitted (Lanczos) inside ``side``
    pixels; checks the picture is one that can carry hot companions."""
    if isinstance(pixels, np.ndarray) and (pixels.ndim != 3 or pixels.shape[2] < 3):
        raise BadDimensions(f"expected an (h, w, 3) picture, got shape {pixels.shape}")
    image = as_image(pixels).convert("RGB")
    w, h = image.size
    if min(w, h) < MIN_HOT_SIDE:
        raise BadDimensions(
            f"a {w}x{h} picture is too small for hot companions (short side < {MIN_HOT_SIDE})"
        )
    return fit_inside(image, side)


def hot_hashes(
    pixels: np.ndarray | Image.Image,
    edits: tuple[HotEdit, ...] | None = None,
    *,
    kind: str = "companion",
) -> list[tuple[HotEdit, PDQ]]:
    """Each grid edit (default :func:`hot_edits`) with the hash of the edited picture:
    its companion (``kind="companion"``) or its PDQ at :data:`HOT_SIDE` (``"pdq"``).
    Untrusted hashes are left out; duplicates are kept (see :func:`hot_companions`)."""
    if kind not in ("companion", "pdq"):
        raise InvalidArgument(f"unknown hot hash kind {kind!r}")
    image = fitted(pixels)
    out = []
    for edit in hot_edits() if edits is None else edits:
        edited = np.asarray(apply_edit(image, edit))
        plain = pdq_from_rgb(edited)
        if kind == "pdq":
            if plain.quality >= MIN_QUALITY:
                out.append((edit, plain))
            continue
        comp = companion_pdq(edited)
        if companion_trusted(comp, plain):
            out.append((edit, comp))
    return out


def hot_companions(pixels: np.ndarray | Image.Image) -> list[PDQ]:
    """The list side of the hot tier: a hot picture's extra companion hashes, one per grid
    edit (:func:`hot_edits`, at most ``5·len(HOT_CROPS) + 2·len(HOT_ROTATIONS)`` = 91),
    untrusted ones left out, duplicates dropped, in grid order. Deterministic."""
    seen: set[str] = set()
    out: list[PDQ] = []
    for _edit, h in hot_hashes(pixels):
        if h.hex not in seen:
            seen.add(h.hex)
            out.append(h)
    return out


__all__ = [
    "HOT_CROPS",
    "HOT_ROTATIONS",
    "HOT_SIDE",
    "MIN_HOT_SIDE",
    "HotEdit",
    "apply_edit",
    "fitted",
    "hot_companions",
    "hot_edits",
    "hot_hashes",
]
