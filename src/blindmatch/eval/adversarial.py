"""Adversarial measurements for the threat model: evasion and forced collisions.

These are *measurements*, not features: how little a picture has to change
before a perceptual-hash list stops matching it (evasion), and whether a benign
picture can be nudged until it matches a listed hash (a forced collision).

Both attacks are black-box hill climbs: they only hash candidate images with a
``Scheme``'s ``query_hashes`` (one *query* each) and never use gradients. Every
step adds a smooth, luma-only pattern and keeps it if the objective strictly
improves: for evasion the smallest Hamming distance between the query hashes
and the listed hash must grow, for a collision the smallest distance to the
target must shrink. Candidates below the PSNR budget are dropped unhashed. Two
ways to propose a pattern:

* ``random``: a 2-D cosine with frequency 1..16 along each axis (the band PDQ
  keeps from its 64x64 DCT), a Gaussian blob (width 5-20% of the short side) or
  smooth noise (a random 3x3..8x8 grid, bicubically upsampled), with a
  log-uniform amplitude, tried with both signs.
* ``guided``: the same cosines, aimed with PDQ's public layout. Bit
  ``255 - (16*v + u)`` of a hash row is the sign of DCT coefficient
  ``(u+1, v+1)`` against the median of all 256, so a PDQ always has 128 ones
  and bits flip in pairs. From the plain PDQ of the current image, pick one bit
  to push up and one to push down (evasion: bits still equal to the listed
  hash; collision: bits that differ from the target) and add both cosines with
  opposite signs, so the median stays put. A bit's amplitude starts at the low
  end of ``step`` and grows by sqrt(2) each time it fails to move, so cheap bits
  go first (up to 4 passes). A candidate that moves both bits is also kept at an
  equal distance: the bits it upset sit at the median and are cheap to mend.
  The plain PDQ is part of every ``pdq`` and ``robust`` query (the latter's
  upright variant), so reading it costs no extra query; guided mode needs a
  256-bit PDQ scheme.

Evasion stops at the first distance above the threshold, then shrinks the
perturbation (a binary search on its scale, up to 6 queries) while the image
still evades. A collision stops at the first distance at or below it.

An image none of whose query hashes reaches ``MIN_QUALITY`` is not looked up in
production, so it counts as distance 256: evaded, and as far as can be from any
collision target.

Everything but ``main`` is pure and deterministic for a seed; ``main`` writes the
report (``python -m blindmatch.eval.adversarial --help``; see docs/adversarial.md).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from blindmatch.eval.schemes import HashScheme, PlainPDQ, RobustPDQ, make_hash_scheme
from blindmatch.eval.transforms import apply as apply_transform
from blindmatch.hashing import pdq_from_rgb

NO_HASH_DISTANCE = 256  # the distance of an image with no trusted query hash
MODES = ("guided", "random")
DEFAULT_EDITS = ("jpeg40", "rot4", "crop5-centre", "crop5-edge")
BAND = 16  # PDQ keeps DCT frequencies 1..16 along each axis
_POP = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)
_MAX_PROPOSALS = 8  # patterns drawn per allowed query, budget-breaking ones included
_SHRINK_STEPS = 6
_GROWTH = math.sqrt(2.0)  # guided: amplitude factor after each failed push of a bit
_ROUNDS = 4  # guided: passes over the bits, each from the smallest amplitude
_BEGIN, _END = "<!-- adversarial:begin -->", "<!-- adversarial:end -->"


# ---------------------------------------------------------------- basics


class RobustWithKeypoints(RobustPDQ):
    """``robust+orb`` as an attack target, as ``scan`` runs it: the robust PDQ
    queries, and the keypoint layer (ORB candidates, RANSAC, aligned-window
    PDQs) against the one listed picture under attack (set with :meth:`aim`).
    One query hashes the candidate image both ways, so it counts once."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "robust+orb"
        self._index: Any = None

    def aim(self, listed_rgb: np.ndarray) -> None:
        from blindmatch.hashing.keypoints import listed_features
        from blindmatch.index.keypoints import KeypointIndex

        self._index = KeypointIndex(mirror_below=self.threshold)
        self._index.add([0], [listed_features(listed_rgb)])

    def keypoint_distance(self, rgb: np.ndarray) -> int:
        if self._index is None:
            raise ValueError("aim() the scheme at a listed picture first")
        return min((m.distance for m in self._index.search(rgb)), default=NO_HASH_DISTANCE)


def attack_scheme(name: str) -> HashScheme:
    """A scheme the attacks can run against: a hash scheme, or ``robust+orb``."""
    return RobustWithKeypoints() if name == "robust+orb" else make_hash_scheme(name)


def _distance(scheme: HashScheme, rgb: np.ndarray, rows: np.ndarray, target: np.ndarray) -> int:
    d = min_distance(rows, target)
    if isinstance(scheme, RobustWithKeypoints) and d > scheme.threshold:
        d = min(d, scheme.keypoint_distance(rgb))  # production looks no further after a match
    return d


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two same-shaped 8-bit images, in dB
    (``inf`` when they are equal)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0**2 / mse)


def min_distance(query_rows: np.ndarray, target_rows: np.ndarray) -> int:
    """Smallest Hamming distance between any query row and any target row;
    ``NO_HASH_DISTANCE`` when either side has no rows."""
    if len(query_rows) == 0 or len(target_rows) == 0:
        return NO_HASH_DISTANCE
    x = query_rows[:, None, :] ^ target_rows[None, :, :]
    return int(_POP[x].sum(axis=2).min())


def bit_frequency(bit: int) -> tuple[int, int]:
    """The 0-based DCT frequency ``(u, v)`` (horizontal, vertical) behind PDQ bit
    ``bit`` in the unpacked (big-endian) order of a hash row."""
    v, u = divmod(255 - bit, BAND)
    return u, v


@dataclass(frozen=True)
class AttackResult:
    """The outcome of one attack.

    ``psnr`` compares the final image with the attacked one (``inf`` if
    unchanged). ``queries`` counts hash computations of candidate images, the
    unmodified start included. ``history[k]`` is the distance of the current
    (last accepted) image after query ``k + 1``: non-decreasing while an evasion
    climbs (its shrink phase keeps it above the threshold), non-increasing for a
    collision."""

    success: bool
    psnr: float
    queries: int
    start_distance: int
    final_distance: int
    image: np.ndarray = field(repr=False, compare=False)
    history: tuple[int, ...] = field(repr=False, default=())

    def row(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "psnr": self.psnr,
            "queries": self.queries,
            "start_distance": self.start_distance,
            "final_distance": self.final_distance,
        }


# ---------------------------------------------------------------- patterns


class _Patterns:
    """Smooth luma patterns for an ``h x w`` image (float32, peak magnitude 1)."""

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        k = np.arange(1, BAND + 1, dtype=np.float64)[:, None]
        self.cy = np.cos(np.pi * k * (2 * np.arange(h) + 1) / (2 * h)).astype(np.float32)
        self.cx = np.cos(np.pi * k * (2 * np.arange(w) + 1) / (2 * w)).astype(np.float32)
        self.yy = np.arange(h, dtype=np.float32)[:, None]
        self.xx = np.arange(w, dtype=np.float32)[None, :]

    def cosine(self, u: int, v: int) -> np.ndarray:
        return np.outer(self.cy[v], self.cx[u])

    def random(self, rng: np.random.Generator) -> np.ndarray:
        kind = rng.random()
        if kind < 0.6:
            u, v = (int(i) for i in rng.integers(0, BAND, size=2))
            return self.cosine(u, v)
        if kind < 0.8:
            sigma = float(rng.uniform(0.05, 0.2)) * min(self.h, self.w)
            y0, x0 = float(rng.uniform(0, self.h)), float(rng.uniform(0, self.w))
            d2 = (self.yy - y0) ** 2 + (self.xx - x0) ** 2
            return np.exp(-d2 / np.float32(2 * sigma * sigma))
        cells = int(rng.integers(3, 9))
        coarse = rng.standard_normal((cells, cells)).astype(np.float32)
        up = Image.fromarray(coarse, "F").resize((self.w, self.h), Image.Resampling.BICUBIC)
        p = np.asarray(up, dtype=np.float32)
        peak = float(np.abs(p).max())
        return p / peak if peak > 0 else p


def _render(base: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``base`` (float32 RGB) plus the luma perturbation ``delta``, as uint8."""
    return np.clip(np.rint(base + delta[:, :, None]), 0, 255).astype(np.uint8)


def _bits(row: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.asarray(row, dtype=np.uint8))


def _closest(bits: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The bits of the row of ``rows`` nearest to ``bits``."""
    all_bits = np.unpackbits(rows, axis=1)
    return all_bits[int((all_bits != bits).sum(axis=1).argmin())]


# ---------------------------------------------------------------- the search


class _Search:
    """One hill climb: the current perturbation, its distance and the query count."""

    def __init__(
        self,
        rgb: np.ndarray,
        scheme: HashScheme,
        target: np.ndarray,
        *,
        evasion: bool,
        threshold: int,
        max_queries: int,
        min_psnr: float,
        step: tuple[float, float],
        seed: int,
    ) -> None:
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError("expected an (h, w, 3) uint8 RGB array")
        self.rgb, self.scheme, self.target = rgb, scheme, target
        self.evasion, self.threshold = evasion, threshold
        self.max_queries, self.min_psnr = max_queries, min_psnr
        self.step = step
        self.rng = np.random.default_rng(seed)
        self.base = rgb.astype(np.float32)
        self.patterns = _Patterns(*rgb.shape[:2])
        self.delta = np.zeros(rgb.shape[:2], dtype=np.float32)
        self.used = 0
        self.history: list[int] = []
        self.best, self._start_rows = self._query(rgb)
        self.start = self.best
        self.history.append(self.best)
        self.guide = np.zeros(256, dtype=np.uint8)  # set by run_guided

    def left(self) -> bool:
        return self.used < self.max_queries

    def done(self) -> bool:
        return self.best > self.threshold if self.evasion else self.best <= self.threshold

    def _query(self, img: np.ndarray) -> tuple[int, np.ndarray]:
        rows = self.scheme.query_hashes(img)
        self.used += 1
        return _distance(self.scheme, img, rows, self.target), rows

    def _plain_bits(self, img: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The plain PDQ bits of ``img``: part of every ``pdq`` or ``robust``
        query (the latter's upright variant), so not counted again."""
        if isinstance(self.scheme, PlainPDQ) and len(rows):
            return _bits(rows[0])
        return _bits(np.frombuffer(bytes.fromhex(pdq_from_rgb(img).hex), dtype=np.uint8))

    def _try(
        self, cand: np.ndarray, aim: tuple[list[int], np.ndarray] | None = None
    ) -> tuple[bool, np.ndarray | None] | None:
        """Hash ``cand`` if it is within the PSNR and query budgets, and keep it if
        it improves the distance. With ``aim`` (the pushed bits and the bits
        wanted) also keep it at an equal distance if every pushed bit got where
        it should: the bits it upset on the way sit at the median and are cheap
        to mend. Returns ``None`` if not hashed, else whether it was kept and
        (with ``aim``) its plain PDQ bits."""
        img = _render(self.base, cand)
        if psnr(img, self.rgb) < self.min_psnr or not self.left():
            return None
        d, rows = self._query(img)
        kept = d > self.best if self.evasion else d < self.best
        bits = None
        if aim is not None:
            bits = self._plain_bits(img, rows)
            pushed, want = aim
            kept = kept or (d == self.best and bool(np.all(bits[pushed] == want[pushed])))
        if kept:
            self.delta, self.best = cand, d
            if bits is not None:
                self.guide = bits
        self.history.append(self.best)
        return kept, bits

    def run_random(self) -> None:
        lo, hi = math.log(self.step[0]), math.log(self.step[1])
        for _ in range(_MAX_PROPOSALS * self.max_queries):
            if self.done() or not self.left():
                return
            p = self.patterns.random(self.rng)
            amp = math.exp(self.rng.uniform(lo, hi))
            first = 1.0 if self.rng.random() < 0.5 else -1.0
            for sign in (first, -first):
                got = self._try(self.delta + np.float32(sign * amp) * p)
                if got is not None and got[0]:
                    break

    def run_guided(self) -> None:
        lo, hi = self.step
        max_level = math.floor(math.log(hi / lo) / math.log(_GROWTH)) if hi > lo else 0
        level = np.zeros(256, dtype=np.int64)
        rounds_left, accepted = _ROUNDS - 1, False
        self.guide = self._plain_bits(self.rgb, self._start_rows)
        for _ in range(_MAX_PROPOSALS * self.max_queries):
            if self.done() or not self.left():
                return
            ref = _closest(self.guide, self.target)
            want = 1 - ref if self.evasion else ref
            open_ = (self.guide != want) & (level <= max_level)
            ups = np.flatnonzero(open_ & (want == 1))
            downs = np.flatnonzero(open_ & (want == 0))
            if len(ups) == 0 and len(downs) == 0:
                if rounds_left == 0 or not accepted:
                    return
                # Another pass: bits that failed may pass now that others moved.
                rounds_left, accepted = rounds_left - 1, False
                level[:] = 0
                continue
            cand = self.delta.copy()
            chosen = []
            for bits, sign in ((ups, 1.0), (downs, -1.0)):
                if len(bits) == 0:
                    continue
                cheapest = bits[level[bits] == level[bits].min()]
                b = int(self.rng.choice(cheapest))
                amp = lo * _GROWTH ** int(level[b])
                cand += np.float32(sign * amp) * self.patterns.cosine(*bit_frequency(b))
                chosen.append(b)
            got = self._try(cand, (chosen, want))
            if got is None:  # over the PSNR budget: these amplitudes are spent
                level[chosen] = max_level + 1
                continue
            kept, now = got
            if kept:
                accepted = True
            elif now is not None:
                # Only the bits that did not move need a stronger push.
                stuck = [b for b in chosen if now[b] != want[b]]
                level[stuck or chosen] += 1

    def shrink(self) -> None:
        """Scale the perturbation down while the image still evades."""
        lo, hi = 0.0, 1.0
        for _ in range(_SHRINK_STEPS):
            if not self.left():
                break
            mid = (lo + hi) / 2
            d, _ = self._query(_render(self.base, self.delta * np.float32(mid)))
            if d > self.threshold:
                hi, self.best = mid, d
            else:
                lo = mid
            self.history.append(self.best)
        self.delta = self.delta * np.float32(hi)

    def result(self) -> AttackResult:
        img = _render(self.base, self.delta)
        return AttackResult(
            success=self.done(),
            psnr=psnr(img, self.rgb),
            queries=self.used,
            start_distance=self.start,
            final_distance=self.best,
            image=img,
            history=tuple(self.history),
        )


def _check_mode(mode: str, scheme: HashScheme | None = None) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: choose from {', '.join(MODES)}")
    if mode == "guided" and scheme is not None and scheme.bits != 256:
        raise ValueError(f"guided mode aims at PDQ bits; scheme {scheme.name!r} is not PDQ")


# ---------------------------------------------------------------- attacks


def evade(
    rgb: np.ndarray,
    scheme: HashScheme,
    *,
    threshold: int | None = None,
    max_queries: int = 400,
    min_psnr: float = 30.0,
    mode: str = "guided",
    step: tuple[float, float] = (0.5, 8.0),
    seed: int = 0,
    listed_rows: np.ndarray | None = None,
) -> AttackResult:
    """Perturb ``rgb`` (uint8 ``(h, w, 3)``) until no query hash of ``scheme`` is
    within ``threshold`` (default: the scheme's) of the listed hash of ``rgb``
    (``listed_rows``, default ``scheme.list_hashes(rgb)``), staying at or above
    ``min_psnr`` dB and within ``max_queries`` queries. ``step`` bounds the
    amplitude (in 8-bit levels) of one pattern."""
    _check_mode(mode, scheme)
    listed = scheme.list_hashes(rgb) if listed_rows is None else listed_rows
    if isinstance(scheme, RobustWithKeypoints):
        scheme.aim(rgb)
    s = _Search(
        rgb,
        scheme,
        np.atleast_2d(np.asarray(listed, dtype=np.uint8)),
        evasion=True,
        threshold=scheme.threshold if threshold is None else threshold,
        max_queries=max_queries,
        min_psnr=min_psnr,
        step=step,
        seed=seed,
    )
    _search(s, mode)
    if s.done() and s.start <= s.threshold:
        s.shrink()
    return s.result()


def _search(s: _Search, mode: str) -> None:
    if mode == "guided":
        s.run_guided()
    else:
        s.run_random()


def collide(
    source_rgb: np.ndarray,
    target_rows: np.ndarray,
    scheme: HashScheme,
    *,
    threshold: int | None = None,
    max_queries: int = 1500,
    min_psnr: float = 25.0,
    mode: str = "guided",
    step: tuple[float, float] = (1.0, 32.0),
    seed: int = 0,
    target_rgb: np.ndarray | None = None,
) -> AttackResult:
    """Perturb the benign ``source_rgb`` until some query hash of ``scheme`` is
    within ``threshold`` of a row of ``target_rows`` (uint8 ``(k, bits/8)``: a
    listed entry's hashes), staying at or above ``min_psnr`` dB and within
    ``max_queries`` queries. ``robust+orb`` also needs the listed picture
    itself (``target_rgb``), whose keypoints the list stores."""
    _check_mode(mode, scheme)
    if isinstance(scheme, RobustWithKeypoints):
        if target_rgb is None:
            raise ValueError("robust+orb collisions need target_rgb, the listed picture")
        scheme.aim(target_rgb)
    s = _Search(
        source_rgb,
        scheme,
        np.atleast_2d(np.asarray(target_rows, dtype=np.uint8)),
        evasion=False,
        threshold=scheme.threshold if threshold is None else threshold,
        max_queries=max_queries,
        min_psnr=min_psnr,
        step=step,
        seed=seed,
    )
    _search(s, mode)
    return s.result()


# ---------------------------------------------------------------- global edits


def edit_distances(
    rgb: np.ndarray,
    schemes: Sequence[HashScheme],
    edits: Sequence[str] = DEFAULT_EDITS,
    *,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """For each named edit (see ``blindmatch.eval.transforms``): its PSNR against
    ``rgb`` and, per scheme, the smallest distance from its query hashes to the
    listed hash of ``rgb``. An edit that changes the size (crop, rotate-and-crop)
    is resized back (bicubic) before the PSNR, which therefore counts
    misalignment as noise: such edits look unchanged yet score low."""
    out = []
    picture = Image.fromarray(rgb)
    listed = {s.name: s.list_hashes(rgb) for s in schemes}
    for s in schemes:
        if isinstance(s, RobustWithKeypoints):
            s.aim(rgb)
    for k, name in enumerate(edits):
        edited = apply_transform(name, picture, seed + k)
        aligned = (
            edited
            if edited.size == picture.size
            else edited.resize(picture.size, Image.Resampling.BICUBIC)
        )
        pixels = np.asarray(edited)
        out.append(
            {
                "edit": name,
                "psnr": psnr(np.asarray(aligned), rgb),
                "distance": {
                    s.name: _distance(s, pixels, s.query_hashes(pixels), listed[s.name])
                    for s in schemes
                },
            }
        )
    return out


# ---------------------------------------------------------------- the measurement


def _stats(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    won = [r for r in rows if r["success"]]
    return {
        "n": len(rows),
        "success": len(won),
        "psnr": _stats([r["psnr"] for r in won]),
        "queries": _stats([r["queries"] for r in won]),
        "final_distance": _stats([r["final_distance"] for r in rows]),
        "start_distance": _stats([r["start_distance"] for r in rows]),
    }


def run_adversarial(
    listed_rgbs: Sequence[np.ndarray],
    source_rgbs: Sequence[np.ndarray],
    schemes: Sequence[str] = ("pdq", "robust"),
    *,
    name: str = "images",
    modes: Sequence[str] = MODES,
    pairs: int | None = None,
    edits: Sequence[str] = DEFAULT_EDITS,
    evade_queries: int = 400,
    evade_min_psnr: float = 30.0,
    collide_queries: int = 1500,
    collide_min_psnr: float = 25.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Evade every listed image, apply every global edit to it, and nudge source
    ``j`` towards the listed hash of image ``j % len(listed_rgbs)`` (the first
    ``pairs`` sources, default all), for every scheme and mode. Returns a
    JSON-ready summary for ``to_markdown``; per-image rows included."""
    for m in modes:
        _check_mode(m)
    if not listed_rgbs:
        raise ValueError("need at least one listed image")
    started = time.perf_counter()
    objs = [attack_scheme(s) for s in schemes]
    n_pairs = len(source_rgbs) if pairs is None else min(pairs, len(source_rgbs))
    evasion, collision = [], []
    for scheme in objs:
        for mode in modes:
            rows = [
                evade(
                    rgb,
                    scheme,
                    max_queries=evade_queries,
                    min_psnr=evade_min_psnr,
                    mode=mode,
                    seed=seed + i,
                ).row()
                for i, rgb in enumerate(listed_rgbs)
            ]
            evasion.append({"scheme": scheme.name, "mode": mode, **_summarize(rows), "rows": rows})
            rows = []
            for j in range(n_pairs):
                target_rgb = listed_rgbs[j % len(listed_rgbs)]
                result = collide(
                    source_rgbs[j],
                    scheme.list_hashes(target_rgb),
                    scheme,
                    target_rgb=target_rgb,
                    max_queries=collide_queries,
                    min_psnr=collide_min_psnr,
                    mode=mode,
                    seed=seed + 1000 + j,
                )
                rows.append(result.row())
            collision.append(
                {"scheme": scheme.name, "mode": mode, **_summarize(rows), "rows": rows}
            )
    per_image = [
        edit_distances(rgb, objs, edits, seed=seed + i) for i, rgb in enumerate(listed_rgbs)
    ]
    edit_rows = []
    for k, edit in enumerate(edits):
        got = [image[k] for image in per_image]
        edit_rows.append(
            {
                "edit": edit,
                "n": len(got),
                "psnr": _stats([g["psnr"] for g in got]),
                "evaded": {
                    s.name: sum(g["distance"][s.name] > s.threshold for g in got) for s in objs
                },
                "distance": {s.name: _stats([g["distance"][s.name] for g in got]) for s in objs},
            }
        )
    shapes = sorted({f"{a.shape[1]}x{a.shape[0]}" for a in [*listed_rgbs, *source_rgbs]})
    return {
        "name": name,
        "params": {
            "listed": len(listed_rgbs),
            "pairs": n_pairs,
            "sizes": shapes,
            "schemes": list(schemes),
            "thresholds": {s.name: s.threshold for s in objs},
            "modes": list(modes),
            "evade_queries": evade_queries,
            "evade_min_psnr": evade_min_psnr,
            "collide_queries": collide_queries,
            "collide_min_psnr": collide_min_psnr,
            "seed": seed,
        },
        "evasion": evasion,
        "edits": edit_rows,
        "collision": collision,
        "seconds": round(time.perf_counter() - started, 1),
    }


# ---------------------------------------------------------------- report


def _fmt(stats: dict[str, float] | None, digits: int = 1) -> str:
    if stats is None:
        return "–"
    f = (lambda v: f"{v:.{digits}f}") if digits else (lambda v: f"{v:.0f}")
    return f"{f(stats['median'])} ({f(stats['min'])}–{f(stats['max'])})"


def to_markdown(summary: dict[str, Any] | Sequence[dict[str, Any]]) -> str:
    """Markdown tables for one ``run_adversarial`` summary, or several."""
    if isinstance(summary, dict):
        summary = [summary]
    out: list[str] = []
    for s in summary:
        p = s["params"]
        out += [
            f"### {s['name']}",
            "",
            f"{p['listed']} listed images, {p['pairs']} collision pairs, sizes "
            f"{', '.join(p['sizes'])}; threshold "
            + ", ".join(f"{k} {v}" for k, v in p["thresholds"].items())
            + f"; seed {p['seed']}; {s['seconds']} s on this machine.",
            "",
            f"**Evasion** (budget {p['evade_queries']} queries, PSNR ≥ {p['evade_min_psnr']:g} "
            "dB). PSNR and queries over the successful images: median (min–max).",
            "",
            "| scheme | mode | evaded | PSNR dB | queries | final distance |",
            "|---|---|---|---|---|---|",
        ]
        for r in s["evasion"]:
            out.append(
                f"| {r['scheme']} | {r['mode']} | {r['success']}/{r['n']} | {_fmt(r['psnr'])} | "
                f"{_fmt(r['queries'], 0)} | {_fmt(r['final_distance'], 0)} |"
            )
        names = list(p["thresholds"])
        out += [
            "",
            "**Global edits** (no attack at all): how many listed images each edit already "
            "hides (distance above the threshold), the PSNR of the edit (size-changing edits "
            "resized back first) and the distance: median (min–max).",
            "",
            "| edit | PSNR dB | " + " | ".join(f"evaded {n} | distance {n}" for n in names) + " |",
            "|---|---|" + "---|---|" * len(names),
        ]
        for e in s["edits"]:
            cells = " | ".join(
                f"{e['evaded'][n]}/{e['n']} | {_fmt(e['distance'][n], 0)}" for n in names
            )
            out.append(f"| {e['edit']} | {_fmt(e['psnr'])} | {cells} |")
        out += [
            "",
            f"**Forced collisions** (budget {p['collide_queries']} queries, PSNR ≥ "
            f"{p['collide_min_psnr']:g} dB): a benign source nudged until it matches a listed "
            "hash. PSNR (against the source) and queries over the successful pairs.",
            "",
            "| scheme | mode | matched | PSNR dB | queries | start distance | final distance |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in s["collision"]:
            out.append(
                f"| {r['scheme']} | {r['mode']} | {r['success']}/{r['n']} | {_fmt(r['psnr'])} | "
                f"{_fmt(r['queries'], 0)} | {_fmt(r['start_distance'], 0)} | "
                f"{_fmt(r['final_distance'], 0)} |"
            )
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- command line


def _load_photo(path: Path, side: int) -> np.ndarray:
    from blindmatch.hashing.image import open_image

    im = open_image(path.read_bytes())
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(im.convert("RGB"))


def _splice(existing: str, block: str) -> str:
    """``existing`` with the text between the report markers replaced by ``block``."""
    start, end = existing.index(_BEGIN) + len(_BEGIN), existing.index(_END)
    return existing[:start] + "\n" + block.rstrip("\n") + "\n" + existing[end:]


def main(argv: Sequence[str] | None = None) -> int:
    from blindmatch.demo.synthetic import synthetic_photo
    from blindmatch.hashing import MIN_QUALITY

    ap = argparse.ArgumentParser(
        prog="python -m blindmatch.eval.adversarial",
        description="Measure black-box evasion and forced-collision attacks on PDQ matching.",
    )
    ap.add_argument("--images", type=int, default=10, help="synthetic listed images")
    ap.add_argument("--pairs", type=int, default=None, help="collision pairs (default: --images)")
    ap.add_argument("--size", default="256x192", help="synthetic image size WxH")
    ap.add_argument("--photos", type=Path, nargs="*", default=[], help="public photos to add")
    ap.add_argument("--photo-side", type=int, default=256, help="photos are shrunk to this side")
    ap.add_argument("--schemes", default="pdq,robust")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--evade-queries", type=int, default=400)
    ap.add_argument("--evade-min-psnr", type=float, default=30.0)
    ap.add_argument("--collide-queries", type=int, default=1500)
    ap.add_argument("--collide-min-psnr", type=float, default=25.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="markdown file; if it has the report markers only that part is replaced",
    )
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    pairs = args.images if args.pairs is None else args.pairs
    common = {
        "schemes": args.schemes.split(","),
        "modes": args.modes.split(","),
        "evade_queries": args.evade_queries,
        "evade_min_psnr": args.evade_min_psnr,
        "collide_queries": args.collide_queries,
        "collide_min_psnr": args.collide_min_psnr,
        "seed": args.seed,
    }
    listed = [np.asarray(synthetic_photo(i, (w, h))) for i in range(args.images)]
    sources = [np.asarray(synthetic_photo(10_000 + j, (w, h))) for j in range(pairs)]
    summaries = [run_adversarial(listed, sources, name=f"Synthetic pictures ({w}x{h})", **common)]
    print(f"synthetic: {summaries[-1]['seconds']} s", file=sys.stderr)
    if args.photos:
        photos = [_load_photo(p, args.photo_side) for p in args.photos]
        photos = [p for p in photos if pdq_from_rgb(p).quality >= MIN_QUALITY]
        if len(photos) >= 2:
            # Each photo is listed; each is also nudged towards the next one's hash.
            shifted = photos[1:] + photos[:1]
            summaries.append(
                run_adversarial(
                    shifted,
                    photos,
                    name=f"Public photos (long side ≤ {args.photo_side} px)",
                    **common,
                )
            )
            print(f"photos: {summaries[-1]['seconds']} s", file=sys.stderr)
    text = to_markdown(summaries)
    if args.out is None:
        print(text)
    else:
        old = args.out.read_text() if args.out.exists() else ""
        args.out.write_text(_splice(old, text) if _BEGIN in old and _END in old else text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
