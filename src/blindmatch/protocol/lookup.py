"""Lookup keys: how a 256-bit PDQ becomes exact keys for private set membership.

PDQ matching is "Hamming distance ≤ 31"; the blinded table can only answer
exact membership. A :class:`LookupKeyScheme` bridges the two:

* the list side computes :meth:`~LookupKeyScheme.list_keys` for each listed hash
  (these go into the blinded table);
* the client computes :meth:`~LookupKeyScheme.probe`: exactly
  :attr:`~LookupKeyScheme.n_probes` keys per image (real probes padded with
  random keys, so the count says nothing) plus a fixed-size *hint* that goes
  into the voucher's inner layer;
* the server, once an outer layer opens, calls
  :meth:`~LookupKeyScheme.probes_from_hint` with the client's PDQ and hint to
  recompute the real probe keys and so find the candidate list entries.

The parameters here (k, L, m, flips) are **provisional, to be settled by
measurement**; the scheme is pluggable through :func:`register_scheme`.

Bit numbering: bit ``i`` (0 ≤ i < 256) of a PDQ is
``(pdq[i // 8] >> (7 - i % 8)) & 1`` — most significant bit of the first
byte (first hex digit) first. A confidence vector, when given, has one float
per bit in the same order; lower means "closer to flipping" (for PDQ, the
absolute distance of the DCT coefficient from the median).
"""

from __future__ import annotations

import abc
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from blindmatch.protocol.hazmat.rng import Rng, SeededRng, system_rng

PDQ_BYTES = 32
PDQ_BITS = 256
MAX_PROBES = 4096
_NO_BIT = 0xFF


def pdq_bit(pdq: bytes, i: int) -> int:
    return (pdq[i >> 3] >> (7 - (i & 7))) & 1


def hamming(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


@dataclass(frozen=True)
class ProbeSet:
    """What the client derives from one image: ``keys`` (always ``n_probes``) and ``hint``."""

    keys: tuple[bytes, ...]
    hint: bytes

    def __repr__(self) -> str:  # keys are a function of the image
        return f"ProbeSet(<{len(self.keys)} keys>)"


class LookupKeyScheme(abc.ABC):
    """A pluggable map from PDQ hashes to exact lookup keys."""

    #: Registry id, the first byte of :meth:`params_bytes`.
    scheme_id: int

    @property
    @abc.abstractmethod
    def n_probes(self) -> int:
        """Keys per voucher, constant for every image."""

    @property
    @abc.abstractmethod
    def hint_size(self) -> int:
        """Bytes of the hint carried in the voucher's inner layer."""

    @abc.abstractmethod
    def params_bytes(self) -> bytes:
        """The public parameters, starting with :attr:`scheme_id`."""

    @abc.abstractmethod
    def describe(self) -> dict[str, object]:
        """Parameters as JSON-ready values, for the manifest."""

    @abc.abstractmethod
    def list_keys(self, pdq: bytes) -> list[bytes]:
        """Keys stored in the table for one listed hash."""

    @abc.abstractmethod
    def probe(
        self, pdq: bytes, confidence: Sequence[float] | None = None, rng: Rng = system_rng
    ) -> ProbeSet:
        """Exactly :attr:`n_probes` keys (real ones first, then random padding) and the hint."""

    @abc.abstractmethod
    def probes_from_hint(self, pdq: bytes, hint: bytes) -> list[bytes]:
        """The real (unpadded) probe keys, recomputed by the server from PDQ and hint."""


_REGISTRY: dict[int, Callable[[bytes], LookupKeyScheme]] = {}


def register_scheme(scheme_id: int, parse: Callable[[bytes], LookupKeyScheme]) -> None:
    """Make ``scheme_from_params`` understand another scheme id."""
    _REGISTRY[scheme_id] = parse


def scheme_from_params(data: bytes) -> LookupKeyScheme:
    """Parse :meth:`LookupKeyScheme.params_bytes`; ``ValueError`` if unknown or malformed."""
    if not data or data[0] not in _REGISTRY:
        raise ValueError("unknown lookup-key scheme")
    return _REGISTRY[data[0]](data)


class BitSamplingLSH(LookupKeyScheme):
    """Bit-sampling LSH with client-side multi-probe.

    ``tables`` public random subsets of ``k`` bit positions (drawn from
    ``seed``); a key is ``scheme id ‖ table index ‖ the k sampled bits``. The
    client also flips every subset of at most ``max_flips`` of the ``weak``
    least-confident sampled bits of each table, giving
    ``tables · Σ_{i≤max_flips} C(weak, i)`` probes (37 for the defaults).
    Without a confidence vector only the unflipped keys are real probes and
    the rest is padding, so recall drops to plain bit sampling.
    """

    scheme_id = 1
    _PARAMS_LEN = 1 + 4 + 32

    def __init__(
        self,
        *,
        k: int = 64,
        tables: int = 1,
        weak: int = 8,
        max_flips: int = 2,
        seed: bytes = b"\x00" * 32,
    ) -> None:
        if not (8 <= k <= 248 and k % 8 == 0):
            raise ValueError("k must be a multiple of 8 in [8, 248]")
        if not 1 <= tables <= 64:
            raise ValueError("tables must be in [1, 64]")
        if not 0 <= weak <= min(k, 32):
            raise ValueError("weak must be in [0, min(k, 32)]")
        if not 0 <= max_flips <= weak:
            raise ValueError("max_flips must be in [0, weak]")
        if len(seed) != 32:
            raise ValueError("seed must be 32 bytes")
        self.k, self.tables, self.weak, self.max_flips, self.seed = k, tables, weak, max_flips, seed
        per_table = sum(math.comb(weak, i) for i in range(max_flips + 1))
        self._n_probes = tables * per_table
        if self._n_probes > MAX_PROBES:
            raise ValueError("too many probes per image")
        self.positions: tuple[tuple[int, ...], ...] = tuple(
            self._draw_positions(t) for t in range(tables)
        )
        self._flip_sets: list[tuple[int, ...]] = [
            c for r in range(max_flips + 1) for c in itertools.combinations(range(weak), r)
        ]

    def _draw_positions(self, t: int) -> tuple[int, ...]:
        rng = SeededRng(b"blindmatch/v1/lsh-positions\x00" + self.seed + bytes([t]))
        perm = list(range(PDQ_BITS))
        for i in range(PDQ_BITS - 1, 0, -1):
            j = int.from_bytes(rng(8), "big") % (i + 1)  # public choice; bias irrelevant
            perm[i], perm[j] = perm[j], perm[i]
        return tuple(sorted(perm[: self.k]))

    @property
    def n_probes(self) -> int:
        return self._n_probes

    @property
    def hint_size(self) -> int:
        return self.tables * self.weak

    @property
    def key_size(self) -> int:
        return 2 + self.k // 8

    def params_bytes(self) -> bytes:
        return bytes([self.scheme_id, self.k, self.tables, self.weak, self.max_flips]) + self.seed

    @classmethod
    def from_params(cls, data: bytes) -> BitSamplingLSH:
        if len(data) != cls._PARAMS_LEN or data[0] != cls.scheme_id:
            raise ValueError("malformed bit-sampling parameters")
        return cls(k=data[1], tables=data[2], weak=data[3], max_flips=data[4], seed=data[5:])

    def describe(self) -> dict[str, object]:
        return {
            "scheme": "bit-sampling-lsh",
            "k": self.k,
            "tables": self.tables,
            "weak": self.weak,
            "max_flips": self.max_flips,
            "n_probes": self.n_probes,
            "seed": self.seed.hex(),
        }

    def __repr__(self) -> str:
        return (
            f"BitSamplingLSH(k={self.k}, tables={self.tables}, weak={self.weak}, "
            f"max_flips={self.max_flips})"
        )

    def _sample(self, pdq: bytes, t: int) -> list[int]:
        return [pdq_bit(pdq, p) for p in self.positions[t]]

    def _key(self, t: int, bits: Sequence[int]) -> bytes:
        v = 0
        for b in bits:
            v = (v << 1) | b
        return bytes([self.scheme_id, t]) + v.to_bytes(self.k // 8, "big")

    def _check_pdq(self, pdq: bytes) -> None:
        if not isinstance(pdq, bytes) or len(pdq) != PDQ_BYTES:
            raise ValueError("a PDQ hash is 32 bytes")

    def list_keys(self, pdq: bytes) -> list[bytes]:
        self._check_pdq(pdq)
        return [self._key(t, self._sample(pdq, t)) for t in range(self.tables)]

    def _expand(self, pdq: bytes, weak_per_table: Sequence[Sequence[int]]) -> list[bytes]:
        keys: list[bytes] = []
        for t in range(self.tables):
            base = self._sample(pdq, t)
            weak = weak_per_table[t]
            for flips in self._flip_sets:
                if any(f >= len(weak) for f in flips):
                    continue
                bits = list(base)
                for f in flips:
                    bits[weak[f]] ^= 1
                keys.append(self._key(t, bits))
        return keys

    def probe(
        self, pdq: bytes, confidence: Sequence[float] | None = None, rng: Rng = system_rng
    ) -> ProbeSet:
        self._check_pdq(pdq)
        if confidence is not None and len(confidence) != PDQ_BITS:
            raise ValueError("confidence must have 256 values")
        weak_per_table: list[list[int]] = []
        hint = bytearray()
        for t in range(self.tables):
            if confidence is None or self.weak == 0:
                weak: list[int] = []
            else:
                pos = self.positions[t]
                order = sorted(range(self.k), key=lambda i: (abs(float(confidence[pos[i]])), i))
                weak = order[: self.weak]
            weak_per_table.append(weak)
            hint += bytes(weak) + bytes([_NO_BIT]) * (self.weak - len(weak))
        keys = self._expand(pdq, weak_per_table)
        while len(keys) < self.n_probes:
            keys.append(rng(self.key_size))
        return ProbeSet(tuple(keys), bytes(hint))

    def probes_from_hint(self, pdq: bytes, hint: bytes) -> list[bytes]:
        self._check_pdq(pdq)
        if len(hint) != self.hint_size:
            raise ValueError("hint has the wrong size")
        weak_per_table: list[list[int]] = []
        for t in range(self.tables):
            chunk = hint[t * self.weak : (t + 1) * self.weak]
            weak = [b for b in chunk if b != _NO_BIT]
            if any(b >= self.k for b in weak) or len(set(weak)) != len(weak):
                raise ValueError("hint names a bit outside the sample")
            if _NO_BIT in chunk and any(b != _NO_BIT for b in chunk[chunk.index(_NO_BIT) :]):
                raise ValueError("malformed hint")
            weak_per_table.append(weak)
        return self._expand(pdq, weak_per_table)


register_scheme(BitSamplingLSH.scheme_id, BitSamplingLSH.from_params)
