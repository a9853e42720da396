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

import multiprocessing
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from blindmatch.batch import worker_pool
from blindmatch.eval.privacy import Observation, PrivacySummary
from blindmatch.eval.schemes import NO_MATCH, Scheme, make_scheme
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


# The schemes of the run, prepared with the whole list before the query pass;
# query workers are forked after that, so they inherit them ready to use.
_prepared: dict[tuple[str, ...], list[Scheme]] = {}


def _schemes(names: tuple[str, ...]) -> list[Scheme]:
    if names not in _prepared:
        _prepared[names] = [make_scheme(n) for n in names]
    return _prepared[names]


def _list_item(args: tuple[_Work, int, ImageSource]) -> dict[str, Any]:
    work, _index, src = args
    try:
        rgb = load_rgb(src, work.max_side)
    except Exception as e:  # noqa: BLE001 - a bad corpus file is reported, not fatal
        return {"error": f"{src}: {e}"}
    if pdq_from_rgb(rgb).quality < MIN_QUALITY:
        # Lists keep no such entries: a featureless image's PDQ matches nothing reliably.
        return {"error": f"{src}: PDQ quality below {MIN_QUALITY}, not listable"}
    return {"list": {s.name: s.list_item(rgb) for s in _schemes(work.schemes)}}


def _own_other(d: np.ndarray, own: int) -> tuple[int, int, int]:
    """The distance to listed image ``own`` (``NO_MATCH`` for a distractor, own
    = -1), and the smallest distance to any other, with which one that is."""
    own_d = int(d[own]) if own >= 0 else NO_MATCH
    if own >= 0:
        d = d.copy()
        d[own] = NO_MATCH
    if not len(d):
        return own_d, NO_MATCH, -1
    k = int(d.argmin())
    return own_d, int(d[k]), (k if d[k] < NO_MATCH else -1)


def _query_listed(args: tuple[_Work, int, ImageSource]) -> dict[str, Any]:
    """Listed image ``index``, edited by every transform, against the list."""
    work, index, src = args
    base = Image.fromarray(load_rgb(src, work.max_side))
    out: dict[str, Any] = {"scores": {}, "secs": {}, "lookups": {}, "privacy": {}}
    for s in _schemes(work.schemes):
        out["secs"][s.name] = 0.0
        out["lookups"][s.name] = 0
    for t in work.transforms:
        edited = np.asarray(apply_transform(t, base, _seed(work.seed, index, t)).convert("RGB"))
        out["scores"][t] = {}
        out["privacy"][t] = {}
        for s in _schemes(work.schemes):
            start = time.perf_counter()
            d, lookups = s.distances(edited)
            out["secs"][s.name] += time.perf_counter() - start
            out["lookups"][s.name] += lookups
            out["scores"][t][s.name] = _own_other(d, index)
            obs = s.privacy(index)  # an edit of listed image `index`: innocent of the others
            if obs is not None:
                out["privacy"][t][s.name] = obs
    return out


def _query_distractor(args: tuple[_Work, int, ImageSource]) -> dict[str, Any]:
    work, _index, src = args
    try:
        rgb = load_rgb(src, work.max_side)
    except Exception as e:  # noqa: BLE001
        return {"error": f"{src}: {e}"}
    out: dict[str, Any] = {"scores": {}, "privacy": {}}
    for s in _schemes(work.schemes):
        out["scores"][s.name] = _own_other(s.distances(rgb)[0], -1)
        obs = s.privacy(-1)
        if obs is not None:
            out["privacy"][s.name] = obs
    return out


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
    # fork: the workers inherit the prepared schemes (indexes and all)
    ctx = multiprocessing.get_context("fork")
    with worker_pool(workers, ctx) as pool:
        yield from pool.map(fn, tasks, chunksize=4)


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
    privacy: PrivacySummary | None = None  # what a server learns (private schemes only)

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
    # each usable listed image's position in the listed sequence: the lookup-key flip
    # model was fitted on even positions (docs/protocol.md §11), odd ones are held out
    listed_index: list[int] = field(default_factory=list)

    def held_out(self) -> np.ndarray:
        """Which usable listed images are held out (odd position in the listed sequence)."""
        return np.asarray(self.listed_index, dtype=np.int64) % 2 == 1


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
    _prepared.pop(work.schemes, None)  # a fresh list for every run
    objs = _schemes(work.schemes)
    failed: list[str] = []
    listed_mask: list[bool] = []
    distractor_mask: list[bool] = []

    # Pass 1: what the list stores for every listed image.
    items: dict[str, list[Any]] = {s.name: [] for s in objs}
    for res in _usable(_run(_list_item, work, listed, workers), "listing", len(listed),
                       listed_mask, failed, progress):  # fmt: skip
        for s in objs:
            items[s.name].append(res["list"][s.name])
    for s in objs:
        s.prepare(items[s.name])
    listed_ok = [x for x, ok in zip(listed, listed_mask, strict=True) if ok]
    listed_index = [i for i, ok in enumerate(listed_mask) if ok]
    n_ok = len(listed_ok)

    # Pass 2: every edited listed image and every distractor against the list.
    own = {s.name: {t: np.zeros(n_ok, np.int32) for t in transforms} for s in objs}
    other = {s.name: {t: np.zeros(n_ok, np.int32) for t in transforms} for s in objs}
    secs = {s.name: 0.0 for s in objs}
    lookups = {s.name: 0 for s in objs}
    seen_edited: dict[str, dict[str, list[Observation]]] = {
        s.name: {t: [] for t in transforms} for s in objs
    }
    seen_distractors: dict[str, list[Observation]] = {s.name: [] for s in objs}
    for i, res in enumerate(_run(_query_listed, work, listed_ok, workers)):
        if progress:
            progress("listed", i + 1, n_ok)
        for s in objs:
            secs[s.name] += res["secs"][s.name]
            lookups[s.name] += res["lookups"][s.name]
            for t in transforms:
                own[s.name][t][i], other[s.name][t][i], _ = res["scores"][t][s.name]
                if s.name in res["privacy"][t]:
                    seen_edited[s.name][t].append(res["privacy"][t][s.name])
    d_min: dict[str, list[int]] = {s.name: [] for s in objs}
    hits: dict[str, list[tuple[int, int, int]]] = {s.name: [] for s in objs}
    n_d = 0
    for res in _usable(_run(_query_distractor, work, distractors, workers), "distractors",
                       len(distractors), distractor_mask, failed, progress):  # fmt: skip
        for s in objs:
            if s.name in res["privacy"]:
                seen_distractors[s.name].append(res["privacy"][s.name])
            _, d, nearest = res["scores"][s.name]
            d_min[s.name].append(d)
            if d <= s.threshold and nearest >= 0:
                hits[s.name].append((n_d, nearest, d))
        n_d += 1
    distractors_ok = [str(x) for x, ok in zip(distractors, distractor_mask, strict=True) if ok]

    results = []
    for s in objs:
        dm = np.asarray(d_min[s.name], dtype=np.int32)
        tres = []
        for t in transforms if n_ok else ():
            negatives = np.concatenate([dm, other[s.name][t]])
            o = own[s.name][t]
            thr = _precision_threshold(o, negatives, s.bits // 2)
            recall_at = float((o <= thr).mean()) if thr is not None else 0.0
            tres.append(
                TransformResult(t, n_ok, float((o <= s.threshold).mean()), thr, recall_at, o)
            )
        per_query = max(1, n_ok * len(transforms))
        results.append(
            SchemeResult(
                s.name,
                s.threshold,
                s.bits,
                tres,
                dm,
                int((dm <= s.threshold).sum()),
                sum(s.list_bytes(i) for i in items[s.name]) / max(1, n_ok),
                lookups[s.name] / per_query,
                1000 * secs[s.name] / per_query,
                sorted(
                    (distractors_ok[d], str(listed_ok[li]), dist) for d, li, dist in hits[s.name]
                ),
                s.privacy_summary(seen_distractors[s.name], seen_edited[s.name]),
            )
        )
    return EvalResult(
        n_ok,
        n_d,
        failed,
        list(transforms),
        seed,
        results,
        time.monotonic() - start,
        listed_index,
    )
