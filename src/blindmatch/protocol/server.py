"""The server side: open vouchers, confirm candidates, keep per-account threshold state.

The session holds α and the listed entries (:class:`ServerSecret`) and the
public table. :meth:`ServerSession.open` tries every pair of a voucher
(``α·Q``, derive ``K``, try to unwrap ``rkey``); if one opens it decrypts the
middle layer (a Shamir share and the match layer ``M``). What happens next
depends on the table's policy:

* **block** — ``M`` is under ``rkey``: the server reads the client's PDQ and
  hint at once, recomputes the probe keys, looks them up among the listed
  keys and confirms ``d ≤ max_distance`` (31) against each candidate entry.
  Only a confirmed match is a match; only confirmed matches keep their share.
* **threshold** — ``M`` is under the account's evidence key ``ek``: the
  server keeps the share and learns nothing more (a synthetic voucher opens
  just the same) until it holds ``t`` shares that interpolate to ``ek``;
  then it reads every stored ``M``, drops synthetic ones and confirms the
  rest as above.

In both policies, once ``ek`` is known the evidence (``C_ev``) of each
confirmed voucher is released in :attr:`OpenResult.released`.

Finding ``t`` correct shares among synthetic ones is done by trying
``t``-subsets that contain the newest share, up to ``max_recovery_trials``
per voucher; that is fine while synthetic vouchers per account stay few, and a
Reed–Solomon decoder (Berlekamp–Welch) is the scalable replacement.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field

from blindmatch.errors import InvalidKey, InvalidVoucher
from blindmatch.protocol.hazmat import group
from blindmatch.protocol.hazmat.aead import open_sealed
from blindmatch.protocol.hazmat.kdf import hkdf_sha256
from blindmatch.protocol.hazmat.shamir import Share, recover_secret
from blindmatch.protocol.lookup import PDQ_BYTES, hamming
from blindmatch.protocol.table import EntryRef, ListedEntry, Policy, ServerSecret, Table
from blindmatch.protocol.voucher import (
    COMMITMENT_BYTES,
    FLAG_REAL,
    FLAG_SYNTHETIC,
    INFO_EVIDENCE,
    INFO_MATCH,
    INFO_MID,
    ParsedVoucher,
    evidence_key,
    pair_key,
    shamir_x,
    transcript,
)

MATCH_DISTANCE = 31
_BAD = "voucher did not verify"


@dataclass(frozen=True)
class Match:
    """A listed entry within ``max_distance`` of the voucher's PDQ."""

    refs: tuple[EntryRef, ...]
    distance: int


@dataclass(frozen=True)
class Release:
    """Evidence released for one confirmed voucher once the account reached ``t``."""

    voucher_id: bytes
    matches: tuple[Match, ...]
    evidence: bytes = field(repr=False)


@dataclass(frozen=True)
class OpenResult:
    """What the server learns from one voucher.

    ``opened``: the outer layer opened (under the threshold policy a synthetic
    voucher opens too, so this alone means nothing). ``matched``: confirmed
    ``d ≤ max_distance`` against ``matches`` — under the threshold policy only
    once the account's key is known. ``released``: evidence that this call
    made available (possibly for earlier vouchers).
    """

    voucher_id: bytes
    opened: bool
    matched: bool
    matches: tuple[Match, ...] = ()
    released: tuple[Release, ...] = ()


@dataclass
class _Stored:
    voucher_id: bytes
    t: bytes
    share: Share
    match_layer: bytes  # M, sealed (block: already read)
    evidence: bytes  # C_ev, sealed under ek
    matches: tuple[Match, ...] | None = None  # None = not yet known
    released: bool = False


@dataclass
class _Account:
    stored: list[_Stored] = field(default_factory=list)
    ek: bytes | None = None


class ServerSession:
    """Opens vouchers made against ``table``; holds the secret behind it."""

    def __init__(
        self,
        secret: ServerSecret,
        table: Table,
        *,
        max_distance: int = MATCH_DISTANCE,
        max_recovery_trials: int = 1_000,
    ) -> None:
        if secret.table_digest != table.digest:
            raise InvalidKey("server key does not belong to this table")
        self.table = table
        self._secret = secret
        self._max_distance = max_distance
        self._max_trials = max_recovery_trials
        self._keys: dict[bytes, list[int]] = defaultdict(list)
        for i, e in enumerate(secret.entries):
            for k in table.scheme.list_keys(e.pdq):
                self._keys[k].append(i)
        self._accounts: dict[str, _Account] = defaultdict(_Account)

    def __repr__(self) -> str:
        return f"ServerSession({self.table!r}, <secret hidden>)"

    def candidates(self, pdq: bytes, hint: bytes) -> tuple[Match, ...]:
        """Listed entries reachable from the client's probes and within ``max_distance`` of the
        hash that produced the probe (the image's own hash, or a variant carried in the hint)."""
        try:
            probes = self.table.scheme.probe_hashes(pdq, hint)
        except ValueError:
            raise InvalidVoucher(_BAD) from None
        best: dict[int, int] = {}
        for k, probed in probes:  # each key is confirmed against the hash it came from
            for i in self._keys.get(k, ()):
                entry: ListedEntry = self._secret.entries[i]
                d = hamming(probed, entry.pdq)
                if d <= self._max_distance and d < best.get(i, d + 1):
                    best[i] = d
        out = [Match(self._secret.entries[i].refs, d) for i, d in best.items()]
        return tuple(sorted(out, key=lambda m: (m.distance, m.refs)))

    def open(self, voucher: bytes, *, account: str) -> OpenResult:
        """Try to open ``voucher`` sent by ``account``.

        A malformed voucher, or one whose opened layers fail authentication,
        raises :class:`~blindmatch.errors.InvalidVoucher`; a voucher that
        simply does not open is a normal, unmatched result.
        """
        v = ParsedVoucher.from_bytes(voucher, self.table)
        t = transcript(v.header, v.voucher_id)
        rkey = self._unwrap(v, t)
        if rkey is None:
            return OpenResult(v.voucher_id, opened=False, matched=False)
        mid = open_sealed(hkdf_sha256(rkey, salt=t, info=INFO_MID), v.mid, v.mid_aad())
        if mid is None:
            raise InvalidVoucher(_BAD)
        y = int.from_bytes(mid[:32], "little")
        if y >= group.ORDER:
            raise InvalidVoucher(_BAD)
        share = Share(shamir_x(self.table.table_id, v.voucher_id), y)
        rec = _Stored(v.voucher_id, t, share, mid[32:], v.evidence)
        acct = self._accounts[account]
        if any(s.voucher_id == v.voucher_id for s in acct.stored):
            raise InvalidVoucher(_BAD)  # a replayed voucher must not count twice

        if self.table.policy is Policy.BLOCK:
            rec.matches = self._read_match(rec, hkdf_sha256(rkey, salt=t, info=INFO_MATCH))
            if rec.matches is None:
                raise InvalidVoucher(_BAD)
            if not rec.matches:
                return OpenResult(v.voucher_id, opened=True, matched=False)
        acct.stored.append(rec)
        released = self._advance(acct, rec)
        matches = rec.matches or ()
        return OpenResult(v.voucher_id, True, bool(matches), matches, released)

    def _unwrap(self, v: ParsedVoucher, t: bytes) -> bytes | None:
        """The hot loop: one scalar multiplication, one HKDF and one AEAD trial per pair."""
        alpha = self._secret.alpha
        for q, wrapped in v.pairs:
            try:
                s = group.mul(alpha, q)
            except ValueError:
                raise InvalidVoucher(_BAD) from None
            rkey = open_sealed(pair_key(s, q, t), wrapped)
            if rkey is not None:
                return rkey
        return None

    def _read_match(self, rec: _Stored, key: bytes) -> tuple[Match, ...] | None:
        """Matches in M (``()`` for a synthetic voucher), or None if M does not open."""
        inner = open_sealed(key, rec.match_layer)
        if inner is None:
            return None
        flag, pdq = inner[0], inner[1 : 1 + PDQ_BYTES]
        hint = inner[1 + PDQ_BYTES + COMMITMENT_BYTES :]
        if flag == FLAG_SYNTHETIC and self.table.policy is Policy.THRESHOLD:
            return ()
        if flag != FLAG_REAL:
            return None
        return self.candidates(pdq, hint)

    def _advance(self, acct: _Account, newest: _Stored) -> tuple[Release, ...]:
        if acct.ek is None:
            acct.ek = self._recover(acct, newest)
            if acct.ek is None:
                return ()
        out = []
        for rec in acct.stored:
            if rec.released:
                continue
            if rec.matches is None:
                key = hkdf_sha256(acct.ek, salt=rec.t, info=INFO_MATCH)
                rec.matches = self._read_match(rec, key)
                if rec.matches is None:
                    rec.matches = ()  # not made with this account's key: never evidence
            rec.released = True
            if not rec.matches:
                continue
            ev = open_sealed(hkdf_sha256(acct.ek, salt=rec.t, info=INFO_EVIDENCE), rec.evidence)
            if ev is None or int.from_bytes(ev[:4], "big") > len(ev) - 4:
                continue
            n = int.from_bytes(ev[:4], "big")
            out.append(Release(rec.voucher_id, rec.matches, ev[4 : 4 + n]))
        return tuple(out)

    def _recover(self, acct: _Account, newest: _Stored) -> bytes | None:
        t = self.table.threshold
        others = [s for s in acct.stored if s is not newest]
        if len(others) + 1 < t:
            return None
        for trial, subset in enumerate(itertools.combinations(others, t - 1)):
            if trial >= self._max_trials:
                return None
            shares = [newest.share, *(s.share for s in subset)]
            if len({s.x for s in shares}) < t:
                continue
            ek = evidence_key(recover_secret(shares))
            k_ev = hkdf_sha256(ek, salt=newest.t, info=INFO_EVIDENCE)
            if open_sealed(k_ev, newest.evidence) is not None:
                return ek
        return None

    def account_state(self, account: str) -> tuple[int, bool]:
        """(vouchers holding a share, whether the account's evidence key is known)."""
        a = self._accounts.get(account)
        return (len(a.stored), a.ek is not None) if a else (0, False)


__all__ = ["MATCH_DISTANCE", "Match", "OpenResult", "Release", "ServerSession"]
