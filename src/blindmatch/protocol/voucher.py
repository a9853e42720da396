"""Vouchers: the client side, the recipient's check, and the byte layout.

Voucher wire format, version 3 (integers big-endian; sizes fixed by the table,
so every voucher under one table has the same length)::

    offset  size       field
    0       4          magic "BMVC"
    4       1          format version = 3 (versions 1 and 2 are refused)
    5       1          reserved = 0
    6       2          n_pairs = 3 · n_probes
    8       16         table id (first 16 bytes of the table digest)
    --- end of header (24 bytes) ---
    24      16         voucher id                                   (from the opening seed)
    40      80·n_pairs pairs (Q ‖ W): Q a point (32), W = seal(K, rkey) (48)   (from the seed)
    ...     32         R = r·G, r a fresh secret scalar from the system RNG (never the seed)
    ...     48         C_share = seal(k_share, y)                 y: the Shamir share, 32 LE
    ...     32+32+65+h+32  C_mid = seal(k_mid, c ‖ M), aad = SHA-256(all bytes except C_mid)
    ...     36 + E     C_ev  = seal(k_out, seal(k_ev, u32 length ‖ evidence ‖ zero padding to E))

    plain = flag ‖ PDQ ‖ commitment ‖ hint                  (1 + 32 + 32 + h)
    M     = seal(k_match, nonce ‖ plain)                     (32 + 65 + h, +16 tag)
    c     = HMAC-SHA256(nonce, "blindmatch/v3/match-commitment\0" ‖ plain)

with ``h`` the lookup scheme's hint size and ``E`` the table's evidence size.

**Format 4** (a distance-checked table, docs/protocol.md §11) is the same layout with the
version byte 4 and two changes: each pair's ``W = seal(K, rkey ‖ key id)`` (96-byte pairs;
:func:`key_id` of the probe key), and the match, share and outer evidence layers are keyed by
:func:`opened_key` ``(rkey, D, T)`` instead of ``rkey``, ``D`` the key the second check
discloses (``κ`` is 32 bytes of the opening stream ``"distance-key"``). ``C_mid`` stays under
``rkey``. The voucher is opened in two rounds (:mod:`blindmatch.protocol.challenge`). ``nonce``
comes from the opening seed. ``c`` binds ``M`` to what the recipient can recompute: under
the threshold policy ``M`` is sealed under the sender's evidence key, which the recipient
lacks, but the recipient opens ``C_mid`` (under ``rkey``) and checks ``c`` against the
plaintext it expects (flag 0 and this image's PDQ, commitment and hint; or flag 1 and
zeros when the seed's coin says synthetic); the server, once it can open ``M``, checks
``c`` too. A client that lies in ``M`` (a synthetic flag on a real share, another PDQ) is
caught on both sides. ``c`` hides ``plain`` from the server until then (``nonce`` is
secret: it is in the seed, and inside ``M``).
Keys (HKDF-SHA256, salt ``T = SHA-256("blindmatch/v1/voucher\\0" ‖ header ‖ voucher id)``)::

    K_i     = HKDF(S_i ‖ Q_i,     info "blindmatch/v1/pair")
    k_share = HKDF(rkey ‖ r·L,    info "blindmatch/v2/share")      the server: r·L = α·R
    k_mid   = HKDF(rkey,          info "blindmatch/v1/mid")
    k_match = HKDF(rkey,          info "blindmatch/v1/match")   block policy
            = HKDF(ek,            info "blindmatch/v1/match")   threshold policy
    k_out   = HKDF(rkey,          info "blindmatch/v2/evidence-outer")
    k_ev    = HKDF(ek,            info "blindmatch/v1/evidence")

**The opening.** The sender draws a 32-byte *opening seed* ``s`` and sends it to
the recipient inside the end-to-end-encrypted payload (never to the server in
the clear). Every value the recipient needs to recompute the voucher comes from
ChaCha20 streams keyed by ``HKDF(s, salt = header, info = "blindmatch/v2/opening/" ‖ purpose)``
(:class:`~blindmatch.protocol.hazmat.drbg.Drbg`): ``id`` (voucher id), ``rkey``,
``probe-padding`` (the scheme's random padding keys), ``pairs`` (every β, γ in
order), ``synthetic-coin`` and ``synthetic-pairs`` (threshold policy), ``shuffle``
and ``match-nonce``. :func:`verify_voucher_for_image` recomputes all of that from ``s``
and the image and compares byte for byte. What the recipient must *not* learn
stays out of the seed: the share ``y`` is sealed under ``k_share``, which needs
``r·L`` (``r`` from the system RNG; computing ``r·L`` from ``R`` and ``L`` is
the Diffie–Hellman problem), and the evidence and, under the threshold policy,
``M`` are under the account's evidence key ``ek``. The evidence has an outer
layer under ``rkey`` so that ``ek`` alone opens no voucher that did not open
(docs/protocol.md §5 explains why the outer layer is needed).

For a real voucher each pair belongs to one probe key ``k`` and one of its
three cuckoo positions ``p``: ``Q = β·H(k) + γ·G``, ``S = β·P[p] + γ·L``; the
server recomputes ``S = α·Q``, which equals the client's only when
``P[p] = α·H(k)``. A synthetic voucher (threshold policy only, when the seed's
coin says so) has one pair with ``Q = γ·G``, ``S = γ·L`` (it always opens),
every other pair random points and bytes from the seed, a random share ``y``
(system RNG) and ``flag = 1``.

``y = f(x)`` is a Shamir share of the account's evidence secret
``a_0`` with ``x = SHA-512("blindmatch/v1/shamir-x\\0" ‖ table id ‖ voucher id) mod ℓ``;
``ek = HKDF(a_0, info "blindmatch/v1/evidence-key")``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from blindmatch.errors import InvalidHash, InvalidTable, InvalidVoucher, ProtocolError
from blindmatch.protocol import _wire as w
from blindmatch.protocol.hazmat import group
from blindmatch.protocol.hazmat.aead import TAG_BYTES, open_sealed, seal
from blindmatch.protocol.hazmat.cuckoo import slot_positions
from blindmatch.protocol.hazmat.drbg import Drbg
from blindmatch.protocol.hazmat.kdf import hkdf_sha256
from blindmatch.protocol.hazmat.rng import Rng, randbelow, shuffle, system_rng
from blindmatch.protocol.hazmat.shamir import evaluate
from blindmatch.protocol.lookup import PDQ_BYTES, ProbeSet, QueryHash
from blindmatch.protocol.manifest import (
    Manifest,
    TableHistory,
    TrustPolicy,
    check_client_rules,
    check_table_matches,
    verify_manifest,
)
from blindmatch.protocol.table import KEY_DOMAIN, Policy, Table

VOUCHER_MAGIC = b"BMVC"
FORMAT_VERSION = 3
#: Vouchers under a distance-checked table (docs/protocol.md §11): each pair also wraps the
#: probe key's id, and the inner layers need the second check's disclosed key.
DISTANCE_FORMAT_VERSION = 4
HEADER_BYTES = 24
ID_BYTES = 16
PAIR_BYTES = 32 + 32 + TAG_BYTES
KEY_ID_BYTES = 16
DISTANCE_PAIR_BYTES = PAIR_BYTES + KEY_ID_BYTES
POINT_BYTES = 32
SHARE_BYTES = 32 + TAG_BYTES
COMMITMENT_BYTES = 32
OPENING_SEED_BYTES = 32
NONCE_BYTES = 32
MATCH_COMMITMENT_BYTES = 32
FLAG_REAL = 0
FLAG_SYNTHETIC = 1

_TRANSCRIPT = b"blindmatch/v1/voucher\x00"
_SHAMIR_X = b"blindmatch/v1/shamir-x\x00"
INFO_PAIR = b"blindmatch/v1/pair"
INFO_MID = b"blindmatch/v1/mid"
INFO_MATCH = b"blindmatch/v1/match"
INFO_EVIDENCE = b"blindmatch/v1/evidence"
INFO_EVIDENCE_OUTER = b"blindmatch/v2/evidence-outer"
INFO_SHARE = b"blindmatch/v2/share"
INFO_EK = b"blindmatch/v1/evidence-key"
INFO_COEF = b"blindmatch/v1/shamir-coefficient"
OPENING_LABEL = b"blindmatch/v2/opening/"
INFO_OPENED = b"blindmatch/v4/opened"
_KEY_ID = b"blindmatch/v4/key-id\x00"
MATCH_COMMITMENT_LABEL = b"blindmatch/v3/match-commitment\x00"
_MISMATCH = "voucher was not made for this image with this opening"


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


def key_id(key: bytes) -> bytes:
    """The 16-byte id a format-4 pair wraps beside ``rkey``: which probe key opened, so the
    server can pick the candidate's committed record (docs/protocol.md §11)."""
    return hashlib.sha256(_KEY_ID + key).digest()[:KEY_ID_BYTES]


def opened_key(rkey: bytes, disclosed: bytes, t: bytes) -> bytes:
    """Format 4: the key of the inner layers (match, share, evidence outer), which needs both
    ``rkey`` (a pair opened) and the second check's disclosed key (``d ≤ R``)."""
    return hkdf_sha256(rkey + disclosed, salt=t, info=INFO_OPENED)


def share_key(rkey: bytes, rl: bytes, t: bytes) -> bytes:
    """``k_share`` from ``rkey`` and ``r·L`` (the server computes ``r·L`` as ``α·R``)."""
    return hkdf_sha256(rkey + rl, salt=t, info=INFO_SHARE)


def match_commitment(nonce: bytes, plain: bytes) -> bytes:
    """``c = HMAC-SHA256(nonce, label ‖ plain)``: binds ``M``'s plaintext; hides it without
    ``nonce``."""
    return hmac.digest(nonce, MATCH_COMMITMENT_LABEL + plain, "sha256")


def new_opening_seed(rng: Rng = system_rng) -> bytes:
    """A fresh 32-byte opening seed: one per voucher, sent only inside the E2EE payload."""
    return rng(OPENING_SEED_BYTES)


def opening_stream(seed: bytes, header: bytes, purpose: str) -> Drbg:
    """The opening's deterministic stream for one purpose (see the module docstring)."""
    return Drbg(seed, salt=header, label=OPENING_LABEL + purpose.encode())


@dataclass(frozen=True)
class Layout:
    """Byte sizes and offsets of a voucher under one table."""

    n_pairs: int
    hint_size: int
    evidence_bytes: int
    pair_bytes: int = PAIR_BYTES

    @property
    def match_plain(self) -> int:
        """``flag ‖ PDQ ‖ commitment ‖ hint``."""
        return 1 + PDQ_BYTES + COMMITMENT_BYTES + self.hint_size

    @property
    def match_sealed(self) -> int:
        """``M = seal(k_match, nonce ‖ plain)``."""
        return NONCE_BYTES + self.match_plain + TAG_BYTES

    @property
    def mid_plain(self) -> int:
        """``c ‖ M``, the plaintext of ``C_mid``."""
        return MATCH_COMMITMENT_BYTES + self.match_sealed

    @property
    def mid_bytes(self) -> int:
        return self.mid_plain + TAG_BYTES

    @property
    def ev_inner_bytes(self) -> int:
        return 4 + self.evidence_bytes + TAG_BYTES

    @property
    def ev_bytes(self) -> int:
        return self.ev_inner_bytes + TAG_BYTES

    @property
    def pairs_offset(self) -> int:
        return HEADER_BYTES + ID_BYTES

    @property
    def r_offset(self) -> int:
        return self.pairs_offset + self.pair_bytes * self.n_pairs

    @property
    def share_offset(self) -> int:
        return self.r_offset + POINT_BYTES

    @property
    def mid_offset(self) -> int:
        return self.share_offset + SHARE_BYTES

    @property
    def ev_offset(self) -> int:
        return self.mid_offset + self.mid_bytes

    @property
    def total(self) -> int:
        return self.ev_offset + self.ev_bytes

    @classmethod
    def for_table(cls, table: Table) -> Layout:
        pair_bytes = PAIR_BYTES if table.distance is None else DISTANCE_PAIR_BYTES
        return cls(
            3 * table.scheme.n_probes, table.scheme.hint_size, table.evidence_bytes, pair_bytes
        )


def voucher_version(table: Table) -> int:
    """3, or 4 under a distance-checked table."""
    return FORMAT_VERSION if table.distance is None else DISTANCE_FORMAT_VERSION


def header_for(table: Table) -> bytes:
    layout = Layout.for_table(table)
    version = voucher_version(table)
    return VOUCHER_MAGIC + w.u8(version) + b"\x00" + w.u16(layout.n_pairs) + table.table_id


@dataclass(frozen=True)
class ParsedVoucher:
    """A voucher split into its fields (no cryptographic check yet)."""

    header: bytes
    voucher_id: bytes
    pairs: tuple[tuple[bytes, bytes], ...]
    server_r: bytes  # R = r·G
    share: bytes  # C_share
    mid: bytes
    evidence: bytes
    raw: bytes

    def mid_aad(self) -> bytes:
        """SHA-256 of every voucher byte except ``C_mid`` (the AAD of ``C_mid``)."""
        mid_offset = len(self.raw) - len(self.evidence) - len(self.mid)
        return mid_aad_of(self.raw, mid_offset, len(self.mid))

    @classmethod
    def from_bytes(cls, data: bytes, table: Table) -> ParsedVoucher:
        """Split and check sizes and header; anything wrong raises :class:`InvalidVoucher`."""
        if not isinstance(data, bytes):
            raise InvalidVoucher("malformed voucher")
        if len(data) > 4 and data[:4] == VOUCHER_MAGIC and data[4] in (1, 2):
            raise InvalidVoucher(
                f"voucher format version {data[4]} is no longer accepted (this build reads "
                f"versions {FORMAT_VERSION} and {DISTANCE_FORMAT_VERSION}); make the voucher "
                "again with a current client"
            )
        layout = Layout.for_table(table)
        if len(data) != layout.total or data[:HEADER_BYTES] != header_for(table):
            raise InvalidVoucher("malformed voucher")
        if not group.is_valid_point(data[layout.r_offset : layout.share_offset]):
            raise InvalidVoucher("malformed voucher")  # checked for every voucher, opened or not
        pairs = []
        for i in range(layout.n_pairs):
            o = layout.pairs_offset + layout.pair_bytes * i
            # Q is checked by the server's scalar multiplication (libsodium refuses a
            # non-canonical or identity point there), not twice.
            pairs.append((data[o : o + 32], data[o + 32 : o + layout.pair_bytes]))
        return cls(
            data[:HEADER_BYTES],
            data[HEADER_BYTES : layout.pairs_offset],
            tuple(pairs),
            data[layout.r_offset : layout.share_offset],
            data[layout.share_offset : layout.mid_offset],
            data[layout.mid_offset : layout.ev_offset],
            data[layout.ev_offset :],
            data,
        )


def mid_aad_of(raw: bytes, mid_offset: int, mid_len: int) -> bytes:
    return hashlib.sha256(raw[:mid_offset] + raw[mid_offset + mid_len :]).digest()


@dataclass(frozen=True)
class VerifiedTable:
    """A table whose manifest verified; the only way to start a :class:`ClientSession`."""

    table: Table
    manifest: Manifest

    @property
    def has_companions(self) -> bool:
        """Whether the table's entries carry companion hashes: read from the signed counts
        (more lookup keys than entries × tables; a bare-PDQ list has at most that many)."""
        tables = len(self.table.scheme.list_keys(bytes(32)))
        return self.manifest.n_keys > self.manifest.n_entries * tables


def variants_for_table(verified: VerifiedTable, variants: Sequence[QueryHash]) -> list[QueryHash]:
    """The query hashes a voucher probes against this table: companion hashes only when the
    table has companions (against a bare-PDQ list they would take probes from the image's
    own hash and its orientations for nothing). Sender and recipient both apply it, so the
    recipient's recomputation sees the same probes."""
    if verified.has_companions:
        return list(variants)
    return [q for q in variants if not q.companion]


def verify_table(
    table_bytes: bytes,
    signed_manifest: bytes,
    trust: TrustPolicy,
    *,
    history: TableHistory | None = None,
    now: datetime | None = None,
) -> VerifiedTable:
    """Check the signed manifest against ``trust``, the table against the manifest, and
    the client's rules (:func:`~blindmatch.protocol.manifest.check_client_rules`: the
    trust's floors and maximum age at ``now`` — default: the system clock — and, with a
    ``history``, no rollback; the table is recorded there once everything passed).

    Raises :class:`~blindmatch.errors.InvalidManifest` or
    :class:`~blindmatch.errors.InvalidTable`.
    """
    manifest = verify_manifest(signed_manifest, table_bytes, trust)
    table = Table.from_bytes(table_bytes)
    check_table_matches(manifest, table)
    when = now if now is not None else datetime.now(UTC)
    check_client_rules(manifest, table, trust, now=when, history=history)
    return VerifiedTable(table, manifest)


class ClientSession:
    """Makes vouchers for one account against one verified table."""

    def __init__(
        self, verified: VerifiedTable, account: AccountSecret, *, rng: Rng = system_rng
    ) -> None:
        if not isinstance(verified, VerifiedTable):
            raise TypeError("ClientSession needs a VerifiedTable (see verify_table)")
        self.verified = verified
        self.table = verified.table
        self.manifest = verified.manifest
        self._rng = rng
        self._coefficients = account.coefficients(self.table.threshold)
        self._ek = evidence_key(self._coefficients[0])
        self._layout = Layout.for_table(self.table)
        self._used_seeds: set[bytes] = set()

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
        opening_seed: bytes | None = None,
    ) -> bytes:
        """One voucher for one image hash.

        ``confidence`` (256 floats, see :mod:`blindmatch.protocol.lookup`)
        enables multi-probing; ``variants`` are further hashes of the same image
        (orientations, trimmed frames) that share the voucher's probes when the
        table's scheme supports it (:class:`~blindmatch.protocol.lookup.VariantProbeLSH`);
        ``evidence`` (at most the table's evidence
        size: a small review derivative) opens only at the threshold;
        ``commitment`` (32 bytes, e.g. SHA-256 of the encrypted attachment) is
        carried in the match layer. ``opening_seed`` (32 bytes, from
        :func:`new_opening_seed`) lets the recipient check the voucher
        (:func:`verify_voucher_for_image`): send it inside the end-to-end-encrypted
        payload, never in the clear. Without one a fresh seed is drawn and
        discarded, and nobody can check the voucher. Under the threshold policy
        a synthetic voucher replaces the real one when the seed's coin says so
        (at the table's synthetic rate).
        """
        return self._build(
            pdq,
            confidence,
            evidence,
            commitment,
            synthetic=None,
            variants=variants,
            opening_seed=opening_seed,
        )

    def _build(
        self,
        pdq: bytes,
        confidence: Sequence[float] | None,
        evidence: bytes,
        commitment: bytes,
        *,
        synthetic: bool | None,
        variants: Sequence[QueryHash] = (),
        opening_seed: bytes | None = None,
    ) -> bytes:
        """``synthetic``: None lets the seed's coin decide (the only honest choice); tests
        force it to model a client that ignores the coin."""
        if not isinstance(evidence, bytes) or len(evidence) > self.table.evidence_bytes:
            raise ProtocolError(f"evidence is bytes, at most {self.table.evidence_bytes} of them")
        if synthetic and self.table.policy is not Policy.THRESHOLD:
            raise ProtocolError("synthetic vouchers exist only under the threshold policy")
        seed = new_opening_seed(self._rng) if opening_seed is None else opening_seed
        table, lay, rng = self.table, self._layout, self._rng
        variants = variants_for_table(self.verified, variants)
        d = derive_opening(table, seed, pdq, confidence, variants, commitment, synthetic=synthetic)
        # One voucher per seed: a second voucher from the same seed would reuse every AEAD key
        # (all sealed with the zero nonce) on other plaintexts, and share the voucher id.
        used = hashlib.sha256(seed).digest()
        if used in self._used_seeds:
            raise ProtocolError("this opening seed was already used: draw a fresh one per voucher")
        self._used_seeds.add(used)
        r = group.random_scalar(rng)  # the system RNG, never the seed: the recipient lacks r
        big_r = group.base_mul(r)
        rl = group.mul(r, table.server_point)
        x = shamir_x(table.table_id, d.voucher_id)
        if d.synthetic:
            y = int.from_bytes(group.random_scalar(rng), "little")
            evidence = b""
        else:
            y = evaluate(self._coefficients, x)
        c_share = seal(share_key(d.layer_key, rl, d.t), y.to_bytes(32, "little"))
        match_base = self._ek if table.policy is Policy.THRESHOLD else d.layer_key
        m = seal(hkdf_sha256(match_base, salt=d.t, info=INFO_MATCH), d.nonce + d.match_plain)
        padded = w.u32(len(evidence)) + evidence + bytes(table.evidence_bytes - len(evidence))
        inner = seal(hkdf_sha256(self._ek, salt=d.t, info=INFO_EVIDENCE), padded)
        c_ev = seal(hkdf_sha256(d.layer_key, salt=d.t, info=INFO_EVIDENCE_OUTER), inner)
        front = d.front + big_r + c_share
        aad = hashlib.sha256(front + c_ev).digest()
        c_mid = seal(hkdf_sha256(d.rkey, salt=d.t, info=INFO_MID), d.commitment_c + m, aad)
        out = front + c_mid + c_ev
        assert len(out) == lay.total
        return out


# -- the opening: everything derived from the seed ------------------------------------------


@dataclass(frozen=True)
class Opening:
    """What an opening seed and an image determine (the sender's and the recipient's view)."""

    voucher_id: bytes
    t: bytes
    rkey: bytes
    synthetic: bool
    front: bytes  # header ‖ voucher id ‖ pairs (b"" when derived without the pairs)
    match_plain: bytes  # flag ‖ PDQ ‖ commitment ‖ hint (flag 1 and zeros when synthetic)
    nonce: bytes  # the match layer's nonce (first 32 bytes of M's plaintext)
    #: The key of the match, share and outer evidence layers: ``rkey`` (format 3), or
    #: :func:`opened_key` of ``rkey`` and the distance check's disclosed key (format 4).
    layer_key: bytes = b""
    #: Format 4: the distance check's key ``κ`` (from the seed).
    kappa: bytes = b""
    #: Per pair, in voucher order: the query hash whose probe the pair carries (None for
    #: a padding probe or a synthetic pair) — what the client checks a slot naming it with.
    pair_hashes: tuple[bytes | None, ...] = ()

    @property
    def commitment_c(self) -> bytes:
        """``c``, carried in ``C_mid`` beside ``M``."""
        return match_commitment(self.nonce, self.match_plain)

    def __repr__(self) -> str:  # everything here is as secret as the seed
        return f"Opening(<{len(self.front)} bytes>, synthetic={self.synthetic})"


def _check_inputs(pdq: object, commitment: object, seed: object) -> None:
    if not isinstance(pdq, bytes) or len(pdq) != PDQ_BYTES:
        raise InvalidHash("a PDQ hash is 32 bytes")
    if not isinstance(commitment, bytes) or len(commitment) != COMMITMENT_BYTES:
        raise ProtocolError(f"a commitment is {COMMITMENT_BYTES} bytes")
    if not isinstance(seed, bytes) or len(seed) != OPENING_SEED_BYTES:
        raise ProtocolError(f"an opening seed is {OPENING_SEED_BYTES} bytes")


def synthetic_coin(table: Table, seed: bytes) -> bool:
    """Whether the seed makes this voucher synthetic (threshold policy with a synthetic rate;
    always False under the block policy)."""
    if table.policy is not Policy.THRESHOLD or not table.synthetic_ppm:
        return False
    coin = opening_stream(seed, header_for(table), "synthetic-coin")
    return randbelow(coin, 1_000_000) < table.synthetic_ppm


def derive_opening(
    table: Table,
    seed: bytes,
    pdq: bytes,
    confidence: Sequence[float] | None,
    variants: Sequence[QueryHash],
    commitment: bytes,
    *,
    synthetic: bool | None = None,
    real_pairs: bool = True,
    pairs_wanted: bool = True,
) -> Opening:
    """Recompute the seed-determined part of a voucher. ``real_pairs=False`` skips the real
    pairs of a synthetic voucher (the sender computes them anyway: same time either way);
    ``pairs_wanted=False`` skips every pair (``front`` is then empty: answering a
    distance-check challenge needs only which hash each pair carries)."""
    _check_inputs(pdq, commitment, seed)
    header = header_for(table)
    if synthetic is None:
        synthetic = synthetic_coin(table, seed)
    voucher_id = opening_stream(seed, header, "id")(ID_BYTES)
    t = transcript(header, voucher_id)
    rkey = opening_stream(seed, header, "rkey")(32)
    padding = opening_stream(seed, header, "probe-padding")
    probes: ProbeSet
    if variants:
        probes = table.scheme.probe_variants([QueryHash(pdq, confidence), *variants], padding)
    else:
        probes = table.scheme.probe(pdq, confidence, padding)
    n_pairs = 3 * table.scheme.n_probes
    pairs: list[tuple[bytes, bytes]] = [(b"", b"")] * n_pairs
    if pairs_wanted and (real_pairs or not synthetic):
        pairs = _pairs(table, t, rkey, probes.keys, opening_stream(seed, header, "pairs"))
    sources: list[bytes | None] = [None] * n_pairs
    if synthetic:
        if pairs_wanted:
            stream = opening_stream(seed, header, "synthetic-pairs")
            pairs = _synthetic_pairs(table, t, rkey, n_pairs, stream)
    elif table.distance is not None:  # which hash each pair carries: the real probes in order
        probed = table.scheme.probe_hashes(pdq, probes.hint)
        sources = [probed[j // 3][1] if j // 3 < len(probed) else None for j in range(n_pairs)]
    both = list(zip(pairs, sources, strict=True))
    shuffle(opening_stream(seed, header, "shuffle"), both)  # one permutation for both
    if synthetic:
        plain = bytes([FLAG_SYNTHETIC]) + bytes(Layout.for_table(table).match_plain - 1)
    else:
        plain = bytes([FLAG_REAL]) + pdq + commitment + probes.hint
    front = header + voucher_id + b"".join(q + wr for (q, wr), _ in both) if pairs_wanted else b""
    nonce = opening_stream(seed, header, "match-nonce")(NONCE_BYTES)
    kappa, layer_key = b"", rkey
    if table.distance is not None:
        from blindmatch.protocol.distance import disclosed_key

        kappa = opening_stream(seed, header, "distance-key")(32)
        layer_key = opened_key(rkey, disclosed_key(kappa), t)
    return Opening(
        voucher_id, t, rkey, synthetic, front, plain, nonce, layer_key, kappa,
        tuple(src for _, src in both),
    )  # fmt: skip


def _pairs(
    table: Table, t: bytes, rkey: bytes, keys: Sequence[bytes], rng: Rng
) -> list[tuple[bytes, bytes]]:
    out = []
    checked = table.distance is not None
    for key in keys:
        hk = group.hash_to_group(KEY_DOMAIN, key)
        wrapped = rkey + key_id(key) if checked else rkey
        for pos in slot_positions(table.cuckoo_seed, key, table.n_slots):
            beta, gamma = group.random_scalar(rng), group.random_scalar(rng)
            try:
                s = group.add(
                    group.mul(beta, table.slot(pos)), group.mul(gamma, table.server_point)
                )
            except ValueError:
                raise InvalidTable("table slot is not a valid point") from None
            q = group.add(group.mul(beta, hk), group.base_mul(gamma))
            out.append((q, seal(pair_key(s, q, t), wrapped)))
    return out


def _synthetic_pairs(
    table: Table, t: bytes, rkey: bytes, n: int, rng: Rng
) -> list[tuple[bytes, bytes]]:
    gamma = group.random_scalar(rng)
    q = group.base_mul(gamma)
    s = group.mul(gamma, table.server_point)
    out = [(q, seal(pair_key(s, q, t), rkey))]
    for _ in range(n - 1):
        out.append((group.random_point(rng), rng(32 + TAG_BYTES)))
    return out


def voucher_is_synthetic(verified: VerifiedTable, opening_seed: bytes) -> bool:
    """Whether a voucher made with ``opening_seed`` under this table is synthetic
    (what a recipient learns about synthetic vouchers; see docs/protocol.md §5)."""
    if not isinstance(verified, VerifiedTable):
        raise TypeError("voucher_is_synthetic needs a VerifiedTable (see verify_table)")
    if not isinstance(opening_seed, bytes) or len(opening_seed) != OPENING_SEED_BYTES:
        raise ProtocolError(f"an opening seed is {OPENING_SEED_BYTES} bytes")
    return synthetic_coin(verified.table, opening_seed)


def answer_for_image(
    verified: VerifiedTable,
    challenge: bytes,
    opening_seed: bytes,
    pdq: bytes,
    *,
    confidence: Sequence[float] | None = None,
    variants: Sequence[QueryHash] = (),
    commitment: bytes = bytes(COMMITMENT_BYTES),
) -> bytes:
    """The answer to the server's distance-check challenge for the voucher made from this
    image and opening seed (format 4; docs/protocol.md §11): the sender computes it, the
    recipient recomputes it (same arguments as :meth:`ClientSession.make_voucher`). Raises
    :class:`~blindmatch.errors.InvalidDistanceCheck` if the challenge does not verify
    against the table (a slot naming no pair, a record not committed in the table)."""
    from blindmatch.protocol.challenge import Challenge, answer_challenge

    if not isinstance(verified, VerifiedTable):
        raise TypeError("answer_for_image needs a VerifiedTable (see verify_table)")
    table = verified.table
    if table.distance is None:
        raise ProtocolError("this table has no distance check: its vouchers need no answer")
    variants = variants_for_table(verified, variants)
    d = derive_opening(
        table, opening_seed, pdq, confidence, variants, commitment, pairs_wanted=False
    )
    parsed = Challenge.from_bytes(challenge, table.distance, Layout.for_table(table).n_pairs)
    return answer_challenge(
        parsed, table.distance, opening_seed=opening_seed, header=header_for(table),
        kappa=d.kappa, pair_hashes=d.pair_hashes, own=pdq,
    )  # fmt: skip


def verify_voucher_for_image(
    verified: VerifiedTable,
    voucher: bytes,
    opening_seed: bytes,
    pdq: bytes,
    *,
    confidence: Sequence[float] | None = None,
    variants: Sequence[QueryHash] = (),
    commitment: bytes,
    challenge: bytes | None = None,
    answer: bytes | None = None,
) -> None:
    """Recipient: check that ``voucher`` was made for this image with this opening seed.

    Under a distance-checked table (format 4) pass the server's ``challenge`` and the
    sender's ``answer`` too: the answer is recomputed and compared as well.

    Recomputes from the seed and the image (the same PDQ, confidence vector and
    variants the sender computed: same library, same decoder) every byte of the
    voucher that they determine and compares: the header, the voucher id, every
    pair, and under the block policy the match layer (flag, PDQ, ``commitment``,
    hint) and ``C_mid`` with its AAD over the voucher's own ``R``, ``C_share`` and
    ``C_ev``. It also checks that ``R`` is a valid point and that the outer layers
    of ``C_mid`` and ``C_ev`` open under ``rkey``. The share (``C_share``) and the
    inner evidence layer cannot be checked: by design the recipient cannot open them.

    Under the threshold policy ``M`` is sealed under the sender's evidence key and
    cannot be recomputed, and a synthetic voucher (the seed's coin) is checked only
    as synthetic: the check is exact for the pairs, statistical for synthetic ones
    (docs/protocol.md §5). Raises :class:`~blindmatch.errors.InvalidVoucher` on any
    mismatch.
    """
    if not isinstance(verified, VerifiedTable):
        raise TypeError("verify_voucher_for_image needs a VerifiedTable (see verify_table)")
    table = verified.table
    v = ParsedVoucher.from_bytes(voucher, table)
    variants = variants_for_table(verified, variants)
    d = derive_opening(table, opening_seed, pdq, confidence, variants, commitment, real_pairs=False)
    lay = Layout.for_table(table)
    ok = hmac.compare_digest(voucher[: lay.r_offset], d.front)  # R: checked by from_bytes
    out_key = hkdf_sha256(d.layer_key, salt=d.t, info=INFO_EVIDENCE_OUTER)
    inner = open_sealed(out_key, v.evidence)
    ok &= inner is not None and len(inner) == lay.ev_inner_bytes
    k_mid = hkdf_sha256(d.rkey, salt=d.t, info=INFO_MID)
    aad = v.mid_aad()
    if table.policy is Policy.BLOCK:
        m = seal(hkdf_sha256(d.layer_key, salt=d.t, info=INFO_MATCH), d.nonce + d.match_plain)
        ok &= hmac.compare_digest(seal(k_mid, d.commitment_c + m, aad), v.mid)
    else:
        # M is under the sender's evidence key; c (beside it, under rkey) must commit to
        # exactly the plaintext this image and seed give: flag, PDQ, commitment and hint.
        mid = open_sealed(k_mid, v.mid, aad)
        ok &= mid is not None and len(mid) == lay.mid_plain
        ok &= mid is not None and hmac.compare_digest(mid[:MATCH_COMMITMENT_BYTES], d.commitment_c)
    if challenge is not None or answer is not None:
        try:
            expected = answer_for_image(
                verified, challenge if challenge is not None else b"", opening_seed, pdq,
                confidence=confidence, variants=variants, commitment=commitment,
            )  # fmt: skip
        except ProtocolError:
            raise InvalidVoucher(_MISMATCH) from None
        ok &= isinstance(answer, bytes) and hmac.compare_digest(expected, answer)
    if not ok:
        raise InvalidVoucher(_MISMATCH)
