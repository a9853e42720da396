"""The Matrix module's state in blindmatch's database (SQLAlchemy; migration 0003).

Blocking calls: the module runs them in a thread (``ModuleApi.defer_to_thread``),
never on Twisted's reactor. Every method is one short transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from blindmatch.review.types import readable_id
from blindmatch.store.db import open_store
from blindmatch.store.models import (
    Case,
    CaseVoucher,
    MatrixBlob,
    MatrixBlobUse,
    MatrixFranking,
    MatrixRejection,
    MatrixVoucher,
    MatrixVoucherQueue,
)

CASE_KINDS = ("match", "report", "threshold", "tampered", "flood")


def now() -> datetime:
    return datetime.now(UTC)


def new_case_id() -> str:
    """``BM-XXXX-XXXX-XXXX``: 60 random bits, unambiguous letters and digits."""
    return readable_id("BM")


@dataclass(frozen=True)
class Blob:
    media_id: str
    sha256: str
    size: int
    kind: str
    uploaded_at: datetime
    quarantined: bool


@dataclass(frozen=True)
class Binding:
    voucher_id: str
    media_id: str
    account: str
    room: str
    event_id: str
    voucher_sha256: str
    outcome: str
    case_id: str | None


@dataclass(frozen=True)
class CaseRecord:
    id: str
    kind: str
    account: str
    room: str | None
    event_id: str | None
    voucher_ids: list[str]
    blobs: list[str]
    entry_refs: list[dict[str, Any]]
    has_evidence: bool
    status: str
    created_at: datetime
    tampered: dict[str, str] = field(default_factory=dict)  # voucher id -> failing layer

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "account": self.account,
            "room": self.room,
            "event_id": self.event_id,
            "voucher_ids": self.voucher_ids,
            "blobs": self.blobs,
            "entries": self.entry_refs,
            "evidence": self.has_evidence,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "tampered": self.tampered,
        }


@dataclass(frozen=True)
class FrankingRecord:
    """What the server saw when it relayed a franked event, and its tag ``R``."""

    event_id: str
    room: str
    sender: str
    origin_ts: int
    commitment: bytes
    tag: bytes


@dataclass(frozen=True)
class Use:
    """A blob accounted for without a voucher: ``file`` (declared) or ``plaintext``."""

    media_id: str
    use: str
    account: str
    room: str
    event_id: str


@dataclass(frozen=True)
class KeptVoucher:
    """A voucher kept with a case (``case_vouchers``): why it is forged, and its bytes."""

    voucher_id: str
    tampered: str | None
    voucher: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Queued:
    """A voucher waiting to be opened (``matrix_voucher_queue``)."""

    id: int
    voucher_id: str
    account: str
    table_id: str
    voucher: bytes = field(repr=False)
    created_at: datetime


@dataclass(frozen=True)
class Snapshot:
    """What one event's check needs from the state, read in one session."""

    bindings: list[Binding]  # existing bindings of the event's voucher ids or blobs
    blobs: dict[str, Blob]  # recorded uploads among the given media ids
    bound: set[str]  # which of the given media ids are bound or used
    uses: dict[str, Use]  # uses (declared files, plaintext) among the given media ids


class BindingConflict(Exception):
    """A voucher id or a blob was bound by a concurrent event (internal signal only)."""


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)  # SQLite returns naive datetimes


class MatrixState:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str) -> MatrixState:
        """Open (creating or migrating) the database at ``url``."""
        return cls(open_store(url).engine)

    # -- blobs ----------------------------------------------------------------
    def record_upload(self, media_id: str, sha256: str, size: int, kind: str) -> None:
        with self._session.begin() as s:
            row = s.get(MatrixBlob, media_id)
            if row is None:
                s.add(MatrixBlob(media_id=media_id, sha256=sha256, size=size, kind=kind,
                                 uploaded_at=now()))  # fmt: skip
            else:  # a media id re-used by an async upload (create, then PUT the content)
                row.sha256, row.size, row.kind, row.uploaded_at = sha256, size, kind, now()

    def blobs(self, media_ids: Sequence[str]) -> dict[str, Blob]:
        if not media_ids:
            return {}
        with self._session() as s:
            rows = s.scalars(select(MatrixBlob).where(MatrixBlob.media_id.in_(list(media_ids))))
            return {
                r.media_id: Blob(
                    r.media_id,
                    r.sha256,
                    r.size,
                    r.kind,
                    _aware(r.uploaded_at),
                    r.quarantined_at is not None,
                )  # fmt: skip
                for r in rows
            }

    def mark_quarantined(self, media_id: str, reason: str) -> None:
        with self._session.begin() as s:
            s.execute(
                update(MatrixBlob)
                .where(MatrixBlob.media_id == media_id, MatrixBlob.quarantined_at.is_(None))
                .values(quarantined_at=now(), quarantine_reason=reason)
            )

    def mark_restored(self, media_id: str) -> None:
        """The inverse of :meth:`mark_quarantined` (an overturned case: review.enforcement)."""
        with self._session.begin() as s:
            s.execute(
                update(MatrixBlob)
                .where(MatrixBlob.media_id == media_id)
                .values(quarantined_at=None, quarantine_reason=None)
            )

    def unbound_opaque_before(self, cutoff: datetime, limit: int = 500) -> list[str]:
        """Encrypted-looking blobs uploaded before ``cutoff``, never bound nor quarantined."""
        with self._session() as s:
            bound = select(MatrixVoucher.media_id)
            used = select(MatrixBlobUse.media_id)
            q = (
                select(MatrixBlob.media_id)
                .where(
                    MatrixBlob.kind == "opaque",
                    MatrixBlob.uploaded_at < cutoff,
                    MatrixBlob.quarantined_at.is_(None),
                    MatrixBlob.media_id.not_in(bound),
                    MatrixBlob.media_id.not_in(used),
                )
                .limit(limit)
            )
            return list(s.scalars(q))

    # -- vouchers -------------------------------------------------------------
    def bindings(
        self, *, voucher_ids: Iterable[str] = (), media_ids: Iterable[str] = ()
    ) -> list[Binding]:
        vids, mids = list(voucher_ids), list(media_ids)
        if not vids and not mids:
            return []
        with self._session() as s:
            q = select(MatrixVoucher).where(
                MatrixVoucher.voucher_id.in_(vids) | MatrixVoucher.media_id.in_(mids)
            )
            return [
                Binding(
                    r.voucher_id,
                    r.media_id,
                    r.account,
                    r.room,
                    r.event_id,
                    r.voucher_sha256,
                    r.outcome,
                    r.case_id,
                )  # fmt: skip
                for r in s.scalars(q)
            ]

    def snapshot(
        self, voucher_ids: Sequence[str], media_ids: Sequence[str], others: Sequence[str] = ()
    ) -> Snapshot:
        """Bindings of ``voucher_ids`` or ``media_ids`` (an event's), and the recorded
        uploads and bound flags of ``media_ids`` and ``others`` (e.g. recent uploads)."""
        mids = list(dict.fromkeys([*media_ids, *others]))
        vids, own = set(voucher_ids), set(media_ids)
        with self._session() as s:
            rows = []
            if vids or mids:
                q = select(MatrixVoucher).where(
                    MatrixVoucher.voucher_id.in_(list(vids)) | MatrixVoucher.media_id.in_(mids)
                )
                rows = list(s.scalars(q))
            blobs = {}
            uses = {}
            if mids:
                for r in s.scalars(select(MatrixBlob).where(MatrixBlob.media_id.in_(mids))):
                    blobs[r.media_id] = _blob(r)
                uq = select(MatrixBlobUse).where(MatrixBlobUse.media_id.in_(mids))
                for u in s.scalars(uq):
                    uses[u.media_id] = Use(u.media_id, u.use, u.account, u.room, u.event_id)
        bindings = [_binding(r) for r in rows if r.voucher_id in vids or r.media_id in own]
        return Snapshot(bindings, blobs, {r.media_id for r in rows} | set(uses), uses)

    def bind(
        self,
        bindings: Sequence[Binding],
        cases: Sequence[dict[str, Any]] = (),
        franking: FrankingRecord | None = None,
        uses: Sequence[Use] = (),
        queue: Sequence[tuple[str, bytes, bytes]] = (),
    ) -> list[str]:
        """Record the bindings of one event, its cases (with the vouchers they keep: a
        case dict's ``kept``, a list of :class:`KeptVoucher`), its franking tag and the
        vouchers to open later (``queue``: ``(account, table id, voucher bytes)`` of the
        bindings, in order) in one transaction; returns the case ids.

        A voucher id or blob bound meanwhile by another event raises
        :class:`BindingConflict` and records nothing.
        """
        try:
            with self._session.begin() as s:
                rows = _add_cases(s, cases)
                slots: dict[str, int] = {}
                for b in bindings:
                    # An event's vouchers for one blob (a video's frames) take slots 0, 1, …:
                    # another event binding the blob collides on (media_id, 0).
                    slot = slots[b.media_id] = slots.get(b.media_id, -1) + 1
                    s.add(
                        MatrixVoucher(
                            voucher_id=b.voucher_id,
                            media_id=b.media_id,
                            slot=slot,
                            account=b.account,
                            room=b.room,
                            event_id=b.event_id,
                            voucher_sha256=b.voucher_sha256,
                            outcome=b.outcome,
                            case_id=b.case_id,
                            created_at=now(),
                        )
                    )
                if franking is not None:
                    _add_franking(s, franking)
                for u in uses:
                    s.add(_use_row(u))
                for b, (account, table_id, voucher) in zip(bindings, queue, strict=False):
                    s.add(MatrixVoucherQueue(voucher_id=b.voucher_id, account=account,
                                             table_id=table_id.hex(), voucher=voucher,
                                             created_at=now()))  # fmt: skip
                s.flush()  # a blob used or bound twice fails here, inside the transaction
                return [r.id for r in rows]
        except IntegrityError:
            raise BindingConflict from None

    # -- the threshold policy's queue ---------------------------------------------------
    def queued(self, limit: int = 100, *, account: str | None = None) -> list[Queued]:
        """The oldest queued vouchers (all accounts, or one)."""
        with self._session() as s:
            q = select(MatrixVoucherQueue).order_by(MatrixVoucherQueue.id).limit(limit)
            if account is not None:
                q = q.where(MatrixVoucherQueue.account == account)
            return [
                Queued(
                    r.id,
                    r.voucher_id,
                    r.account,
                    r.table_id,
                    bytes(r.voucher),
                    _aware(r.created_at),
                )  # fmt: skip
                for r in s.scalars(q)
            ]

    def queue_tables(self) -> set[str]:
        """Table ids (hex) that queued vouchers were made for."""
        with self._session() as s:
            return set(s.scalars(select(MatrixVoucherQueue.table_id).distinct()))

    def vouchers_bound_since(self, account: str, since: datetime) -> int:
        """How many vouchers ``account`` bound since ``since``, whatever their outcome."""
        with self._session() as s:
            n = s.scalar(
                select(func.count())
                .select_from(MatrixVoucher)
                .where(MatrixVoucher.account == account, MatrixVoucher.created_at >= since)
            )
            return int(n or 0)

    def finish_queued(
        self,
        item: Queued,
        cases: Sequence[dict[str, Any]] = (),
        also: Callable[[Session], None] | None = None,
    ) -> list[str]:
        """In one transaction: ``also(session)`` (the threshold store's deferred writes),
        the cases, the binding's outcome ``pending`` → ``accepted`` and the queue row gone.
        Returns the case ids."""
        with self._session.begin() as s:
            if also is not None:
                also(s)
            rows = _add_cases(s, cases)
            s.execute(
                update(MatrixVoucher)
                .where(
                    MatrixVoucher.voucher_id == item.voucher_id, MatrixVoucher.outcome == "pending"
                )  # fmt: skip
                .values(outcome="accepted")
            )
            s.execute(delete(MatrixVoucherQueue).where(MatrixVoucherQueue.id == item.id))
            return [r.id for r in rows]

    def kept_vouchers(self, case_id: str) -> list[KeptVoucher]:
        """The vouchers a case keeps (forged ones, with their bytes)."""
        with self._session() as s:
            q = select(CaseVoucher).where(CaseVoucher.case_id == case_id)
            return [
                KeptVoucher(
                    r.voucher_id, r.tampered, bytes(r.voucher) if r.voucher is not None else None
                )  # fmt: skip
                for r in s.scalars(q.order_by(CaseVoucher.voucher_id))
            ]

    def record_plaintext_uses(self, uses: Sequence[Use]) -> int:
        """Record blobs referenced by plaintext events; blobs already bound or used are
        left as they are. Returns how many were recorded."""
        n = 0
        with self._session.begin() as s:
            for u in uses:
                if s.get(MatrixBlobUse, u.media_id) is not None:
                    continue
                if s.scalar(select(MatrixVoucher.voucher_id).where(
                        MatrixVoucher.media_id == u.media_id)) is not None:  # fmt: skip
                    continue
                s.add(_use_row(u))
                n += 1
        return n

    # -- franking -------------------------------------------------------------------
    def record_franking(self, record: FrankingRecord) -> None:
        with self._session.begin() as s:
            _add_franking(s, record)

    def franking(self, event_ids: Sequence[str]) -> dict[str, FrankingRecord]:
        if not event_ids:
            return {}
        with self._session() as s:
            q = select(MatrixFranking).where(MatrixFranking.event_id.in_(list(event_ids)))
            return {
                r.event_id: FrankingRecord(
                    r.event_id, r.room, r.sender, r.origin_ts, bytes(r.commitment), bytes(r.tag)
                )  # fmt: skip
                for r in s.scalars(q)
            }

    # -- cases and rejections ---------------------------------------------------
    def add_case(self, **fields: Any) -> str:
        with self._session.begin() as s:
            [row] = _add_cases(s, [fields])
            return row.id

    def cases(self, *, kind: str | None = None, account: str | None = None,
              limit: int | None = None) -> list[CaseRecord]:  # fmt: skip
        with self._session() as s:
            q = select(Case).order_by(Case.created_at, Case.id)
            if kind:
                q = q.where(Case.kind == kind)
            if account:
                q = q.where(Case.account == account)
            if limit:
                q = q.limit(limit)
            rows = list(s.scalars(q))
            tampered: dict[str, dict[str, str]] = {}
            if rows:
                kq = select(CaseVoucher).where(
                    CaseVoucher.case_id.in_([r.id for r in rows]),
                    CaseVoucher.tampered.is_not(None),
                )
                for k in s.scalars(kq):
                    tampered.setdefault(k.case_id, {})[k.voucher_id] = str(k.tampered)
            return [
                CaseRecord(
                    r.id,
                    r.kind,
                    r.account,
                    r.room,
                    r.event_id,
                    json.loads(r.voucher_ids),
                    json.loads(r.blobs),
                    json.loads(r.entry_refs),
                    r.evidence is not None,
                    r.status,
                    _aware(r.created_at),
                    tampered.get(r.id, {}),
                )  # fmt: skip
                for r in rows
            ]

    def case_evidence(self, case_id: str) -> bytes | None:
        with self._session() as s:
            row = s.get(Case, case_id)
            return bytes(row.evidence) if row is not None and row.evidence is not None else None

    def add_rejection(self, account: str, room: str, event_id: str, reason: str,
                      detail: str) -> None:  # fmt: skip
        with self._session.begin() as s:
            s.add(MatrixRejection(account=account, room=room, event_id=event_id, reason=reason,
                                  detail=detail[:2000], created_at=now()))  # fmt: skip

    def rejections(self, account: str | None = None) -> list[tuple[str, str, str]]:
        """``(account, event_id, reason)`` in order."""
        with self._session() as s:
            q = select(MatrixRejection).order_by(MatrixRejection.id)
            if account:
                q = q.where(MatrixRejection.account == account)
            return [(r.account, r.event_id, r.reason) for r in s.scalars(q)]


def _use_row(u: Use) -> MatrixBlobUse:
    return MatrixBlobUse(media_id=u.media_id, use=u.use, account=u.account, room=u.room,
                         event_id=u.event_id, created_at=now())  # fmt: skip


def _add_franking(s: Any, r: FrankingRecord) -> None:
    if s.get(MatrixFranking, r.event_id) is None:  # a retried event keeps its first tag
        s.add(MatrixFranking(event_id=r.event_id, room=r.room, sender=r.sender,
                             origin_ts=r.origin_ts, commitment=r.commitment, tag=r.tag,
                             created_at=now()))  # fmt: skip


def _binding(r: MatrixVoucher) -> Binding:
    return Binding(r.voucher_id, r.media_id, r.account, r.room, r.event_id, r.voucher_sha256,
                   r.outcome, r.case_id)  # fmt: skip


def _blob(r: MatrixBlob) -> Blob:
    return Blob(r.media_id, r.sha256, r.size, r.kind, _aware(r.uploaded_at),
                r.quarantined_at is not None)  # fmt: skip


def _add_cases(s: Session, cases: Sequence[dict[str, Any]]) -> list[Case]:
    """Add case rows and the vouchers they keep (a case dict's ``kept``)."""
    rows = []
    for c in cases:
        fields = dict(c)
        kept: Sequence[KeptVoucher] = fields.pop("kept", ())
        row = _case_row(**fields)
        s.add(row)
        s.flush()  # the case row before the rows that reference it
        for k in kept:
            s.add(CaseVoucher(case_id=row.id, voucher_id=k.voucher_id, tampered=k.tampered,
                              voucher=k.voucher))  # fmt: skip
        rows.append(row)
    s.flush()
    return rows


def _case_row(
    *,
    kind: str,
    account: str,
    id: str | None = None,
    room: str | None = None,
    event_id: str | None = None,
    voucher_ids: Sequence[str] = (),
    blobs: Sequence[str] = (),
    entry_refs: Sequence[dict[str, Any]] = (),
    evidence: bytes | None = None,
) -> Case:
    if kind not in CASE_KINDS:
        raise ValueError(f"case kind must be one of {CASE_KINDS}")
    return Case(
        id=id or new_case_id(),
        kind=kind,
        account=account,
        room=room,
        event_id=event_id,
        voucher_ids=json.dumps(list(voucher_ids)),
        blobs=json.dumps(list(blobs)),
        entry_refs=json.dumps(list(entry_refs), sort_keys=True),
        evidence=evidence,
        status="open",
        created_at=now(),
    )


def cutoff(seconds: float) -> datetime:
    return now() - timedelta(seconds=seconds)


__all__ = [
    "Binding",
    "BindingConflict",
    "Blob",
    "CaseRecord",
    "FrankingRecord",
    "KeptVoucher",
    "MatrixState",
    "Queued",
    "Use",
    "new_case_id",
]
