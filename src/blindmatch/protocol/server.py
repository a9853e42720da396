"""The server side: open vouchers, confirm candidates, keep per-account threshold state.

The session holds α and the listed entries (:class:`ServerSecret`) and the
public table. :meth:`ServerSession.open` tries every pair of a voucher
(``α·Q``, derive ``K``, try to unwrap ``rkey``) — all of them, also after one
opened; if one opened it decrypts the middle layer (the commitment ``c`` and the
match layer ``M``), the share layer (``y``, under ``rkey`` and ``α·R``) and the
outer evidence layer (under ``rkey``). Nothing raises once a pair opened: a
layer that fails makes the result ``tampered`` (docs/protocol.md §5, "What a
sender can observe"). What happens next depends on the table's policy:

* **block** — ``M`` is under ``rkey``: the server reads the client's PDQ and
  hint at once, recomputes the probe keys, looks them up among the listed
  keys and confirms ``d ≤ max_distance`` (31) against each candidate entry.
  Only a confirmed match is a match; only confirmed matches keep their share.
* **threshold** — ``M`` is under the account's evidence key ``ek``: the
  server keeps the share and learns nothing more (a synthetic voucher opens
  just the same) until its shares determine the account's polynomial ``f``;
  then it reads every stored ``M``, drops synthetic ones (a flag-1 voucher whose
  share lies on ``f`` is a lie, and counted as real) and confirms the rest as
  above.

In both policies, once ``ek`` is known the evidence (``C_ev``) of each
confirmed voucher is released in :attr:`OpenResult.released`.

Finding ``f`` among synthetic shares is Reed–Solomon decoding (Gao's algorithm,
:func:`~blindmatch.protocol.hazmat.shamir.decode_shares`) of the most recent
``t``, ``t + 2``, ``2t``, ``3t`` and ``4t`` unreleased shares: bounded work per
voucher, and release as soon as a window's real shares reach ``t`` plus its
synthetic ones.

Per-account state lives behind a small storage port, :class:`ThresholdStore`,
so that a deployment (e.g. a homeserver module) can keep it in a database
across restarts. Its records (:class:`StoredVoucher`) hold only bytes, ints
and booleans — nothing that needs pickle. :class:`MemoryThresholdStore` is
the default. What is stored:

* a voucher that **opened and holds a share**: under the block policy a
  confirmed match; under the threshold policy every voucher that opened
  (real or synthetic: the server cannot tell before ``t``);
* the account's key once recovered: its sharing polynomial (``t`` coefficients, 32
  bytes little-endian each; ``ek`` derives from ``a_0``), kept so that vouchers
  after ``t`` are checked against it too;
* whether each stored voucher's evidence was released.

Replay protection: a voucher id already stored for the account gets the first
answer again (``replayed``) and counts nothing, so a share never counts twice;
integrations refuse replays by voucher id before opening, for every voucher,
so that the sender sees one answer whether or not the voucher opened.
Under the block policy a voucher that opened but did **not** match (a near
miss) is deliberately *not* recorded, not even its id: replaying it yields
the same "opened, not matched" result and adds nothing towards ``t``, so
replay does not matter there, while recording it would keep a trace of a
non-match — exactly what the block policy promises to drop. Under the
threshold policy every opened voucher is stored, so every opened id is
covered. Vouchers that do not open are never recorded (replaying one only
costs the sender's own traffic and the server's time, as any fresh voucher
would).

A :class:`ServerSession` is not safe for concurrent :meth:`~ServerSession.open`
calls on one account; a store shared by several processes must serialise
them per account (e.g. one database transaction or advisory lock per
account around ``open``). A store holds one threshold ``t``'s shares: shares
of different ``t`` lie on different polynomials, so a new ``t`` needs a new
store (or a new account namespace).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from blindmatch.errors import InvalidKey, InvalidVoucher, ProtocolError
from blindmatch.protocol.challenge import Challenge, Slot, parse_answer
from blindmatch.protocol.distance import DistanceKey, disclose
from blindmatch.protocol.hazmat import group
from blindmatch.protocol.hazmat.aead import open_sealed
from blindmatch.protocol.hazmat.drbg import Drbg
from blindmatch.protocol.hazmat.kdf import hkdf_sha256
from blindmatch.protocol.hazmat.rng import randbelow, shuffle
from blindmatch.protocol.hazmat.shamir import ORDER, Share, decode_shares, evaluate
from blindmatch.protocol.lookup import PDQ_BYTES, hamming
from blindmatch.protocol.records import MerkleTree, leaf_digest
from blindmatch.protocol.table import (
    EntryRef,
    ListedEntry,
    Policy,
    ServerSecret,
    Table,
    leaf_hashes,
    make_records,
)
from blindmatch.protocol.voucher import (
    COMMITMENT_BYTES,
    FLAG_REAL,
    FLAG_SYNTHETIC,
    INFO_EVIDENCE,
    INFO_EVIDENCE_OUTER,
    INFO_MATCH,
    INFO_MID,
    KEY_ID_BYTES,
    MATCH_COMMITMENT_BYTES,
    NONCE_BYTES,
    Layout,
    ParsedVoucher,
    evidence_key,
    key_id,
    match_commitment,
    opened_key,
    pair_key,
    shamir_x,
    share_key,
    transcript,
)

MATCH_DISTANCE = 31
#: Recovery also tries every t-subset of the largest window when there are at most this many.
SMALL_SEARCH = 256
_BAD = "voucher did not verify"
_PADDING_LABEL = b"blindmatch/v4/challenge-padding"


@dataclass(frozen=True)
class Match:
    """A listed entry within ``max_distance`` of the voucher's PDQ. ``probe``: the client's
    hash that came within that distance (the image's PDQ, or a variant of it carried in
    the hint) — what the server reads in ``M`` once it opens; an integration's negative
    bank compares it with hashes of pictures review found benign."""

    refs: tuple[EntryRef, ...]
    distance: int
    probe: bytes = field(default=b"", compare=False)
    #: The match came from one of the client's variants (a companion, a trimmed frame,
    #: another orientation), not from the picture's own PDQ.
    variant: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class Release:
    """A stored voucher dealt with once the account's key is known (at ``t``).

    A confirmed match, with its evidence; or a voucher the server caught lying
    (``tampered`` says how — e.g. a synthetic flag on a share that lies on the
    account's polynomial), with whatever matches and evidence could be read.
    """

    voucher_id: bytes
    matches: tuple[Match, ...]
    evidence: bytes = field(repr=False)
    tampered: str | None = None


#: Why a voucher whose outer layer opened is treated as tampered (``OpenResult.tampered``).
TAMPERED_MID = "middle layer does not open"
TAMPERED_MATCH = "match layer does not open or does not match its commitment"
TAMPERED_SHARE = "share layer does not open"
TAMPERED_EVIDENCE = "evidence layer does not open"
TAMPERED_FLAG = "synthetic flag on a share of the account's polynomial"
TAMPERED_OFF_POLYNOMIAL = "real voucher whose share is not on the account's polynomial"


@dataclass(frozen=True)
class OpenResult:
    """What the server learns from one voucher.

    ``opened``: the outer layer opened (under the threshold policy a synthetic
    voucher opens too, so this alone means nothing). ``matched``: confirmed
    ``d ≤ max_distance`` against ``matches`` — under the threshold policy only
    once the account's key is known. ``released``: vouchers this call dealt with
    at the threshold (possibly earlier ones): evidence of confirmed matches, and
    vouchers caught lying. ``tampered``: the outer layer opened but an inner
    layer failed (a listed probe key with a forged voucher; see the constants
    ``TAMPERED_*``); nothing of it is stored in the threshold store — the
    integration keeps the voucher for review. ``replayed``: this voucher id was
    already stored for the account; nothing counts twice.

    ``block`` is the one field an integration may let the sender observe: under
    the block policy, a confirmed match, a tampered voucher whose pair opened,
    or a replay of a stored (hence blocked) voucher; always False under the
    threshold policy, where the sender must see the same for every voucher.
    """

    voucher_id: bytes
    opened: bool
    matched: bool
    matches: tuple[Match, ...] = ()
    released: tuple[Release, ...] = ()
    tampered: str | None = None
    replayed: bool = False
    block: bool = False
    #: Under a distance-checked table: a pair opened (the picture was a candidate for some
    #: entry — what the server learns of a near miss) whether or not the check passed;
    #: ``opened`` then means the check passed and the inner layers opened.
    candidate: bool = False


@dataclass(frozen=True, repr=False)
class PendingOpen:
    """A format-4 voucher between :meth:`ServerSession.begin` and
    :meth:`ServerSession.finish`: send :attr:`challenge` to the sender, keep the rest."""

    voucher_id: bytes
    challenge: bytes
    _voucher: ParsedVoucher
    _t: bytes
    _rkey: bytes | None
    _rl: bytes

    @property
    def candidate(self) -> bool:
        return self._rkey is not None

    def __repr__(self) -> str:  # whether it is a candidate is the server's secret
        return f"PendingOpen({self.voucher_id.hex()})"


@dataclass(frozen=True)
class StoredVoucher:
    """One voucher whose share the server keeps for an account (plain values only).

    ``voucher_id`` (16 bytes) and ``transcript`` (``T``, 32 bytes) identify it and
    key its layers; ``share_x``, ``share_y`` are its Shamir share, integers in
    ``[0, ℓ)`` (below 2^253: a SQL adapter stores each as 32 bytes little-endian);
    ``match_layer`` is ``M``: its plaintext ``flag ‖ PDQ ‖ commitment ‖ hint`` when
    ``match_sealed`` is false (block policy: the server read it at once), else the
    sealed ``M`` (threshold policy, until the account's key is known);
    ``evidence`` is the inner layer of ``C_ev``, sealed under the account's evidence
    key (the server removed the outer layer, under ``rkey``, when the voucher opened);
    ``released``: this voucher has been dealt with once the key was known
    (its evidence released if it was a confirmed match).
    """

    voucher_id: bytes
    transcript: bytes
    share_x: int
    share_y: int
    match_layer: bytes = field(repr=False)
    match_sealed: bool
    evidence: bytes = field(repr=False)
    released: bool = False

    def __post_init__(self) -> None:
        for name, value, size in (
            ("voucher_id", self.voucher_id, 16),
            ("transcript", self.transcript, 32),
        ):
            if not isinstance(value, bytes) or len(value) != size:
                raise ValueError(f"{name} must be {size} bytes")
        for name, v in (("share_x", self.share_x), ("share_y", self.share_y)):
            if type(v) is not int or not 0 <= v < ORDER:
                raise ValueError(f"{name} must be an integer in [0, ℓ)")
        if self.share_x == 0:
            raise ValueError("share_x must not be 0")
        if not isinstance(self.match_layer, bytes) or not isinstance(self.evidence, bytes):
            raise ValueError("match_layer and evidence must be bytes")
        if type(self.match_sealed) is not bool or type(self.released) is not bool:
            raise ValueError("match_sealed and released must be booleans")

    @property
    def share(self) -> Share:
        return Share(self.share_x, self.share_y)


@dataclass(frozen=True)
class AccountState:
    """What a :class:`ThresholdStore` holds for one account."""

    vouchers: tuple[StoredVoucher, ...] = ()
    evidence_key: bytes | None = field(default=None, repr=False)


class ThresholdStore(Protocol):
    """Where a :class:`ServerSession` keeps per-account threshold state.

    Accounts are opaque strings; voucher ids are unique per account. Implementations
    must keep records in insertion order and make each call atomic; the session
    serialises nothing (see the module docstring on concurrency).
    """

    def load(self, account: str) -> AccountState:
        """Every stored voucher of ``account`` (in the order added) and its evidence key."""
        ...

    def contains(self, account: str, voucher_id: bytes) -> bool:
        """Whether ``voucher_id`` is already stored for ``account`` (replay check)."""
        ...

    def append(self, account: str, voucher: StoredVoucher) -> None:
        """Store a new voucher; a voucher id already stored for the account must raise
        :class:`~blindmatch.errors.InvalidVoucher` (e.g. from a unique constraint)."""
        ...

    def mark_released(self, account: str, voucher_id: bytes) -> None:
        """Set ``released`` on one stored voucher."""
        ...

    def set_evidence_key(self, account: str, key: bytes) -> None:
        """Remember the account's recovered 32-byte evidence key."""
        ...


class MemoryThresholdStore:
    """The default :class:`ThresholdStore`: a dict, gone when the process ends."""

    def __init__(self) -> None:
        self._vouchers: dict[str, dict[bytes, StoredVoucher]] = defaultdict(dict)
        self._keys: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"MemoryThresholdStore(<{len(self._vouchers)} accounts>)"

    def load(self, account: str) -> AccountState:
        return AccountState(
            tuple(self._vouchers.get(account, {}).values()), self._keys.get(account)
        )

    def contains(self, account: str, voucher_id: bytes) -> bool:
        return voucher_id in self._vouchers.get(account, {})

    def append(self, account: str, voucher: StoredVoucher) -> None:
        stored = self._vouchers[account]
        if voucher.voucher_id in stored:
            raise InvalidVoucher(_BAD)
        stored[voucher.voucher_id] = voucher

    def mark_released(self, account: str, voucher_id: bytes) -> None:
        stored = self._vouchers[account]
        stored[voucher_id] = replace(stored[voucher_id], released=True)

    def set_evidence_key(self, account: str, key: bytes) -> None:
        self._keys[account] = key


class ServerSession:
    """Opens vouchers made against ``table``; holds the secret behind it."""

    def __init__(
        self,
        secret: ServerSecret,
        table: Table,
        *,
        max_distance: int = MATCH_DISTANCE,
        max_window: int | None = None,
        store: ThresholdStore | None = None,
        records: Sequence[bytes] | None = None,
    ) -> None:
        """``records``: a distance-checked table's committed records in leaf order
        (:attr:`~blindmatch.protocol.table.BuiltTable.records`); recomputed from the secret
        when not given (~12 ms each)."""
        if secret.table_digest != table.digest:
            raise InvalidKey("server key does not belong to this table")
        if (table.distance is None) != (secret.distance is None):
            raise InvalidKey("server key does not belong to this table")
        self.table = table
        self._secret = secret
        self._max_distance = max_distance
        # the largest recovery window: 4t by default (docs/protocol.md §5 step 5, §7)
        self._max_window = max_window or 4 * table.threshold
        if self._max_window < table.threshold:
            raise ValueError("max_window must be at least the threshold t")
        self._keys: dict[bytes, list[int]] = defaultdict(list)
        for i, e in enumerate(secret.entries):
            for k in {k for h in e.hashes for k in table.scheme.list_keys(h)}:
                self._keys[k].append(i)
        self._store: ThresholdStore = store if store is not None else MemoryThresholdStore()
        self._layout = Layout.for_table(table)
        self._checked = table.distance is not None
        if self._checked:
            self._setup_distance(records)

    def __repr__(self) -> str:
        return f"ServerSession({self.table!r}, <secret hidden>)"

    def _setup_distance(self, records: Sequence[bytes] | None) -> None:
        params, distance = self.table.distance, self._secret.distance
        assert params is not None and distance is not None
        x, audit_seed = distance
        hashes = leaf_hashes(self._secret.entries, audit_seed)
        if records is None:
            records = make_records(x, audit_seed, [h for _, h in hashes])
        records = tuple(records)
        if len(records) != params.n_records or len(hashes) != params.n_records:
            raise InvalidKey("the records do not belong to this table")
        tree = MerkleTree([leaf_digest(i, rec) for i, rec in enumerate(records)])
        if tree.root != params.records_root:
            raise InvalidKey("the records do not belong to this table")
        self._dk = DistanceKey(x)
        self._challenge_seed = hkdf_sha256(x + audit_seed, salt=b"", info=_PADDING_LABEL)
        self._records, self._tree = records, tree
        self._leaves: dict[bytes, list[int]] = defaultdict(list)
        for leaf, (_, h) in enumerate(hashes):
            for k in dict.fromkeys(self.table.scheme.list_keys(h)):
                self._leaves[key_id(k)].append(leaf)
        # a hot companion (the picture cropped or turned) after the picture's own hashes when
        # votes tie: a short key of the image's companion also names several of its hot
        # hashes, most of them farther than R from it (bench/bench_check_frontier.py)
        entries = self._secret.entries
        self._hot_leaf = [h in entries[i].hot for i, h in hashes]

    def candidates(self, pdq: bytes, hint: bytes) -> tuple[Match, ...]:
        """Listed entries reachable from the client's probes and within ``max_distance`` of the
        hash that produced the probe (the image's own hash, or a variant carried in the hint);
        an entry's distance is that of the closest of its hashes (its PDQ, its companions)."""
        try:
            probes = self.table.scheme.probe_hashes(pdq, hint)
        except ValueError:
            raise InvalidVoucher(_BAD) from None
        best: dict[int, tuple[int, bytes]] = {}
        for k, probed in probes:  # each key is confirmed against the hash it came from
            for i in self._keys.get(k, ()):
                entry: ListedEntry = self._secret.entries[i]
                d = min(hamming(probed, h) for h in entry.hashes)
                if d <= self._max_distance and d < best.get(i, (d + 1, b""))[0]:
                    best[i] = (d, probed)
        out = [Match(self._secret.entries[i].refs, d, p, p != pdq) for i, (d, p) in best.items()]
        return tuple(sorted(out, key=lambda m: (m.distance, m.refs)))

    def open(self, voucher: bytes, *, account: str) -> OpenResult:
        """Try to open ``voucher`` sent by ``account``.

        Only a voucher that is malformed on its face — wrong size, header or
        table, a pair point or ``R`` that is not a valid point — raises
        :class:`~blindmatch.errors.InvalidVoucher`; that check needs no secret,
        so it says nothing about the list. Every pair is tried, whether or not an
        earlier one opened (the work does not depend on the outcome). What
        happens after a pair opens never raises: a failing inner layer is
        reported in :attr:`OpenResult.tampered` (under the block policy such a
        voucher is refused as a match attempt, ``block``; under the threshold
        policy the sender must see what a non-matching sender sees), so no
        error separates vouchers that opened from vouchers that did not.
        """
        if self._checked:
            raise ProtocolError(
                "this table is distance-checked: open its vouchers with begin() and finish()"
            )
        v = ParsedVoucher.from_bytes(voucher, self.table)
        t = transcript(v.header, v.voucher_id)
        rkey = self._unwrap(v, t)
        rl = self._alpha_r(v)  # computed for every voucher: the same work either way
        if rkey is None:
            return OpenResult(v.voucher_id, opened=False, matched=False)
        return self._complete(v, t, rkey, rkey, rl, account)

    def begin(self, voucher: bytes) -> PendingOpen:
        """Round one of a format-4 voucher (distance-checked table, docs/protocol.md §11):
        try every pair, and make the challenge — exactly ``m`` slots for every voucher, the
        candidates' committed records first named by the pair that found them, the rest
        records and pairs drawn from a stream keyed by the server's secret and the voucher
        (uniform to anyone without the secret), in that stream's order: the same voucher
        always gets the same challenge. With more candidates than slots the records most
        opened pairs point at go first, a PDQ or companion before a hot companion on a tie.
        Raises
        :class:`~blindmatch.errors.InvalidVoucher` only for a voucher malformed on its face."""
        pending, opened = self._round_one(voucher)
        params, v = self.table.distance, pending._voucher
        assert params is not None
        first: dict[int, int] = {}  # leaf → the first pair whose key it holds
        votes: dict[int, int] = defaultdict(int)  # leaf → opened pairs whose key it holds
        for i, plain in opened:
            for leaf in self._leaves.get(plain[32:], ()):
                first.setdefault(leaf, i)
                votes[leaf] += 1
        # the records most of the opened pairs point at (several variants or flips of the
        # picture agreeing on one listed hash); on a tie the picture's own hashes before its
        # hot companions, then first found first
        best = sorted(first, key=lambda leaf: (-votes[leaf], self._hot_leaf[leaf]))
        best = best[: params.slots]
        picks = [(first[leaf], leaf) for leaf in best]
        # padding and order from a stream keyed by the server's secret and the voucher: the
        # challenge is a function of the voucher, so asking twice gets the same bytes, the
        # recipient can fetch the very challenge the sender answered, and finishing needs
        # no state (finish_voucher recomputes it)
        rng = Drbg(
            self._challenge_seed, salt=hashlib.sha256(voucher).digest(), label=_PADDING_LABEL
        )
        while len(picks) < params.slots:
            picks.append((randbelow(rng, len(v.pairs)), randbelow(rng, params.n_records)))
        shuffle(rng, picks)
        slots = [
            Slot(pair, leaf, self._records[leaf], self._tree.path(leaf)) for pair, leaf in picks
        ]
        return replace(pending, challenge=Challenge(tuple(slots)).to_bytes(params))

    def _round_one(self, voucher: bytes) -> tuple[PendingOpen, list[tuple[int, bytes]]]:
        """Every pair tried and ``α·R``, for every voucher: the pending voucher (no challenge
        yet) and the pairs that opened with a well-formed ``rkey ‖ key id``."""
        if not self._checked:
            raise ProtocolError("this table has no distance check: open its vouchers with open()")
        v = ParsedVoucher.from_bytes(voucher, self.table)
        t = transcript(v.header, v.voucher_id)
        opened = [(i, p) for i, p in self._unwrap_all(v, t) if len(p) == 32 + KEY_ID_BYTES]
        rl = self._alpha_r(v)
        rkey = opened[0][1][:32] if opened else None
        return PendingOpen(v.voucher_id, b"", v, t, rkey, rl), opened

    def finish_voucher(self, voucher: bytes, answer: bytes, *, account: str) -> OpenResult:
        """Round two without kept state: round one again (the pairs tried, as :meth:`begin`
        does; the challenge, a function of the voucher, is not needed to finish) and
        :meth:`finish` — for a server that does not keep pending vouchers between the
        sender's two requests."""
        return self.finish(self._round_one(voucher)[0], answer, account=account)

    def finish(self, pending: PendingOpen, answer: bytes, *, account: str) -> OpenResult:
        """Round two: decrypt every response, try every disclosed key on the match layer
        (the same work whatever the outcome), and go on as :meth:`open` does once the
        layers opened. A malformed answer raises
        :class:`~blindmatch.errors.InvalidDistanceCheck` (checked before anything depends on
        the voucher). ``candidate`` in the result says a pair opened, ``opened`` that the
        check passed."""
        if not isinstance(pending, PendingOpen):
            raise TypeError("finish needs the PendingOpen that begin returned")
        params = self.table.distance
        assert params is not None
        keys = [k for resp in parse_answer(answer, params) for k in disclose(resp, self._dk)]
        v, t, rkey = pending._voucher, pending._t, pending._rkey
        mid = None
        if rkey is not None:
            mid = open_sealed(hkdf_sha256(rkey, salt=t, info=INFO_MID), v.mid, v.mid_aad())
        if rkey is not None and (mid is None or len(mid) != self._layout.mid_plain):
            # not blocked (unlike format 3): a sender could otherwise break its own middle
            # layer to learn whether its picture was a candidate; a broken voucher gets
            # through no more than a garbage answer does, and the recipient's check fails
            return OpenResult(v.voucher_id, False, False, tampered=TAMPERED_MID,
                              candidate=True)  # fmt: skip
        # not a candidate: the same trials on the voucher's own bytes (they never open)
        base = rkey if rkey is not None else bytes(32)
        body = mid if mid is not None else v.mid[: self._layout.mid_plain]
        c, sealed_m = body[:MATCH_COMMITMENT_BYTES], body[MATCH_COMMITMENT_BYTES:]
        layer_key = None
        for k in keys:
            key = opened_key(base, k, t)
            if self._open_match(key, t, c, sealed_m) is not None and layer_key is None:
                layer_key = key
        if rkey is None:
            return OpenResult(v.voucher_id, opened=False, matched=False)
        if layer_key is None:  # a candidate, not within R: nothing more is learnt or kept
            return OpenResult(v.voucher_id, opened=False, matched=False, candidate=True)
        result = self._complete(v, t, rkey, layer_key, pending._rl, account)
        return replace(result, candidate=True)

    def _complete(
        self, v: ParsedVoucher, t: bytes, rkey: bytes, layer_key: bytes, rl: bytes, account: str
    ) -> OpenResult:
        """A voucher whose pair opened (and, format 4, whose check passed): the inner
        layers, under ``layer_key`` (``rkey`` for format 3)."""
        block = self.table.policy is Policy.BLOCK
        if self._store.contains(account, v.voucher_id):  # stored before: never counts twice
            return OpenResult(v.voucher_id, True, False, replayed=True, block=block)

        def tampered(why: str, matches: tuple[Match, ...] = ()) -> OpenResult:
            return OpenResult(v.voucher_id, True, bool(matches), matches, tampered=why,
                              block=block)  # fmt: skip

        mid = open_sealed(hkdf_sha256(rkey, salt=t, info=INFO_MID), v.mid, v.mid_aad())
        if mid is None or len(mid) != self._layout.mid_plain:
            return tampered(TAMPERED_MID)
        c, sealed_m = mid[:MATCH_COMMITMENT_BYTES], mid[MATCH_COMMITMENT_BYTES:]

        matches: tuple[Match, ...] | None = None
        if block:
            plain = self._open_match(layer_key, t, c, sealed_m)
            matches = None if plain is None else self._matches_in(plain)
            if plain is None or matches is None:
                return tampered(TAMPERED_MATCH)
            if not matches:  # a near miss: nothing is kept, not even the id
                return OpenResult(v.voucher_id, opened=True, matched=False)
            layer, is_sealed = plain, False
        else:
            layer, is_sealed = c + sealed_m, True
        got = self._share_and_evidence(v, layer_key, rl, t)
        if isinstance(got, str):
            return tampered(got, matches or ())
        y, evidence = got
        x = shamir_x(self.table.table_id, v.voucher_id)
        rec = StoredVoucher(v.voucher_id, t, x, y, layer, is_sealed, evidence)
        self._store.append(account, rec)
        released, newest = self._advance(account, rec)
        matches = matches if matches is not None else newest
        return OpenResult(v.voucher_id, True, bool(matches), matches or (), released,
                          block=block)  # fmt: skip

    def _alpha_r(self, v: ParsedVoucher) -> bytes:
        try:
            return group.mul(self._secret.alpha, v.server_r)
        except ValueError:  # pragma: no cover - R was checked when the voucher was parsed
            raise InvalidVoucher(_BAD) from None

    def _open_match(self, key: bytes, t: bytes, c: bytes, sealed_m: bytes) -> bytes | None:
        """``M``'s plaintext (flag ‖ PDQ ‖ commitment ‖ hint) if it opens under ``key`` (rkey
        under block, ek under threshold) and matches ``c``; else None."""
        m = open_sealed(hkdf_sha256(key, salt=t, info=INFO_MATCH), sealed_m)
        if m is None or len(m) != NONCE_BYTES + self._layout.match_plain:
            return None
        nonce, plain = m[:NONCE_BYTES], m[NONCE_BYTES:]
        if not hmac.compare_digest(match_commitment(nonce, plain), c):
            return None
        return plain

    def _share_and_evidence(
        self, v: ParsedVoucher, rkey: bytes, rl: bytes, t: bytes
    ) -> tuple[int, bytes] | str:
        """The share ``y`` (under ``rkey`` and ``α·R``) and the inner evidence layer (the
        outer one is under ``rkey``) of an opened voucher; or why they failed (an honest
        client always makes both)."""
        raw_y = open_sealed(share_key(rkey, rl, t), v.share)
        if raw_y is None or int.from_bytes(raw_y, "little") >= group.ORDER:
            return TAMPERED_SHARE
        inner = open_sealed(hkdf_sha256(rkey, salt=t, info=INFO_EVIDENCE_OUTER), v.evidence)
        if inner is None:
            return TAMPERED_EVIDENCE
        return int.from_bytes(raw_y, "little"), inner

    def _unwrap(self, v: ParsedVoucher, t: bytes) -> bytes | None:
        """The first pair's plaintext that opens (``rkey``), or None."""
        opened = self._unwrap_all(v, t)
        return opened[0][1] if opened else None

    def _unwrap_all(self, v: ParsedVoucher, t: bytes) -> list[tuple[int, bytes]]:
        """The hot loop: one scalar multiplication, one HKDF and one AEAD trial per pair —
        for every pair, also after one opened (constant work; an invalid point anywhere
        makes the voucher malformed, whatever opened). ``(pair index, plaintext)`` of each
        pair that opened."""
        alpha = self._secret.alpha
        found: list[tuple[int, bytes]] = []
        for i, (q, wrapped) in enumerate(v.pairs):
            try:
                s = group.mul(alpha, q)
            except ValueError:
                raise InvalidVoucher(_BAD) from None
            plain = open_sealed(pair_key(s, q, t), wrapped)
            if plain is not None:
                found.append((i, plain))
        return found

    def _matches_in(self, plain: bytes) -> tuple[Match, ...] | None:
        """Matches named by M's plaintext (``()`` for a synthetic voucher), None if malformed."""
        flag, pdq = plain[0], plain[1 : 1 + PDQ_BYTES]
        hint = plain[1 + PDQ_BYTES + COMMITMENT_BYTES :]
        if flag == FLAG_SYNTHETIC and self.table.policy is Policy.THRESHOLD:
            return ()
        if flag != FLAG_REAL:
            return None
        try:
            return self.candidates(pdq, hint)
        except InvalidVoucher:
            return None

    def _read_stored(self, rec: StoredVoucher, ek: bytes) -> bytes | None:
        """The plaintext of a stored voucher's ``M`` once ``ek`` is known, or None."""
        if not rec.match_sealed:
            return rec.match_layer
        c, sealed_m = rec.match_layer[:MATCH_COMMITMENT_BYTES], rec.match_layer[32:]
        return self._open_match(ek, rec.transcript, c, sealed_m)

    def _judge(
        self, rec: StoredVoucher, ek: bytes, coefficients: Sequence[int] | None
    ) -> tuple[tuple[Match, ...], str | None]:
        """A stored voucher once the account's key is known: its matches, and why it is a
        lie if it is one. A share on the account's polynomial is real (a random share lands
        on it with probability 1/ℓ), so a synthetic flag on it is a lie; a real voucher
        whose share is off the polynomial, or whose ``M`` does not open or does not match
        its commitment, is one too."""
        plain = self._read_stored(rec, ek)
        # a key stored before the polynomial was kept (32 bytes: ek alone) cannot judge shares
        known = coefficients is not None
        on_poly = known and evaluate(coefficients or (), rec.share_x) == rec.share_y
        if plain is None:
            return (), TAMPERED_MATCH
        if plain[0] == FLAG_SYNTHETIC and self.table.policy is Policy.THRESHOLD:
            if not on_poly:
                return (), None  # an honest synthetic voucher
            pdq_hint = bytes([FLAG_REAL]) + plain[1:]
            return self._matches_in(pdq_hint) or (), TAMPERED_FLAG
        matches = self._matches_in(plain)
        if matches is None:
            return (), TAMPERED_MATCH
        return matches, (TAMPERED_OFF_POLYNOMIAL if known and not on_poly else None)

    def _advance(
        self, account: str, newest: StoredVoucher
    ) -> tuple[tuple[Release, ...], tuple[Match, ...] | None]:
        """Recover the account's key if possible; once known, deal with every stored voucher
        not yet released. Returns the releases and the newest voucher's matches (None while
        the key is unknown)."""
        state = self._store.load(account)
        key = state.evidence_key
        if key is None:
            coefficients = self._recover(state.vouchers, newest)
            if coefficients is None:
                return (), None
            key = _key_bytes(coefficients)
            self._store.set_evidence_key(account, key)
        ek, coefficients = _split_key(key)
        out = []
        newest_matches: tuple[Match, ...] = ()
        for rec in state.vouchers:
            if rec.released:
                continue
            matches, lie = self._judge(rec, ek, coefficients)
            self._store.mark_released(account, rec.voucher_id)
            if rec.voucher_id == newest.voucher_id:
                newest_matches = matches
            if not matches and lie is None:  # synthetic: never evidence
                continue
            ev = open_sealed(hkdf_sha256(ek, salt=rec.transcript, info=INFO_EVIDENCE), rec.evidence)
            evidence = b""
            if ev is not None and int.from_bytes(ev[:4], "big") <= len(ev) - 4:
                evidence = ev[4 : 4 + int.from_bytes(ev[:4], "big")]
            elif lie is None:
                lie = TAMPERED_EVIDENCE
            out.append(Release(rec.voucher_id, matches, evidence, lie))
        return tuple(out), newest_matches

    def _recover(self, stored: Sequence[StoredVoucher], newest: StoredVoucher) -> list[int] | None:
        """The account's sharing polynomial from its most recent unreleased shares, if they
        determine it (docs/protocol.md §5 step 5).

        Reed–Solomon decoding (:func:`~blindmatch.protocol.hazmat.shamir.decode_shares`) of
        the most recent ``w`` shares for ``w`` in :meth:`windows`: synthetic shares are
        errors, and a window decodes when its real shares outnumber ``t`` plus its synthetic
        ones. The result is accepted only if ``ek`` from it opens the evidence layer of a
        share on it (with ``w = t`` any points decode; a client may also put its own shares
        on a polynomial of its choice). Then, if the largest window has at most
        ``SMALL_SEARCH`` ``t``-subsets, each of them (exact for few shares, where unique
        decoding is not). At most ``len(windows)`` decodes of at most ``4t`` shares and
        ``SMALL_SEARCH`` interpolations per opened voucher, whatever the client sends.
        """
        t = self.table.threshold
        pending = [s for s in stored if not s.released]
        if len(pending) < t:
            return None
        tried: set[int] = set()
        for w in self.windows:
            window = pending[-w:]
            if len(window) < t or len(window) in tried:
                continue
            tried.add(len(window))
            found = self._decode(window, t)
            if found is not None:
                return found
        # Few shares: every t-subset of them, when there are at most SMALL_SEARCH (exact
        # where unique decoding is not: t real among t + s < t + 2s shares).
        window = pending[-self._max_window :]
        if math.comb(len(window), t) <= SMALL_SEARCH:
            for subset in itertools.combinations(window, t):
                found = self._decode(list(subset), t)
                if found is not None:
                    return found
        return None

    def _decode(self, window: Sequence[StoredVoucher], t: int) -> list[int] | None:
        """The polynomial the window's shares decode to, if ``ek`` from it opens the
        evidence layer of a share on it."""
        try:
            decoded = decode_shares([s.share for s in window], t)
        except ValueError:  # two shares with one x: a hash collision, never in practice
            return None
        if decoded is None:
            return None
        coefficients = list(decoded.coefficients)
        ek = evidence_key(coefficients[0])
        probe = window[decoded.agreeing[-1]]  # on f: the newest may be synthetic
        k_ev = hkdf_sha256(ek, salt=probe.transcript, info=INFO_EVIDENCE)
        return coefficients if open_sealed(k_ev, probe.evidence) is not None else None

    @property
    def windows(self) -> tuple[int, ...]:
        """How many of the most recent unreleased shares each recovery attempt decodes."""
        t = self.table.threshold
        return (t, t + 2, 2 * t, 3 * t, self._max_window)

    def account_state(self, account: str) -> tuple[int, bool]:
        """(vouchers holding a share, whether the account's evidence key is known)."""
        state = self._store.load(account)
        return len(state.vouchers), state.evidence_key is not None


def _key_bytes(coefficients: Sequence[int]) -> bytes:
    """What the store keeps as the account's key: its polynomial, 32 bytes LE a coefficient."""
    return b"".join(c.to_bytes(32, "little") for c in coefficients)


def _split_key(key: bytes) -> tuple[bytes, list[int] | None]:
    """``(ek, coefficients)`` from a stored key; a 32-byte key (stores written before the
    polynomial was kept) is ``ek`` alone."""
    if len(key) == 32:
        return key, None
    coefficients = [int.from_bytes(key[i : i + 32], "little") for i in range(0, len(key), 32)]
    return evidence_key(coefficients[0]), coefficients


__all__ = [
    "MATCH_DISTANCE",
    "TAMPERED_EVIDENCE",
    "TAMPERED_FLAG",
    "TAMPERED_MATCH",
    "TAMPERED_MID",
    "TAMPERED_OFF_POLYNOMIAL",
    "TAMPERED_SHARE",
    "AccountState",
    "Match",
    "MemoryThresholdStore",
    "OpenResult",
    "PendingOpen",
    "Release",
    "ServerSession",
    "StoredVoucher",
    "ThresholdStore",
]
