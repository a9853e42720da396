"""The blinded table (public, shipped to every client) and the server's secret.

Table wire format, version 1 (all integers big-endian)::

    offset  size        field
    0       4           magic "BMTB"
    4       1           format version = 1
    5       1           policy: 0 = block, 1 = threshold
    6       2           threshold t (1..1000)
    8       4           synthetic voucher rate, parts per million (0 in block mode)
    12      4           evidence bytes per voucher (0..65536)
    16      4           n_slots (1..2^28)
    20      32          cuckoo seed
    52      32          server point L = α·G
    84      2           s = length of the lookup-scheme parameters
    86      s           lookup-scheme parameters (first byte: scheme id)
    86+s    32·n_slots  slots: α·H(key) for a listed key, a random point otherwise

Version 2 (a *distance-checked* table, docs/protocol.md §11) inserts after the
lookup-scheme parameters, before the slots::

    1           radius R of the second distance check (0..255)
    1           m, candidate slots per voucher (1..8)
    32          the distance key X = x·G
    32          root of the Merkle tree over the committed records (records.py)
    4           number of records (one per listed hash, ≥ 1)

A version-1 table has no distance check (its vouchers are format 3).

``H(key) = hash_to_group("blindmatch/v1/key\\0", key)``. The table digest is
``SHA-256`` of the whole file and the table id is its first 16 bytes.

Server secret (``server.key``) wire format, version 4 (versions 1, without companions,
2, without hot companions, and 3, without the distance check, are still read)::

    4   magic "BMSK"
    1   version = 4
    32  α (scalar, little-endian, non-zero, < ℓ)
    32  digest of the table it belongs to
    1   1 (the table is distance-checked; a key without one is written as version 3,
        which lacks this byte and the next 64)
        32  the distance key x (scalar, little-endian, non-zero, < ℓ)
        32  the audit seed of the committed records (records.py)
    4   n_entries
    per entry: 32 PDQ bytes, u8 n_companions, 32 bytes per companion hash,
               u8 n_hot, 32 bytes per hot companion hash, u16 n_refs,
               per ref three u16-length UTF-8 strings: hotline, list name, entry id

The server recomputes the key → entry map from the entries and the table's
lookup scheme, so the file holds nothing derivable.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from blindmatch.errors import InvalidKey, InvalidTable
from blindmatch.protocol import _wire as w
from blindmatch.protocol.hazmat import group
from blindmatch.protocol.hazmat.cuckoo import CuckooFailure, cuckoo_place
from blindmatch.protocol.hazmat.rng import Rng, system_rng
from blindmatch.protocol.lookup import PDQ_BYTES, LookupKeyScheme, scheme_from_params

TABLE_MAGIC = b"BMTB"
SECRET_MAGIC = b"BMSK"
FORMAT_VERSION = 1
DISTANCE_FORMAT_VERSION = 2
MAX_DISTANCE_SLOTS = 8
SECRET_VERSION = 4  # 4: distance key; 3 (read only): hot companions; 2: companions; 1: neither
MAX_COMPANIONS = 4
# A hot entry's extra hashes (the picture cropped and turned by a grid,
# :mod:`blindmatch.hashing.hot`: at most 91) — lookup keys like its companions'.
MAX_HOT_COMPANIONS = 96
KEY_DOMAIN = b"blindmatch/v1/key\x00"
MAX_SLOTS = 1 << 28
MAX_THRESHOLD = 1000
MAX_EVIDENCE = 65536
_HEADER = 86
_DISTANCE_BYTES = 1 + 1 + 32 + 32 + 4


class Policy(enum.Enum):
    """What the server does with an opened voucher (see ``docs/protocol.md``)."""

    BLOCK = "block"
    THRESHOLD = "threshold"


_POLICY_CODES = {Policy.BLOCK: 0, Policy.THRESHOLD: 1}


@dataclass(frozen=True, order=True)
class EntryRef:
    """Where a listed hash came from: hotline, list, and the hotline's own entry id."""

    hotline: str
    list_name: str
    entry_id: str


@dataclass(frozen=True)
class HotlineList:
    """One hotline's list as input to :func:`build_table`.

    ``entries`` are ``(entry id, 32-byte PDQ)`` pairs, ``(entry id, PDQ, companions)``
    triples where ``companions`` is a tuple of at most :data:`MAX_COMPANIONS` further
    32-byte hashes of the same picture (its canonical-pose hash,
    :mod:`blindmatch.hashing.canonical`), or ``(entry id, PDQ, companions, hot)`` where
    ``hot`` is a tuple of at most :data:`MAX_HOT_COMPANIONS` hashes of the picture cropped
    and turned (a *hot* entry, :mod:`blindmatch.hashing.hot`): lookup keys are made from
    all of them, and a candidate is confirmed against the closest of the entry's hashes.
    """

    hotline: str
    jurisdiction: str
    name: str
    version: str
    entries: tuple[
        tuple[str, bytes]
        | tuple[str, bytes, tuple[bytes, ...]]
        | tuple[str, bytes, tuple[bytes, ...], tuple[bytes, ...]],
        ...,
    ]

    def __post_init__(self) -> None:
        for s in (self.hotline, self.jurisdiction, self.name, self.version):
            if not isinstance(s, str) or not s or len(s.encode()) > 256:
                raise ValueError("hotline, jurisdiction, name and version must be short strings")
        for entry in self.entries:
            if not isinstance(entry, tuple) or len(entry) not in (2, 3, 4):
                raise ValueError(
                    "an entry is (entry id, PDQ), (entry id, PDQ, companions) "
                    "or (entry id, PDQ, companions, hot companions)"
                )
            ref, pdq = entry[0], entry[1]
            if not isinstance(ref, str) or len(ref.encode()) > 1024:
                raise ValueError("entry ids must be strings of at most 1024 bytes")
            if not isinstance(pdq, bytes) or len(pdq) != PDQ_BYTES:
                raise ValueError("a PDQ hash is 32 bytes")
            if len(entry) >= 3:
                _check_companions(entry[2])
            if len(entry) == 4:
                _check_companions(entry[3], MAX_HOT_COMPANIONS, "hot companions")

    def items(self) -> list[tuple[str, bytes, tuple[bytes, ...], tuple[bytes, ...]]]:
        """Every entry as ``(entry id, PDQ, companions, hot companions)`` (``()`` for
        none)."""
        return [
            (e[0], e[1], e[2] if len(e) >= 3 else (), e[3] if len(e) == 4 else ())
            for e in self.entries
        ]

    def __repr__(self) -> str:
        return (
            f"HotlineList({self.hotline!r}, {self.jurisdiction!r}, {self.name!r}, "
            f"{self.version!r}, <{len(self.entries)} entries>)"
        )


def _check_companions(
    companions: object, limit: int = MAX_COMPANIONS, what: str = "companions"
) -> None:
    if not isinstance(companions, tuple) or len(companions) > limit:
        raise ValueError(f"{what} are a tuple of at most {limit} hashes")
    for c in companions:
        if not isinstance(c, bytes) or len(c) != PDQ_BYTES:
            raise ValueError("a companion hash is 32 bytes")


@dataclass(frozen=True)
class ListedEntry:
    """A hash that passed governance, with every list entry that carries it, and the
    companion and hot companion hashes of the picture that passed governance too (each
    sorted)."""

    pdq: bytes
    refs: tuple[EntryRef, ...]
    companions: tuple[bytes, ...] = ()
    hot: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        _check_companions(self.companions)
        _check_companions(self.hot, MAX_HOT_COMPANIONS, "hot companions")

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The PDQ, its companions and hot companions: what lookup keys are made from."""
        return (self.pdq, *self.companions, *self.hot)

    def __repr__(self) -> str:  # the hash itself stays out of logs
        return (
            f"ListedEntry(<pdq>, refs={self.refs!r}, companions={len(self.companions)}, "
            f"hot={len(self.hot)})"
        )


def select_entries(
    lists: Sequence[HotlineList], *, min_hotlines: int = 2, distinct_jurisdictions: bool = True
) -> list[ListedEntry]:
    """Entries whose PDQ appears (exactly) in lists of ≥ ``min_hotlines`` distinct hotlines.

    With ``distinct_jurisdictions`` those hotlines must also be in at least
    ``min_hotlines`` different jurisdictions. Output is sorted by PDQ.

    A companion hash passes by the same rule, on its own: it is kept for an entry only
    when enough of the hotlines listing that PDQ carry that companion with it — so no
    single hotline can add a lookup key to the table (at most :data:`MAX_COMPANIONS`
    per entry, the most widely carried first). Hot companions likewise, each on its own
    (at most :data:`MAX_HOT_COMPANIONS`): an entry is hot only as far as two hotlines
    agree, hash for hash.
    """
    if min_hotlines < 1:
        raise ValueError("min_hotlines must be at least 1")
    refs: dict[bytes, set[EntryRef]] = defaultdict(set)
    who: dict[bytes, set[tuple[str, str]]] = defaultdict(set)
    who_c: dict[tuple[bytes, bytes], set[tuple[str, str]]] = defaultdict(set)
    who_h: dict[tuple[bytes, bytes], set[tuple[str, str]]] = defaultdict(set)
    for lst in lists:
        for entry_id, pdq, companions, hot in lst.items():
            refs[pdq].add(EntryRef(lst.hotline, lst.name, entry_id))
            who[pdq].add((lst.hotline, lst.jurisdiction))
            for c in companions:
                who_c[pdq, c].add((lst.hotline, lst.jurisdiction))
            for c in hot:
                who_h[pdq, c].add((lst.hotline, lst.jurisdiction))

    def agreed(carriers: set[tuple[str, str]]) -> bool:
        hotlines = {h for h, _ in carriers}
        places = {j for _, j in carriers}
        return len(hotlines) >= min_hotlines and (
            not distinct_jurisdictions or len(places) >= min_hotlines
        )

    def kept(
        carried: dict[tuple[bytes, bytes], set[tuple[str, str]]], limit: int
    ) -> dict[bytes, tuple[bytes, ...]]:
        """Per PDQ, the hashes enough hotlines carry with it (most widely carried first)."""
        by_pdq: dict[bytes, list[tuple[int, bytes]]] = defaultdict(list)
        for (pdq, c), carriers in carried.items():
            if c != pdq and agreed(carriers):
                by_pdq[pdq].append((-len({h for h, _ in carriers}), c))
        return {p: tuple(sorted(c for _, c in sorted(v)[:limit])) for p, v in by_pdq.items()}

    kept_c, kept_h = kept(who_c, MAX_COMPANIONS), kept(who_h, MAX_HOT_COMPANIONS)
    out = []
    for pdq in sorted(refs):
        if agreed(who[pdq]):
            comp = kept_c.get(pdq, ())
            extra = tuple(c for c in kept_h.get(pdq, ()) if c not in comp)
            out.append(ListedEntry(pdq, tuple(sorted(refs[pdq])), comp, extra))
    return out


@dataclass(frozen=True)
class DistanceParams:
    """What a distance-checked table fixes for the second check (signed with the table)."""

    radius: int
    slots: int
    public: bytes  # X
    records_root: bytes
    n_records: int

    def __post_init__(self) -> None:
        if not (0 <= self.radius <= 255 and 1 <= self.slots <= MAX_DISTANCE_SLOTS):
            raise ValueError(f"radius is in 0 … 255 and slots in 1 … {MAX_DISTANCE_SLOTS}")
        if not group.is_valid_point(self.public) or len(self.records_root) != 32:
            raise ValueError("not a valid distance key or record root")
        if not 1 <= self.n_records < 1 << 32:
            raise ValueError("a distance-checked table has at least one record")

    def to_bytes(self) -> bytes:
        return (
            w.u8(self.radius) + w.u8(self.slots) + self.public + self.records_root
            + w.u32(self.n_records)
        )  # fmt: skip


@dataclass(frozen=True, repr=False)
class Table:
    """A parsed, immutable blinded table. Build with :func:`build_table`."""

    policy: Policy
    threshold: int
    synthetic_ppm: int
    evidence_bytes: int
    n_slots: int
    cuckoo_seed: bytes
    server_point: bytes
    scheme: LookupKeyScheme
    raw: bytes = field(compare=False)
    _slots_offset: int = field(compare=False)
    #: SHA-256 of ``raw``, computed once (a 1M-entry table is 40 MB).
    digest: bytes = field(default=b"", compare=False)
    #: The second distance check's parameters (version-2 tables), else None.
    distance: DistanceParams | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", hashlib.sha256(self.raw).digest())

    @property
    def table_id(self) -> bytes:
        return self.digest[:16]

    def slot(self, i: int) -> bytes:
        o = self._slots_offset + 32 * i
        return self.raw[o : o + 32]

    def to_bytes(self) -> bytes:
        return self.raw

    def __repr__(self) -> str:
        return (
            f"Table(policy={self.policy.value}, t={self.threshold}, slots={self.n_slots}, "
            f"scheme={self.scheme!r}, id={self.table_id.hex()})"
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Table:
        """Parse a table; any malformation raises :class:`InvalidTable`.

        Slot points are checked lazily, when a client uses them.
        """
        r = w.Reader(data, InvalidTable, "table")
        version = r.u8() if r.take(4) == TABLE_MAGIC else 0
        if version not in (FORMAT_VERSION, DISTANCE_FORMAT_VERSION):
            raise InvalidTable("not a blindmatch table of a supported version")
        code = r.u8()
        policies = {v: k for k, v in _POLICY_CODES.items()}
        if code not in policies:
            raise r.fail()
        threshold, ppm, evidence, n_slots = r.u16(), r.u32(), r.u32(), r.u32()
        seed, point = r.take(32), r.take(32)
        scheme_raw = r.take(r.u16())
        if not (1 <= threshold <= MAX_THRESHOLD and ppm <= 1_000_000):
            raise r.fail()
        if evidence > MAX_EVIDENCE or not 1 <= n_slots <= MAX_SLOTS:
            raise r.fail()
        if policies[code] is Policy.BLOCK and ppm != 0:
            raise r.fail()
        if not group.is_valid_point(point):
            raise r.fail()
        try:
            scheme = scheme_from_params(scheme_raw)
        except ValueError:
            raise r.fail() from None
        offset = _HEADER + len(scheme_raw)
        distance = None
        if version == DISTANCE_FORMAT_VERSION:
            radius, slots, public, root, n_records = r.u8(), r.u8(), r.take(32), r.take(32), r.u32()
            try:
                distance = DistanceParams(radius, slots, public, root, n_records)
            except ValueError:
                raise r.fail() from None
            if policies[code] is not Policy.BLOCK:  # docs/protocol.md §11: block only, so far
                raise r.fail()
            offset += _DISTANCE_BYTES
        if r.remaining != 32 * n_slots:
            raise r.fail()
        return cls(
            policies[code], threshold, ppm, evidence, n_slots, seed, point, scheme,
            bytes(data), offset, distance=distance,
        )  # fmt: skip


def _encode_table(
    *,
    policy: Policy,
    threshold: int,
    synthetic_ppm: int,
    evidence_bytes: int,
    cuckoo_seed: bytes,
    server_point: bytes,
    scheme: LookupKeyScheme,
    slots: Sequence[bytes],
    distance: DistanceParams | None = None,
) -> bytes:
    params = scheme.params_bytes()
    return b"".join(
        [
            TABLE_MAGIC,
            w.u8(FORMAT_VERSION if distance is None else DISTANCE_FORMAT_VERSION),
            w.u8(_POLICY_CODES[policy]),
            w.u16(threshold),
            w.u32(synthetic_ppm),
            w.u32(evidence_bytes),
            w.u32(len(slots)),
            cuckoo_seed,
            server_point,
            w.u16(len(params)),
            params,
            b"" if distance is None else distance.to_bytes(),
            *slots,
        ]
    )


class ServerSecret:
    """The blinding key α and the listed entries behind one table. Keep it in an HSM-like place."""

    __slots__ = ("_alpha", "_distance", "entries", "table_digest")

    def __init__(
        self,
        alpha: bytes,
        table_digest: bytes,
        entries: Sequence[ListedEntry],
        *,
        distance: tuple[bytes, bytes] | None = None,
    ) -> None:
        if len(alpha) != 32 or not 0 < int.from_bytes(alpha, "little") < group.ORDER:
            raise InvalidKey("α must be a non-zero reduced scalar")
        if len(table_digest) != 32:
            raise InvalidKey("a table digest is 32 bytes")
        if distance is not None:
            x, audit = distance
            if len(x) != 32 or not 0 < int.from_bytes(x, "little") < group.ORDER:
                raise InvalidKey("the distance key must be a non-zero reduced scalar")
            if len(audit) != 32:
                raise InvalidKey("an audit seed is 32 bytes")
        self._alpha = bytes(alpha)
        self._distance = distance
        self.table_digest = bytes(table_digest)
        self.entries = tuple(entries)

    @property
    def distance(self) -> tuple[bytes, bytes] | None:
        """``(x, audit seed)`` of a distance-checked table, else None."""
        return self._distance

    @property
    def alpha(self) -> bytes:
        return self._alpha

    def __repr__(self) -> str:
        tid = self.table_digest[:16].hex()
        return f"ServerSecret(<α hidden>, table={tid}, {len(self.entries)} entries)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerSecret):
            return NotImplemented
        return (
            hmac.compare_digest(self._alpha, other._alpha)
            and self.table_digest == other.table_digest
            and self.entries == other.entries
            and self._distance == other._distance
        )

    __hash__ = None  # type: ignore[assignment]

    def to_bytes(self) -> bytes:
        # a key without the distance check is written as version 3 (readable by older builds)
        version = 3 if self._distance is None else SECRET_VERSION
        parts = [SECRET_MAGIC, w.u8(version), self._alpha, self.table_digest]
        parts += [] if self._distance is None else [b"\x01", *self._distance]
        parts.append(w.u32(len(self.entries)))
        for e in self.entries:
            parts += [e.pdq, w.u8(len(e.companions)), *e.companions]
            parts += [w.u8(len(e.hot)), *e.hot, w.u16(len(e.refs))]
            for ref in e.refs:
                parts += [w.text(ref.hotline), w.text(ref.list_name), w.text(ref.entry_id)]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> ServerSecret:
        r = w.Reader(data, InvalidKey, "server key")
        if r.take(4) != SECRET_MAGIC:
            raise InvalidKey("not a blindmatch server key of a supported version")
        version = r.u8()
        if version not in (1, 2, 3, SECRET_VERSION):
            raise InvalidKey("not a blindmatch server key of a supported version")
        alpha, digest = r.take(32), r.take(32)
        distance = None
        flag = r.u8() if version >= 4 else 0
        if version >= 4 and flag != 1:
            raise r.fail()
        if flag:
            distance = (r.take(32), r.take(32))
        n = r.u32()
        if n > r.remaining // 34:
            raise r.fail()
        entries = []
        for _ in range(n):
            pdq = r.take(32)
            k = r.u8() if version >= 2 else 0
            if k > MAX_COMPANIONS:
                raise r.fail()
            companions = tuple(r.take(32) for _ in range(k))
            k = r.u8() if version >= 3 else 0
            if k > MAX_HOT_COMPANIONS:
                raise r.fail()
            hot = tuple(r.take(32) for _ in range(k))
            refs = tuple(EntryRef(r.text(), r.text(), r.text()) for _ in range(r.u16()))
            entries.append(ListedEntry(pdq, refs, companions, hot))
        r.end()
        return cls(alpha, digest, entries, distance=distance)


def blind_keys(alpha: bytes, keys: Sequence[bytes]) -> list[bytes]:
    """``α·H(key)`` for each key (the table builder's hot loop; ~55 µs a key)."""
    return [group.mul(alpha, group.hash_to_group(KEY_DOMAIN, k)) for k in keys]


BlindFn = Callable[[bytes, Sequence[bytes]], list[bytes]]


def leaf_hashes(entries: Sequence[ListedEntry], audit_seed: bytes) -> list[tuple[int, bytes]]:
    """``(entry index, hash)`` for every committed record (one per hash of every entry; a
    hash two entries share has two), in leaf order: sorted by ``HMAC-SHA256(audit seed,
    u32 entry index ‖ hash)``. Entries are sorted by PDQ, so in entry order a leaf's index
    would tell anyone who sees a challenge the rough value of that listed hash (its rank) —
    and a sender whether a slot's record is near its own hash, i.e. its candidate; keyed
    order tells nothing without the audit seed."""
    pairs = [(i, h) for i, e in enumerate(entries) for h in e.hashes]
    return sorted(pairs, key=lambda p: hmac.new(audit_seed, w.u32(p[0]) + p[1], "sha256").digest())


def make_records(
    x: bytes, audit_seed: bytes, hashes: Sequence[bytes], first: int = 0
) -> list[bytes]:
    """The committed record of each hash, in order, the first one being leaf ``first``
    (~12 ms each; see ``records.py``). A parallel version splits ``hashes`` into runs and
    passes each run's first leaf index: the result is the same."""
    from blindmatch.protocol.distance import DistanceKey
    from blindmatch.protocol.records import leaf_seed, record_with_key

    dk = DistanceKey(x)
    return [
        record_with_key(dk, h, leaf_seed(audit_seed, first + i)).to_bytes()
        for i, h in enumerate(hashes)
    ]


RecordFn = Callable[[bytes, bytes, Sequence[bytes]], list[bytes]]


@dataclass(frozen=True)
class BuiltTable:
    """What :func:`build_table` returns: public table, its entries, and the server secret."""

    table: Table
    entries: tuple[ListedEntry, ...]
    n_keys: int
    server_secret: ServerSecret
    #: The committed records of a distance-checked table, in leaf order (the server serves
    #: them; clients fetch them by index): ``()`` for other tables.
    records: tuple[bytes, ...] = ()

    def __repr__(self) -> str:
        return f"BuiltTable({self.table!r}, {len(self.entries)} entries, {self.n_keys} keys)"


def build_table(
    entries: Sequence[ListedEntry],
    *,
    scheme: LookupKeyScheme,
    policy: Policy = Policy.BLOCK,
    threshold: int = 30,
    synthetic_ppm: int = 0,
    evidence_bytes: int = 1024,
    load: float = 0.8,
    rng: Rng = system_rng,
    blind: BlindFn = blind_keys,
    distance_radius: int | None = None,
    distance_slots: int = 1,
    records: RecordFn = make_records,
) -> BuiltTable:
    """Blind the lookup keys of ``entries`` into a cuckoo table under a fresh α.

    ``entries`` normally come from :func:`select_entries`. ``blind`` may be
    replaced by a parallel version of :func:`blind_keys` (same result).
    With ``distance_radius`` the table is distance-checked (version 2, block policy
    only; docs/protocol.md §11): a fresh distance key and audit seed, one committed record
    per listed hash (``records``, replaceable by a parallel version of
    :func:`make_records`) and their Merkle root in the table.
    """
    if policy is Policy.BLOCK and synthetic_ppm:
        raise ValueError("block mode has no synthetic vouchers")
    if not 0 <= synthetic_ppm <= 1_000_000 or not 1 <= threshold <= MAX_THRESHOLD:
        raise ValueError("bad synthetic rate or threshold")
    if not 0 <= evidence_bytes <= MAX_EVIDENCE or not 0.1 <= load <= 0.95:
        raise ValueError("bad evidence size or load")
    keyset = sorted({k for e in entries for h in e.hashes for k in scheme.list_keys(h)})
    n_slots = max(16, math.ceil(len(keyset) / load))
    for attempt in range(20):
        seed = rng(32)
        try:
            placement = cuckoo_place(keyset, n_slots, seed, rng=rng)
            break
        except CuckooFailure:
            if attempt % 4 == 3:
                n_slots = math.ceil(n_slots * 1.05)
    else:  # pragma: no cover - vanishingly unlikely at load ≤ 0.95
        raise ValueError("cuckoo placement failed")
    alpha = group.random_scalar(rng)
    blinded = blind(alpha, keyset)
    slots = [blinded[i] if i >= 0 else group.random_point(rng) for i in placement]
    params: DistanceParams | None = None
    built: list[bytes] = []
    secret_distance: tuple[bytes, bytes] | None = None
    if distance_radius is not None:
        from blindmatch.protocol.records import leaf_digest, merkle_root

        if policy is not Policy.BLOCK:
            raise ValueError("the distance check is built for the block policy only")
        if not entries:
            raise ValueError("a distance-checked table needs at least one entry")
        x, audit_seed = group.random_scalar(rng), rng(32)
        built = records(x, audit_seed, [h for _, h in leaf_hashes(entries, audit_seed)])
        root = merkle_root([leaf_digest(i, rec) for i, rec in enumerate(built)])
        params = DistanceParams(
            distance_radius, distance_slots, group.base_mul(x), root, len(built)
        )
        secret_distance = (x, audit_seed)
    raw = _encode_table(
        policy=policy,
        threshold=threshold,
        synthetic_ppm=synthetic_ppm,
        evidence_bytes=evidence_bytes,
        cuckoo_seed=seed,
        server_point=group.base_mul(alpha),
        scheme=scheme,
        slots=slots,
        distance=params,
    )
    table = Table.from_bytes(raw)
    secret = ServerSecret(alpha, table.digest, entries, distance=secret_distance)
    return BuiltTable(table, tuple(entries), len(keyset), secret, tuple(built))
