"""``BruteForceIndex``: a plain numpy scan. The reference every other index is checked against."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

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
    as_query,
    check_radius,
    has_duplicates,
    isin_sorted,
    sort_results,
)

__all__ = ["BruteForceIndex"]

_BLOCK = 1 << 20


class BruteForceIndex(PDQIndex):
    """Exact search by computing the distance to every stored hash.

    Deliberately simple: ``popcount(stored XOR query)`` summed over the four
    64-bit words of each row. Adds append, removals delete the rows.
    """

    kind: ClassVar[str] = "brute"
    _ARRAYS: ClassVar[tuple[tuple[str, str, int], ...]] = (
        ("hashes", "|u1", 2),
        ("ids", "<i8", 1),
    )

    def __init__(
        self, hashes: NDArray[np.uint8] | None = None, ids: NDArray[np.int64] | None = None
    ) -> None:
        self._h: NDArray[np.uint8] = np.empty((0, HASH_BYTES), dtype=np.uint8)
        self._ids: NDArray[np.int64] = np.empty(0, dtype=np.int64)
        if hashes is not None or ids is not None:
            if hashes is None or ids is None:
                raise ValueError("give both hashes and ids, or neither")
            self.add(hashes, ids)

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    def add(self, hashes: NDArray[np.uint8], ids: NDArray[np.int64]) -> None:
        h = as_hashes(hashes)
        new_ids = as_ids(ids, h.shape[0])
        if new_ids.size == 0:
            return
        if bool(isin_sorted(self._ids, np.sort(new_ids)).any()):
            raise ValueError("some ids are already in the index")
        self._h = np.concatenate((self._h, h))
        self._ids = np.concatenate((self._ids, new_ids))

    def remove(self, ids: NDArray[np.int64]) -> None:
        gone = isin_sorted(self._ids, as_id_set(ids))
        if gone.any():
            keep = ~gone
            self._h = self._h[keep]
            self._ids = self._ids[keep]

    def distances(self, query: NDArray[np.uint8] | bytes) -> NDArray[np.int32]:
        """Distance from ``query`` to every stored hash, in storage order."""
        q64 = as_query(query).view(np.uint64)
        h64 = self._h.view(np.uint64)
        out = np.empty(h64.shape[0], dtype=np.int32)
        for a in range(0, h64.shape[0], _BLOCK):
            block = h64[a : a + _BLOCK]
            out[a : a + block.shape[0]] = np.bitwise_count(block ^ q64).sum(axis=1, dtype=np.int32)
        return out

    def search(self, query: NDArray[np.uint8] | bytes, radius: int) -> SearchResult:
        r = check_radius(radius)
        d = self.distances(query)
        hit = np.flatnonzero(d <= r)
        return sort_results(self._ids[hit], d[hit])

    # -- persistence
    def _dump(self) -> tuple[dict[str, Any], ArrayDict]:
        return {}, {"hashes": self._h, "ids": self._ids}

    @classmethod
    def _restore(cls, meta: Mapping[str, Any], arrays: ArrayDict) -> Self:
        h, ids = arrays["hashes"], arrays["ids"]
        if h.shape[1] != HASH_BYTES or ids.shape[0] != h.shape[0]:
            raise IndexFormatError("hashes and ids disagree in length")
        if has_duplicates(ids):
            raise IndexFormatError("duplicate ids in index file")
        obj = cls()
        obj._h = np.ascontiguousarray(h, dtype=np.uint8)
        obj._ids = np.ascontiguousarray(ids, dtype=np.int64)
        return obj
