"""The signed table manifest and how a client decides to trust a table.

A manifest is a JSON object in canonical form (keys sorted, no whitespace,
ASCII only, integers and strings only — no floats)::

    {"distinct_jurisdictions": true, "evidence_bytes": 1024,
     "format": "blindmatch-manifest", "issued": "2025-01-01",
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
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
class TrustPolicy:
    """What a client trusts: the platform key, hotline keys, and the log check.

    ``log_check`` is required on purpose: pass :func:`accept_without_log`
    explicitly until the transparency log exists.
    """

    platform_key: bytes
    hotlines: Mapping[str, TrustedHotline]
    log_check: LogInclusionCheck
    min_hotlines: int = 2
    distinct_jurisdictions: bool = True


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
