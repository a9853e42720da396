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
import bisect
import heapq
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
class QueryHash:
    """One hash a client looks up for an image, with what the client knows about it.

    ``confidence``: PDQ's per-bit confidence (see the module docstring), or None.
    ``prior``: how likely this hash, rather than another variant of the same image, is
    the one close to a listed entry (1 for the image's own hash; see
    :class:`VariantProbeLSH` for the measured defaults of other variants).
    ``companion``: a companion hash (``blindmatch.hashing.canonical``), worth probing only
    against a table whose entries carry companions (:func:`variants_for_table`).
    """

    pdq: bytes
    confidence: Sequence[float] | None = None
    prior: float = 1.0
    companion: bool = False

    def __repr__(self) -> str:
        return f"QueryHash(<pdq>, prior={self.prior}, companion={self.companion})"


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

    def probe_variants(self, variants: Sequence[QueryHash], rng: Rng = system_rng) -> ProbeSet:
        """Probes shared across several hashes of one image (``variants[0]`` is the image's
        own hash). Schemes without variant support probe the first hash only."""
        if not variants:
            raise ValueError("at least one hash is needed")
        return self.probe(variants[0].pdq, variants[0].confidence, rng)

    def probe_hashes(self, pdq: bytes, hint: bytes) -> list[tuple[bytes, bytes]]:
        """``(probe key, the hash it was derived from)`` for every real probe: the server
        confirms a candidate entry against that hash. By default every probe is ``pdq``'s."""
        return [(k, pdq) for k in self.probes_from_hint(pdq, hint)]


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


# P(a PDQ bit differs from the listed hash's | its normalised confidence), where normalised
# confidence is |DCT coefficient − median| divided by that quantity's median over the 256
# bits. Measured by ``bench/bench_lookup_keys.py`` on the evaluation corpus (within-31 pairs
# of edited listed photos and their entries). Client-side only: it orders the probes, and the
# server recomputes them from the hint, so changing it changes no wire format.
FLIP_MODEL_CONF = (0.0, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0)
FLIP_MODEL_P = (
    0.2983, 0.2019, 0.1420, 0.0649, 0.0246, 0.0076, 0.0028, 0.0009, 0.0004, 0.0001, 0.0001,
)  # fmt: skip
_FLIP_MIDS = tuple(
    [(a + b) / 2 for a, b in itertools.pairwise(FLIP_MODEL_CONF)] + [FLIP_MODEL_CONF[-1] + 1.0]
)
_FLIP_LOGP = tuple(math.log(p) for p in FLIP_MODEL_P[1:] + FLIP_MODEL_P[-1:])[: len(_FLIP_MIDS)]
_P_MIN, _P_MAX = 1e-6, 0.45


def _model_p(conf: float) -> float:
    xs, ys = _FLIP_MIDS, _FLIP_LOGP
    if conf <= xs[0]:
        lp = ys[0]
    elif conf >= xs[-1]:
        lp = ys[-1]
    else:
        i = bisect.bisect_right(xs, conf) - 1
        w = (conf - xs[i]) / (xs[i + 1] - xs[i])
        lp = ys[i] + w * (ys[i + 1] - ys[i])
    return min(max(math.exp(lp), _P_MIN), _P_MAX)


# The model is used through a table: normalised confidence in steps of 1/64 up to 8.
CONF_STEPS = 64
CONF_LEVELS = 8 * CONF_STEPS
_P_TABLE = tuple(_model_p((i + 0.5) / CONF_STEPS) for i in range(CONF_LEVELS))
_LOG_KEEP = tuple(math.log1p(-p) for p in _P_TABLE)
_FLIP_COST = tuple(math.log((1 - p) / p) for p in _P_TABLE)


def confidence_scale(confidence: Sequence[float]) -> float:
    """``CONF_STEPS / median |c|`` over the 256 values (1 if that is not positive)."""
    srt = sorted(map(abs, map(float, confidence)))
    median = (srt[127] + srt[128]) / 2
    return CONF_STEPS / (median if median > 0 and math.isfinite(median) else 1.0)


def confidence_levels(confidence: Sequence[float], positions: Sequence[int]) -> list[int]:
    """The quantised normalised confidence ``|c| / median |c|`` (scale-free across
    images; steps of ``1/CONF_STEPS``, capped) of the bits at ``positions``."""
    inv = confidence_scale(confidence)
    top = CONF_LEVELS - 1
    out = []
    for p in positions:
        x = abs(float(confidence[p])) * inv
        out.append(int(x) if x < top else top)
    return out


def flip_probability(level: int) -> float:
    """The flip model at a confidence level of :func:`confidence_levels`."""
    return _P_TABLE[level]


class VariantProbeLSH(LookupKeyScheme):
    """Bit sampling with probes shared across an image's variants, in order of likelihood.

    The list side is plain bit sampling: ``tables`` public subsets of ``k`` bit positions
    (disjoint while ``tables · k ≤ 256``), one key ``0x02 ‖ table ‖ sampled bits`` per
    table per listed hash. The client holds several hashes of one image
    (:class:`QueryHash`: its own hash, other orientations, trimmed frames — what plaintext
    robust matching looks up) and spends a fixed budget of ``probes`` keys on all of them
    together: every candidate (variant, table, flip set of at most ``max_flips`` of the
    ``weak`` least-confident sampled bits) is scored by the log-probability that it is
    exactly the listed key — ``log prior + Σ log P(bit kept) + Σ_flipped logit P(bit
    flips)`` under :func:`flip_probability` — and the best ``probes`` distinct keys are
    used (best-first enumeration, so only about ``probes`` candidates are ever built).
    Identical keys from two variants (the full-size and the 512-px hash usually agree) are
    one probe.

    The hint carries the other variants' hashes and, per probe, ``variant ‖ table ‖ flipped
    sample indices``, so the server recomputes exactly the real probes and confirms a
    candidate entry against the hash that produced the probe (:meth:`probe_hashes`).

    Priors measured to work (``bench/bench_lookup_keys.py``): 1 for the image's hash and its
    512-px copy, 0.05 for the 7 other orientations, 0.3 for trimmed frames.
    """

    scheme_id = 2
    _PARAMS_LEN = 1 + 7 + 32
    _DOMAIN = b"blindmatch/v1/variant-lsh-positions\x00"

    def __init__(
        self,
        *,
        k: int = 72,
        tables: int = 1,
        probes: int = 37,
        weak: int = 10,
        max_flips: int = 3,
        max_variants: int = 12,
        seed: bytes = b"\x00" * 32,
    ) -> None:
        if not (8 <= k <= 248 and k % 8 == 0):
            raise ValueError("k must be a multiple of 8 in [8, 248]")
        if not 1 <= tables <= 16:
            raise ValueError("tables must be in [1, 16]")
        if not 1 <= probes <= MAX_PROBES:
            raise ValueError(f"probes must be in [1, {MAX_PROBES}]")
        if not 0 <= weak <= min(k, 32):
            raise ValueError("weak must be in [0, min(k, 32)]")
        if not 0 <= max_flips <= min(weak, 8):
            raise ValueError("max_flips must be in [0, min(weak, 8)]")
        if not 1 <= max_variants <= 32:
            raise ValueError("max_variants must be in [1, 32]")
        if len(seed) != 32:
            raise ValueError("seed must be 32 bytes")
        self.k, self.tables, self.probes, self.weak = k, tables, probes, weak
        self.max_flips, self.max_variants, self.seed = max_flips, max_variants, seed
        self.positions: tuple[tuple[int, ...], ...] = self._draw_positions()

    def _permutation(self, extra: bytes) -> list[int]:
        rng = SeededRng(self._DOMAIN + self.seed + extra)
        perm = list(range(PDQ_BITS))
        for i in range(PDQ_BITS - 1, 0, -1):
            j = int.from_bytes(rng(8), "big") % (i + 1)  # public choice; bias irrelevant
            perm[i], perm[j] = perm[j], perm[i]
        return perm

    def _draw_positions(self) -> tuple[tuple[int, ...], ...]:
        if self.tables * self.k <= PDQ_BITS:  # disjoint samples: independent tables
            perm = self._permutation(b"")
            return tuple(
                tuple(sorted(perm[t * self.k : (t + 1) * self.k])) for t in range(self.tables)
            )
        return tuple(
            tuple(sorted(self._permutation(bytes([t]))[: self.k])) for t in range(self.tables)
        )

    @property
    def n_probes(self) -> int:
        return self.probes

    @property
    def key_size(self) -> int:
        return 2 + self.k // 8

    @property
    def _desc_size(self) -> int:
        return 2 + self.max_flips

    @property
    def hint_size(self) -> int:
        return 1 + PDQ_BYTES * (self.max_variants - 1) + self.probes * self._desc_size

    def params_bytes(self) -> bytes:
        head = [self.scheme_id, self.k, self.tables, self.weak, self.max_flips]
        return bytes(head) + self.probes.to_bytes(2, "big") + bytes([self.max_variants]) + self.seed

    @classmethod
    def from_params(cls, data: bytes) -> VariantProbeLSH:
        if len(data) != cls._PARAMS_LEN or data[0] != cls.scheme_id:
            raise ValueError("malformed variant-probe parameters")
        return cls(
            k=data[1],
            tables=data[2],
            weak=data[3],
            max_flips=data[4],
            probes=int.from_bytes(data[5:7], "big"),
            max_variants=data[7],
            seed=data[8:],
        )

    def describe(self) -> dict[str, object]:
        return {
            "scheme": "variant-probe-lsh",
            "k": self.k,
            "tables": self.tables,
            "weak": self.weak,
            "max_flips": self.max_flips,
            "max_variants": self.max_variants,
            "n_probes": self.probes,
            "seed": self.seed.hex(),
        }

    def __repr__(self) -> str:
        return (
            f"VariantProbeLSH(k={self.k}, tables={self.tables}, probes={self.probes}, "
            f"weak={self.weak}, max_flips={self.max_flips}, max_variants={self.max_variants})"
        )

    def _check_pdq(self, pdq: bytes) -> None:
        if not isinstance(pdq, bytes) or len(pdq) != PDQ_BYTES:
            raise ValueError("a PDQ hash is 32 bytes")

    def _sample(self, pdq: bytes, t: int) -> int:
        """The k sampled bits of ``pdq`` for table t, as an int (sample index 0 = top bit)."""
        x = int.from_bytes(pdq, "big")
        v = 0
        for p in self.positions[t]:
            v = (v << 1) | ((x >> (255 - p)) & 1)
        return v

    def _key(self, t: int, sample: int) -> bytes:
        return bytes([self.scheme_id, t]) + sample.to_bytes(self.k // 8, "big")

    def _flip(self, sample: int, flips: Sequence[int]) -> int:
        for i in flips:
            sample ^= 1 << (self.k - 1 - i)
        return sample

    def list_keys(self, pdq: bytes) -> list[bytes]:
        self._check_pdq(pdq)
        return [self._key(t, self._sample(pdq, t)) for t in range(self.tables)]

    def probe(
        self, pdq: bytes, confidence: Sequence[float] | None = None, rng: Rng = system_rng
    ) -> ProbeSet:
        return self.probe_variants([QueryHash(pdq, confidence)], rng)

    def _variants(self, variants: Sequence[QueryHash]) -> list[QueryHash]:
        if not variants:
            raise ValueError("at least one hash is needed")
        out: list[QueryHash] = []
        for q in variants:
            self._check_pdq(q.pdq)
            if q.confidence is not None and len(q.confidence) != PDQ_BITS:
                raise ValueError("confidence must have 256 values")
            if not (math.isfinite(q.prior) and q.prior > 0):
                raise ValueError("a prior must be a positive number")
            if all(q.pdq != o.pdq for o in out):
                out.append(q)
        # the image's own hash stays first; the rest by prior (stable), as many as fit
        rest = sorted(out[1:], key=lambda q: -q.prior)
        return [out[0], *rest][: self.max_variants]

    def probe_variants(self, variants: Sequence[QueryHash], rng: Rng = system_rng) -> ProbeSet:
        qs = self._variants(variants)
        # heap of candidates: (-score, variant, table, flips); flips index ``weak`` lists
        heap: list[tuple[float, int, int, tuple[int, ...]]] = []
        samples: dict[tuple[int, int], int] = {}
        weak_of: dict[tuple[int, int], list[int]] = {}
        cost_of: dict[tuple[int, int], list[float]] = {}
        top = CONF_LEVELS - 1
        for v, q in enumerate(qs):  # without confidence only the unflipped key is real
            for t in range(self.tables):
                pos = self.positions[t]
                samples[v, t] = self._sample(q.pdq, t)
                if q.confidence is None:
                    lv, weak = [top] * self.k, []
                else:
                    lv = confidence_levels(q.confidence, pos)
                    weak = sorted(range(self.k), key=lambda i: (lv[i], i))[: self.weak]
                weak_of[v, t] = weak
                cost_of[v, t] = [_FLIP_COST[lv[i]] for i in weak]
                base = math.log(q.prior) + sum(_LOG_KEEP[x] for x in lv)
                heap.append((-base, v, t, ()))
        heapq.heapify(heap)
        keys: list[bytes] = []
        desc = bytearray()
        seen: set[bytes] = set()
        while heap and len(keys) < self.probes:
            neg, v, t, flips = heapq.heappop(heap)
            weak, cost = weak_of[v, t], cost_of[v, t]
            # children (shift / expand of the largest index): every subset exactly once
            last = flips[-1] if flips else -1
            if last + 1 < len(weak):
                if flips:
                    shifted = (*flips[:-1], last + 1)
                    heapq.heappush(heap, (neg + cost[last + 1] - cost[last], v, t, shifted))
                if len(flips) < self.max_flips:
                    heapq.heappush(heap, (neg + cost[last + 1], v, t, (*flips, last + 1)))
            idx = sorted(weak[f] for f in flips)
            key = self._key(t, self._flip(samples[v, t], idx))
            if key in seen:
                continue
            seen.add(key)
            keys.append(key)
            desc += bytes([v, t, *idx]) + bytes([_NO_BIT]) * (self.max_flips - len(idx))
        while len(keys) < self.probes:
            keys.append(rng(self.key_size))
            desc += bytes([_NO_BIT]) * self._desc_size
        extra = b"".join(q.pdq for q in qs[1:]).ljust(PDQ_BYTES * (self.max_variants - 1), b"\0")
        return ProbeSet(tuple(keys), bytes([len(qs)]) + extra + bytes(desc))

    def probe_hashes(self, pdq: bytes, hint: bytes) -> list[tuple[bytes, bytes]]:
        self._check_pdq(pdq)
        if not isinstance(hint, bytes) or len(hint) != self.hint_size:
            raise ValueError("hint has the wrong size")
        n = hint[0]
        if not 1 <= n <= self.max_variants:
            raise ValueError("malformed hint")
        extra = hint[1 : 1 + PDQ_BYTES * (self.max_variants - 1)]
        hashes = [pdq] + [extra[i * PDQ_BYTES : (i + 1) * PDQ_BYTES] for i in range(n - 1)]
        if any(extra[PDQ_BYTES * (n - 1) :]):
            raise ValueError("malformed hint")
        out: list[tuple[bytes, bytes]] = []
        o = 1 + len(extra)
        padding = False
        for _ in range(self.probes):
            d = hint[o : o + self._desc_size]
            o += self._desc_size
            if d[0] == _NO_BIT:
                if any(b != _NO_BIT for b in d):
                    raise ValueError("malformed hint")
                padding = True
                continue
            v, t = d[0], d[1]
            flips = [b for b in d[2:] if b != _NO_BIT]
            if padding or v >= n or t >= self.tables:
                raise ValueError("malformed hint")
            if d[2 + len(flips) :] != bytes([_NO_BIT]) * (self.max_flips - len(flips)):
                raise ValueError("malformed hint")
            if any(f >= self.k for f in flips) or any(a >= b for a, b in itertools.pairwise(flips)):
                raise ValueError("malformed hint")
            out.append((self._key(t, self._flip(self._sample(hashes[v], t), flips)), hashes[v]))
        return out

    def probes_from_hint(self, pdq: bytes, hint: bytes) -> list[bytes]:
        return [k for k, _ in self.probe_hashes(pdq, hint)]


register_scheme(VariantProbeLSH.scheme_id, VariantProbeLSH.from_params)
