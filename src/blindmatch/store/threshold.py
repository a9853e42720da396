"""The SQL adapter of :class:`blindmatch.protocol.ThresholdStore`.

Each call is one transaction. Rows hold plain values (bytes, booleans; the
Shamir share as two 32-byte little-endian integers), so nothing is pickled. A
duplicate ``(account, voucher_id)`` is refused by a unique constraint and
surfaces as :class:`~blindmatch.errors.InvalidVoucher`, as the port requires.

Concurrency: the port's rule holds here too — :meth:`ServerSession.open` must
not run concurrently for one account. In one process, serialise per account
(the Matrix module keeps a lock per account); several processes sharing one
database need a per-account lock of their own (e.g. PostgreSQL advisory locks).
"""

from __future__ import annotations

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

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


class SqlThresholdStore:
    """Per-account threshold state in blindmatch's database (tables ``threshold_*``).

    ``namespace`` prefixes every account, so that stores for different tables
    (different ``t``: their shares lie on different polynomials) can share a database.
    """

    def __init__(self, engine: Engine, *, namespace: str = "") -> None:
        self._session = sessionmaker(engine, expire_on_commit=False)
        self._ns = namespace

    def __repr__(self) -> str:
        return f"SqlThresholdStore(namespace={self._ns!r})"

    def _acct(self, account: str) -> str:
        return self._ns + account

    def load(self, account: str) -> AccountState:
        acct = self._acct(account)
        with self._session() as s:
            rows = s.scalars(
                select(ThresholdVoucher)
                .where(ThresholdVoucher.account == acct)
                .order_by(ThresholdVoucher.id)
            ).all()
            key = s.get(ThresholdKey, acct)
            return AccountState(
                tuple(_record(r) for r in rows), bytes(key.evidence_key) if key else None
            )

    def contains(self, account: str, voucher_id: bytes) -> bool:
        with self._session() as s:
            found = s.scalar(
                select(ThresholdVoucher.id).where(
                    ThresholdVoucher.account == self._acct(account),
                    ThresholdVoucher.voucher_id == voucher_id,
                )
            )
            return found is not None

    def append(self, account: str, voucher: StoredVoucher) -> None:
        row = ThresholdVoucher(
            account=self._acct(account),
            voucher_id=voucher.voucher_id,
            transcript=voucher.transcript,
            share_x=_bytes(voucher.share_x),
            share_y=_bytes(voucher.share_y),
            match_layer=voucher.match_layer,
            match_sealed=voucher.match_sealed,
            evidence=voucher.evidence,
            released=voucher.released,
        )
        try:
            with self._session.begin() as s:
                s.add(row)
        except IntegrityError:
            raise InvalidVoucher("voucher did not verify") from None

    def mark_released(self, account: str, voucher_id: bytes) -> None:
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
        with self._session.begin() as s:
            row = s.get(ThresholdKey, self._acct(account))
            if row is None:
                s.add(ThresholdKey(account=self._acct(account), evidence_key=key))
            else:
                row.evidence_key = key


__all__ = ["SqlThresholdStore"]
