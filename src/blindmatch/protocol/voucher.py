"""Vouchers: the client side and the byte layout.

Voucher wire format, version 1 (integers big-endian; sizes fixed by the table,
so every voucher under one table has the same length)::

    offset  size       field
    0       4          magic "BMVC"
    4       1          format version = 1
    5       1          reserved = 0
    6       2          n_pairs = 3 · n_probes
    8       16         table id (first 16 bytes of the table digest)
    --- end of header (24 bytes) ---
    24      16         voucher id, random
    40      80·n_pairs pairs (Q ‖ W): Q a point (32), W = seal(K, rkey) (48)
    ...     129 + h    C_mid = seal(k_mid, y ‖ M), aad = SHA-256(all bytes except C_mid)
    ...     20 + E     C_ev  = seal(k_ev, u32 length ‖ evidence ‖ zero padding to E)

    M = seal(k_match, flag ‖ PDQ ‖ commitment ‖ hint)   (1 + 32 + 32 + h, +16 tag)

with ``h`` the lookup scheme's hint size and ``E`` the table's evidence size.
Keys (HKDF-SHA256, salt ``T = SHA-256("blindmatch/v1/voucher\\0" ‖ header ‖ voucher id)``)::

    K_i     = HKDF(S_i ‖ Q_i,  info "blindmatch/v1/pair")
    k_mid   = HKDF(rkey,       info "blindmatch/v1/mid")
    k_match = HKDF(rkey,       info "blindmatch/v1/match")   block policy
            = HKDF(ek,         info "blindmatch/v1/match")   threshold policy
    k_ev    = HKDF(ek,         info "blindmatch/v1/evidence")

For a real voucher each pair belongs to one probe key ``k`` and one of its
three cuckoo positions ``p``: ``Q = β·H(k) + γ·G``, ``S = β·P[p] + γ·L`` with
fresh β, γ; the server recomputes ``S = α·Q``, which equals the client's only
when ``P[p] = α·H(k)``. A synthetic voucher (threshold policy only) has one
pair with ``Q = γ·G``, ``S = γ·L`` (it always opens), every other pair random
bytes and points, a random share ``y`` and ``flag = 1``.

``y = f(x)`` is a Shamir share of the account's evidence secret
``a_0`` with ``x = SHA-512("blindmatch/v1/shamir-x\\0" ‖ table id ‖ voucher id) mod ℓ``;
``ek = HKDF(a_0, info "blindmatch/v1/evidence-key")``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from blindmatch.errors import InvalidTable, InvalidVoucher
from blindmatch.protocol import _wire as w
from blindmatch.protocol.hazmat import group
from blindmatch.protocol.hazmat.aead import TAG_BYTES, seal
from blindmatch.protocol.hazmat.cuckoo import slot_positions
from blindmatch.protocol.hazmat.kdf import hkdf_sha256
from blindmatch.protocol.hazmat.rng import Rng, randbelow, shuffle, system_rng
from blindmatch.protocol.hazmat.shamir import evaluate
from blindmatch.protocol.lookup import PDQ_BYTES, QueryHash
from blindmatch.protocol.manifest import (
    Manifest,
    TrustPolicy,
    check_table_matches,
    verify_manifest,
)
from blindmatch.protocol.table import KEY_DOMAIN, Policy, Table

VOUCHER_MAGIC = b"BMVC"
FORMAT_VERSION = 1
HEADER_BYTES = 24
ID_BYTES = 16
PAIR_BYTES = 32 + 32 + TAG_BYTES
COMMITMENT_BYTES = 32
FLAG_REAL = 0
FLAG_SYNTHETIC = 1

_TRANSCRIPT = b"blindmatch/v1/voucher\x00"
_SHAMIR_X = b"blindmatch/v1/shamir-x\x00"
INFO_PAIR = b"blindmatch/v1/pair"
INFO_MID = b"blindmatch/v1/mid"
INFO_MATCH = b"blindmatch/v1/match"
INFO_EVIDENCE = b"blindmatch/v1/evidence"
INFO_EK = b"blindmatch/v1/evidence-key"
INFO_COEF = b"blindmatch/v1/shamir-coefficient"


class AccountSecret:
    """A client's long-term 32-byte secret; it fixes the account's sharing polynomial."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != 32:
            raise ValueError("an account secret is 32 bytes")
        self._key = key

    @classmethod
    def generate(cls, rng: Rng = system_rng) -> AccountSecret:
        return cls(rng(32))

    def to_bytes(self) -> bytes:
        return self._key

    def __repr__(self) -> str:
        return "AccountSecret(<hidden>)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AccountSecret):
            return NotImplemented
        return hmac.compare_digest(self._key, other._key)

    __hash__ = None  # type: ignore[assignment]

    def coefficients(self, t: int) -> list[int]:
        """``a_0 … a_{t−1}``: the account's degree-(t−1) sharing polynomial."""
        return [
            int.from_bytes(
                hkdf_sha256(self._key, salt=b"", info=INFO_COEF + w.u16(j), length=64), "little"
            )
            % group.ORDER
            for j in range(t)
        ]


def evidence_key(a0: int) -> bytes:
    return hkdf_sha256(a0.to_bytes(32, "little"), salt=b"", info=INFO_EK)


def shamir_x(table_id: bytes, voucher_id: bytes) -> int:
    x = int.from_bytes(hashlib.sha512(_SHAMIR_X + table_id + voucher_id).digest(), "little")
    return x % group.ORDER or 1


def transcript(header: bytes, voucher_id: bytes) -> bytes:
    return hashlib.sha256(_TRANSCRIPT + header + voucher_id).digest()


def pair_key(s: bytes, q: bytes, t: bytes) -> bytes:
    return hkdf_sha256(s + q, salt=t, info=INFO_PAIR)


@dataclass(frozen=True)
class Layout:
    """Byte sizes of a voucher under one table."""

    n_pairs: int
    hint_size: int
    evidence_bytes: int

    @property
    def match_plain(self) -> int:
        return 1 + PDQ_BYTES + COMMITMENT_BYTES + self.hint_size

    @property
    def mid_bytes(self) -> int:
        return 32 + self.match_plain + TAG_BYTES + TAG_BYTES

    @property
    def ev_bytes(self) -> int:
        return 4 + self.evidence_bytes + TAG_BYTES

    @property
    def pairs_offset(self) -> int:
        return HEADER_BYTES + ID_BYTES

    @property
    def mid_offset(self) -> int:
        return self.pairs_offset + PAIR_BYTES * self.n_pairs

    @property
    def ev_offset(self) -> int:
        return self.mid_offset + self.mid_bytes

    @property
    def total(self) -> int:
        return self.ev_offset + self.ev_bytes

    @classmethod
    def for_table(cls, table: Table) -> Layout:
        return cls(3 * table.scheme.n_probes, table.scheme.hint_size, table.evidence_bytes)


def header_for(table: Table) -> bytes:
    layout = Layout.for_table(table)
    return VOUCHER_MAGIC + w.u8(FORMAT_VERSION) + b"\x00" + w.u16(layout.n_pairs) + table.table_id


@dataclass(frozen=True)
class ParsedVoucher:
    """A voucher split into its fields (no cryptographic check yet)."""

    header: bytes
    voucher_id: bytes
    pairs: tuple[tuple[bytes, bytes], ...]
    mid: bytes
    evidence: bytes
    raw: bytes

    def mid_aad(self) -> bytes:
        """SHA-256 of every voucher byte except ``C_mid`` (the AAD of ``C_mid``)."""
        offset = HEADER_BYTES + ID_BYTES + PAIR_BYTES * len(self.pairs)
        return hashlib.sha256(self.raw[:offset] + self.raw[offset + len(self.mid) :]).digest()

    @classmethod
    def from_bytes(cls, data: bytes, table: Table) -> ParsedVoucher:
        """Split and check sizes and header; anything wrong raises :class:`InvalidVoucher`."""
        if not isinstance(data, bytes):
            raise InvalidVoucher("malformed voucher")
        layout = Layout.for_table(table)
        if len(data) != layout.total or data[:HEADER_BYTES] != header_for(table):
            raise InvalidVoucher("malformed voucher")
        pairs = []
        for i in range(layout.n_pairs):
            o = layout.pairs_offset + PAIR_BYTES * i
            # Q is checked by the server's scalar multiplication (libsodium refuses a
            # non-canonical or identity point there), not twice.
            pairs.append((data[o : o + 32], data[o + 32 : o + PAIR_BYTES]))
        return cls(
            data[:HEADER_BYTES],
            data[HEADER_BYTES : layout.pairs_offset],
            tuple(pairs),
            data[layout.mid_offset : layout.ev_offset],
            data[layout.ev_offset :],
            data,
        )


@dataclass(frozen=True)
class VerifiedTable:
    """A table whose manifest verified; the only way to start a :class:`ClientSession`."""

    table: Table
    manifest: Manifest


def verify_table(table_bytes: bytes, signed_manifest: bytes, trust: TrustPolicy) -> VerifiedTable:
    """Check the signed manifest against ``trust`` and the table against the manifest.

    Raises :class:`~blindmatch.errors.InvalidManifest` or
    :class:`~blindmatch.errors.InvalidTable`.
    """
    manifest = verify_manifest(signed_manifest, table_bytes, trust)
    table = Table.from_bytes(table_bytes)
    check_table_matches(manifest, table)
    return VerifiedTable(table, manifest)


class ClientSession:
    """Makes vouchers for one account against one verified table."""

    def __init__(
        self, verified: VerifiedTable, account: AccountSecret, *, rng: Rng = system_rng
    ) -> None:
        if not isinstance(verified, VerifiedTable):
            raise TypeError("ClientSession needs a VerifiedTable (see verify_table)")
        self.table = verified.table
        self.manifest = verified.manifest
        self._rng = rng
        self._coefficients = account.coefficients(self.table.threshold)
        self._ek = evidence_key(self._coefficients[0])
        self._layout = Layout.for_table(self.table)
        self._header = header_for(self.table)

    def __repr__(self) -> str:
        return f"ClientSession({self.table!r}, <account hidden>)"

    @property
    def voucher_bytes(self) -> int:
        return self._layout.total

    def make_voucher(
        self,
        pdq: bytes,
        *,
        confidence: Sequence[float] | None = None,
        evidence: bytes = b"",
        commitment: bytes = bytes(COMMITMENT_BYTES),
        variants: Sequence[QueryHash] = (),
    ) -> bytes:
        """One voucher for one image hash.

        ``confidence`` (256 floats, see :mod:`blindmatch.protocol.lookup`)
        enables multi-probing; ``variants`` are further hashes of the same image
        (orientations, trimmed frames) that share the voucher's probes when the
        table's scheme supports it (:class:`~blindmatch.protocol.lookup.VariantProbeLSH`);
        ``evidence`` (at most the table's evidence
        size: a small review derivative) opens only at the threshold;
        ``commitment`` is carried for the recipient-side check (property 6).
        Under the threshold policy a synthetic voucher replaces the real one
        at the table's synthetic rate.
        """
        synthetic = False
        if self.table.policy is Policy.THRESHOLD and self.table.synthetic_ppm:
            synthetic = randbelow(self._rng, 1_000_000) < self.table.synthetic_ppm
        return self._build(
            pdq, confidence, evidence, commitment, synthetic=synthetic, variants=variants
        )

    def _build(
        self,
        pdq: bytes,
        confidence: Sequence[float] | None,
        evidence: bytes,
        commitment: bytes,
        *,
        synthetic: bool,
        variants: Sequence[QueryHash] = (),
    ) -> bytes:
        if not isinstance(pdq, bytes) or len(pdq) != PDQ_BYTES:
            raise ValueError("a PDQ hash is 32 bytes")
        if len(commitment) != COMMITMENT_BYTES:
            raise ValueError("a commitment is 32 bytes")
        if len(evidence) > self.table.evidence_bytes:
            raise ValueError(f"evidence is limited to {self.table.evidence_bytes} bytes")
        if synthetic and self.table.policy is not Policy.THRESHOLD:
            raise ValueError("synthetic vouchers exist only under the threshold policy")
        rng, table, lay = self._rng, self.table, self._layout
        voucher_id = rng(ID_BYTES)
        t = transcript(self._header, voucher_id)
        rkey = rng(32)
        if variants:
            probes = table.scheme.probe_variants([QueryHash(pdq, confidence), *variants], rng)
        else:
            probes = table.scheme.probe(pdq, confidence, rng)
        pairs = self._pairs(t, rkey, probes.keys)  # computed either way: same time
        if synthetic:
            pairs = self._synthetic_pairs(t, rkey, lay.n_pairs)
        shuffle(rng, pairs)

        x = shamir_x(table.table_id, voucher_id)
        if synthetic:
            y = int.from_bytes(group.random_scalar(rng), "little")
            inner = bytes([FLAG_SYNTHETIC]) + bytes(lay.match_plain - 1)
            evidence = b""
        else:
            y = evaluate(self._coefficients, x)
            inner = bytes([FLAG_REAL]) + pdq + commitment + probes.hint
        match_base = self._ek if table.policy is Policy.THRESHOLD else rkey
        m = seal(hkdf_sha256(match_base, salt=t, info=INFO_MATCH), inner)
        padded = w.u32(len(evidence)) + evidence + bytes(table.evidence_bytes - len(evidence))
        c_ev = seal(hkdf_sha256(self._ek, salt=t, info=INFO_EVIDENCE), padded)
        front = self._header + voucher_id + b"".join(q + wr for q, wr in pairs)
        aad = hashlib.sha256(front + c_ev).digest()
        c_mid = seal(hkdf_sha256(rkey, salt=t, info=INFO_MID), y.to_bytes(32, "little") + m, aad)
        out = front + c_mid + c_ev
        assert len(out) == lay.total
        return out

    def _pairs(self, t: bytes, rkey: bytes, keys: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
        table, rng = self.table, self._rng
        out = []
        for key in keys:
            hk = group.hash_to_group(KEY_DOMAIN, key)
            for pos in slot_positions(table.cuckoo_seed, key, table.n_slots):
                beta, gamma = group.random_scalar(rng), group.random_scalar(rng)
                try:
                    s = group.add(
                        group.mul(beta, table.slot(pos)), group.mul(gamma, table.server_point)
                    )
                except ValueError:
                    raise InvalidTable("table slot is not a valid point") from None
                q = group.add(group.mul(beta, hk), group.base_mul(gamma))
                out.append((q, seal(pair_key(s, q, t), rkey)))
        return out

    def _synthetic_pairs(self, t: bytes, rkey: bytes, n: int) -> list[tuple[bytes, bytes]]:
        rng, table = self._rng, self.table
        gamma = group.random_scalar(rng)
        q = group.base_mul(gamma)
        s = group.mul(gamma, table.server_point)
        out = [(q, seal(pair_key(s, q, t), rkey))]
        for _ in range(n - 1):
            out.append((group.random_point(rng), rng(32 + TAG_BYTES)))
        return out
