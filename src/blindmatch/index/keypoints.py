"""Find listed pictures inside edited ones by their keypoints.

Every listed picture's ORB descriptors go into one approximate nearest-
neighbour index (FAISS ``IndexBinaryHNSW``). A query's descriptors vote for
the listed pictures their nearest neighbours belong to; for the pictures with
the most votes, RANSAC fits a similarity transform (rotation, scale, shift) to
the one-to-one correspondences, and a fit with at least ``min_inliers``
inliers and a sane scale is a candidate. A candidate is scored the PDQ way:
the query is warped into the listed picture's frame and the PDQs of its
windows (centre, four halves) are compared with the ones the list stores; the
smallest distance over the windows the query really shows is the score (see
:mod:`blindmatch.hashing.keypoints`). When nothing scores within
``mirror_below`` bits, the mirror image is tried too (ORB is not mirror-invariant).

Deterministic: the graph is built on one thread and RANSAC's generator is
seeded per call, so a query always gives the same answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import faiss
import numpy as np

from blindmatch.hashing.keypoints import (
    LOW_RES_BELOW,
    LOW_RES_SIDE,
    WINDOWS,
    WORK_SIDE,
    Keypoints,
    ListedFeatures,
    keypoints_from_rgb,
    low_res_copy,
    window_pdqs,
)

MIN_INLIERS = 10
# A window counts only if the query shows at least this share of it: the rest of a
# window's pixels would be invented (replicated from the query's border), and such
# windows were what let different photographs of one object through (docs/detection.md).
MIN_VISIBLE = 0.9
NOT_SHOWN = 256  # the score of a candidate none of whose windows the query shows
MIN_VOTES = 6
CANDIDATES = 5  # listed pictures verified per query (the most-voted ones)
MAX_DESCRIPTOR_DISTANCE = 64  # of 256 bits, for a correspondence to vote
RANSAC_TOLERANCE = 0.01  # reprojection error, in units of the listed picture's longer side
SCALE_RANGE = (0.25, 4.0)
_HNSW_LINKS = 16
_HNSW_EF_SEARCH = 32


@dataclass(frozen=True, slots=True, eq=False)
class Candidate:
    """A listed picture the query's keypoints fit, before the PDQ check."""

    id: int
    inliers: int
    transform: np.ndarray  # 2x3 similarity, query -> listed normalised coordinates


@dataclass(frozen=True, slots=True)
class KeypointMatch:
    id: int
    distance: int  # PDQ bits between the aligned windows (the score)
    inliers: int
    mirrored: bool
    windows: tuple[int, ...] = ()  # each window's distance, in WINDOWS order
    visible: tuple[float, ...] = ()  # share of each window inside the query's frame


def window_visibility(
    transform: np.ndarray, query_w: int, query_h: int, width: float, height: float
) -> tuple[float, ...]:
    """The share of each of the listed picture's ``WINDOWS`` that the query's
    frame covers, once mapped by ``transform`` (query normalised -> listed
    normalised coordinates, as in :class:`Candidate`)."""
    side = float(max(query_w, query_h))
    corners = (
        np.array([[0, 0], [query_w, 0], [query_w, query_h], [0, query_h]], dtype=np.float64) / side
    )
    frame = (corners @ transform[:, :2].T + transform[:, 2]).astype(np.float32)
    if cv2.contourArea(frame, oriented=True) < 0:
        frame = frame[::-1].copy()
    out = []
    for left, top, right, bottom in WINDOWS:
        rect = np.array(
            [[left * width, top * height], [right * width, top * height],
             [right * width, bottom * height], [left * width, bottom * height]],
            dtype=np.float32,
        )  # fmt: skip
        area, _ = cv2.intersectConvexConvex(frame, rect)
        out.append(round(float(area) / ((right - left) * width * (bottom - top) * height), 3))
    return tuple(out)


def _popcount_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.bitwise_xor(a, b)).sum(axis=-1, dtype=np.int32)


class KeypointIndex:
    def __init__(
        self,
        *,
        min_inliers: int = MIN_INLIERS,
        candidates: int = CANDIDATES,
        mirror_below: int = 31,
        exact: bool = False,
    ) -> None:
        """``exact`` searches descriptors by brute force (FAISS
        ``IndexBinaryFlat``) instead of the HNSW graph: slower, the reference
        the graph is tested and benchmarked against."""
        self.exact = exact
        self.min_inliers = min_inliers
        self.max_candidates = candidates
        self.mirror_below = mirror_below
        self._features: dict[int, ListedFeatures] = {}
        self._dead = 0
        self._reset()

    def _reset(self) -> None:
        faiss.omp_set_num_threads(1)
        if self.exact:
            self._ann: faiss.IndexBinary = faiss.IndexBinaryFlat(256)
        else:
            graph = faiss.IndexBinaryHNSW(256, _HNSW_LINKS)
            graph.hnsw.efSearch = _HNSW_EF_SEARCH
            self._ann = graph
        self._row_owner = np.zeros(0, np.int64)
        self._row_points = np.zeros((0, 2), np.float32)
        self._dead = 0

    def __len__(self) -> int:
        return len(self._features)

    def __contains__(self, id_: int) -> bool:
        return id_ in self._features

    def add(self, ids: Sequence[int], features: Sequence[ListedFeatures]) -> None:
        """Add (or replace) listed pictures."""
        if len(ids) != len(features):
            raise ValueError("ids and features differ in length")
        replaced = [i for i in ids if i in self._features]
        if replaced:
            self.remove(replaced)
        owners, points, descs = [], [], []
        for i, f in zip(ids, features, strict=True):
            self._features[int(i)] = f
            kp = f.keypoints
            owners.append(np.full(len(kp), int(i), np.int64))
            points.append(kp.points)
            descs.append(kp.descriptors)
        if not owners:
            return
        desc = np.ascontiguousarray(np.concatenate(descs), dtype=np.uint8)
        if len(desc):
            self._ann.add(desc)
        self._row_owner = np.concatenate([self._row_owner, *owners])
        self._row_points = np.concatenate([self._row_points, *points])

    def remove(self, ids: Iterable[int]) -> None:
        """Forget listed pictures. Their rows stay in the graph as tombstones
        until they are half of it; then the graph is rebuilt."""
        gone = {int(i) for i in ids if int(i) in self._features}
        if not gone:
            return
        for i in gone:
            self._dead += len(self._features.pop(i).keypoints)
        self._row_owner[np.isin(self._row_owner, list(gone))] = -1
        if self._dead * 2 > len(self._row_owner):
            live = dict(self._features)
            self._features = {}
            self._reset()
            self.add(list(live), list(live.values()))

    # -- search ------------------------------------------------------------
    def candidates(self, query: Keypoints) -> list[Candidate]:
        """Listed pictures the query's keypoints fit, most inliers first."""
        if len(query) < MIN_VOTES or self._ann.ntotal == 0:
            return []
        dist, nn = self._ann.search(np.ascontiguousarray(query.descriptors), 1)
        d, row = dist[:, 0], nn[:, 0]
        ok = np.flatnonzero((row >= 0) & (d <= MAX_DESCRIPTOR_DISTANCE))
        ok = ok[self._row_owner[row[ok]] >= 0]
        # One-to-one: a listed keypoint keeps only its closest query keypoint, so
        # a bland patch that is everyone's nearest neighbour cannot carry a fit.
        ok = ok[np.argsort(d[ok], kind="stable")]
        _, first = np.unique(row[ok], return_index=True)
        ok = ok[first]
        owner = self._row_owner[row[ok]]
        if not len(owner):
            return []
        ids, votes = np.unique(owner, return_counts=True)
        order = np.lexsort((ids, -votes))[: self.max_candidates]
        out = []
        for k in order:
            if votes[k] < MIN_VOTES:
                break
            sel = ok[owner == ids[k]]
            src = query.points[sel]
            dst = self._row_points[row[sel]]
            cv2.setRNGSeed(0)
            m, inl = cv2.estimateAffinePartial2D(
                src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_TOLERANCE,
                maxIters=500,
            )  # fmt: skip
            if m is None or inl is None:
                continue
            scale = float(np.hypot(m[0, 0], m[0, 1]))
            n_in = int(inl.sum())
            if SCALE_RANGE[0] <= scale <= SCALE_RANGE[1] and n_in >= self.min_inliers:
                out.append(Candidate(int(ids[k]), n_in, m))
        out.sort(key=lambda c: (-c.inliers, c.id))
        return out

    def verify(
        self, rgb: np.ndarray, candidates: Sequence[Candidate], *, mirrored: bool = False
    ) -> list[KeypointMatch]:
        """Score candidates by the smallest PDQ distance of the aligned windows
        that the query shows (``MIN_VISIBLE``; ``NOT_SHOWN`` if none). ``rgb``
        is the picture the query keypoints came from (already mirrored when
        ``mirrored``); candidates removed meanwhile are skipped."""
        out = []
        for c in candidates:
            f = self._features.get(c.id)
            if f is None:
                continue
            query, listed_pdqs = rgb, f.window_pdqs
            # listed units per query unit; the query shows the listed picture's
            # longer side at `shown` pixels
            scale = float(np.hypot(*c.transform[0, :2]))
            shown = min(max(rgb.shape[:2]), WORK_SIDE) / scale  # the work copy's side
            if shown < LOW_RES_BELOW and f.low_res_pdqs:
                query, listed_pdqs = low_res_copy(rgb, LOW_RES_SIDE * scale), f.low_res_pdqs
            got = window_pdqs(query, c.transform, f.keypoints.width, f.keypoints.height)
            windows = tuple(
                int(_popcount_rows(np.frombuffer(bytes.fromhex(g.hex), np.uint8),
                                   np.frombuffer(listed, np.uint8)))
                for g, listed in zip(got, listed_pdqs, strict=True)
            )  # fmt: skip
            visible = window_visibility(
                c.transform, rgb.shape[1], rgb.shape[0], f.keypoints.width, f.keypoints.height
            )
            shown_windows = [d for d, v in zip(windows, visible, strict=True) if v >= MIN_VISIBLE]
            score = min(shown_windows, default=NOT_SHOWN)
            out.append(KeypointMatch(c.id, score, c.inliers, mirrored, windows, visible))
        return out

    def _verify(self, rgb: np.ndarray, mirrored: bool) -> list[KeypointMatch]:
        return self.verify(rgb, self.candidates(keypoints_from_rgb(rgb)), mirrored=mirrored)

    def search(self, rgb: np.ndarray) -> list[KeypointMatch]:
        """Every verified candidate for an ``(h, w, 3)`` uint8 RGB picture, closest
        first, one per listed picture (the caller applies its threshold)."""
        found = self._verify(rgb, False)
        if not any(m.distance <= self.mirror_below for m in found):
            found += self._verify(np.ascontiguousarray(rgb[:, ::-1]), True)
        best: dict[int, KeypointMatch] = {}
        for m in found:
            if m.id not in best or m.distance < best[m.id].distance:
                best[m.id] = m
        return sorted(best.values(), key=lambda m: (m.distance, -m.inliers, m.id))
