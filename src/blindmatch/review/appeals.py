"""Appeals of a case (EU DSA Art. 20: internal complaint handling).

* :meth:`Appeals.open` — the user appeals one of their cases: only the case's own account
  (someone else's case, or no such case, get one and the same refusal), only a case the
  user was told about (a refused send, or an enforced decision), only within the appeal
  window (at least six months from the decision; from the refused send if no reviewer
  decided yet), one open appeal per case, one appeal per case in all.
* :meth:`Appeals.assign` — to a senior reviewer (role ``senior`` or ``admin``) who did
  NOT decide the case, the least loaded one. Reviewer accounts are the lead's
  (``review.reviewers``): the caller passes the candidates and the case's decider as
  :class:`Reviewer` values; the decider recorded by the enforcement is excluded as well.
* :meth:`Appeals.decide` — ``upheld`` or ``overturned`` with a reason, by the assigned
  reviewer only; overturned → :meth:`~blindmatch.review.enforcement.Enforcer.on_overturned`
  (suspension lifted, quarantined media restored) before the decision is recorded, so a
  failure at Synapse leaves the appeal open to decide again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from blindmatch.errors import AppealRefused, ConfigError, EnforcementFailed
from blindmatch.review.enforcement import (
    DEFAULT_APPEAL_WINDOW_DAYS,
    AuditHook,
    Enforcer,
    Overturned,
)
from blindmatch.review.types import readable_id
from blindmatch.store.models import AppealRecord, Case, EnforcementActionRecord

ROLES = ("reviewer", "senior", "admin")
APPEAL_ROLES = ("senior", "admin")
OUTCOMES = ("upheld", "overturned")
MAX_APPEAL_TEXT = 4000
MAX_REASON_TEXT = 4000
#: The one answer to "no such case" and "not your case": it must not tell them apart.
UNKNOWN_CASE = "no case with this id can be appealed from your account"


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def new_appeal_id() -> str:
    return readable_id("AP")


@dataclass(frozen=True)
class Reviewer:
    """A reviewer as the caller knows it (the lead's ``review.reviewers`` account)."""

    name: str
    role: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(f"reviewer role must be one of {', '.join(ROLES)}, not {self.role!r}")


@dataclass(frozen=True)
class Appeal:
    id: str
    case_id: str
    account: str
    text: str
    status: str  # open | upheld | overturned
    opened_at: datetime
    case_decided_by: str | None
    assigned_to: str | None
    assigned_at: datetime | None
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t else None

        return {"id": self.id, "case_id": self.case_id, "account": self.account,
                "text": self.text, "status": self.status, "opened_at": iso(self.opened_at),
                "case_decided_by": self.case_decided_by, "assigned_to": self.assigned_to,
                "assigned_at": iso(self.assigned_at), "decided_by": self.decided_by,
                "decided_at": iso(self.decided_at), "reason": self.reason}  # fmt: skip


def _view(r: AppealRecord) -> Appeal:
    def opt(t: datetime | None) -> datetime | None:
        return _aware(t) if t is not None else None

    return Appeal(r.id, r.case_id, r.account, r.text, r.status, _aware(r.opened_at),
                  r.case_decided_by, r.assigned_to, opt(r.assigned_at), r.decided_by,
                  opt(r.decided_at), r.reason)  # fmt: skip


class Appeals:
    """Appeals on blindmatch's database. ``enforcer`` undoes an overturned case (None: the
    decision is recorded only); ``audit``: the lead's ``AuditLog(engine).append`` (AUDIT
    HOOK below); ``clock``: the current time (tests move it)."""

    def __init__(
        self,
        engine: Engine,
        *,
        window_days: int = DEFAULT_APPEAL_WINDOW_DAYS,
        enforcer: Enforcer | None = None,
        audit: AuditHook | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        if window_days < 183:
            raise ConfigError(
                "the appeal window must be at least 183 days (six months, EU DSA Art. 20(1)), "
                f"not {window_days}"
            )
        self.engine = engine
        self.window = timedelta(days=window_days)
        self.enforcer = enforcer
        self.audit = audit
        self.clock = clock
        self._session = sessionmaker(engine, expire_on_commit=False)

    def _audit(self, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        # AUDIT HOOK: the one place appeals report to the audit log (review.audit).
        if self.audit is not None:
            self.audit(actor, action, subject, detail)

    # -- the user --------------------------------------------------------------------------
    def open(self, case_id: str, account: str, text: str) -> Appeal:
        """Open an appeal of ``case_id`` by ``account``; raises
        :class:`~blindmatch.errors.AppealRefused`."""
        if not isinstance(case_id, str) or not case_id or len(case_id) > 32:
            raise AppealRefused("malformed_appeal", "case_id must be a case id (e.g. BM-...)")
        if not isinstance(text, str) or not text.strip():
            raise AppealRefused("malformed_appeal", "say why the decision is wrong (text)")
        if len(text) > MAX_APPEAL_TEXT:
            raise AppealRefused(
                "malformed_appeal", f"the appeal text is longer than {MAX_APPEAL_TEXT} characters"
            )
        with self._session() as s:
            case = s.get(Case, case_id)
            action = s.scalar(
                select(EnforcementActionRecord).where(EnforcementActionRecord.case_id == case_id)
            )
            earlier = s.scalar(select(AppealRecord).where(AppealRecord.case_id == case_id)
                               .order_by(AppealRecord.opened_at.desc()).limit(1))  # fmt: skip
        # The user knows a case from a refused send (match) or from a statement of reasons.
        if case is None or case.account != account or (case.kind != "match" and action is None):
            raise AppealRefused("unknown_case", UNKNOWN_CASE)
        if earlier is not None and earlier.status == "open":
            raise AppealRefused(
                "appeal_open", f"this case already has an open appeal ({earlier.id})"
            )
        if earlier is not None:
            raise AppealRefused(
                "appeal_decided",
                f"this case's appeal {earlier.id} was decided ({earlier.status}); you may "
                "still refer the decision to an out-of-court dispute settlement body "
                "(EU DSA Art. 21) or to a court",
            )
        start = _aware(action.decided_at) if action is not None else _aware(case.created_at)
        if self.clock() - start > self.window:
            raise AppealRefused(
                "appeal_window_closed",
                f"appeals of this case closed {self.window.days} days after the decision",
            )
        row = AppealRecord(id=new_appeal_id(), case_id=case_id, account=account,
                           text=text.strip(), status="open", opened_at=self.clock())  # fmt: skip
        try:
            with self._session.begin() as s:
                s.add(row)
        except IntegrityError:  # a concurrent open of the same case won
            raise AppealRefused("appeal_open", "this case already has an open appeal") from None
        self._audit(f"user:{account}", "appeal.open", f"case:{case_id}", {"appeal": row.id})
        return _view(row)

    # -- the operator ------------------------------------------------------------------------
    def get(self, appeal_id: str) -> Appeal:
        with self._session() as s:
            r = s.get(AppealRecord, appeal_id)
            if r is None:
                raise AppealRefused("unknown_appeal", f"no appeal {appeal_id!r}")
            return _view(r)

    def list(
        self,
        *,
        status: str | None = None,
        account: str | None = None,
        case_id: str | None = None,
        assigned_to: str | None = None,
        limit: int | None = None,
    ) -> list[Appeal]:
        with self._session() as s:
            q = select(AppealRecord).order_by(AppealRecord.opened_at, AppealRecord.id)
            for col, v in ((AppealRecord.status, status), (AppealRecord.account, account),
                           (AppealRecord.case_id, case_id),
                           (AppealRecord.assigned_to, assigned_to)):  # fmt: skip
                if v is not None:
                    q = q.where(col == v)
            if limit:
                q = q.limit(limit)
            return [_view(r) for r in s.scalars(q)]

    def _deciders(self, case_id: str, decider: Reviewer | str | None) -> set[str]:
        names = set()
        if decider is not None:
            names.add(decider.name if isinstance(decider, Reviewer) else decider)
        with self._session() as s:
            recorded = s.scalar(select(EnforcementActionRecord.reviewer).where(
                EnforcementActionRecord.case_id == case_id))  # fmt: skip
        if recorded:
            names.add(recorded)
        return names

    def assign(
        self,
        appeal_id: str,
        candidates: Sequence[Reviewer],
        decider: Reviewer | str | None = None,
    ) -> Appeal:
        """Assign an open appeal to the least loaded senior reviewer among ``candidates``
        who did not decide the case (``decider``, and the reviewer the enforcement
        recorded). Raises ``AppealRefused("no_eligible_reviewer")`` when nobody fits."""
        appeal = self.get(appeal_id)
        if appeal.status != "open":
            raise AppealRefused("appeal_decided", f"appeal {appeal_id} is already decided")
        deciders = self._deciders(appeal.case_id, decider)
        eligible = sorted({c.name for c in candidates
                           if c.role in APPEAL_ROLES and c.name not in deciders})  # fmt: skip
        if not eligible:
            raise AppealRefused(
                "no_eligible_reviewer",
                "no senior reviewer other than the one who decided the case is available "
                f"(decided by {', '.join(sorted(deciders)) or 'nobody yet'})",
            )
        with self._session.begin() as s:
            load = dict(s.execute(
                select(AppealRecord.assigned_to, func.count()).where(
                    AppealRecord.status == "open", AppealRecord.assigned_to.in_(eligible),
                    AppealRecord.id != appeal_id).group_by(AppealRecord.assigned_to)
            ).all())  # fmt: skip
            chosen = min(eligible, key=lambda n: (load.get(n, 0), n))
            r = s.get(AppealRecord, appeal_id)
            assert r is not None
            r.assigned_to, r.assigned_at = chosen, self.clock()
            r.case_decided_by = ", ".join(sorted(deciders)) or None
            s.flush()
            view = _view(r)
        self._audit("system", "appeal.assign", f"appeal:{appeal_id}",
                    {"case": appeal.case_id, "assigned_to": chosen})  # fmt: skip
        return view

    def decide(
        self, appeal_id: str, reviewer: Reviewer, outcome: str, reason: str
    ) -> tuple[Appeal, Overturned | None]:
        """Decide an appeal as its assigned senior reviewer."""
        if outcome not in OUTCOMES:
            raise AppealRefused(
                "bad_outcome", f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}"
            )
        if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON_TEXT:
            raise AppealRefused(
                "malformed_appeal", f"give the decision's reason (1 to {MAX_REASON_TEXT} chars)"
            )
        appeal = self.get(appeal_id)
        if appeal.status != "open":
            raise AppealRefused("appeal_decided", f"appeal {appeal_id} is already decided")
        recorded = {n for n in (appeal.case_decided_by or "").split(", ") if n}
        if reviewer.name in self._deciders(appeal.case_id, None) | recorded:
            raise AppealRefused(
                "own_decision", "a reviewer cannot decide the appeal of their own decision"
            )
        if reviewer.role not in APPEAL_ROLES:
            raise AppealRefused("not_assigned", "only a senior reviewer decides appeals")
        if appeal.assigned_to != reviewer.name:
            raise AppealRefused(
                "not_assigned", f"appeal {appeal_id} is assigned to someone else, or nobody"
            )
        undone = None
        if outcome == "overturned" and self.enforcer is not None:
            undone = self.enforcer.on_overturned(appeal.case_id, reviewer.name)
        with self._session.begin() as s:
            r = s.get(AppealRecord, appeal_id)
            assert r is not None
            r.status, r.decided_by, r.decided_at = outcome, reviewer.name, self.clock()
            r.reason = reason.strip()
            s.flush()
            view = _view(r)
        self._audit(f"reviewer:{reviewer.name}", "appeal.decide", f"appeal:{appeal_id}",
                    {"case": appeal.case_id, "outcome": outcome,
                     "lift": undone.lift if undone else None})  # fmt: skip
        self._tell(view)
        return view, undone

    def _tell(self, a: Appeal) -> None:
        """Tell the user the outcome (EU DSA Art. 20(5)), best effort: a server notice."""
        if self.enforcer is None:
            return
        body = (f"Your appeal {a.id} of case {a.case_id} was decided: {a.status}. "
                f"Reason: {a.reason}")  # fmt: skip
        if a.status == "upheld":
            body += (" You may refer the decision to a certified out-of-court dispute "
                     "settlement body (EU DSA Art. 21) or to a court.")  # fmt: skip
        outcome = {"id": a.id, "case": a.case_id, "outcome": a.status}
        content = {"msgtype": "m.text", "body": body, "org.blindmatch.appeal": outcome}
        try:
            self.enforcer.admin.send_server_notice(a.account, content)
        except EnforcementFailed as e:
            self._audit("system", "appeal.notify_failed", f"appeal:{a.id}", {"error": e.message})


__all__ = [
    "APPEAL_ROLES",
    "OUTCOMES",
    "ROLES",
    "UNKNOWN_CASE",
    "Appeal",
    "Appeals",
    "Reviewer",
    "new_appeal_id",
]
