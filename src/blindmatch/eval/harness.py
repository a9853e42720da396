"""The evaluation harness: recall under edits, and false matches, per scheme.

For each listed image the harness stores each scheme's list hashes, applies
every transform (seeded per image and transform, so runs are reproducible)
and looks the result up; every distractor is looked up against the whole
list. From the distances it reports, per scheme and transform:

* recall at the scheme's production threshold;
* the largest threshold that keeps precision >= 99.99% (negatives: every
  distractor, and every transformed image's distance to *other* listed
  entries) and the recall there;
* false matches among distractors at the production threshold.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from blindmatch.eval.schemes import Scheme, make_scheme
from blindmatch.eval.transforms import apply as apply_transform
from blindmatch.hashing import MIN_QUALITY, open_image, pdq_from_rgb

DEFAULT_MAX_SIDE = 1024  # images are scaled to fit this before edits: bounds the run time
PRECISION_TARGET = 0.9999

ImageSource = Path | str | Image.Image


def load_rgb(src: ImageSource, max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
    """Decode (upright, RGB) and scale to fit ``max_side``."""
    if isinstance(src, Image.Image):
        im = src.convert("RGB")
    else:
        im = open_image(Path(src).read_bytes(), draft=False)
    if max(im.size) > max_side:
        s = max_side / max(im.size)
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))),
                       Image.Resampling.LANCZOS)  # fmt: skip
    return np.asarray(im)


def _seed(seed: int, index: int, transform: str) -> int:
    return zlib.crc32(f"{seed}:{index}:{transform}".encode())


@dataclass
class _Work:
    schemes: tuple[str, ...]
    transforms: tuple[str, ...]
    seed: int
    max_side: int


_cache: dict[tuple[str, ...], list[Scheme]] = {}


def _schemes(names: tuple[str, ...]) -> list[Scheme]:
    if names not in _cache:
        _cache[names] = [make_scheme(n) for n in names]
    return _cache[names]


def _hash_listed(args: tuple[_Work, int, ImageSource]) -> dict[str, Any]:
    work, index, src = args
    schemes = _schemes(work.schemes)
    try:
        rgb = load_rgb(src, work.max_side)
    except Exception as e:  # noqa: BLE001 - a bad corpus file is reported, not fatal
        return {"error": f"{src}: {e}"}
    if pdq_from_rgb(rgb).quality < MIN_QUALITY:
        # Lists keep no such entries: a featureless image's PDQ matches nothing reliably.
        return {"error": f"{src}: PDQ quality below {MIN_QUALITY}, not listable"}
    out: dict[str, Any] = {"list": {}, "queries": {}, "secs": {s.name: 0.0 for s in schemes}}
    for s in schemes:
        out["list"][s.name] = s.list_hashes(rgb)
    base = Image.fromarray(rgb)
    for t in work.transforms:
        edited = np.asarray(apply_transform(t, base, _seed(work.seed, index, t)).convert("RGB"))
        out["queries"][t] = {}
        for s in schemes:
            start = time.perf_counter()
            out["queries"][t][s.name] = s.query_hashes(edited)
            out["secs"][s.name] += time.perf_counter() - start
    return out


def _hash_distractor(args: tuple[_Work, int, ImageSource]) -> dict[str, Any]:
    work, _index, src = args
    try:
        rgb = load_rgb(src, work.max_side)
    except Exception as e:  # noqa: BLE001
        return {"error": f"{src}: {e}"}
    return {"queries": {s.name: s.query_hashes(rgb) for s in _schemes(work.schemes)}}


def _run(
    fn: Callable[[tuple[_Work, int, ImageSource]], dict[str, Any]],
    work: _Work,
    items: Sequence[ImageSource],
    workers: int,
) -> Iterator[dict[str, Any]]:
    tasks = [(work, i, src) for i, src in enumerate(items)]
    if workers <= 1:
        yield from map(fn, tasks)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(fn, tasks, chunksize=4)


def _min_distances(
    q: np.ndarray, lst: np.ndarray, q_owner: np.ndarray, l_owner: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each query row: the min Hamming distance to list rows of the same
    owner, to list rows of any other owner (10,000 where there are none), and
    which owner that nearest other row has (-1 where none)."""
    own = np.full(len(q), 10_000, dtype=np.int32)
    other = np.full(len(q), 10_000, dtype=np.int32)
    nearest = np.full(len(q), -1, dtype=np.int32)
    if not len(lst) or not len(q):
        return own, other, nearest
    words = q.shape[1] // 8
    q64 = np.ascontiguousarray(q).view(np.uint64).reshape(len(q), words)
    l64 = np.ascontiguousarray(lst).view(np.uint64).reshape(len(lst), words)
    block = max(1, 2_000_000 // len(lst))
    for a in range(0, len(q), block):
        rows = slice(a, min(len(q), a + block))
        d = np.bitwise_count(q64[rows, None, :] ^ l64[None, :, :]).sum(axis=2, dtype=np.int32)
        same = l_owner[None, :] == q_owner[rows, None]
        own[rows] = np.where(same, d, 10_000).min(axis=1)
        d_other = np.where(same, 10_000, d)
        arg = d_other.argmin(axis=1)
        other[rows] = d_other[np.arange(len(arg)), arg]
        nearest[rows] = l_owner[arg]
    return own, other, nearest


def _usable(
    results: Iterator[dict[str, Any]],
    stage: str,
    total: int,
    mask: list[bool],
    failed: list[str],
    progress: Callable[[str, int, int], None] | None,
) -> Iterator[dict[str, Any]]:
    """The results that worked; each one's usability goes to ``mask``, each
    failure's message to ``failed``, and progress is reported as they come."""
    for done, res in enumerate(results, 1):
        if progress:
            progress(stage, done, total)
        mask.append("error" not in res)
        if "error" in res:
            failed.append(res["error"])
        else:
            yield res


class _Owned:
    """Hash rows collected image by image, each row tagged with its image."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.rows: list[np.ndarray] = []
        self.owners: list[np.ndarray] = []

    def add(self, rows: np.ndarray, owner: int) -> None:
        self.rows.append(rows)
        self.owners.append(np.full(len(rows), owner, dtype=np.int32))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.rows:
            return np.zeros((0, self.nbytes), np.uint8), np.zeros(0, np.int32)
        return np.concatenate(self.rows), np.concatenate(self.owners)


def _per_owner_min(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, 10_000, dtype=np.int32)
    np.minimum.at(out, owner, values)
    return out


@dataclass
class TransformResult:
    transform: str
    n: int
    recall: float  # at the production threshold
    threshold_at_target: int | None  # largest threshold with precision >= 99.99%
    recall_at_target: float
    own: np.ndarray = field(repr=False)  # distance of each edited image to its own entry


@dataclass
class SchemeResult:
    scheme: str
    threshold: int
    bits: int
    transforms: list[TransformResult]
    distractor_min: np.ndarray = field(repr=False)
    false_matches: int  # distractors within the production threshold of some entry
    list_bytes_per_image: float
    queries_per_image: float
    client_ms_per_image: float
    # (distractor, listed image, distance) for every distractor match at the threshold
    distractor_hits: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def overall_recall(self) -> float:
        hits = sum(t.recall * t.n for t in self.transforms)
        total = sum(t.n for t in self.transforms)
        return hits / total if total else 0.0


@dataclass
class EvalResult:
    listed: int
    distractors: int
    failed: list[str]
    transforms: list[str]
    seed: int
    schemes: list[SchemeResult]
    seconds: float


def _precision_threshold(own: np.ndarray, negatives: np.ndarray, max_t: int) -> int | None:
    """Largest t (0..max_t) where TP/(TP+FP) >= target and TP > 0."""
    pos = np.bincount(np.minimum(own, max_t + 1), minlength=max_t + 2).cumsum()
    neg = np.bincount(np.minimum(negatives, max_t + 1), minlength=max_t + 2).cumsum()
    best = None
    for t in range(max_t + 1):
        tp, fp = int(pos[t]), int(neg[t])
        if tp > 0 and tp / (tp + fp) >= PRECISION_TARGET:
            best = t
    return best


def evaluate(
    listed: Sequence[ImageSource],
    distractors: Sequence[ImageSource],
    *,
    schemes: Sequence[str],
    transforms: Sequence[str],
    seed: int = 0,
    workers: int = 1,
    max_side: int = DEFAULT_MAX_SIDE,
    progress: Callable[[str, int, int], None] | None = None,
) -> EvalResult:
    start = time.monotonic()
    work = _Work(tuple(schemes), tuple(transforms), seed, max_side)
    names = [make_scheme(n) for n in schemes]
    failed: list[str] = []
    list_rows = {s.name: _Owned(s.bits // 8) for s in names}
    queries = {s.name: {t: _Owned(s.bits // 8) for t in transforms} for s in names}
    d_queries = {s.name: _Owned(s.bits // 8) for s in names}
    secs = {s.name: 0.0 for s in names}
    n_ok = 0
    listed_mask: list[bool] = []
    distractor_mask: list[bool] = []
    for res in _usable(_run(_hash_listed, work, listed, workers), "listed", len(listed),
                       listed_mask, failed, progress):  # fmt: skip
        i = n_ok
        n_ok += 1
        for s in names:
            list_rows[s.name].add(res["list"][s.name], i)
            secs[s.name] += res["secs"][s.name]
            for t in transforms:
                queries[s.name][t].add(res["queries"][t][s.name], i)
    n_d = 0
    for res in _usable(_run(_hash_distractor, work, distractors, workers), "distractors",
                       len(distractors), distractor_mask, failed, progress):  # fmt: skip
        for s in names:
            d_queries[s.name].add(res["queries"][s.name], n_d)
        n_d += 1

    results = []
    listed_ok = [str(x) for x, ok in zip(listed, listed_mask, strict=True) if ok]
    distractors_ok = [str(x) for x, ok in zip(distractors, distractor_mask, strict=True) if ok]
    for s in names:
        nb = s.bits // 8
        hits: dict[tuple[int, int], int] = {}
        lst, own_of = list_rows[s.name].arrays()
        if n_d:
            dq, do = d_queries[s.name].arrays()
            # A distractor owns nothing in the list: every entry is "other".
            _, per_row, near_row = _min_distances(dq, lst, np.full(len(dq), -1, np.int32), own_of)
            d_min = _per_owner_min(per_row, do, n_d)
            for r in np.flatnonzero(per_row <= s.threshold):
                hits.setdefault((int(do[r]), int(near_row[r])), int(per_row[r]))
        else:
            d_min = np.zeros(0, dtype=np.int32)
        tres = []
        for t in transforms:
            if not n_ok:
                continue
            q, qo = queries[s.name][t].arrays()
            own_rows, other_rows, _ = _min_distances(q, lst, qo, own_of)
            own = _per_owner_min(own_rows, qo, n_ok)
            other = _per_owner_min(other_rows, qo, n_ok)
            negatives = np.concatenate([d_min, other])
            thr = _precision_threshold(own, negatives, s.bits // 2)
            tres.append(
                TransformResult(
                    t,
                    n_ok,
                    float((own <= s.threshold).mean()),
                    thr,
                    float((own <= thr).mean()) if thr is not None else 0.0,
                    own,
                )
            )
        n_queries = sum(len(o.arrays()[0]) for o in queries[s.name].values())
        results.append(
            SchemeResult(
                s.name,
                s.threshold,
                s.bits,
                tres,
                d_min,
                int((d_min <= s.threshold).sum()),
                len(lst) * nb / max(1, n_ok),
                n_queries / max(1, n_ok * len(transforms)),
                1000 * secs[s.name] / max(1, n_ok * len(transforms)),
                sorted(
                    (distractors_ok[d], listed_ok[li], dist)
                    for (d, li), dist in hits.items()
                    if 0 <= li < len(listed_ok)
                ),
            )
        )
    return EvalResult(n_ok, n_d, failed, list(transforms), seed, results, time.monotonic() - start)
