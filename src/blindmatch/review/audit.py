"""The append-only, hash-chained audit log of the operator's side (issue 13).

Every view of a case or a picture, every decision, enforcement step, appeal and NCMEC
report is one line: ``(seq, at, actor, action, subject, detail)``. Line ``n``'s hash is

    SHA-256( hash(n-1) ‖ "\\n" ‖ canonical JSON [seq, at, actor, action, subject, detail] )

with ``hash(0)`` = 64 zeros, so editing, deleting, inserting or reordering a line breaks
the chain from there on; :meth:`AuditLog.verify` (``blindmatch audit verify``) recomputes
it. What a hash chain cannot show on its own is a rewrite of the whole tail by someone who
can write the database: record the head (``blindmatch audit head``) somewhere else — a
ticket, a transparency log — and check against it with ``verify(expect=(seq, hash))``.

Lines are appended under the store's write lock (:func:`~blindmatch.store.db.write_transaction`),
so sequence numbers are dense and two writers never chain onto the same line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select

from blindmatch.store.db import write_transaction
from blindmatch.store.models import AuditRecord

GENESIS = "0" * 64
_BATCH = 2000


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _stamp(t: datetime) -> str:
    return _aware(t).astimezone(UTC).isoformat(timespec="microseconds")


def line_hash(prev: str, seq: int, at: str, actor: str, action: str, subject: str,
              detail: str) -> str:  # fmt: skip
    """The chain hash of one line (see the module docstring)."""
    body = json.dumps([seq, at, actor, action, subject, detail], ensure_ascii=False,
                      separators=(",", ":"))  # fmt: skip
    return hashlib.sha256(prev.encode() + b"\n" + body.encode()).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    prev: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": _stamp(self.at), "actor": self.actor,
                "action": self.action, "subject": self.subject, "detail": self.detail,
                "prev": self.prev, "hash": self.hash}  # fmt: skip


@dataclass(frozen=True)
class AuditCheck:
    """What :meth:`AuditLog.verify` found: ``ok``, how many lines it checked, the head
    (last seq and hash), and the first broken line with what is wrong with it."""

    ok: bool
    lines: int
    head_seq: int
    head_hash: str
    bad_seq: int | None = None
    problem: str | None = None
    notes: list[str] = field(default_factory=list)


def _entry(r: Any) -> AuditEntry:
    return AuditEntry(r.seq, _aware(r.at), r.actor, r.action, r.subject, json.loads(r.detail),
                      r.prev, r.hash)  # fmt: skip


class AuditLog:
    """The audit log in the store's database (``engine`` from
    :func:`~blindmatch.store.db.open_store`, which creates the table)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def append(self, actor: str, action: str, subject: str,
               detail: Mapping[str, Any] | None = None) -> AuditEntry:  # fmt: skip
        """Add one line and return it. ``actor``: ``reviewer:<name>``, ``user:<mxid>``,
        ``system``; ``action``: a dotted verb (``case.view``, ``case.decide``,
        ``media.reveal``); ``subject``: what it acts on (``case:<id>``, ``account:<mxid>``);
        ``detail``: JSON-serialisable facts (never picture bytes or secrets)."""
        for name, value in (("actor", actor), ("action", action), ("subject", subject)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"audit {name} must be a non-empty string")
        text = json.dumps(dict(detail or {}), sort_keys=True, ensure_ascii=False,
                          separators=(",", ":"))  # fmt: skip
        at = datetime.now(UTC)
        with write_transaction(self.engine) as s:
            last = s.execute(
                select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)
            ).first()
            seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
            h = line_hash(prev, seq, _stamp(at), actor, action, subject, text)
            row = AuditRecord(seq=seq, at=at, actor=actor, action=action, subject=subject,
                              detail=text, prev=prev, hash=h)  # fmt: skip
            s.add(row)
        return AuditEntry(seq, at, actor, action, subject, json.loads(text), prev, h)

    def entries(
        self,
        *,
        subject: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[AuditEntry]:
        q = select(*AuditRecord.__table__.columns)
        if subject is not None:
            q = q.where(AuditRecord.subject == subject)
        if actor is not None:
            q = q.where(AuditRecord.actor == actor)
        if action is not None:
            q = q.where(AuditRecord.action == action)
        if since is not None:
            q = q.where(AuditRecord.at >= since)
        q = q.order_by(AuditRecord.seq.desc() if newest_first else AuditRecord.seq)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [_entry(r) for r in conn.execute(q)]

    def count(self, *, actor: str, action: str, since: datetime) -> int:
        with self.engine.connect() as conn:
            q = (
                select(func.count())
                .select_from(AuditRecord)
                .where(
                    AuditRecord.actor == actor,
                    AuditRecord.action == action,
                    AuditRecord.at >= since,
                )
            )
            return int(conn.execute(q).scalar_one())

    def head(self) -> tuple[int, str]:
        """The last line's ``(seq, hash)``, or ``(0, GENESIS)`` for an empty log."""
        with self.engine.connect() as conn:
            last = conn.execute(
                select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)
            ).first()
        return (int(last[0]), str(last[1])) if last else (0, GENESIS)

    def _rows(self) -> Iterator[Any]:
        after = 0
        with self.engine.connect() as conn:
            while True:
                batch = list(conn.execute(
                    select(*AuditRecord.__table__.columns).where(AuditRecord.seq > after)
                    .order_by(AuditRecord.seq).limit(_BATCH)
                ))  # fmt: skip
                if not batch:
                    return
                yield from batch
                after = batch[-1].seq

    def verify(self, expect: tuple[int, str] | None = None) -> AuditCheck:
        """Recompute the chain from the first line. ``expect``: a head recorded earlier
        (``(seq, hash)``): the line with that seq must still carry that hash."""
        prev, n, seq_expected = GENESIS, 0, 1
        found_expect = expect is None or expect[0] == 0
        for r in self._rows():
            at = _stamp(r.at)
            if r.seq != seq_expected:
                return AuditCheck(False, n, seq_expected - 1, prev, r.seq,
                                  f"line {seq_expected} is missing (next is {r.seq})")  # fmt: skip
            if r.prev != prev:
                problem = "its previous-hash field does not match the line before"
                return AuditCheck(False, n, r.seq - 1, prev, r.seq, problem)
            if line_hash(prev, r.seq, at, r.actor, r.action, r.subject, r.detail) != r.hash:
                return AuditCheck(False, n, r.seq - 1, prev, r.seq,
                                  "its hash does not match its content (edited)")  # fmt: skip
            if expect is not None and r.seq == expect[0]:
                if r.hash != expect[1]:
                    return AuditCheck(False, n, r.seq - 1, prev, r.seq,
                                      "it differs from the head recorded earlier")  # fmt: skip
                found_expect = True
            prev, n, seq_expected = r.hash, n + 1, r.seq + 1
        if not found_expect:
            assert expect is not None
            return AuditCheck(False, n, seq_expected - 1, prev, expect[0],
                              "the log is shorter than the head recorded earlier")  # fmt: skip
        return AuditCheck(True, n, seq_expected - 1, prev)


__all__ = ["GENESIS", "AuditCheck", "AuditEntry", "AuditLog", "line_hash"]
