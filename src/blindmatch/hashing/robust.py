"""Client-side query variants that let plain PDQ lists survive common edits.

Hotline lists arrive as one PDQ per image, so robustness has to come from the
query side: from one decoded image we hash

* the 8 dihedral transforms (rotations by 90/180/270 and mirror images);
* the same picture with its *frame* trimmed: solid or blurred letterbox
  borders, meme caption bars, and the flat bars of a phone screenshot.

A variant is matched exactly like the original hash; each extra variant is an
extra chance of a false match, which the evaluation harness measures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from PIL import Image

from blindmatch.hashing.image import (
    PDQ,
    hashed_transposed,
    pdq_from_rgb,
    pdq_vector_from_rgb,
    pdq_with_vector_from_rgb,
    pdq_with_vector_transposed,
)

# The 8 orientations: rotations (counter-clockwise) and mirror images.
DIHEDRAL = ("orig", "rot90", "rot180", "rot270", "flipx", "flipy", "flipplus1", "flipminus1")
# The transpose of each orientation is another one: orig.T = flipplus1, rot90.T = flipx,
# rot180.T = flipminus1, rot270.T = flipy (index into DIHEDRAL).
_TRANSPOSE_OF = (6, 4, 7, 5, 1, 3, 0, 2)
# The same orientations as Pillow transposes (contiguous copies, ~4x faster than numpy's
# strided copy of a rotated view); tests check them pixel for pixel against the views.
_PIL_OPS = (
    None,
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
)
_T = TypeVar("_T")
_R = TypeVar("_R")
_ANALYSIS_SIDE = 384  # frames are found on a luma copy at most this size
_VARIANT_SIDE = 512  # variants are hashed on a copy at most this size (PDQ itself sees 64x64)
_MIN_TRIM = 0.02  # trim less than 2% of a side and the trimmed variant is not worth a hash
_MAX_TRIM = 0.45  # never trim more than this fraction from one side


@dataclass(frozen=True, slots=True)
class Variant:
    label: str  # e.g. "orig", "flipx", "trim:orig"
    pdq: PDQ
    # PDQ's 256 DCT values before thresholding (how firmly each bit is set), for
    # lookups that probe the weakest bits (private matching)
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)


def _dihedral_views(pixels: np.ndarray) -> list[np.ndarray]:
    """The image in the 8 orientations of ``DIHEDRAL`` (numpy views)."""
    t = pixels.transpose(1, 0, 2)
    return [
        pixels,
        np.rot90(pixels, 1),
        np.rot90(pixels, 2),
        np.rot90(pixels, 3),
        pixels[:, ::-1],
        pixels[::-1],
        t,
        np.rot90(pixels, 2).transpose(1, 0, 2),
    ]


def dihedral_pdqs(pixels: np.ndarray) -> list[PDQ]:
    """The PDQ hashes of the image in its 8 orientations, in ``DIHEDRAL`` order.

    Each orientation is hashed for real. The reference library's
    ``compute_dihedral`` derives all 8 from one DCT instead, which assumes its
    box filters are symmetric; they are not at even window sizes, and on 40
    astronomy photos (512 and 256 px squares) 45% of its flipped hashes landed
    more than 31 bits from the hash of the actually flipped image."""
    return [pdq_from_rgb(v) for v in _dihedral_views(pixels)]


def _variant(label: str, pixels: np.ndarray) -> Variant:
    pdq, vector = pdq_with_vector_from_rgb(pixels)
    return Variant(label, pdq, vector)


def _luma(pixels: np.ndarray) -> np.ndarray:
    h, w = pixels.shape[:2]
    step = max(1, int(np.ceil(max(h, w) / _ANALYSIS_SIDE)))
    small = pixels[::step, ::step].astype(np.float32)
    return small @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _frame_lines(luma: np.ndarray, axis: int) -> dict[tuple[bool, bool], np.ndarray]:
    """For each row (axis=1) or column (axis=0): does it look like frame rather
    than picture? Keyed by ``(from_end, bands)``; each array counts lines from
    that edge.

    A frame starts at the edge. A line is frame when most of its pixels have the
    colour of the outermost line (solid borders, caption bars with their text,
    flat UI bars), or when the outermost line has almost no fine detail and this
    line has hardly more (a blurred letterbox). With ``bands``, any line that is
    nearly one flat colour of its own also counts (stacked UI bars of a
    screenshot) — which can eat into a picture's own sky, hence a separate box."""
    lines = luma if axis == 1 else luma.T  # one line per row of ``lines``
    own = np.median(lines, axis=1, keepdims=True)
    own_flat = (np.abs(lines - own) <= 10.0).mean(axis=1) >= 0.6
    # Second differences: near zero on blurred (or flat) backgrounds, whatever
    # their slow gradients, and high on real picture detail, noise included.
    detail = np.abs(np.diff(lines, n=2, axis=1)).mean(axis=1)
    n = len(detail)
    ref = float(np.median(detail[n // 4 : max(n // 4 + 1, 3 * n // 4)]))
    out = {}
    for from_end in (False, True):
        edge = -1 if from_end else 0
        solid = (np.abs(lines - own[edge]) <= 10.0).mean(axis=1) >= 0.6
        if ref > 0.5 and detail[edge] <= 0.15 * ref:
            solid = solid | (detail < 0.2 * ref)
        for bands in (False, True):
            flags = solid | own_flat if bands else solid
            out[(from_end, bands)] = flags[::-1] if from_end else flags
    return out


def _run(lines: np.ndarray) -> int:
    """How many leading lines are frame, capped."""
    cap = int(len(lines) * _MAX_TRIM)
    n = 0
    while n < cap and lines[n]:
        n += 1
    return n


Box = tuple[int, int, int, int]


def _fit(pixels: np.ndarray, side: int) -> np.ndarray:
    """A copy scaled (area-averaged) to fit ``side``, or the array itself."""
    h, w = pixels.shape[:2]
    if max(h, w) <= side:
        return pixels
    from PIL import Image

    s = side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BOX))


def find_frames(pixels: np.ndarray) -> list[Box]:
    """Candidate boxes ``(left, top, right, bottom)`` of the picture inside a
    frame, in pixels of ``pixels``: the frame in the outermost colour (or blur),
    then the frame of any flat bands; none, one or two (duplicates dropped)."""
    h, w = pixels.shape[:2]
    if min(h, w) < 32:
        return []
    luma = _luma(pixels)
    sh, sw = luma.shape
    rows, cols = _frame_lines(luma, axis=1), _frame_lines(luma, axis=0)
    fy, fx = h / sh, w / sw
    out: list[Box] = []
    for bands in (False, True):
        top, bottom = _run(rows[(False, bands)]), _run(rows[(True, bands)])
        left, right = _run(cols[(False, bands)]), _run(cols[(True, bands)])
        box = (round(left * fx), round(top * fy), w - round(right * fx), h - round(bottom * fy))
        trimmed = max(left / sw, right / sw, top / sh, bottom / sh)
        if trimmed < _MIN_TRIM or box[2] - box[0] < 16 or box[3] - box[1] < 16:
            continue
        if all(max(abs(a - b) for a, b in zip(box, o, strict=True)) > 2 for o in out):
            out.append(box)
    return out


# A solid frame (a letterbox or pad in one flat colour) for the private path's companion:
# trimmed at full resolution to the pixel, since a companion hash moves ~5 bits for every
# pixel of frame left in or picture cut off (measured: 60 corpus photos, pads of 10-20%).
_SOLID_TOL = 8  # a frame pixel is within this of the frame colour in every channel
_SOLID_SHARE = 0.97  # ... in at least this share of the line's pixels
_SOLID_MIN = 0.01  # a frame thinner than this share of the shorter side is not one
_SOLID_COARSE = 1024  # the frame is found on a copy at most this size, then refined


def _solid_runs(rgb: np.ndarray, near: tuple[int, int, int, int, int] | None = None) -> Box:
    """How many lines from each edge (left, right, top, bottom) are frame: each side's
    colour is its outermost line's median. Without ``near``, counted from the edge (at most
    :data:`_MAX_TRIM` of the side); with ``near`` = ``(span, left, right, top, bottom)``
    estimates, a side's run is trusted up to ``span`` lines short of its estimate (if the
    line just before is frame; else counted from the edge) and extended at most ``span``
    lines past it."""
    h, w = rgb.shape[:2]

    def frame_line(line: np.ndarray, ref: np.ndarray) -> bool:
        far = np.abs(line.reshape(-1, 3).astype(np.int16) - ref).max(axis=1) > _SOLID_TOL
        return float(far.mean()) <= 1.0 - _SOLID_SHARE

    def run(get: Callable[[int], np.ndarray], n: int, guess: int | None, span: int) -> int:
        ref = np.median(get(0).reshape(-1, 3), axis=0)
        cap = int(n * _MAX_TRIM)
        k = 0 if guess is None else max(0, min(cap, guess - span))
        if k and not frame_line(get(k - 1), ref):  # the estimate overshot: count from 0
            k = 0
        stop = cap if guess is None else min(cap, guess + span)
        while k < stop and frame_line(get(k), ref):
            k += 1
        return k

    span = 0 if near is None else near[0]
    g = (None, None, None, None) if near is None else near[1:]
    left = run(lambda i: rgb[:, i], w, g[0], span)
    right = run(lambda i: rgb[:, w - 1 - i], w, g[1], span)
    top = run(lambda i: rgb[i, left : w - right], h, g[2], span)
    bottom = run(lambda i: rgb[h - 1 - i, left : w - right], h, g[3], span)
    return left, right, top, bottom


def find_solid_frame(pixels: np.ndarray) -> Box | None:
    """The box ``(left, top, right, bottom)`` of the picture inside a frame of one flat
    colour, or ``None`` when no side has such a frame. A line is frame when nearly all its
    pixels have the colour of that side's outermost line. Found on a copy at most
    :data:`_SOLID_COARSE` px (area-averaged), then refined line by line at full resolution
    within a few lines of the estimate: exact to the pixel on a clean pad, and bounded in
    time on a huge or flat picture.

    Stricter than :func:`find_frames` (no blurred or banded frames, no low-detail rule
    that runs on into a smooth sky); a picture whose own border has the pad's colour is
    trimmed with it."""
    h, w = pixels.shape[:2]
    if min(h, w) < 32:
        return None
    rgb = pixels[..., :3]
    coarse = _fit(rgb, _SOLID_COARSE)
    if coarse is rgb:
        left, right, top, bottom = _solid_runs(rgb)
    else:
        f = w / coarse.shape[1]
        est = _solid_runs(coarse)
        span = 2 * math.ceil(f) + 2
        left, right, top, bottom = _solid_runs(rgb, (span, *(round(x * f) for x in est)))
    if max(left, right, top, bottom) < _SOLID_MIN * min(h, w):
        return None
    box = (left, top, w - right, h - bottom)
    return box if box[2] - box[0] >= 16 and box[3] - box[1] >= 16 else None


def _map(pool: Executor | None, fn: Callable[[_T], _R], items: Iterable[_T]) -> Iterator[_R]:
    return pool.map(fn, items) if pool is not None else map(fn, items)


def _orientation(pixels: np.ndarray, i: int) -> np.ndarray:
    """Orientation ``DIHEDRAL[i]`` of ``pixels`` as a contiguous array (equal, pixel for
    pixel, to ``_dihedral_views(pixels)[i]``)."""
    op = _PIL_OPS[i]
    if op is None:
        return pixels
    if pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8:
        return np.asarray(Image.fromarray(pixels).transpose(op))
    return np.ascontiguousarray(_dihedral_views(pixels)[i])


def _dihedral_variants(pixels: np.ndarray, pool: Executor | None) -> list[Variant]:
    """The 8 orientations' variants, each equal to ``_variant(label, view)``.

    PDQ hashes an image whose width is a multiple of 128 through its transpose
    (``hashed_transposed``), and the transpose of every orientation is another
    orientation: so for every non-square picture at the variant size (one side 512)
    four of the eight hashes are, bit for bit and value for value, the transposes of
    the other four. Those four are computed once, not twice."""
    shapes = [(pixels.shape[1], pixels.shape[0]) if i in (1, 3, 6, 7) else pixels.shape[:2]
              for i in range(8)]  # fmt: skip
    derived = {i for i in range(8) if hashed_transposed(shapes[i])}
    direct = [i for i in range(8) if i not in derived]
    assert all(_TRANSPOSE_OF[i] in direct for i in derived)  # see hashed_transposed

    def hash_one(i: int) -> tuple[np.ndarray, int]:
        return pdq_vector_from_rgb(_orientation(pixels, i))

    computed = dict(zip(direct, _map(pool, hash_one, direct), strict=True))
    out = []
    for i, label in enumerate(DIHEDRAL):
        if i in derived:
            pdq, vec = pdq_with_vector_transposed(*computed[_TRANSPOSE_OF[i]])
        else:
            vec, quality = computed[i]
            bits = (vec > np.median(vec)).astype(np.uint8)
            pdq = PDQ(np.packbits(bits).tobytes().hex(), quality)
        out.append(Variant(label, pdq, vec))
    return out


def query_variants(
    pixels: np.ndarray,
    *,
    dihedral: bool = True,
    trim: bool = True,
    pool: Executor | None = None,
) -> list[Variant]:
    """Every PDQ a client should look up for one upright RGB image: the image
    in its 8 orientations, and the picture inside each frame found (as is, and
    mirrored for the first frame).

    ``pool`` (an executor) hashes the variants concurrently; the result is the same with or
    without it. pdqhash holds the GIL, so threads only help where the resizing (Pillow,
    which releases it) dominates; on a 2-core machine they measured no faster."""
    pixels = _fit(pixels, _VARIANT_SIDE)
    jobs: list[tuple[str, np.ndarray]] = []
    if trim:
        for k, (left, top, right, bottom) in enumerate(find_frames(pixels)):
            inner = pixels[top:bottom, left:right]
            jobs.append((f"trim{k}:orig", inner))
            if dihedral and k == 0:  # a reposted picture is often mirrored too
                jobs.append((f"trim{k}:flipx", inner[:, ::-1]))
    trimmed = _map(pool, lambda job: _variant(*job), jobs) if pool is not None else None
    out = _dihedral_variants(pixels, pool) if dihedral else [_variant("orig", pixels)]
    out += list(trimmed) if trimmed is not None else [_variant(*job) for job in jobs]
    return out
