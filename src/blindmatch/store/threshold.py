"""The SQL adapter of :class:`blindmatch.protocol.ThresholdStore`.

Each call is one transaction. Rows hold plain values (bytes, booleans; the
Shamir share as two 32-byte little-endian integers), so nothing is pickled. A
duplicate ``(account, voucher_id)`` is refused by a unique constraint and
surfaces as :class:`~blindmatch.errors.InvalidVoucher`, as the port requires.

Concurrency: the port's rule holds here too — :meth:`ServerSession.open` must
not run concurrently for one account. In one process, serialise per account
(the Matrix module keeps a lock per account); several processes sharing one
database need a per-account lock of their own (e.g. PostgreSQL advisory locks).

Deferred writes: inside :meth:`SqlThresholdStore.deferred` the calls of the current
thread read the database as usual but keep their writes in a :class:`StoreWrites` (and
read them back: the session sees its own writes); :meth:`SqlThresholdStore.write` then
applies them inside the caller's transaction. The Matrix module opens a queued voucher
that way, so that the shares it stores, the cases it opens and the removal of the queue
row commit together or not at all.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from blindmatch.errors import InvalidVoucher
from blindmatch.protocol import AccountState, StoredVoucher
from blindmatch.store.models import ThresholdKey, ThresholdVoucher

_SHARE_BYTES = 32


def _int(b: bytes) -> int:
    return int.from_bytes(b, "little")


def _bytes(v: int) -> bytes:
    return v.to_bytes(_SHARE_BYTES, "little")


def _record(row: ThresholdVoucher) -> StoredVoucher:
    return StoredVoucher(
        voucher_id=bytes(row.voucher_id),
        transcript=bytes(row.transcript),
        share_x=_int(row.share_x),
        share_y=_int(row.share_y),
        match_layer=bytes(row.match_layer),
        match_sealed=bool(row.match_sealed),
        evidence=bytes(row.evidence),
        released=bool(row.released),
    )


@dataclass
class StoreWrites:
    """Writes of :class:`SqlThresholdStore` calls made inside :meth:`~SqlThresholdStore.deferred`
    (accounts already namespaced), in order."""

    appended: dict[tuple[str, bytes], StoredVoucher] = field(default_factory=dict)
    released: set[tuple[str, bytes]] = field(default_factory=set)  # stored before
    keys: dict[str, bytes] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.appended or self.released or self.keys)


class SqlThresholdStore:
    """Per-account threshold state in blindmatch's database (tables ``threshold_*``).

    ``namespace`` prefixes every account, so that stores for different tables
    (different ``t``: their shares lie on different polynomials) can share a database.
    """

    def __init__(self, engine: Engine, *, namespace: str = "") -> None:
        self._session = sessionmaker(engine, expire_on_commit=False)
        self._ns = namespace
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"SqlThresholdStore(namespace={self._ns!r})"

    def _acct(self, account: str) -> str:
        return self._ns + account

    def _writes(self) -> StoreWrites | None:
        return getattr(self._local, "writes", None)

    @contextmanager
    def deferred(self) -> Iterator[StoreWrites]:
        """Keep this thread's writes in memory until :meth:`write` (see the module doc)."""
        if self._writes() is not None:
            raise RuntimeError("deferred() does not nest")
        self._local.writes = w = StoreWrites()
        try:
            yield w
        finally:
            self._local.writes = None

    def write(self, s: Session, w: StoreWrites) -> None:
        """Apply deferred writes inside the caller's session (its transaction); a voucher id
        stored meanwhile fails there (IntegrityError), with everything else of it."""
        for (acct, _), rec in w.appended.items():
            s.add(_row(acct, rec))
        for acct, vid in w.released:
            s.execute(
                update(ThresholdVoucher)
                .where(ThresholdVoucher.account == acct, ThresholdVoucher.voucher_id == vid)
                .values(released=True)
            )
        for acct, key in w.keys.items():
            row = s.get(ThresholdKey, acct)
            if row is None:
                s.add(ThresholdKey(account=acct, evidence_key=key))
            else:
                row.evidence_key = key
        s.flush()

    def load(self, account: str) -> AccountState:
        acct = self._acct(account)
        with self._session() as s:
            rows = s.scalars(
                select(ThresholdVoucher)
                .where(ThresholdVoucher.account == acct)
                .order_by(ThresholdVoucher.id)
            ).all()
            key = s.get(ThresholdKey, acct)
            records = [_record(r) for r in rows]
            ek = bytes(key.evidence_key) if key else None
        w = self._writes()
        if w is not None:
            records = [
                replace(r, released=True) if (acct, r.voucher_id) in w.released else r
                for r in records
            ]
            records += [rec for (a, _), rec in w.appended.items() if a == acct]
            ek = w.keys.get(acct, ek)
        return AccountState(tuple(records), ek)

    def contains(self, account: str, voucher_id: bytes) -> bool:
        w = self._writes()
        if w is not None and (self._acct(account), voucher_id) in w.appended:
            return True
        with self._session() as s:
            found = s.scalar(
                select(ThresholdVoucher.id).where(
                    ThresholdVoucher.account == self._acct(account),
                    ThresholdVoucher.voucher_id == voucher_id,
                )
            )
            return found is not None

    def append(self, account: str, voucher: StoredVoucher) -> None:
        w = self._writes()
        if w is not None:
            if self.contains(account, voucher.voucher_id):
                raise InvalidVoucher("voucher did not verify")
            w.appended[(self._acct(account), voucher.voucher_id)] = voucher
            return
        row = _row(self._acct(account), voucher)
        try:
            with self._session.begin() as s:
                s.add(row)
        except IntegrityError:
            raise InvalidVoucher("voucher did not verify") from None

    def mark_released(self, account: str, voucher_id: bytes) -> None:
        w = self._writes()
        if w is not None:
            k = (self._acct(account), voucher_id)
            if k in w.appended:
                w.appended[k] = replace(w.appended[k], released=True)
            else:
                w.released.add(k)
            return
        with self._session.begin() as s:
            s.execute(
                update(ThresholdVoucher)
                .where(
                    ThresholdVoucher.account == self._acct(account),
                    ThresholdVoucher.voucher_id == voucher_id,
                )
                .values(released=True)
            )

    def set_evidence_key(self, account: str, key: bytes) -> None:
        w = self._writes()
        if w is not None:
            w.keys[self._acct(account)] = key
            return
        with self._session.begin() as s:
            row = s.get(ThresholdKey, self._acct(account))
            if row is None:
                s.add(ThresholdKey(account=self._acct(account), evidence_key=key))
            else:
                row.evidence_key = key


def _row(acct: str, voucher: StoredVoucher) -> ThresholdVoucher:
    return ThresholdVoucher(
        account=acct,
        voucher_id=voucher.voucher_id,
        transcript=voucher.transcript,
        share_x=_bytes(voucher.share_x),
        share_y=_bytes(voucher.share_y),
        match_layer=voucher.match_layer,
        match_sealed=voucher.match_sealed,
        evidence=voucher.evidence,
        released=voucher.released,
    )


__all__ = ["SqlThresholdStore", "StoreWrites"]
