"""The ``PDQIndex`` interface, input validation and the on-disk format.

File format (version 1), all integers little-endian::

    b"BMIDX"                5 bytes magic
    version                 1 byte (currently 1)
    header length           4 bytes, unsigned
    header                  UTF-8 JSON object:
                              {"kind": "mih" | "brute",
                               "meta": {...kind-specific scalars...},
                               "arrays": [{"name", "dtype", "shape", "crc32"}, ...]}
    array bodies            raw C-order bytes of each array, in header order

Only the dtypes ``|u1``, ``<u4`` and ``<i8`` are accepted; nothing is ever
pickled. A bad magic, an unknown version, a malformed header, a short body,
a CRC mismatch or inconsistent arrays all raise :class:`IndexFormatError`.
"""

from __future__ import annotations

import json
import operator
import os
import struct
import zlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import IO, Any, ClassVar, Self, cast

import numpy as np
from numpy.typing import NDArray

from blindmatch.errors import IndexFormatError, InvalidHash

__all__ = [
    "HASH_BYTES",
    "MAX_RADIUS",
    "PDQIndex",
    "SearchResult",
    "as_hashes",
    "as_ids",
    "as_queries",
    "as_query",
    "check_radius",
    "has_duplicates",
]

HASH_BYTES = 32
MAX_RADIUS = 256
MAGIC = b"BMIDX"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<5sBI")
_MAX_HEADER = 1 << 20
_MAX_ARRAY_BYTES = 1 << 40
_IO_CHUNK = 1 << 26
_DTYPES: dict[str, np.dtype[Any]] = {
    "|u1": np.dtype(np.uint8),
    "<u4": np.dtype("<u4"),
    "<i8": np.dtype("<i8"),
}

SearchResult = tuple[NDArray[np.int64], NDArray[np.int32]]
PathOrFile = str | os.PathLike[str] | IO[bytes]
ArrayDict = dict[str, NDArray[Any]]


# ---------------------------------------------------------------- validation


def as_hashes(hashes: object) -> NDArray[np.uint8]:
    """Return ``hashes`` as a C-contiguous ``(n, 32)`` uint8 array, or raise InvalidHash."""
    if not isinstance(hashes, np.ndarray):
        raise InvalidHash(
            f"hashes must be a numpy uint8 array of shape (n, 32), got {type(hashes).__name__}"
        )
    if hashes.dtype != np.uint8 or hashes.ndim != 2 or hashes.shape[1] != HASH_BYTES:
        raise InvalidHash(
            f"hashes must be a uint8 array of shape (n, {HASH_BYTES}), "
            f"got {hashes.dtype} {hashes.shape}"
        )
    return np.ascontiguousarray(hashes)


def as_query(query: object) -> NDArray[np.uint8]:
    """Return one query as a ``(32,)`` uint8 array; accepts 32 bytes or a uint8 array."""
    if isinstance(query, bytes | bytearray | memoryview):
        raw = bytes(query)
        if len(raw) != HASH_BYTES:
            raise InvalidHash(f"a PDQ hash is {HASH_BYTES} bytes, got {len(raw)}")
        return np.frombuffer(raw, dtype=np.uint8).copy()
    if isinstance(query, np.ndarray):
        if query.dtype != np.uint8 or query.shape != (HASH_BYTES,):
            raise InvalidHash(
                f"a query must be a uint8 array of shape ({HASH_BYTES},), "
                f"got {query.dtype} {query.shape}"
            )
        return np.ascontiguousarray(query)
    raise InvalidHash(
        f"a query must be {HASH_BYTES} bytes or a uint8 array, got {type(query).__name__}"
    )


def as_queries(queries: object) -> NDArray[np.uint8]:
    """Return queries as a ``(q, 32)`` uint8 array; accepts an array or a sequence of queries."""
    if isinstance(queries, np.ndarray):
        return as_hashes(queries)
    if isinstance(queries, Sequence) and not isinstance(queries, str | bytes | bytearray):
        out = np.empty((len(queries), HASH_BYTES), dtype=np.uint8)
        for i, q in enumerate(queries):
            out[i] = as_query(q)
        return out
    raise InvalidHash(
        "queries must be a uint8 array of shape (q, 32) or a sequence of 32-byte hashes"
    )


def as_ids(ids: object, n: int, *, reserved: int | None = None) -> NDArray[np.int64]:
    """Return ``ids`` as a ``(n,)`` int64 array of unique integers, or raise ValueError."""
    arr = np.asarray(ids)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"ids must have shape ({n},), got {arr.shape}")
    if n == 0:
        return np.empty(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"ids must be integers, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError("ids must fit in int64")
    out = np.ascontiguousarray(arr, dtype=np.int64)
    if reserved is not None and bool((out == reserved).any()):
        raise ValueError(f"id {reserved} is reserved")
    if has_duplicates(out):
        raise ValueError("ids must be unique")
    return out


def has_duplicates(ids: NDArray[np.int64]) -> bool:
    """Whether ``ids`` holds a value twice (sort-based: numpy's hash-based unique is slower)."""
    if ids.shape[0] < 2:
        return False
    s = np.sort(ids)
    return bool((s[1:] == s[:-1]).any())


def as_id_set(ids: object) -> NDArray[np.int64]:
    """Ids to remove: any 1-D integer array-like (a scalar is accepted too)."""
    arr = np.atleast_1d(np.asarray(ids))
    if arr.ndim != 1:
        raise ValueError(f"ids must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"ids must be integers, got dtype {arr.dtype}")
    if arr.dtype == np.uint64:
        arr = arr[arr <= np.iinfo(np.int64).max]
    s = np.sort(arr.astype(np.int64))
    if s.shape[0] > 1:
        s = s[np.concatenate(([True], s[1:] != s[:-1]))]
    return s


def check_radius(radius: object) -> int:
    """Return ``radius`` as an int in 0..256, else raise ValueError (TypeError if not an int)."""
    if isinstance(radius, bool) or not isinstance(radius, int | np.integer):
        raise TypeError(f"radius must be an integer, got {type(radius).__name__}")
    r = operator.index(radius)
    if not 0 <= r <= MAX_RADIUS:
        raise ValueError(f"radius must be between 0 and {MAX_RADIUS}, got {r}")
    return r


def isin_sorted(values: NDArray[np.int64], wanted: NDArray[np.int64]) -> NDArray[np.bool_]:
    """``np.isin(values, wanted)`` for a small sorted ``wanted``, in O(len(values)).

    A range pre-filter keeps the common case (a few ids, or a narrow band of
    ids, against millions) to one vectorised pass over ``values``.
    """
    mask = np.zeros(values.shape[0], dtype=np.bool_)
    if wanted.size == 0 or values.size == 0:
        return mask
    lo, hi = wanted[0], wanted[-1]
    cand = np.flatnonzero((values >= lo) & (values <= hi))
    if cand.size:
        sub = values[cand]
        pos = np.searchsorted(wanted, sub)
        np.minimum(pos, wanted.size - 1, out=pos)
        mask[cand[wanted[pos] == sub]] = True
    return mask


def sort_results(ids: NDArray[np.int64], dist: NDArray[np.int32]) -> SearchResult:
    """Sort one query's results by (distance, id)."""
    if ids.size > 1:
        order = np.lexsort((ids, dist))
        return ids[order], dist[order]
    return ids, dist


# -------------------------------------------------------------- the interface


class PDQIndex(ABC):
    """An exact Hamming-radius index over 256-bit PDQ hashes.

    ``hashes`` are ``(n, 32)`` uint8 arrays (bytes in hex order, i.e.
    ``bytes.fromhex(hex)``), ``ids`` are caller-chosen unique int64s.
    ``search`` returns every live entry within ``radius`` (inclusive) as
    ``(ids int64, distances int32)`` sorted by (distance, id).
    """

    kind: ClassVar[str] = ""
    _ARRAYS: ClassVar[tuple[tuple[str, str, int], ...]] = ()
    _registry: ClassVar[dict[str, type[PDQIndex]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            PDQIndex._registry[cls.kind] = cls

    @abstractmethod
    def add(self, hashes: NDArray[np.uint8], ids: NDArray[np.int64]) -> None:
        """Add entries; they are matchable as soon as this returns."""

    @abstractmethod
    def remove(self, ids: NDArray[np.int64]) -> None:
        """Remove entries by id; unknown ids are ignored."""

    @abstractmethod
    def search(self, query: NDArray[np.uint8] | bytes, radius: int) -> SearchResult:
        """All live entries with Hamming distance <= radius, sorted by (distance, id)."""

    def search_many(self, queries: NDArray[np.uint8], radius: int) -> list[SearchResult]:
        """``search`` for each row of a ``(q, 32)`` array, in order."""
        qs = as_queries(queries)
        r = check_radius(radius)
        return [self.search(q, r) for q in qs]

    @abstractmethod
    def __len__(self) -> int:
        """Number of live entries."""

    # -- persistence hooks
    @abstractmethod
    def _dump(self) -> tuple[dict[str, Any], ArrayDict]:
        """(meta scalars, arrays in ``_ARRAYS`` order) describing this index."""

    @classmethod
    @abstractmethod
    def _restore(cls, meta: Mapping[str, Any], arrays: ArrayDict) -> Self:
        """Rebuild from ``_dump`` output; raise IndexFormatError if inconsistent."""

    # -- persistence
    def save(self, target: PathOrFile) -> None:
        """Write the index to a path (atomically, via a temporary file) or a binary file."""
        meta, arrays = self._dump()
        specs = []
        bodies = []
        for name, dtype, _ndim in self._ARRAYS:
            arr = np.ascontiguousarray(arrays[name], dtype=_DTYPES[dtype])
            body = _bytes_of(arr)
            specs.append(
                {"name": name, "dtype": dtype, "shape": list(arr.shape), "crc32": zlib.crc32(body)}
            )
            bodies.append(body)
        header = json.dumps(
            {"kind": self.kind, "meta": meta, "arrays": specs}, separators=(",", ":")
        ).encode()
        prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header))
        if isinstance(target, str | os.PathLike):
            path = os.fspath(target)
            tmp = f"{path}.tmp-{os.getpid()}"
            try:
                with open(tmp, "wb") as f:
                    _write_all(f, prefix, header, bodies)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            _write_all(target, prefix, header, bodies)

    @classmethod
    def load(cls, source: PathOrFile) -> Self:
        """Read an index written by ``save``. ``PDQIndex.load`` returns whichever kind is stored."""
        if isinstance(source, str | os.PathLike):
            with open(os.fspath(source), "rb") as f:
                obj = cls._load_from(f)
                if f.read(1):
                    raise IndexFormatError("trailing bytes after the index body")
                return obj
        return cls._load_from(source)

    @classmethod
    def _load_from(cls, f: IO[bytes]) -> Self:
        prefix = _read_exact(f, _PREFIX.size, "file header")
        magic, version, hlen = _PREFIX.unpack(prefix)
        if magic != MAGIC:
            raise IndexFormatError("not a blindmatch index file (bad magic)")
        if version != FORMAT_VERSION:
            raise IndexFormatError(
                f"unsupported index format version {version} (this build reads {FORMAT_VERSION})"
            )
        if hlen > _MAX_HEADER:
            raise IndexFormatError(f"index header too large ({hlen} bytes)")
        try:
            header = json.loads(_read_exact(f, hlen, "header").decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise IndexFormatError(f"malformed index header: {e}") from None
        if not isinstance(header, dict):
            raise IndexFormatError("malformed index header: not an object")
        kind = header.get("kind")
        klass = PDQIndex._registry.get(kind) if isinstance(kind, str) else None
        if klass is None:
            raise IndexFormatError(f"unknown index kind {kind!r}")
        if cls is not PDQIndex and klass is not cls:
            raise IndexFormatError(f"file holds a {kind!r} index, not {cls.kind!r}")
        meta = header.get("meta")
        specs = header.get("arrays")
        if not isinstance(meta, dict) or not isinstance(specs, list):
            raise IndexFormatError("malformed index header: missing meta or arrays")
        parsed = _parse_specs(specs, klass._ARRAYS)
        remaining = _remaining_bytes(f)
        needed = sum(nbytes for _, _, _, nbytes, _ in parsed)
        if remaining is not None and remaining < needed:
            raise IndexFormatError(f"truncated index body: need {needed} bytes, {remaining} left")
        arrays: ArrayDict = {}
        for name, dtype, shape, nbytes, crc in parsed:
            arr = _read_array(f, dtype, shape, nbytes, name)
            got = zlib.crc32(_bytes_of(arr))
            if got != crc:
                raise IndexFormatError(f"checksum mismatch in array {name!r}")
            arrays[name] = arr
        try:
            obj = klass._restore(meta, arrays)
        except IndexFormatError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as e:
            raise IndexFormatError(f"inconsistent index file: {e}") from None
        return cast(Self, obj)


# ------------------------------------------------------------------ file I/O


def _bytes_of(arr: NDArray[Any]) -> memoryview:
    """The raw bytes of a C-contiguous array, as a flat byte memoryview (no copy)."""
    return arr.reshape(-1).view(np.uint8).data


def _write_all(f: IO[bytes], prefix: bytes, header: bytes, bodies: list[memoryview]) -> None:
    f.write(prefix)
    f.write(header)
    for body in bodies:
        for start in range(0, len(body), _IO_CHUNK):
            f.write(body[start : start + _IO_CHUNK])


def _read_exact(f: IO[bytes], n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise IndexFormatError(f"truncated index file (while reading the {what})")
    return data


def _remaining_bytes(f: IO[bytes]) -> int | None:
    try:
        if not f.seekable():
            return None
        here = f.tell()
        end = f.seek(0, os.SEEK_END)
        f.seek(here)
        return end - here
    except (OSError, AttributeError, ValueError):
        return None


def _parse_specs(
    specs: list[Any], expected: tuple[tuple[str, str, int], ...]
) -> list[tuple[str, np.dtype[Any], tuple[int, ...], int, int]]:
    if len(specs) != len(expected):
        raise IndexFormatError(f"expected {len(expected)} arrays, header lists {len(specs)}")
    out = []
    for spec, (name, dtype, ndim) in zip(specs, expected, strict=True):
        if not isinstance(spec, dict):
            raise IndexFormatError("malformed array description")
        shape = spec.get("shape")
        crc = spec.get("crc32")
        if spec.get("name") != name or spec.get("dtype") != dtype:
            raise IndexFormatError(f"unexpected array {spec.get('name')!r} ({spec.get('dtype')!r})")
        if (
            not isinstance(shape, list)
            or len(shape) != ndim
            or not all(type(s) is int and s >= 0 for s in shape)
        ):
            raise IndexFormatError(f"bad shape for array {name!r}: {shape!r}")
        if type(crc) is not int or not 0 <= crc < 2**32:
            raise IndexFormatError(f"bad checksum field for array {name!r}")
        dt = _DTYPES[dtype]
        nbytes = int(np.prod(shape, dtype=object)) * dt.itemsize
        if nbytes > _MAX_ARRAY_BYTES:
            raise IndexFormatError(f"array {name!r} is implausibly large")
        out.append((name, dt, tuple(shape), nbytes, crc))
    return out


def _read_array(
    f: IO[bytes], dtype: np.dtype[Any], shape: tuple[int, ...], nbytes: int, name: str
) -> NDArray[Any]:
    try:
        arr = np.empty(shape, dtype=dtype)
    except MemoryError:
        raise IndexFormatError(f"array {name!r} does not fit in memory") from None
    view = _bytes_of(arr)
    pos = 0
    readinto = getattr(f, "readinto", None)
    while pos < nbytes:
        want = min(_IO_CHUNK, nbytes - pos)
        if readinto is not None:
            got = readinto(view[pos : pos + want])
        else:
            chunk = f.read(want)
            got = len(chunk)
            view[pos : pos + got] = chunk
        if not got:
            raise IndexFormatError(f"truncated index file (in array {name!r})")
        pos += got
    return arr
