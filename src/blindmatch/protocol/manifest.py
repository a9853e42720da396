"""The signed table manifest and how a client decides to trust a table.

A manifest is a JSON object in canonical form (keys sorted, no whitespace,
ASCII only, integers and strings only — no floats)::

    {"distinct_jurisdictions": true, "evidence_bytes": 1024,
     "format": "blindmatch-manifest", "issued": "2026-12-03T08:00:00Z",
     "lists": [{"entries": 120, "hotline": "A", "jurisdiction": "GB",
                "name": "main", "version": "7"}, ...],
     "lookup": {...scheme parameters...}, "min_hotlines": 2,
     "n_entries": 100, "n_keys": 100, "n_slots": 125, "policy": "block",
     "sequence": 1, "synthetic_ppm": 0, "table_bytes": 4124,
     "table_digest": "<sha-256 hex of the table file>", "threshold": 30,
     "version": 1}

Each party signs ``b"blindmatch-manifest-v1\\0" ‖ canonical JSON`` with
Ed25519. The signed manifest on the wire is the canonical JSON of::

    {"format": "blindmatch-signed-manifest", "version": 1,
     "manifest": {...}, "signatures": [{"role": "platform" | "hotline",
     "signer": name, "signature": 128 hex digits}, ...]}

A client (:func:`verify_manifest`) accepts a table only if the digest and
size match, the platform signed, every hotline named in ``lists`` is one it
trusts (same jurisdiction) and signed, at least ``min_hotlines`` distinct
hotlines in distinct jurisdictions contributed, every signature in the
envelope is valid (no unverifiable extras: the envelope is strict), and the
transparency-log check passes. Any failure raises one :class:`InvalidManifest` with one message.

Then, on the authentic manifest (:func:`check_client_rules`, so the messages may
say what is wrong: a manifest is public), the client's own rules: the table's
parameters respect the :class:`Floors` of the trust policy, ``issued`` (an RFC 3339
UTC time, ``2026-12-03T08:00:00Z``) is at most ``max_age_seconds`` old and not
more than :data:`MAX_CLOCK_SKEW_SECONDS` in the future, and ``sequence`` is not
below the highest one a :class:`TableHistory` has seen for the platform key (and
not equal to it with another table: equivocation).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from blindmatch.errors import InvalidManifest
from blindmatch.protocol.table import HotlineList, Policy, Table

MANIFEST_FORMAT = "blindmatch-manifest"
SIGNED_FORMAT = "blindmatch-signed-manifest"
MANIFEST_VERSION = 1
SIGNING_LABEL = b"blindmatch-manifest-v1\x00"
MAX_MANIFEST_BYTES = 1 << 20
_OPAQUE = "table manifest did not verify"


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True)
class ListInfo:
    hotline: str
    jurisdiction: str
    name: str
    version: str
    entries: int


@dataclass(frozen=True)
class Manifest:
    """What the signatures vouch for: the table digest, its parameters, and the lists."""

    table_digest: bytes
    table_bytes: int
    policy: Policy
    threshold: int
    synthetic_ppm: int
    evidence_bytes: int
    n_slots: int
    n_keys: int
    n_entries: int
    min_hotlines: int
    distinct_jurisdictions: bool
    lookup: Mapping[str, object]
    lists: tuple[ListInfo, ...]
    sequence: int = 0
    issued: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "table_digest": self.table_digest.hex(),
            "table_bytes": self.table_bytes,
            "policy": self.policy.value,
            "threshold": self.threshold,
            "synthetic_ppm": self.synthetic_ppm,
            "evidence_bytes": self.evidence_bytes,
            "n_slots": self.n_slots,
            "n_keys": self.n_keys,
            "n_entries": self.n_entries,
            "min_hotlines": self.min_hotlines,
            "distinct_jurisdictions": self.distinct_jurisdictions,
            "lookup": dict(self.lookup),
            "lists": [
                {
                    "hotline": li.hotline,
                    "jurisdiction": li.jurisdiction,
                    "name": li.name,
                    "version": li.version,
                    "entries": li.entries,
                }
                for li in self.lists
            ],
            "sequence": self.sequence,
            "issued": self.issued,
        }

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    def signing_message(self) -> bytes:
        return SIGNING_LABEL + self.canonical_bytes()

    @classmethod
    def from_dict(cls, d: object) -> Manifest:
        """Strict parse; anything unexpected raises :class:`InvalidManifest`."""
        try:
            return cls._from_dict(d)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise InvalidManifest(_OPAQUE) from None

    @classmethod
    def _from_dict(cls, d: Any) -> Manifest:
        expected = set(cls(b"", 0, Policy.BLOCK, 0, 0, 0, 0, 0, 0, 0, True, {}, ()).to_dict())
        if not isinstance(d, dict) or set(d) != expected:
            raise ValueError
        if d["format"] != MANIFEST_FORMAT or d["version"] != MANIFEST_VERSION:
            raise ValueError

        def nat(key: str, src: Mapping[str, Any] = d) -> int:
            v = src[key]
            if type(v) is not int or v < 0:
                raise ValueError
            return v

        def string(key: str, src: Mapping[str, Any] = d) -> str:
            v = src[key]
            if not isinstance(v, str):
                raise ValueError
            return v

        digest = bytes.fromhex(string("table_digest"))
        if len(digest) != 32 or type(d["distinct_jurisdictions"]) is not bool:
            raise ValueError
        if not isinstance(d["lookup"], dict) or not isinstance(d["lists"], list):
            raise ValueError
        lists = []
        for li in d["lists"]:
            if not isinstance(li, dict) or set(li) != {
                "hotline", "jurisdiction", "name", "version", "entries",
            }:  # fmt: skip
                raise ValueError
            lists.append(
                ListInfo(
                    string("hotline", li),
                    string("jurisdiction", li),
                    string("name", li),
                    string("version", li),
                    nat("entries", li),
                )  # fmt: skip
            )
        return cls(
            table_digest=digest,
            table_bytes=nat("table_bytes"),
            policy=Policy(string("policy")),
            threshold=nat("threshold"),
            synthetic_ppm=nat("synthetic_ppm"),
            evidence_bytes=nat("evidence_bytes"),
            n_slots=nat("n_slots"),
            n_keys=nat("n_keys"),
            n_entries=nat("n_entries"),
            min_hotlines=nat("min_hotlines"),
            distinct_jurisdictions=d["distinct_jurisdictions"],
            lookup=d["lookup"],
            lists=tuple(lists),
            sequence=nat("sequence"),
            issued=string("issued"),
        )


def make_manifest(
    table: Table,
    lists: Sequence[HotlineList],
    *,
    n_keys: int,
    n_entries: int,
    min_hotlines: int = 2,
    distinct_jurisdictions: bool = True,
    sequence: int = 0,
    issued: str = "",
) -> Manifest:
    """The unsigned manifest describing ``table`` built from ``lists``."""
    return Manifest(
        table_digest=table.digest,
        table_bytes=len(table.raw),
        policy=table.policy,
        threshold=table.threshold,
        synthetic_ppm=table.synthetic_ppm,
        evidence_bytes=table.evidence_bytes,
        n_slots=table.n_slots,
        n_keys=n_keys,
        n_entries=n_entries,
        min_hotlines=min_hotlines,
        distinct_jurisdictions=distinct_jurisdictions,
        lookup=table.scheme.describe(),
        lists=tuple(
            ListInfo(li.hotline, li.jurisdiction, li.name, li.version, len(li.entries))
            for li in lists
        ),
        sequence=sequence,
        issued=issued,
    )


@dataclass(frozen=True)
class ManifestSignature:
    role: str  # "platform" or "hotline"
    signer: str
    signature: bytes

    def __post_init__(self) -> None:
        if self.role not in ("platform", "hotline") or len(self.signature) != 64:
            raise ValueError("a signature has role platform|hotline and 64 bytes")


def sign_manifest(
    manifest: Manifest, *, role: str, signer: str, key: Ed25519PrivateKey
) -> ManifestSignature:
    """One party's Ed25519 signature over the manifest."""
    return ManifestSignature(role, signer, key.sign(manifest.signing_message()))


@dataclass(frozen=True)
class SignedManifest:
    manifest: Manifest
    signatures: tuple[ManifestSignature, ...]

    def to_bytes(self) -> bytes:
        return canonical_json(
            {
                "format": SIGNED_FORMAT,
                "version": MANIFEST_VERSION,
                "manifest": self.manifest.to_dict(),
                "signatures": [
                    {"role": s.role, "signer": s.signer, "signature": s.signature.hex()}
                    for s in self.signatures
                ],
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedManifest:
        """Parse (not verify); malformed input raises :class:`InvalidManifest`."""
        if not isinstance(data, bytes) or len(data) > MAX_MANIFEST_BYTES:
            raise InvalidManifest(_OPAQUE)
        try:
            d = json.loads(
                data.decode("utf-8"),
                object_pairs_hook=_no_duplicates,
                parse_float=_reject,
                parse_constant=_reject,
            )
            if not isinstance(d, dict) or set(d) != {
                "format", "version", "manifest", "signatures",
            }:  # fmt: skip
                raise ValueError
            if d["format"] != SIGNED_FORMAT or d["version"] != MANIFEST_VERSION:
                raise ValueError
            sigs = []
            for s in d["signatures"]:
                if not isinstance(s, dict) or set(s) != {"role", "signer", "signature"}:
                    raise ValueError
                if not isinstance(s["signer"], str) or not isinstance(s["signature"], str):
                    raise ValueError
                sigs.append(
                    ManifestSignature(s["role"], s["signer"], bytes.fromhex(s["signature"]))
                )
            return cls(Manifest.from_dict(d["manifest"]), tuple(sigs))
        except (ValueError, TypeError, KeyError, UnicodeDecodeError, RecursionError):
            raise InvalidManifest(_OPAQUE) from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise ValueError("duplicate key")
    return d


def _reject(_: str) -> Any:
    raise ValueError("floats are not allowed")


#: The transparency-log seam: called with the signed manifest bytes; raise to refuse.
LogInclusionCheck = Callable[[bytes], None]


def accept_without_log(_: bytes) -> None:
    """A log check that accepts everything — until the transparency-log issue lands.

    Named so that every caller who passes it says out loud that no log is checked.
    """


@dataclass(frozen=True)
class TrustedHotline:
    public_key: bytes  # raw 32-byte Ed25519 public key
    jurisdiction: str


@dataclass(frozen=True)
class Floors:
    """The weakest table parameters a client accepts, whoever signed the table.

    A signed table is only as private as its parameters: the platform (or whoever holds
    its key) chooses them, and the client is the one whose images are at stake, so the
    client refuses parameters that break the claims of ``docs/protocol.md`` §6. The
    defaults are the floors; lower them only in tests (explicitly, e.g.
    ``TrustPolicy(..., floors=Floors(min_threshold=2))``), never in a deployment.

    ``min_key_bits`` (64): the sampled bits per lookup key. An unrelated image's probe
    equals a listed key with probability 2^-k; at k = 8 every random image opens
    (measured: 60/60 vouchers of unlisted images opened, the server read their PDQs).
    §11 measured k ≥ 64 only.

    ``max_probes`` (64): lookup keys per image. Each probe is one more chance to open an
    unrelated or near-miss image (the false-opening rate grows linearly with it) and
    costs the client ~0.5 ms and the voucher ~290 B; the default is 37.

    ``max_flips`` (3): flipped sample bits per probe. A probe with j flips opens an image
    up to j sampled bits away from a listed hash, so near misses open more often as j
    grows (§11's bound); §11 measured j ≤ 3, the default of scheme 2 (scheme 1: 2).

    ``max_unrelated_openings`` (1e-9): the expected number of pairs of an unrelated image
    that open, ``n_probes · n_slots · 2^-k`` (each probe is one k-bit key that can equal
    at most the listed keys of its own lookup table; ``n_slots`` — read from the table
    itself, not from the manifest's claim — bounds their number). §11's target. With
    the other defaults it holds up to the largest table (2^28 slots); it bites when
    those floors are lowered.

    ``min_threshold`` (10): ``t`` under both policies. Under ``threshold`` it is the
    number of matches before the server learns anything about an account; under
    ``block`` it gates the release of the evidence of matches. At t = 1 one false or
    near-miss opening reveals everything at once. With §11's near-miss rate (1.8e-7 per
    image at 5M entries) an account sending 100,000 images reaches 10 false openings
    with probability ~1e-24, 2 with ~1.6e-4. The spec recommends 30.

    ``min_synthetic_ppm`` / ``max_synthetic_ppm`` (1,000 / 200,000, threshold policy;
    a block table carries 0, which the table parser enforces): synthetic vouchers are what
    hide the number of matches below ``t``. Below 0.1 % an account rarely has any, so
    each opened voucher is almost surely a real match; above 20 % they replace a fifth
    of real matches (recall) and fill the server's share recovery with noise.

    A *distance-checked* table (docs/protocol.md §11) opens nothing on a key alone: a pair
    that opens makes a candidate, which tells the server the entry and the ``k`` sampled
    bits the probe matched, and the inner layers open only when the second check finds
    ``d ≤ R``. For those tables ``min_checked_key_bits`` (32) replaces ``min_key_bits``,
    ``max_unrelated_bits`` (0.01) replaces ``max_unrelated_openings`` — the expected PDQ
    bits an unrelated image reveals, ``k · n_probes · n_slots · 2^-k``, the issue's target —
    and ``max_radius`` (31, plaintext matching's threshold) bounds ``R``: a larger radius
    would open the PDQ of near misses that plaintext matching would not call matches.
    """

    min_key_bits: int = 64
    max_probes: int = 64
    max_flips: int = 3
    max_unrelated_openings: float = 1e-9
    min_threshold: int = 10
    min_synthetic_ppm: int = 1_000
    max_synthetic_ppm: int = 200_000
    min_checked_key_bits: int = 32
    max_unrelated_bits: float = 0.01
    max_radius: int = 31


def checked_key_bits(
    n_keys: int,
    n_probes: int,
    *,
    floors: Floors | None = None,
    load: float = 0.8,
    shortest: int = 40,
) -> int:
    """The shortest lookup keys (a multiple of 8, at least ``shortest`` and the floor's
    ``min_checked_key_bits``) that a distance-checked table of ``n_keys`` list keys can take
    and keep its clients' floor on the bits an unrelated image reveals,
    ``k · n_probes · n_slots · 2^-k``, with half of :attr:`Floors.max_unrelated_bits` to spare
    (``n_slots ≈ n_keys / load``; cuckoo placement may add a few percent). Shorter keys find
    more edited copies (bench/bench_check_frontier.py: k = 40 → 48 costs ~0.013 of recall) and
    reveal more: 40 bits up to ~3M keys, 48 beyond. Not 32 by default even for small lists:
    there the frontier saw correlated innocent pictures become candidates (1 in 6,120 images
    at k = 32, none at 40; with hot entries 13 and 4)."""
    f = floors if floors is not None else Floors()
    slots = max(16.0, n_keys / load)
    k = max(8, -(-max(f.min_checked_key_bits, shortest) // 8) * 8)
    while k < 248 and k * n_probes * slots * 2.0**-k > f.max_unrelated_bits / 2:
        k += 8
    return k


#: How old a table may be by default (``TrustPolicy.max_age_seconds``): 30 days.
DEFAULT_MAX_AGE_SECONDS = 30 * 24 * 3600
#: How far in the future ``issued`` may lie (clock error): 1 hour. A slow client clock
#: only delays adopting a new table by its error minus this; a pre-dated table can
#: outlive ``max_age_seconds`` by at most this.
MAX_CLOCK_SKEW_SECONDS = 3600
_ISSUED_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
ISSUED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_issued(when: datetime) -> str:
    """``when`` as a manifest's ``issued``: RFC 3339, UTC, whole seconds (``…T08:00:00Z``)."""
    if when.tzinfo is None:
        raise ValueError("issued needs a timezone-aware time")
    return when.astimezone(UTC).strftime(ISSUED_FORMAT)


def parse_issued(text: str) -> datetime:
    """The time a manifest's ``issued`` names; :class:`InvalidManifest` unless it is
    exactly ``YYYY-MM-DDTHH:MM:SSZ`` (RFC 3339, UTC, whole seconds)."""
    try:
        if not isinstance(text, str) or not _ISSUED_RE.fullmatch(text):
            raise ValueError
        return datetime.strptime(text, ISSUED_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidManifest(
            f"the table manifest's issued time {text!r} is not an RFC 3339 UTC time "
            "(YYYY-MM-DDTHH:MM:SSZ)"
        ) from None


@dataclass(frozen=True)
class TrustPolicy:
    """What a client trusts: the platform key, hotline keys, and the log check;
    and what it asks of a table: :class:`Floors` and a maximum age.

    ``log_check`` is required on purpose: pass :func:`accept_without_log`
    explicitly until the transparency log exists. ``max_age_seconds``: a table whose
    ``issued`` is older is refused (``None``: ``issued`` is not checked at all).
    """

    platform_key: bytes
    hotlines: Mapping[str, TrustedHotline]
    log_check: LogInclusionCheck
    min_hotlines: int = 2
    distinct_jurisdictions: bool = True
    floors: Floors = field(default_factory=Floors)
    max_age_seconds: int | None = DEFAULT_MAX_AGE_SECONDS


class TableHistory(Protocol):
    """The port where a client remembers the newest table it accepted, per platform key.

    ``last``: the highest sequence accepted for ``platform_key`` and that table's digest,
    or None. ``record``: remember an accepted table (keep the highest sequence).
    Adapters: :class:`MemoryTableHistory`; a file (``blindmatch.table_history``).
    """

    def last(self, platform_key: bytes) -> tuple[int, bytes] | None: ...

    def record(self, platform_key: bytes, sequence: int, digest: bytes) -> None: ...


class MemoryTableHistory:
    """A :class:`TableHistory` for one process."""

    def __init__(self) -> None:
        self._seen: dict[bytes, tuple[int, bytes]] = {}

    def last(self, platform_key: bytes) -> tuple[int, bytes] | None:
        return self._seen.get(bytes(platform_key))

    def record(self, platform_key: bytes, sequence: int, digest: bytes) -> None:
        key = bytes(platform_key)
        cur = self._seen.get(key)
        if cur is None or sequence > cur[0]:
            self._seen[key] = (sequence, bytes(digest))


def _verify(key: bytes, sig: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(sig, message)
        return True
    except (InvalidSignature, ValueError):
        return False


def verify_manifest(signed: bytes, table_bytes: bytes, trust: TrustPolicy) -> Manifest:
    """The manifest, if ``signed`` vouches for ``table_bytes`` under ``trust``.

    Raises :class:`InvalidManifest` (one opaque message) otherwise.
    """
    sm = SignedManifest.from_bytes(signed)
    m = sm.manifest
    msg = m.signing_message()
    ok = (
        isinstance(table_bytes, bytes)
        and len(table_bytes) == m.table_bytes
        and hashlib.sha256(table_bytes).digest() == m.table_digest
    )
    # Strict envelope: every signature present must be a valid one from a trusted party.
    signed_by: set[str] = set()
    platform = False
    for s in sm.signatures:
        if s.role == "platform" and s.signer == "platform":
            good = _verify(trust.platform_key, s.signature, msg)
            platform = platform or good
        elif s.role == "hotline" and s.signer in trust.hotlines:
            good = _verify(trust.hotlines[s.signer].public_key, s.signature, msg)
            signed_by.add(s.signer)
        else:
            good = False
        ok = ok and good
    ok = ok and platform
    contributors = {li.hotline for li in m.lists}
    for li in m.lists:
        th = trust.hotlines.get(li.hotline)
        ok = ok and th is not None and th.jurisdiction == li.jurisdiction
    need = max(trust.min_hotlines, m.min_hotlines, 1)
    places = {trust.hotlines[h].jurisdiction for h in contributors if h in trust.hotlines}
    ok = ok and contributors <= signed_by and len(contributors) >= need
    if trust.distinct_jurisdictions or m.distinct_jurisdictions:
        ok = ok and len(places) >= need
    if not ok:
        raise InvalidManifest(_OPAQUE)
    try:
        trust.log_check(signed)
    except Exception:
        raise InvalidManifest(_OPAQUE) from None
    return m


def check_table_matches(manifest: Manifest, table: Table) -> None:
    """The table's own header must agree with what the manifest says about it."""
    if (
        manifest.policy is not table.policy
        or manifest.threshold != table.threshold
        or manifest.synthetic_ppm != table.synthetic_ppm
        or manifest.evidence_bytes != table.evidence_bytes
        or manifest.n_slots != table.n_slots
        or canonical_json(dict(manifest.lookup)) != canonical_json(table.scheme.describe())
    ):
        raise InvalidManifest(_OPAQUE)


def check_floors(manifest: Manifest, table: Table, floors: Floors) -> None:
    """Refuse a table whose parameters are weaker than ``floors`` (see :class:`Floors`).

    Reads the lookup parameters from the table's own scheme (the manifest agrees with it:
    :func:`check_table_matches`) and the slot count from the table.
    """
    scheme = table.scheme
    k, flips = getattr(scheme, "k", None), getattr(scheme, "max_flips", None)
    probes = scheme.n_probes
    if type(k) is not int or type(flips) is not int:
        raise InvalidManifest(
            f"the table's lookup scheme {type(scheme).__name__} does not say its key length "
            "and flips, so the parameter floors cannot be checked"
        )
    checked = table.distance is not None
    min_bits = floors.min_checked_key_bits if checked else floors.min_key_bits
    if k < min_bits:
        raise InvalidManifest(
            f"lookup keys of k = {k} bits are below the floor of {min_bits} "
            "(unrelated images would open)"
        )
    if table.distance is not None and table.distance.radius > floors.max_radius:
        raise InvalidManifest(
            f"a distance-check radius of {table.distance.radius} exceeds the maximum of "
            f"{floors.max_radius} (near misses would open)"
        )
    if probes > floors.max_probes:
        raise InvalidManifest(
            f"{probes} probes per image exceed the maximum of {floors.max_probes}"
        )
    if flips > floors.max_flips:
        raise InvalidManifest(
            f"up to {flips} flipped bits per probe exceed the maximum of {floors.max_flips} "
            "(near misses would open)"
        )
    expected = probes * table.n_slots * 2.0**-k
    if checked and expected * k > floors.max_unrelated_bits:
        raise InvalidManifest(
            f"an unrelated image would reveal {expected * k:.2g} PDQ bits on average "
            f"({k} x {probes} probes x {table.n_slots} slots x 2^-{k}), above the maximum "
            f"of {floors.max_unrelated_bits:.2g}"
        )
    if not checked and expected > floors.max_unrelated_openings:
        raise InvalidManifest(
            f"an unrelated image would open {expected:.2g} pairs on average "
            f"({probes} probes x {table.n_slots} slots x 2^-{k}), above the maximum of "
            f"{floors.max_unrelated_openings:.2g}"
        )
    if manifest.threshold < floors.min_threshold:
        raise InvalidManifest(
            f"threshold t = {manifest.threshold} is below the floor of {floors.min_threshold}"
        )
    if manifest.policy is Policy.THRESHOLD and not (
        floors.min_synthetic_ppm <= manifest.synthetic_ppm <= floors.max_synthetic_ppm
    ):
        raise InvalidManifest(
            f"a synthetic voucher rate of {manifest.synthetic_ppm} ppm is outside "
            f"[{floors.min_synthetic_ppm:,}, {floors.max_synthetic_ppm:,}] ppm "
            "required under the threshold policy"
        )


def check_freshness(manifest: Manifest, trust: TrustPolicy, now: datetime) -> None:
    """Refuse a table issued more than ``trust.max_age_seconds`` before ``now`` or more
    than :data:`MAX_CLOCK_SKEW_SECONDS` after it (nothing is checked when the maximum
    age is None)."""
    if trust.max_age_seconds is None:
        return
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware time")
    issued = parse_issued(manifest.issued)
    age = (now - issued).total_seconds()
    if age > trust.max_age_seconds:
        raise InvalidManifest(
            f"the table was issued at {manifest.issued}, {age / 86400:.1f} days ago, more than the "
            f"maximum age of {trust.max_age_seconds / 86400:g} days (a stale or replayed table)"
        )
    if -age > MAX_CLOCK_SKEW_SECONDS:
        raise InvalidManifest(
            f"the table was issued at {manifest.issued}, {-age / 3600:.1f} hours in the future "
            f"(more than {MAX_CLOCK_SKEW_SECONDS // 3600} h: a pre-dated table, or this "
            "device's clock is wrong)"
        )


def check_sequence(manifest: Manifest, platform_key: bytes, history: TableHistory) -> None:
    """Refuse a rollback (a sequence below the highest seen for this platform key) and
    equivocation (the highest sequence seen, but another table)."""
    last = history.last(platform_key)
    if last is None:
        return
    seen, digest = last
    if manifest.sequence < seen:
        raise InvalidManifest(
            f"table sequence {manifest.sequence} is older than sequence {seen} already "
            "seen for this platform (a rollback)"
        )
    if manifest.sequence == seen and manifest.table_digest != digest:
        raise InvalidManifest(
            f"table sequence {seen} was already seen for this platform with another table "
            f"({digest.hex()[:16]}…, now {manifest.table_digest.hex()[:16]}…): the platform "
            "signed two tables under one sequence number"
        )


def check_client_rules(
    manifest: Manifest,
    table: Table,
    trust: TrustPolicy,
    *,
    now: datetime,
    history: TableHistory | None = None,
) -> None:
    """The client's rules on an authentic manifest and its table, in order: floors,
    freshness, sequence; then ``history`` records the table (only once all passed)."""
    check_floors(manifest, table, trust.floors)
    check_freshness(manifest, trust, now)
    if history is not None:
        check_sequence(manifest, trust.platform_key, history)
        history.record(trust.platform_key, manifest.sequence, manifest.table_digest)
