"""The review workflow over the cases the Matrix module opens (issue 13).

A case is ``open`` when the module opens it (a blocked match, a threshold release, a
verified user report, a forged voucher). A reviewer takes it (``assign``), reads everything
needed to decide (:meth:`Review.case`: the matched list entries with their categories, the
account's history, a report's franked messages), adds notes, and decides:

* ``confirmed`` with an industry category (A1, A2, B1, B2) → status ``decided``; the
  consumers registered for confirmations run (enforcement, the NCMEC outbox);
* ``false_positive`` → status ``decided``; the consumers for false positives run (the
  negative bank);
* ``escalate`` → status ``escalated``: only a senior reviewer or an admin decides it.

A decided case changes only through an appeal. ``close`` ends a case with a reason (e.g.
a duplicate). Every view and every change is a line of the audit log
(:mod:`blindmatch.review.audit`); a picture revealed in the console is counted per
reviewer per day (:meth:`Review.exposures_today`, the wellness counter).

Queues sort by priority — flood quarantines (:mod:`blindmatch.review.defences`) first,
then the gravest category among the case's listed entries (A1 and A first), then reports
before matches before threshold releases — and then by age.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import sessionmaker

from blindmatch.errors import CaseNotFound, InvalidArgument, InvalidCaseState, NotAllowed
from blindmatch.review.audit import AuditLog
from blindmatch.review.reviewers import Reviewer
from blindmatch.review.types import CONFIRM_CATEGORIES, ConfirmedCase, EvidenceFile
from blindmatch.store.db import write_transaction
from blindmatch.store.models import (
    Case,
    CaseNote,
    Entry,
    HashList,
    MatrixRejection,
    MatrixVoucher,
)

KINDS = ("match", "report", "threshold", "tampered", "flood")
STATUSES = ("open", "escalated", "decided", "closed")
DECISIONS = ("confirmed", "false_positive", "escalate")
# Gravest first (industry A1/A2/B1/B2, UK A/B/C); no category known → last.
CATEGORY_RANK = {"A1": 0, "A": 1, "A2": 2, "B1": 3, "B": 4, "B2": 5, "C": 6}
KIND_RANK = {"report": 0, "match": 1, "threshold": 2, "tampered": 3, "flood": 4}
MAX_NOTE = 10_000


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _aware(t: datetime | None) -> datetime | None:
    return None if t is None else _utc(t)


@dataclass(frozen=True)
class Note:
    author: str
    text: str
    created_at: datetime


@dataclass(frozen=True)
class CaseSummary:
    """A row of a queue."""

    id: str
    kind: str
    account: str
    status: str
    assignee: str | None
    created_at: datetime
    categories: tuple[str, ...]  # of the listed entries it matched, gravest first
    decision: str | None
    category: str | None

    @property
    def priority(self) -> tuple[int, int, int]:
        """Flood quarantines first (a list entry blocking many accounts: every hour it
        stays wrong, or unblocked, matters), then the gravest category, then the kind."""
        rank = min((CATEGORY_RANK.get(c, 7) for c in self.categories), default=7)
        return int(self.kind != "flood"), rank, KIND_RANK.get(self.kind, 9)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "account": self.account, "status": self.status,
            "assignee": self.assignee, "created_at": self.created_at.isoformat(),
            "categories": list(self.categories), "decision": self.decision,
            "category": self.category,
        }  # fmt: skip


@dataclass(frozen=True)
class AccountHistory:
    """What the platform knows of an account: its earlier cases, how its sends were
    refused (blocked matches, other refusals), and its decided cases."""

    cases: list[CaseSummary]
    blocked_sends: int
    refusals: int
    confirmed: int


@dataclass(frozen=True)
class CaseDetail:
    summary: CaseSummary
    room: str | None
    event_id: str | None
    voucher_ids: list[str]
    blobs: list[str]
    entries: list[dict[str, Any]]  # entry refs, each ref with its category when known
    report: dict[str, Any] | None  # a report's verified content (franked messages)
    has_evidence: bool
    decided_by: str | None
    decided_at: datetime | None
    closed_at: datetime | None
    close_reason: str | None
    notes: list[Note]
    history: AccountHistory
    tampered: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = self.summary.to_json()
        d.update(
            room=self.room, event_id=self.event_id, voucher_ids=self.voucher_ids,
            blobs=self.blobs, entries=self.entries, report=self.report,
            evidence=self.has_evidence, decided_by=self.decided_by,
            decided_at=self.decided_at.isoformat() if self.decided_at else None,
            closed_at=self.closed_at.isoformat() if self.closed_at else None,
            close_reason=self.close_reason,
            notes=[{"author": n.author, "text": n.text, "created_at": n.created_at.isoformat()}
                   for n in self.notes],
            history={"cases": [c.id for c in self.history.cases],
                     "blocked_sends": self.history.blocked_sends,
                     "refusals": self.history.refusals, "confirmed": self.history.confirmed},
        )  # fmt: skip
        return d


ConfirmedHook = Callable[[ConfirmedCase], Any]
CaseHook = Callable[[str, Reviewer], Any]
MediaSource = Callable[[str], list[EvidenceFile]]


def _actor(r: Reviewer | str) -> str:
    return f"reviewer:{r.name}" if isinstance(r, Reviewer) else r


class Review:
    """The workflow. ``on_confirmed`` / ``on_false_positive``: what acts on a decision
    (enforcement, the NCMEC outbox, the negative bank), called after the decision is
    committed and audited, in order; ``media``: the pictures the platform holds for a case
    (id → files), handed to ``on_confirmed``."""

    def __init__(
        self,
        engine: Engine,
        audit: AuditLog | None = None,
        *,
        on_confirmed: Sequence[ConfirmedHook] = (),
        on_false_positive: Sequence[CaseHook] = (),
        media: MediaSource | None = None,
    ) -> None:
        self.engine = engine
        self.audit = audit or AuditLog(engine)
        self.on_confirmed = list(on_confirmed)
        self.on_false_positive = list(on_false_positive)
        self.media = media
        self._session = sessionmaker(engine, expire_on_commit=False)

    # -- reading ---------------------------------------------------------------------------
    def _categories(self, s: Any, refs: Iterable[dict[str, Any]]) -> dict[tuple[str, str], str]:
        """``(list, entry id) → category`` of the live listed entries the refs name."""
        keys = {(r["list"], r["entry_id"]) for m in refs for r in m.get("refs", ())}
        if not keys:
            return {}
        out: dict[tuple[str, str], str] = {}
        names = sorted({k[0] for k in keys})
        q = (
            select(HashList.name, Entry.source_id, Entry.category)
            .join(HashList, Entry.list_id == HashList.id)
            .where(HashList.name.in_(names), Entry.removed_seq.is_(None),
                   Entry.source_id.in_(sorted({k[1] for k in keys})))
        )  # fmt: skip
        for name, source_id, category in s.execute(q):
            if (name, source_id) in keys and category:
                out[(name, source_id)] = category
        return out

    def _summaries(self, s: Any, rows: Sequence[Case]) -> list[CaseSummary]:
        refs = {r.id: json.loads(r.entry_refs) for r in rows}
        cats = self._categories(s, [m for v in refs.values() for m in v])
        out = []
        for r in rows:
            found = {cats[(x["list"], x["entry_id"])] for m in refs[r.id]
                     for x in m.get("refs", ()) if (x["list"], x["entry_id"]) in cats}  # fmt: skip
            ordered = tuple(sorted(found, key=lambda c: CATEGORY_RANK.get(c, 7)))
            out.append(CaseSummary(r.id, r.kind, r.account, r.status, r.assignee,
                                   _utc(r.created_at), ordered, r.decision,
                                   r.category))  # fmt: skip
        return out

    def queue(
        self,
        *,
        kind: str | None = None,
        statuses: Sequence[str] = ("open", "escalated"),
        assignee: str | None = None,
        account: str | None = None,
        limit: int = 500,
    ) -> list[CaseSummary]:
        """Cases to work on, gravest first, then oldest first."""
        if kind is not None and kind not in KINDS:
            raise InvalidArgument(f"unknown case kind {kind!r}; expected one of {', '.join(KINDS)}")
        for st in statuses:
            if st not in STATUSES:
                raise InvalidArgument(
                    f"unknown status {st!r}; expected one of {', '.join(STATUSES)}"
                )
        with self._session() as s:
            q = select(Case).where(Case.status.in_(list(statuses)))
            if kind is not None:
                q = q.where(Case.kind == kind)
            if assignee is not None:
                q = q.where(Case.assignee == assignee)
            if account is not None:
                q = q.where(Case.account == account)
            rows = list(s.scalars(q.order_by(Case.created_at, Case.id)))
            found = self._summaries(s, rows)
        found.sort(key=lambda c: (c.priority, c.created_at, c.id))
        return found[:limit]

    def _row(self, s: Any, case_id: str) -> Case:
        row = s.get(Case, case_id) if isinstance(case_id, str) else None
        if row is None:
            raise CaseNotFound(f"no case {case_id!r}")
        return row

    def summary(self, case_id: str) -> CaseSummary:
        """A case's queue row (not audited: no content)."""
        with self._session() as s:
            [found] = self._summaries(s, [self._row(s, case_id)])
            return found

    def history(self, account: str, *, exclude: str | None = None) -> AccountHistory:
        with self._session() as s:
            rows = list(s.scalars(select(Case).where(Case.account == account)
                                  .order_by(Case.created_at, Case.id)))  # fmt: skip
            blocked = s.scalar(select(func.count()).select_from(MatrixVoucher).where(
                MatrixVoucher.account == account, MatrixVoucher.outcome == "blocked"))  # fmt: skip
            refusals = s.scalar(select(func.count()).select_from(MatrixRejection).where(
                MatrixRejection.account == account))  # fmt: skip
            summaries = self._summaries(s, [r for r in rows if r.id != exclude])
        confirmed = sum(r.decision == "confirmed" for r in rows)
        return AccountHistory(summaries, int(blocked or 0), int(refusals or 0), confirmed)

    def case(self, case_id: str, viewer: Reviewer | str) -> CaseDetail:
        """Everything needed to decide a case; the view is audited."""
        with self._session() as s:
            row = self._row(s, case_id)
            [summary] = self._summaries(s, [row])
            refs = json.loads(row.entry_refs)
            cats = self._categories(s, refs)
            notes = [Note(n.author, n.text, _utc(n.created_at))
                     for n in s.scalars(select(CaseNote).where(CaseNote.case_id == case_id)
                                        .order_by(CaseNote.id))]  # fmt: skip
            evidence = bytes(row.evidence) if row.evidence is not None else None
        entries = [
            {**m, "refs": [{**x, "category": cats.get((x["list"], x["entry_id"]))}
                           for x in m.get("refs", ())]}
            for m in refs
        ]  # fmt: skip
        report = None
        if row.kind == "report" and evidence is not None:
            try:
                report = json.loads(evidence)
            except ValueError:
                report = {"error": "the stored report is not JSON"}
        self.audit.append(_actor(viewer), "case.view", f"case:{case_id}")
        return CaseDetail(
            summary, row.room, row.event_id, json.loads(row.voucher_ids), json.loads(row.blobs),
            entries, report, evidence is not None, row.decided_by, _aware(row.decided_at),
            _aware(row.closed_at), row.close_reason, notes,
            self.history(row.account, exclude=case_id),
        )  # fmt: skip

    def exposures_today(self, reviewer: Reviewer | str) -> int:
        """Pictures this reviewer revealed since midnight UTC (the wellness counter)."""
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return self.audit.count(actor=_actor(reviewer), action="media.reveal", since=midnight)

    def record_reveal(self, case_id: str, reviewer: Reviewer, media_id: str) -> int:
        """Audit a picture revealed in the console; returns today's count after it."""
        with self._session() as s:
            self._row(s, case_id)
        self.audit.append(_actor(reviewer), "media.reveal", f"case:{case_id}", {"media": media_id})
        return self.exposures_today(reviewer)

    # -- changing --------------------------------------------------------------------------
    def assign(self, case_id: str, by: Reviewer, to: Reviewer | None = None) -> None:
        """Take a case (``to`` None) or hand it to ``to`` (senior or admin only)."""
        target = to or by
        if to is not None and to.name != by.name and not by.can("senior"):
            raise NotAllowed("only a senior reviewer or an admin assigns cases to others")
        if target.disabled:
            raise NotAllowed(f"reviewer {target.name!r} is disabled")
        with write_transaction(self.engine) as s:
            row = self._row(s, case_id)
            if row.status not in ("open", "escalated"):
                raise InvalidCaseState(f"case {case_id} is {row.status}: nothing to assign")
            if row.status == "escalated" and not target.can("senior"):
                raise NotAllowed("an escalated case goes to a senior reviewer")
            before = row.assignee
            row.assignee = target.name
        self.audit.append(_actor(by), "case.assign", f"case:{case_id}",
                          {"to": target.name, "from": before})  # fmt: skip

    def note(self, case_id: str, by: Reviewer, text: str) -> None:
        text = (text or "").strip()
        if not text:
            raise InvalidArgument("a note needs some text")
        if len(text) > MAX_NOTE:
            raise InvalidArgument(f"a note has at most {MAX_NOTE} characters")
        with write_transaction(self.engine) as s:
            self._row(s, case_id)
            s.add(CaseNote(case_id=case_id, author=by.name, text=text,
                           created_at=datetime.now(UTC)))  # fmt: skip
        self.audit.append(_actor(by), "case.note", f"case:{case_id}", {"chars": len(text)})

    def decide(
        self,
        case_id: str,
        by: Reviewer,
        decision: str,
        *,
        category: str | None = None,
        reason: str = "",
    ) -> CaseSummary:
        """Decide an open (or, for seniors, escalated) case; see the module docstring."""
        if decision not in DECISIONS:
            raise InvalidArgument(
                f"unknown decision {decision!r}; expected one of {', '.join(DECISIONS)}"
            )
        if decision == "confirmed":
            if category not in CONFIRM_CATEGORIES:
                raise InvalidArgument(
                    f"a confirmed case needs its category: one of {', '.join(CONFIRM_CATEGORIES)}"
                )
        elif category is not None:
            raise InvalidArgument("only a confirmed case takes a category")
        if by.disabled:
            raise NotAllowed(f"reviewer {by.name!r} is disabled")
        now = datetime.now(UTC)
        with write_transaction(self.engine) as s:
            row = self._row(s, case_id)
            if row.status in ("decided", "closed"):
                raise InvalidCaseState(
                    f"case {case_id} is {row.status} already: a decision changes only on appeal"
                )
            if row.status == "escalated" and not by.can("senior"):
                raise NotAllowed("an escalated case is decided by a senior reviewer or an admin")
            if row.kind == "tampered" and decision == "confirmed":
                raise InvalidCaseState("a forged-voucher case has no picture to confirm; close it")
            if decision == "escalate":
                if row.status == "escalated":
                    raise InvalidCaseState(f"case {case_id} is escalated already")
                row.status, row.assignee = "escalated", None
            else:
                row.status, row.decision, row.category = "decided", decision, category
                row.decided_by, row.decided_at = by.name, now
                row.assignee = row.assignee or by.name
            snapshot = (row.kind, row.account, row.room, row.event_id, json.loads(row.entry_refs))
        self.audit.append(_actor(by), "case.decide", f"case:{case_id}",
                          {"decision": decision, "category": category,
                           "reason": reason[:MAX_NOTE]})  # fmt: skip
        if reason.strip():
            self.note(case_id, by, f"[{decision}] {reason.strip()}")
        summary = self.summary(case_id)
        if decision == "confirmed":
            assert category is not None
            confirmed = ConfirmedCase(
                case_id, snapshot[0], snapshot[1], snapshot[2], snapshot[3], category,
                snapshot[4], by.name, now, self.media(case_id) if self.media else [],
            )  # fmt: skip
            for hook in self.on_confirmed:
                hook(confirmed)
        elif decision == "false_positive":
            for fp_hook in self.on_false_positive:
                fp_hook(case_id, by)
        return summary

    def close(self, case_id: str, by: Reviewer, reason: str) -> None:
        reason = (reason or "").strip()
        if not reason:
            raise InvalidArgument("closing a case needs a reason (e.g. 'duplicate of CASE')")
        with write_transaction(self.engine) as s:
            row = self._row(s, case_id)
            if row.status == "closed":
                raise InvalidCaseState(f"case {case_id} is closed already")
            row.status, row.closed_at, row.close_reason = "closed", datetime.now(UTC), reason
        self.audit.append(_actor(by), "case.close", f"case:{case_id}", {"reason": reason[:2000]})

    def reopen_for_appeal(self, case_id: str, by: Reviewer | str, outcome: str) -> None:
        """Record an appeal's outcome on the case (``overturned``: the decision becomes
        ``false_positive``; ``upheld``: unchanged). Called by :mod:`blindmatch.review.appeals`."""
        if outcome not in ("upheld", "overturned"):
            raise InvalidArgument("an appeal is upheld or overturned")
        with write_transaction(self.engine) as s:
            row = self._row(s, case_id)
            if row.status != "decided":
                raise InvalidCaseState(
                    f"case {case_id} is {row.status}: only a decision is appealed"
                )
            if outcome == "overturned":
                row.decision, row.category = "false_positive", None
        self.audit.append(_actor(by), f"appeal.{outcome}", f"case:{case_id}")


__all__ = [
    "CATEGORY_RANK",
    "DECISIONS",
    "KINDS",
    "STATUSES",
    "AccountHistory",
    "CaseDetail",
    "CaseSummary",
    "Note",
    "Review",
]
