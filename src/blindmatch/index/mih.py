"""``MultiIndexHash``: exact Hamming-radius search over PDQ hashes by multi-index hashing.

The 256 bits are cut into ``m`` chunks (16 chunks of 16 bits for small
segments). By pigeonhole, if two hashes are within distance ``r`` and the
per-chunk flip budgets ``t_j`` satisfy ``sum(t_j + 1) >= r + 1``, then some
chunk ``j`` differs in at most ``t_j`` bits. So a query probes, in each
chunk's table, every bucket whose key is within ``t_j`` flips of its own
chunk (for 16 x 16 bits and ``r <= 31``: ``t_j = 1``, 17 buckets per table),
and verifies each candidate with a full popcount. Results are exact:
candidates farther than ``r`` are dropped, and every true match is a
candidate.

Layout of one *segment* (``_Segment``) of ``n`` rows, ``m`` chunks:

* ``h``     ``(n, 32)`` uint8 hashes, rows sorted by chunk 0, so table 0 needs
  no permutation: bucket ``k`` of chunk 0 is rows ``offs[k]:offs[k+1]``;
* ``perm``  ``((m-1) n,)`` uint32: for chunk ``j`` in 1..m-1, the rows sorted
  by that chunk's key, stored at ``[(j-1) n, j n)``;
* ``offs``  uint32 CSR offsets, ``2**width + 1`` per chunk (table 0 into rows,
  the others into ``perm``);
* ``ids``   ``(n,)`` int64 caller ids; a removed row's id is overwritten with
  ``DEAD`` (a tombstone that costs no extra memory).

With 16 chunks of 16 bits that is 60 bytes per hash plus 4.2 MB of offsets.
At 10M hashes, buckets of a 16-bit key hold ~150 rows each and a radius-31
query must verify ~41,500 random rows; wider chunks make buckets smaller.
``choose_widths`` therefore picks, per segment, the chunk count (11 to 16)
with the lowest modelled probe cost whose tables fit in
``TABLE_BYTES_PER_HASH`` (64) bytes per hash: 16 x 16 bits up to ~1.1M rows,
then 15, 14, 13 chunks, and 12 chunks of 21-22 bits from ~6.7M rows (57.4
bytes per hash at 10M).

The index is a *main* segment, a smaller *tail* segment and a *delta*
buffer. ``add`` appends to the delta (scanned by brute force, so new entries
are matchable at once). When the delta would overflow, delta + tail + the
new entries are rebuilt into a fresh tail (cost proportional to the tail);
when the tail outgrows ``tail_fraction`` of the main segment, or a quarter
of the main segment is tombstones, everything is rebuilt into one main
segment. That full rebuild is spread out: the add that triggers it moves the
delta and its own rows to a *frozen* buffer (still scanned) and returns; each
later ``add``/``remove`` runs one step of the rebuild (under half a second at
10M rows; removals made meanwhile are replayed), and the new main segment
replaces main, tail and frozen buffer when it is done. ``save``,
``finish_rebuild`` and a delta overflow complete it at once.

A search whose radius needs more than 3 flips per chunk, or whose probe set
would touch more than ``brute_fraction`` of a segment, scans that segment
instead; both paths are exact.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Generator, Mapping, Sequence
from math import comb
from typing import Any, ClassVar, Self, cast

import numpy as np
from numpy.typing import NDArray

from blindmatch.errors import IndexFormatError
from blindmatch.index._base import (
    HASH_BYTES,
    ArrayDict,
    PDQIndex,
    SearchResult,
    as_hashes,
    as_id_set,
    as_ids,
    as_queries,
    as_query,
    check_radius,
    has_duplicates,
    isin_sorted,
    sort_results,
)

__all__ = ["DEAD", "TABLE_BYTES_PER_HASH", "MultiIndexHash", "choose_widths"]

HASH_BITS = 8 * HASH_BYTES
MAX_FLIPS = 3  # more flips per chunk probe so many buckets that a scan is cheaper
MIN_WIDTH, MAX_WIDTH = 8, 24
DEAD = np.iinfo(np.int64).min  # tombstone id; callers may not use it
TABLE_BYTES_PER_HASH = 64  # memory budget for offsets + permutations
DESIGN_RADIUS = 31  # the radius the layout is tuned for
_BUCKET_COST = 2.0  # a bucket costs about two random reads; a candidate one

DEFAULT_DELTA_MAX = 16_384
DEFAULT_BRUTE_FRACTION = 0.25
DEFAULT_TAIL_FRACTION = 1 / 16

_SCAN_BLOCK = 1 << 16
_STEP_ROWS = 1 << 21  # rows per step of a spread-out rebuild
_BATCH_CANDIDATES = 1 << 16  # per search_many probe batch: keeps temporaries in cache
_FULL = np.uint32(0x40404040)  # four popcounts of 64: distance 256
_SPREAD = np.uint32(0x01010101)

U32 = NDArray[np.uint32]
I32 = NDArray[np.int32]
I64 = NDArray[np.int64]
U64 = NDArray[np.uint64]


# ------------------------------------------------------------------ layouts


def even_widths(m: int) -> tuple[int, ...]:
    """``m`` chunk widths summing to 256, as even as possible (wider first)."""
    b, extra = divmod(HASH_BITS, m)
    return (b + 1,) * extra + (b,) * (m - extra)


@functools.cache
def _n_keys(width: int, flips: int) -> int:
    return sum(comb(width, i) for i in range(flips + 1))


def _flip_budgets(widths: Sequence[int], r: int, n: int) -> list[int] | None:
    """Per-chunk flip budgets ``t`` with ``sum(t + 1) >= r + 1`` and least modelled cost.

    Each extra flip on chunk ``j`` adds ``keys`` buckets of ``n / 2**w_j`` rows;
    the marginal costs grow with ``t``, so adding the cheapest one greedily is optimal.
    ``None`` if that needs more than ``MAX_FLIPS`` in some chunk.
    """
    t = [0] * len(widths)
    for _ in range(max(0, r + 1 - len(widths))):
        best, best_cost = -1, 0.0
        for j, w in enumerate(widths):
            if t[j] < MAX_FLIPS:
                extra = _n_keys(w, t[j] + 1) - _n_keys(w, t[j])
                cost = extra * (n / 2.0**w + _BUCKET_COST)
                if best < 0 or cost < best_cost:
                    best, best_cost = j, cost
        if best < 0:
            return None
        t[best] += 1
    return t


def _probe_cost(widths: Sequence[int], r: int, n: int) -> float:
    t = _flip_budgets(widths, r, n)
    if t is None:
        return float("inf")
    return sum(
        _n_keys(w, tj) * (n / 2.0**w + _BUCKET_COST) for w, tj in zip(widths, t, strict=True)
    )


def table_bytes(widths: Sequence[int], n: int) -> int:
    """Bytes of offsets + permutations for a segment of ``n`` rows."""
    return 4 * (len(widths) - 1) * n + 4 * sum((1 << w) + 1 for w in widths)


def choose_widths(n: int) -> tuple[int, ...]:
    """Chunk widths for a segment of ``n`` rows (see the module docstring)."""
    best: tuple[int, ...] = even_widths(16)
    best_cost = float("inf")
    for m in range(11, 17):
        widths = even_widths(m)
        if n and table_bytes(widths, n) > TABLE_BYTES_PER_HASH * n:
            continue
        cost = _probe_cost(widths, DESIGN_RADIUS, n)
        if cost < best_cost:
            best, best_cost = widths, cost
    return best


class _Plan:
    """The buckets to probe for one radius: per-bucket flip mask, chunk and table start."""

    __slots__ = ("chunk", "masks", "n_first", "table_start")

    def __init__(self, layout: _Layout, budgets: Sequence[int]) -> None:
        masks: list[U32] = []
        chunk: list[NDArray[np.intp]] = []
        for j, (w, t) in enumerate(zip(layout.widths, budgets, strict=True)):
            mk = _flip_masks(w, t)
            masks.append(mk)
            chunk.append(np.full(mk.shape[0], j, dtype=np.intp))
        self.masks: U32 = np.concatenate(masks)
        self.chunk: NDArray[np.intp] = np.concatenate(chunk)
        self.table_start: I64 = layout.table_start.take(self.chunk)
        self.n_first = int(masks[0].shape[0])  # buckets of table 0 come first


@functools.cache
def _flip_masks(width: int, flips: int) -> U32:
    out = [0]
    for k in range(1, flips + 1):
        out.extend(sum(1 << b for b in bits) for bits in itertools.combinations(range(width), k))
    return np.array(out, dtype=np.uint32)


class _Layout:
    """Chunk widths, and how to cut a hash (four little-endian uint64 words) into keys.

    Chunk ``j`` is bits ``[start_j, start_j + w_j)`` where bit ``64 i + k`` is
    bit ``k`` of word ``i``; for 16-bit chunks that is bytes ``2j, 2j+1``.
    """

    def __init__(self, widths: tuple[int, ...]) -> None:
        if (
            not 2 <= len(widths) <= 32
            or sum(widths) != HASH_BITS
            or not all(MIN_WIDTH <= w <= MAX_WIDTH for w in widths)
        ):
            raise ValueError(f"bad chunk widths {widths!r}")
        self.widths = widths
        self.m = len(widths)
        starts = np.cumsum((0,) + widths[:-1])
        self.word = (starts // 64).astype(np.intp)
        shift = starts % 64
        straddle = shift + np.array(widths) > 64
        self.shift = shift.astype(np.uint64)
        self.word_hi = np.minimum(self.word + 1, 3)
        self.shift_hi = np.where(straddle, 64 - shift, 0).astype(np.uint64)
        self.keep_hi = np.where(straddle, np.uint64(2**64 - 1), np.uint64(0)).astype(np.uint64)
        self.key_mask = np.array([(1 << w) - 1 for w in widths], dtype=np.uint64)
        sizes = np.array([(1 << w) + 1 for w in widths], dtype=np.int64)
        self.table_start: I64 = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        self.offs_len = int(sizes.sum())
        self._plans: dict[tuple[int, int], _Plan | None] = {}

    def keys(self, h64: U64) -> U32:
        """Chunk keys of ``(..., 4)`` uint64 hashes, shape ``(..., m)``."""
        lo = h64[..., self.word] >> self.shift
        hi = (h64[..., self.word_hi] << self.shift_hi) & self.keep_hi
        return ((lo | hi) & self.key_mask).astype(np.uint32)

    def chunk(self, h64: U64, j: int) -> U32:
        """Keys of chunk ``j`` for ``(n, 4)`` uint64 hashes."""
        x = h64[:, self.word[j]] >> self.shift[j]
        if self.keep_hi[j]:
            x |= h64[:, self.word_hi[j]] << self.shift_hi[j]
        x &= self.key_mask[j]
        return x.astype(np.uint32)

    def plan(self, r: int, n: int) -> _Plan | None:
        """Buckets to probe for radius ``r`` in a segment of ``n`` rows; None: scan instead."""
        key = (r, n)
        if key not in self._plans:
            budgets = _flip_budgets(self.widths, r, n)
            self._plans[key] = None if budgets is None else _Plan(self, budgets)
            if len(self._plans) > 1024:
                self._plans.pop(next(iter(self._plans)))
        return self._plans[key]


@functools.cache
def _layout(widths: tuple[int, ...]) -> _Layout:
    return _Layout(widths)


# -------------------------------------------------------------------- kernels

_ARANGE_CACHE: list[U32] = [np.arange(1 << 16, dtype=np.uint32)]


def _arange_u32(n: int) -> U32:
    cached = _ARANGE_CACHE[0]
    if n > cached.shape[0]:
        if n > 1 << 22:
            return np.arange(n, dtype=np.uint32)
        cached = np.arange(1 << max(16, (n - 1).bit_length()), dtype=np.uint32)
        _ARANGE_CACHE[0] = cached
    return cached[:n]


def _scan(h64: U64, q64: U64, r: int) -> tuple[I64, I32]:
    """Rows of ``h64`` (``(n, 4)`` uint64) within ``r`` of ``q64``, with distances."""
    n = h64.shape[0]
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int32)
    rows: list[I64] = []
    dists: list[I32] = []
    block = min(n, _SCAN_BLOCK)
    qt = np.tile(q64, block)
    for a in range(0, n, block):
        x = h64[a : a + block]
        m = x.shape[0]
        v = np.bitwise_count(np.bitwise_xor(x.reshape(-1), qt[: 4 * m])).view(np.uint32)
        s = v * _SPREAD  # top byte = sum of the four popcounts, mod 256
        if r <= 254:
            hit = np.flatnonzero(s < np.uint32((r + 1) << 24))
            hit = hit[v[hit] != _FULL]  # distance 256 wraps to 0
            d = (s[hit] >> 24).astype(np.int32)
        else:
            top = (s >> 24).astype(np.int32)
            top[v == _FULL] = 256
            hit = np.flatnonzero(top <= r)
            d = top[hit]
        rows.append(hit + a)
        dists.append(d)
    if len(rows) == 1:
        return rows[0], dists[0]
    return np.concatenate(rows), np.concatenate(dists)


def _unique_sorted(a: U64) -> U64:
    """Sorted distinct values (a plain sort: faster than np.unique's paths here)."""
    a = np.sort(a)
    if a.shape[0] > 1:
        a = a[np.concatenate(([True], a[1:] != a[:-1]))]
    return a


def _verify(g: U64, r: int) -> tuple[NDArray[np.intp], U32]:
    """``g`` holds candidate XOR query, ``(k, 4)``: (hit positions, packed distances << 24).

    Every candidate shares a chunk of >= 8 bits within 3 flips with the query,
    so its distance is < 256 and the byte-sum trick cannot wrap.
    """
    v = np.bitwise_count(g).view(np.uint32).reshape(-1)
    v *= _SPREAD
    return np.flatnonzero(v < np.uint32((r + 1) << 24)), v


# ------------------------------------------------------------------- segment


class _Segment:
    """One immutable multi-index over ``n`` rows (only ``ids`` changes, on removal)."""

    __slots__ = ("dead", "h", "h64", "ids", "layout", "n", "offs", "perm")

    def __init__(
        self, h: NDArray[np.uint8], ids: I64, offs: U32, perm: U32, widths: tuple[int, ...]
    ) -> None:
        self.h = h
        self.h64: U64 = h.view(np.uint64)
        self.ids = ids
        self.offs = offs
        self.perm = perm
        self.layout = _layout(widths)
        self.n = int(h.shape[0])
        self.dead = int(np.count_nonzero(ids == DEAD))

    @classmethod
    def build(
        cls, h: NDArray[np.uint8], ids: I64, widths: tuple[int, ...] | None = None
    ) -> _Segment | None:
        """A segment over these rows (None if there are none)."""
        steps = cls.build_steps([(h, ids)], widths)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return cast("_Segment | None", done.value)

    @classmethod
    def build_steps(
        cls,
        sources: Sequence[_Segment | tuple[NDArray[np.uint8], I64]],
        widths: tuple[int, ...] | None,
    ) -> Generator[None, None, _Segment | None]:
        """Build a segment over the live rows of ``sources``, yielding between steps.

        No step does more than one sort or one pass over ``_STEP_ROWS`` rows
        (about half a second at 10M rows), so a caller can spread a full
        rebuild over several calls. Sources are read block by block while
        they may still be tombstoned; removals after a block was read are the
        caller's to re-apply.
        """
        total = sum(src.n if isinstance(src, _Segment) else src[1].shape[0] for src in sources)
        h = np.empty((total, HASH_BYTES), dtype=np.uint8)
        ids = np.empty(total, dtype=np.int64)
        n = done = 0
        for src in sources:
            sh, sids = (src.h, src.ids) if isinstance(src, _Segment) else src
            for a in range(0, sids.shape[0], _STEP_ROWS):
                block = sids[a : a + _STEP_ROWS]
                keep = block != DEAD
                c = int(np.count_nonzero(keep))
                if c == block.shape[0]:
                    h[n : n + c] = sh[a : a + _STEP_ROWS]
                    ids[n : n + c] = block
                else:
                    h[n : n + c] = sh[a : a + _STEP_ROWS][keep]
                    ids[n : n + c] = block[keep]
                n += c
                done += block.shape[0]
                if done >= _STEP_ROWS:
                    done = 0
                    yield
        if n == 0:
            return None
        h, ids = h[:n], ids[:n]
        widths = widths or choose_widths(n)
        lay = _layout(widths)
        if (lay.m - 1) * n >= 2**32:
            raise ValueError(f"too many hashes for one index segment ({n})")
        key0 = lay.chunk(h.view(np.uint64), 0)
        yield
        order = np.argsort(key0)
        yield
        hs = np.empty((n, HASH_BYTES), dtype=np.uint8)
        for a in range(0, n, _STEP_ROWS):
            np.take(h, order[a : a + _STEP_ROWS], axis=0, out=hs[a : a + _STEP_ROWS], mode="clip")
            yield
        ids = ids.take(order)
        del h, order
        h64 = hs.view(np.uint64)
        offs = np.empty(lay.offs_len, dtype=np.uint32)
        perm = np.empty((lay.m - 1) * n, dtype=np.uint32)
        for j in range(lay.m):
            key = key0 if j == 0 else lay.chunk(h64, j)
            base = 0 if j == 0 else (j - 1) * n
            if j:
                yield
                o = np.argsort(key)
                yield
                perm[base : base + n] = o
                del o
            size = 1 << widths[j]
            start = int(lay.table_start[j])
            off = offs[start : start + size + 1]
            off[0] = 0
            off[1:] = np.cumsum(np.bincount(key, minlength=size))
            off += np.uint32(base)
        return cls(hs, ids, offs, perm, widths)

    @property
    def live(self) -> int:
        return self.n - self.dead

    def live_rows(self) -> tuple[NDArray[np.uint8], I64]:
        if self.dead == 0:
            return self.h, self.ids
        keep = self.ids != DEAD
        return self.h[keep], self.ids[keep]

    def table_nbytes(self) -> int:
        return int(self.offs.nbytes + self.perm.nbytes)

    def validate(self, *, full: bool = False) -> None:
        """Raise IndexFormatError unless the tables are consistent (``full``: check every row)."""
        n, lay = self.n, self.layout
        if self.h.ndim != 2 or self.h.shape[1] != HASH_BYTES or self.ids.shape != (n,):
            raise IndexFormatError("segment hashes and ids disagree")
        if (lay.m - 1) * n >= 2**32:
            raise IndexFormatError("segment too large")
        if self.offs.shape != (lay.offs_len,) or self.perm.shape != ((lay.m - 1) * n,):
            raise IndexFormatError("segment tables have the wrong size")
        if n and int(self.perm.max()) >= n:
            raise IndexFormatError("segment permutation out of range")
        for j in range(lay.m):
            start = int(lay.table_start[j])
            off = self.offs[start : start + (1 << lay.widths[j]) + 1].astype(np.int64)
            base = 0 if j == 0 else (j - 1) * n
            if off[0] != base or off[-1] != base + n or (np.diff(off) < 0).any():
                raise IndexFormatError(f"segment offsets of table {j} are inconsistent")
            if j and not full:
                continue
            key = lay.chunk(self.h64, j)
            if j:
                rows = self.perm[base : base + n]
                if (np.bincount(rows, minlength=n) != 1).any():
                    raise IndexFormatError(f"table {j} is not a permutation")
                key = key.take(rows)
            counts = np.bincount(key, minlength=1 << lay.widths[j])
            if (key[1:] < key[:-1]).any() or (np.cumsum(counts) != off[1:] - base).any():
                raise IndexFormatError(f"table {j} does not match the hashes")

    # -- search
    def _buckets(self, keys: U32, table_start: I64) -> tuple[U32, U32]:
        """(starts, lengths) of the buckets with these keys."""
        idx = keys.astype(np.int64)
        idx += table_start
        starts = self.offs.take(idx)
        lens = self.offs.take(idx + 1)
        lens -= starts
        return starts, lens

    def _positions(self, starts: U32, lens: U32, n_first: int) -> tuple[U32, int]:
        """Rows of every candidate, bucket by bucket; the first ``n_first`` buckets are table 0."""
        cs = np.cumsum(lens, dtype=np.int64)
        total = int(cs[-1]) if cs.size else 0
        head = int(cs[n_first - 1]) if n_first else 0
        # pos[i] = starts[b] + (i - first i of bucket b): repeat the per-bucket
        # shift, add 0..total-1. uint32 arithmetic wraps; the results are in range.
        shift = starts - (cs - lens).astype(np.uint32)
        pos = np.repeat(shift, lens)
        pos += _arange_u32(total)
        if head < total:
            pos[head:] = self.perm.take(pos[head:])
        return pos, total

    def search(self, q8: NDArray[np.uint8], r: int, brute_fraction: float) -> tuple[U32 | I64, I32]:
        """(rows, distances) of every row within ``r`` of ``q8``, tombstones included."""
        q64 = q8.view(np.uint64)
        plan = self.layout.plan(r, self.n)
        if plan is None:
            return _scan(self.h64, q64, r)
        keys = self.layout.keys(q64).take(plan.chunk)
        keys ^= plan.masks
        starts, lens = self._buckets(keys, plan.table_start)
        if int(lens.sum(dtype=np.int64)) > brute_fraction * self.n:
            return _scan(self.h64, q64, r)
        pos, total = self._positions(starts, lens, plan.n_first)
        if total == 0:
            return pos, np.empty(0, np.int32)
        g = self.h64.take(pos, axis=0)
        flat = g.reshape(-1)
        np.bitwise_xor(flat, np.tile(q64, total), out=flat)
        hit, v = _verify(g, r)
        if hit.shape[0] <= 1:
            return pos[hit], (v[hit] >> 24).astype(np.int32)
        # a row can be found through several tables: dedupe (row, distance) pairs
        d64 = (v[hit] >> 24).astype(np.uint64)
        key = _unique_sorted((pos[hit].astype(np.uint64) << np.uint64(8)) | d64)
        return (key >> np.uint64(8)).astype(np.int64), (key & np.uint64(0xFF)).astype(np.int32)

    def search_many(
        self, q8s: NDArray[np.uint8], r: int, brute_fraction: float
    ) -> tuple[I64, I64, I32]:
        """(query index, rows, distances) for a batch of queries."""
        nq = q8s.shape[0]
        q64s = q8s.view(np.uint64)
        plan = self.layout.plan(r, self.n)
        if plan is None:
            return self._scan_each(q64s, np.arange(nq), r)
        nb, nf = plan.masks.shape[0], plan.n_first
        keys = self.layout.keys(q64s).take(plan.chunk, axis=1)  # (nq, nb)
        keys ^= plan.masks
        starts, lens = self._buckets(keys, plan.table_start)
        per_query = lens.sum(axis=1, dtype=np.int64)
        scan = per_query > brute_fraction * self.n
        out: list[tuple[I64, I64, I32]] = []
        if scan.any():
            out.append(self._scan_each(q64s, np.flatnonzero(scan), r))
        probe = np.flatnonzero(~scan)
        a = 0
        while a < probe.shape[0]:
            budget = np.cumsum(per_query[probe[a:]])
            b = a + max(1, int(np.searchsorted(budget, _BATCH_CANDIDATES, side="right")))
            group = probe[a:b]
            a = b
            # all table-0 buckets of the group first, then the rest
            g_starts = np.concatenate((starts[group, :nf].ravel(), starts[group, nf:].ravel()))
            g_lens = np.concatenate((lens[group, :nf].ravel(), lens[group, nf:].ravel()))
            pos, total = self._positions(g_starts, g_lens, group.shape[0] * nf)
            if total == 0:
                continue
            bucket_q = np.concatenate((np.repeat(group, nf), np.repeat(group, nb - nf)))
            qidx = np.repeat(bucket_q, g_lens)
            g = self.h64.take(pos, axis=0)
            np.bitwise_xor(g, q64s.take(qidx, axis=0), out=g)
            hit, v = _verify(g, r)
            key = qidx[hit].astype(np.uint64) * np.uint64(self.n) + pos[hit]
            key = _unique_sorted((key << np.uint64(8)) | (v[hit] >> 24).astype(np.uint64))
            qr, d = key >> np.uint64(8), (key & np.uint64(0xFF)).astype(np.int32)
            out.append(((qr // self.n).astype(np.int64), (qr % self.n).astype(np.int64), d))
        if not out:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int32)
        return (
            np.concatenate([o[0] for o in out]),
            np.concatenate([o[1] for o in out]),
            np.concatenate([o[2] for o in out]),
        )

    def _scan_each(self, q64s: U64, which: I64, r: int) -> tuple[I64, I64, I32]:
        qs: list[I64] = []
        rows: list[I64] = []
        ds: list[I32] = []
        for i in which.tolist():
            rr, d = _scan(self.h64, q64s[i], r)
            qs.append(np.full(rr.shape[0], i, dtype=np.int64))
            rows.append(rr)
            ds.append(d)
        if not qs:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int32)
        return np.concatenate(qs), np.concatenate(rows), np.concatenate(ds)


def _empty_hashes() -> NDArray[np.uint8]:
    return np.empty((0, HASH_BYTES), dtype=np.uint8)


def _live(h: NDArray[np.uint8], ids: I64) -> tuple[NDArray[np.uint8], I64]:
    keep = ids != DEAD
    if keep.all():
        return h, ids
    return h[keep], ids[keep]


def _parse_widths(value: object, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(type(w) is int for w in value):
        raise IndexFormatError(f"bad chunk widths for the {name} segment")
    try:
        return _layout(tuple(value)).widths
    except ValueError:
        raise IndexFormatError(f"bad chunk widths for the {name} segment") from None


# --------------------------------------------------------------------- index


class MultiIndexHash(PDQIndex):
    """Exact multi-index hashing. See the module docstring for the design.

    ``delta_max`` entries are buffered (and brute-force scanned) before they
    are folded into the tables; ``brute_fraction`` is the share of a segment
    above which a probe falls back to a scan; ``tail_fraction`` bounds the
    tail segment relative to the main one before a full rebuild; ``widths``
    forces the chunk widths of every segment (default: ``choose_widths``).
    """

    kind: ClassVar[str] = "mih"
    _ARRAYS: ClassVar[tuple[tuple[str, str, int], ...]] = (
        ("main_hashes", "|u1", 2),
        ("main_ids", "<i8", 1),
        ("main_offsets", "<u4", 1),
        ("main_perm", "<u4", 1),
        ("tail_hashes", "|u1", 2),
        ("tail_ids", "<i8", 1),
        ("tail_offsets", "<u4", 1),
        ("tail_perm", "<u4", 1),
        ("delta_hashes", "|u1", 2),
        ("delta_ids", "<i8", 1),
    )

    def __init__(
        self,
        hashes: NDArray[np.uint8] | None = None,
        ids: NDArray[np.int64] | None = None,
        *,
        delta_max: int = DEFAULT_DELTA_MAX,
        brute_fraction: float = DEFAULT_BRUTE_FRACTION,
        tail_fraction: float = DEFAULT_TAIL_FRACTION,
        widths: Sequence[int] | None = None,
    ) -> None:
        if isinstance(delta_max, bool) or not isinstance(delta_max, int) or delta_max < 0:
            raise ValueError("delta_max must be a non-negative integer")
        if not brute_fraction > 0 or not tail_fraction > 0:
            raise ValueError("brute_fraction and tail_fraction must be positive")
        self._delta_max = delta_max
        self._brute_fraction = float(brute_fraction)
        self._tail_fraction = float(tail_fraction)
        self._widths = None if widths is None else _layout(tuple(widths)).widths
        self._main: _Segment | None = None
        self._tail: _Segment | None = None
        self._dh: NDArray[np.uint8] = _empty_hashes()
        self._dh64: U64 = self._dh.view(np.uint64)
        self._dids: I64 = np.empty(0, dtype=np.int64)
        self._dn = 0
        self._ddead = 0
        # a full rebuild in progress: its steps run one per add()/remove() call;
        # meanwhile the rows it was started for stay searchable in the frozen buffer
        self._pending: Generator[None, None, _Segment | None] | None = None
        self._pending_removed: list[I64] = []
        self._fh: NDArray[np.uint8] = _empty_hashes()
        self._fids: I64 = np.empty(0, dtype=np.int64)
        self._fdead = 0
        if hashes is not None or ids is not None:
            if hashes is None or ids is None:
                raise ValueError("give both hashes and ids, or neither")
            h = as_hashes(hashes)
            new_ids = as_ids(ids, h.shape[0], reserved=int(DEAD))
            if h.shape[0]:
                self._main = _Segment.build(h, new_ids, self._widths)

    # -- sizes
    def __len__(self) -> int:
        n = self._dn - self._ddead + self._fids.shape[0] - self._fdead
        for seg in (self._main, self._tail):
            if seg is not None:
                n += seg.live
        return n

    def nbytes(self) -> dict[str, int]:
        """Bytes held: ``hashes``, ``ids``, ``tables`` (offsets + permutations), ``delta``."""
        delta = self._dh.nbytes + self._dids.nbytes + self._fh.nbytes + self._fids.nbytes
        out = {"hashes": 0, "ids": 0, "tables": 0, "delta": delta}
        for seg in (self._main, self._tail):
            if seg is not None:
                out["hashes"] += seg.h.nbytes
                out["ids"] += seg.ids.nbytes
                out["tables"] += seg.table_nbytes()
        return out

    def describe(self) -> dict[str, Any]:
        """Segment sizes and chunk widths (for benchmarks and debugging)."""
        segs = {}
        for name, seg in (("main", self._main), ("tail", self._tail)):
            if seg is not None:
                segs[name] = {"rows": seg.n, "dead": seg.dead, "widths": list(seg.layout.widths)}
        return {
            "segments": segs,
            "delta": self._dn,
            "delta_max": self._delta_max,
            "rebuilding": self._pending is not None,
            "frozen": int(self._fids.shape[0]),
        }

    # -- mutation
    def add(self, hashes: NDArray[np.uint8], ids: NDArray[np.int64]) -> None:
        """Add entries. Raises ValueError if an id is already present (an O(n) check)."""
        h = as_hashes(hashes)
        new_ids = as_ids(ids, h.shape[0], reserved=int(DEAD))
        m = h.shape[0]
        if m == 0:
            return
        if self._contains_any(np.sort(new_ids)):
            raise ValueError("some ids are already in the index")
        if self._pending is not None:
            self._step()
        if self._dn + m <= self._delta_max:
            if self._dh.shape[0] < self._delta_max:
                self._grow_delta()
            self._dh[self._dn : self._dn + m] = h
            self._dids[self._dn : self._dn + m] = new_ids
            self._dn += m
            return
        self._fold(h, new_ids)

    def remove(self, ids: NDArray[np.int64]) -> None:
        """Tombstone entries by id. Unknown ids are ignored. O(n) per call."""
        wanted = as_id_set(ids)
        wanted = wanted[wanted != DEAD]
        if wanted.size == 0:
            return
        for seg in (self._main, self._tail):
            if seg is not None:
                gone = isin_sorted(seg.ids, wanted)
                seg.ids[gone] = DEAD
                seg.dead += int(np.count_nonzero(gone))
        if self._dn:
            gone = isin_sorted(self._dids[: self._dn], wanted)
            self._dids[: self._dn][gone] = DEAD
            self._ddead += int(np.count_nonzero(gone))
        if self._fids.shape[0]:
            gone = isin_sorted(self._fids, wanted)
            self._fids[gone] = DEAD
            self._fdead += int(np.count_nonzero(gone))
        if self._pending is not None:
            self._pending_removed.append(wanted)
            self._step()

    def compact(self) -> None:
        """Rebuild into a single main segment, dropping tombstones and emptying the delta."""
        self._rebuild(_empty_hashes(), np.empty(0, dtype=np.int64))

    def finish_rebuild(self) -> None:
        """Run the remaining steps of a full rebuild in progress, if any."""
        while self._pending is not None:
            self._step()

    def _step(self) -> None:
        assert self._pending is not None
        try:
            next(self._pending)
        except StopIteration as done:
            self._swap(done.value)
        except BaseException:
            # e.g. MemoryError or KeyboardInterrupt inside a step: drop the
            # rebuild; its rows are all still in main, tail and the frozen buffer
            self._pending = None
            self._pending_removed = []
            raise

    def _swap(self, main: _Segment | None) -> None:
        """A full rebuild is done: it replaces main, tail and the frozen buffer."""
        if main is not None and self._pending_removed:
            wanted = np.unique(np.concatenate(self._pending_removed))
            gone = isin_sorted(main.ids, wanted)
            main.ids[gone] = DEAD
            main.dead += int(np.count_nonzero(gone))
        self._main, self._tail = main, None
        self._clear_pending()

    def _clear_pending(self) -> None:
        self._pending = None
        self._pending_removed = []
        self._fh, self._fids, self._fdead = _empty_hashes(), np.empty(0, dtype=np.int64), 0

    def _contains_any(self, sorted_ids: I64) -> bool:
        for seg in (self._main, self._tail):
            if seg is not None and isin_sorted(seg.ids, sorted_ids).any():
                return True
        if self._fids.shape[0] and isin_sorted(self._fids, sorted_ids).any():
            return True
        return bool(self._dn and isin_sorted(self._dids[: self._dn], sorted_ids).any())

    def _grow_delta(self) -> None:
        h = np.empty((self._delta_max, HASH_BYTES), dtype=np.uint8)
        ids = np.empty(self._delta_max, dtype=np.int64)
        h[: self._dn] = self._dh[: self._dn]
        ids[: self._dn] = self._dids[: self._dn]
        self._dh, self._dids = h, ids
        self._dh64 = h.view(np.uint64)

    def _delta_live(self) -> tuple[NDArray[np.uint8], I64]:
        h, ids = self._dh[: self._dn], self._dids[: self._dn]
        if self._ddead:
            keep = ids != DEAD
            return h[keep], ids[keep]
        return h, ids

    def _clear_delta(self) -> None:
        self._dn = 0
        self._ddead = 0

    def _fold(self, h: NDArray[np.uint8], ids: I64) -> None:
        """The delta is full: rebuild the tail with delta + new rows, or rebuild everything.

        A full rebuild triggered by a small add is only started here: the delta
        and the new rows move to the frozen buffer (still scanned), and the
        rebuild advances one step per later add() or remove() call. A large add
        rebuilds at once.
        """
        if self._pending is not None:
            self.finish_rebuild()
        # rows outside the segments: a leftover frozen buffer (only after an
        # abandoned rebuild), the delta, the new rows
        loose = [_live(self._fh, self._fids), self._delta_live(), (h, ids)]
        parts = loose if self._tail is None else [self._tail.live_rows(), *loose]
        pending = sum(p[1].shape[0] for p in parts)
        main = self._main
        if (
            main is None
            or pending > max(self._delta_max, self._tail_fraction * main.live)
            or main.dead * 4 > main.n
        ):
            if main is None or h.shape[0] > self._delta_max:
                self._rebuild(h, ids)
                return
            self._fh = np.concatenate([p[0] for p in loose])
            self._fids = np.concatenate([p[1] for p in loose])
            self._fdead = 0
            sources: list[_Segment | tuple[NDArray[np.uint8], I64]] = [main]
            if self._tail is not None:
                sources.append(self._tail)
            sources.append((self._fh, self._fids))
            self._pending = _Segment.build_steps(sources, self._widths)
            self._clear_delta()
            return
        self._tail = _Segment.build(
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            self._widths,
        )
        self._clear_delta()
        self._clear_pending()

    def _rebuild(self, h: NDArray[np.uint8], ids: I64) -> None:
        """Rebuild everything now (abandoning a rebuild in progress: its rows are all here)."""
        parts = [seg.live_rows() for seg in (self._main, self._tail) if seg is not None]
        parts += [_live(self._fh, self._fids), self._delta_live(), (h, ids)]
        all_h = np.concatenate([p[0] for p in parts])
        all_ids = np.concatenate([p[1] for p in parts])
        self._main = None
        self._tail = None
        self._clear_delta()
        self._clear_pending()
        self._main = _Segment.build(all_h, all_ids, self._widths)

    # -- search
    def _buffers(self) -> list[tuple[NDArray[np.uint8], I64]]:
        """The brute-force-scanned rows: the frozen buffer and the delta."""
        out = []
        if self._fids.shape[0]:
            out.append((self._fh, self._fids))
        if self._dn:
            out.append((self._dh[: self._dn], self._dids[: self._dn]))
        return out

    def search(self, query: NDArray[np.uint8] | bytes, radius: int) -> SearchResult:
        q = as_query(query)
        r = check_radius(radius)
        ids: list[I64] = []
        dists: list[I32] = []
        for seg in (self._main, self._tail):
            if seg is not None:
                rows, d = seg.search(q, r, self._brute_fraction)
                ids.append(seg.ids.take(rows))
                dists.append(d)
        for bh, bids in self._buffers():
            rows, d = _scan(bh.view(np.uint64), q.view(np.uint64), r)
            ids.append(bids.take(rows))
            dists.append(d)
        if not ids:
            return np.empty(0, np.int64), np.empty(0, np.int32)
        all_ids = ids[0] if len(ids) == 1 else np.concatenate(ids)
        all_d = dists[0] if len(dists) == 1 else np.concatenate(dists)
        live = all_ids != DEAD
        if not live.all():
            all_ids, all_d = all_ids[live], all_d[live]
        return sort_results(all_ids, all_d)

    def search_many(self, queries: NDArray[np.uint8], radius: int) -> list[SearchResult]:
        """Batched ``search``: the probes of many queries share each numpy call."""
        q8s = as_queries(queries)
        r = check_radius(radius)
        nq = q8s.shape[0]
        qs: list[I64] = []
        ids: list[I64] = []
        dists: list[I32] = []
        for seg in (self._main, self._tail):
            if seg is not None and nq:
                qi, rows, d = seg.search_many(q8s, r, self._brute_fraction)
                qs.append(qi)
                ids.append(seg.ids.take(rows))
                dists.append(d)
        for bh, bids in self._buffers():
            for i in range(nq):
                rows, d = _scan(bh.view(np.uint64), q8s[i].view(np.uint64), r)
                qs.append(np.full(rows.shape[0], i, dtype=np.int64))
                ids.append(bids.take(rows))
                dists.append(d)
        if not qs:
            return [(np.empty(0, np.int64), np.empty(0, np.int32)) for _ in range(nq)]
        all_q, all_ids, all_d = np.concatenate(qs), np.concatenate(ids), np.concatenate(dists)
        live = all_ids != DEAD
        all_q, all_ids, all_d = all_q[live], all_ids[live], all_d[live]
        order = np.lexsort((all_ids, all_d, all_q))
        all_q, all_ids, all_d = all_q[order], all_ids[order], all_d[order]
        bounds = np.searchsorted(all_q, np.arange(nq + 1))
        return [
            (all_ids[bounds[i] : bounds[i + 1]], all_d[bounds[i] : bounds[i + 1]])
            for i in range(nq)
        ]

    # -- persistence
    def _dump(self) -> tuple[dict[str, Any], ArrayDict]:
        self.finish_rebuild()  # the file format has no place for a rebuild in progress
        if self._fids.shape[0]:  # rows left over from an abandoned rebuild
            self.compact()
        meta: dict[str, Any] = {
            "delta_max": self._delta_max,
            "brute_fraction": self._brute_fraction,
            "tail_fraction": self._tail_fraction,
            "widths": None if self._widths is None else list(self._widths),
        }
        arrays: ArrayDict = {}
        for name, seg in (("main", self._main), ("tail", self._tail)):
            if seg is None:
                meta[f"{name}_widths"] = None
                arrays[f"{name}_hashes"] = _empty_hashes()
                arrays[f"{name}_ids"] = np.empty(0, np.int64)
                arrays[f"{name}_offsets"] = np.empty(0, np.uint32)
                arrays[f"{name}_perm"] = np.empty(0, np.uint32)
            else:
                meta[f"{name}_widths"] = list(seg.layout.widths)
                arrays[f"{name}_hashes"] = seg.h
                arrays[f"{name}_ids"] = seg.ids
                arrays[f"{name}_offsets"] = seg.offs
                arrays[f"{name}_perm"] = seg.perm
        arrays["delta_hashes"] = self._dh[: self._dn]
        arrays["delta_ids"] = self._dids[: self._dn]
        return meta, arrays

    @classmethod
    def _restore(cls, meta: Mapping[str, Any], arrays: ArrayDict) -> Self:
        delta_max = meta.get("delta_max")
        brute_fraction = meta.get("brute_fraction")
        tail_fraction = meta.get("tail_fraction")
        if type(delta_max) is not int or delta_max < 0:
            raise IndexFormatError("bad delta_max in index header")
        for f in (brute_fraction, tail_fraction):
            if type(f) not in (int, float) or not f > 0:  # type: ignore[operator]
                raise IndexFormatError("bad fractions in index header")
        forced = meta.get("widths")
        obj = cls(
            delta_max=delta_max,
            brute_fraction=float(brute_fraction),  # type: ignore[arg-type]
            tail_fraction=float(tail_fraction),  # type: ignore[arg-type]
            widths=None if forced is None else _parse_widths(forced, "forced"),
        )
        segs: list[_Segment | None] = []
        for name in ("main", "tail"):
            h = arrays[f"{name}_hashes"]
            offs = arrays[f"{name}_offsets"]
            perm = arrays[f"{name}_perm"]
            ids = arrays[f"{name}_ids"]
            if h.shape[0] == 0:
                if ids.size or offs.size or perm.size or meta.get(f"{name}_widths") is not None:
                    raise IndexFormatError(f"{name} segment: tables without hashes")
                segs.append(None)
                continue
            widths = _parse_widths(meta.get(f"{name}_widths"), name)
            seg = _Segment(h, ids, offs, perm, widths)
            seg.validate()
            segs.append(seg)
        obj._main, obj._tail = segs
        dh, dids = arrays["delta_hashes"], arrays["delta_ids"]
        if dh.shape[1] != HASH_BYTES or dids.shape != (dh.shape[0],):
            raise IndexFormatError("delta hashes and ids disagree")
        if dh.shape[0] > delta_max:
            raise IndexFormatError("delta larger than delta_max")
        if dh.shape[0]:
            obj._grow_delta()
            obj._dh[: dh.shape[0]] = dh
            obj._dids[: dh.shape[0]] = dids
            obj._dn = int(dh.shape[0])
            obj._ddead = int(np.count_nonzero(dids == DEAD))
        return obj

    def _check(self) -> None:
        """Full consistency check of every table, and id uniqueness (slow; for tests)."""
        live: list[I64] = []
        for seg in (self._main, self._tail):
            if seg is not None:
                seg.validate(full=True)
                live.append(seg.ids[seg.ids != DEAD])
        live.append(self._delta_live()[1])
        live.append(_live(self._fh, self._fids)[1])
        all_ids = np.concatenate(live)
        if has_duplicates(all_ids) or all_ids.shape[0] != len(self):
            raise IndexFormatError("live ids are not unique or the live count is wrong")
