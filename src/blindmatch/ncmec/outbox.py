"""The durable CyberTipline outbox: confirmed cases become NCMEC reports, exactly once.

:meth:`Outbox.enqueue` turns a :class:`~blindmatch.review.types.ConfirmedCase` into a row
of ``ncmec_reports`` (the report XML, built and validated now) with one
``ncmec_report_files`` row per picture (the picture itself encrypted in the evidence
store), in one transaction; enqueueing the same case again returns the same id.
:meth:`Outbox.run_once` advances every due report as far as it can::

    pending ──submit──▶ submitted ──upload each──▶ ──fileinfo each──▶ ──finish──▶ finished
       │                    │                                                    (final)
       └──── retract ───────┴──▶ retracted          any permanent refusal ──▶ failed

Each request is noted in the row (``inflight``) and committed *before* it is sent, and
its answer is committed *before* the next request: a report id before any upload, each
``fileId`` before its ``fileinfo``, ``finished`` before anything else. So a new
:class:`Outbox` on the same database (after a restart, at any point) continues where the
last one stopped, never re-uploads a file that has a ``fileId``, and never finishes a
report twice.

Failures:

- transient (HTTP 5xx/429, connection errors, a dropped answer, NCMEC codes 1000-1999):
  ``attempts`` + 1 and ``next_attempt_at`` = now + backoff (30 s doubling, at most 1 h);
  after ``max_attempts`` in a row the report is ``failed``;
- permanent (any other NCMEC code): ``failed`` with NCMEC's ``error_code`` and
  description — loud: :meth:`run_once` returns a ``failed`` step and ``blindmatch reports
  send`` exits non-zero naming it;
- the account refused (HTTP 401/403, codes 2000-3999) or the evidence unreadable: the
  run stops with an ``error`` step; the report keeps its state, nothing is lost, and the
  next run after the fix continues;
- 5001 "Report does not exist" on an unfinished report (NCMEC deletes an unfinished report
  24 h after opening or 1 h after its last change): the report is reopened — submitted
  again from the start (at most 3 times), since the deleted one was never finished;
- 5102 "Report already finished" answering our ``/finish`` means an earlier finish was
  accepted and its answer lost: the report is recorded ``finished``; 5101 "already
  retracted" likewise records ``retracted``.

If the process dies between NCMEC accepting a request and our recording the answer:

- ``/submit``: NCMEC holds an open report we never learned the id of. The next run
  finds ``inflight = submit`` and submits again; the first report stays unfinished and
  NCMEC deletes it after 24 h (an orphan, counted in ``possible_orphans``: an unfinished
  report is not a report to law enforcement). A dropped answer to ``/submit`` does the same.
- ``/upload``: NCMEC holds the file in the open report, without our ``fileId``; the next
  run uploads it again (a file *with* a recorded ``fileId`` is never uploaded again), so the
  finished report may carry one extra copy without file details. ``/finish`` answers the
  list of files NCMEC holds: it is stored in ``ncmec_files`` and an extra file is named in
  the finish step's detail.
- ``/fileinfo``: sent again; it describes the same file with the same details.
- ``/finish``: the next run finishes again, NCMEC answers 5102, and the report is recorded
  ``finished``: no report is ever finished twice.
- ``/retract``: retracting again answers 5101 and the report is recorded ``retracted``.

Run one sender at a time (``blindmatch reports send`` or a service worker, not both at
once): two senders could each submit a pending report (one orphan), though NCMEC's own
5102 still prevents a double finish. The audit log gets one entry per step through a
single hook (:meth:`Outbox._audit`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from blindmatch.errors import (
    EvidenceError,
    NcmecAuthFailed,
    NcmecInvalidXml,
    NcmecRejected,
    NcmecUnavailable,
    ReportNotFound,
    ReportStateError,
)
from blindmatch.ncmec import report as rpt
from blindmatch.ncmec.client import (
    ALREADY_FINISHED,
    ALREADY_RETRACTED,
    REPORT_NOT_FOUND,
    NcmecClient,
    Response,
)
from blindmatch.ncmec.config import NcmecConfig
from blindmatch.review.evidence import EvidenceStore
from blindmatch.review.types import ConfirmedCase
from blindmatch.store.models import Case, NcmecReport, NcmecReportFile

STATES = ("pending", "submitted", "finished", "failed", "retracted")
DUE_STATES = ("pending", "submitted")
MAX_REOPEN = 3

AuditHook = Callable[[str, str, str, "dict[str, Any] | None"], object]


def now() -> datetime:
    return datetime.now(UTC)


def _aware(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _iso(t: datetime | None) -> str | None:
    t = _aware(t)
    return t.isoformat(timespec="seconds") if t else None


@dataclass(frozen=True)
class Step:
    """One thing :meth:`Outbox.run_once` or :meth:`Outbox.retract` did to one report.

    ``outcome``: ``ok`` (done, recorded), ``retry`` (transient; scheduled again),
    ``failed`` (given up: permanent), ``error`` (the run stopped: the account or the
    evidence; the report is unchanged)."""

    report: str
    action: str  # submit | upload | fileinfo | finish | retract | reopen
    outcome: str
    detail: str = ""
    ncmec_code: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ReportFile:
    seq: int
    filename: str
    sha256: str
    viewed_by_esp: bool
    file_id: str | None
    uploaded_at: str | None
    details_at: str | None


@dataclass(frozen=True)
class ReportInfo:
    id: str
    case_id: str
    account: str
    category: str
    reviewer: str
    state: str
    endpoint: str | None
    ncmec_report_id: int | None
    inflight: str | None
    attempts: int
    next_attempt_at: str | None
    possible_orphans: int
    reopened: int
    error_code: int | None
    error: str | None
    ncmec_files: list[str] | None
    created_at: str | None
    submitted_at: str | None
    finished_at: str | None
    retracted_at: str | None
    files: list[ReportFile] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _info(r: NcmecReport, files: list[NcmecReportFile]) -> ReportInfo:
    return ReportInfo(
        id=r.id, case_id=r.case_id, account=r.account, category=r.category,
        reviewer=r.reviewer, state=r.state, endpoint=r.endpoint,
        ncmec_report_id=r.ncmec_report_id, inflight=r.inflight, attempts=r.attempts,
        next_attempt_at=_iso(r.next_attempt_at), possible_orphans=r.possible_orphans,
        reopened=r.reopened, error_code=r.error_code, error=r.error,
        ncmec_files=json.loads(r.ncmec_files) if r.ncmec_files else None,
        created_at=_iso(r.created_at), submitted_at=_iso(r.submitted_at),
        finished_at=_iso(r.finished_at), retracted_at=_iso(r.retracted_at),
        files=[
            ReportFile(f.seq, f.filename, f.sha256, f.viewed_by_esp, f.file_id,
                       _iso(f.uploaded_at), _iso(f.details_at))
            for f in files
        ],
    )  # fmt: skip


def _default_audit(engine: Engine) -> AuditHook | None:
    """The lead's audit log when it is on this branch (``blindmatch.review.audit``)."""
    try:
        from blindmatch.review.audit import AuditLog  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    hook: AuditHook = AuditLog(engine).append
    return hook


class Outbox:
    def __init__(
        self,
        engine: Engine,
        config: NcmecConfig | None,
        *,
        evidence: EvidenceStore | None = None,
        client: NcmecClient | None = None,
        clock: Callable[[], datetime] = now,
        audit: AuditHook | None = None,
        account_status: Callable[[str], rpt.AccountStatus | None] | None = None,
    ) -> None:
        """``account_status``: what was done to a case's account (case id → status), read
        when the case is queued; the Operator passes the enforcer's record."""
        self.engine = engine
        self._account_status = account_status
        self._config = config
        self._evidence = evidence
        self._client = client
        self.clock = clock
        self._audit_hook = audit if audit is not None else _default_audit(engine)
        self._session = sessionmaker(engine, expire_on_commit=False)

    @property
    def config(self) -> NcmecConfig:
        """The NCMEC settings (an Outbox opened without them can only read)."""
        if self._config is None:
            from blindmatch.ncmec.config import load_ncmec_config

            self._config = load_ncmec_config()
        return self._config

    @property
    def evidence(self) -> EvidenceStore:
        if self._evidence is None:
            self._evidence = EvidenceStore(self.engine, clock=self.clock)
        return self._evidence

    @property
    def client(self) -> NcmecClient:
        if self._client is None:
            user, password = self.config.credentials()
            self._client = NcmecClient(
                self.config.base_url, user, password, timeout=self.config.timeout
            )
        return self._client

    # -- AUDIT HOOK: the one call site per step --------------------------------------
    def _audit(self, action: str, report_id: str, detail: dict[str, Any] | None = None,
               actor: str = "system") -> None:  # fmt: skip
        """``AuditLog(engine).append(actor, action, subject, detail)`` when an audit log
        is given (or ``blindmatch.review.audit`` exists); otherwise nothing."""
        if self._audit_hook is not None:
            self._audit_hook(actor, action, f"report:{report_id}", detail)

    # -- enqueue ------------------------------------------------------------------------
    def enqueue(self, case: ConfirmedCase) -> str:
        """Queue ``case`` as a report; its id (the same id for the same case again).
        An invalid case raises NcmecInvalidXml and stores nothing."""
        existing = self._report_for_case(case.case_id)
        if existing is not None:
            return existing
        with self._session() as s:
            created = s.scalar(select(Case.created_at).where(Case.id == case.case_id))
        status = self._account_status(case.case_id) if self._account_status else None
        xml = rpt.build_report(case, self.config, _aware(created), status)
        hashes = [rpt.file_hashes(m.data) for m in case.media]
        for m, h in zip(case.media, hashes, strict=True):  # refuse now, not at /fileinfo
            rpt.build_file_details(
                0, "0", filename=m.filename, hashes=h, classification=case.category,
                viewed_by_esp=m.viewed_by_reviewer,
            )  # fmt: skip
        rid = "NR-" + secrets.token_hex(6).upper()
        t = self.clock()
        try:
            with self._session.begin() as s:
                s.add(
                    NcmecReport(
                        id=rid, case_id=case.case_id, account=case.account,
                        category=case.category, reviewer=case.reviewer,
                        report_xml=xml.decode("utf-8"), state="pending", attempts=0,
                        possible_orphans=0, reopened=0, created_at=t, updated_at=t,
                    )
                )  # fmt: skip
                s.flush()
                for seq, (m, h) in enumerate(zip(case.media, hashes, strict=True)):
                    eid = self.evidence.add(
                        s, case.case_id, m.filename, m.data, m.viewed_by_reviewer
                    )
                    s.add(
                        NcmecReportFile(
                            report_id=rid, seq=seq, evidence_id=eid, filename=m.filename[:255],
                            sha256=h["SHA256"], md5=h["MD5"], viewed_by_esp=m.viewed_by_reviewer,
                        )
                    )  # fmt: skip
        except IntegrityError:
            again = self._report_for_case(case.case_id)  # a concurrent enqueue won
            if again is None:
                raise
            return again
        self._audit("ncmec.enqueue", rid, {"case": case.case_id, "files": len(case.media)})
        return rid

    def _report_for_case(self, case_id: str) -> str | None:
        with self._session() as s:
            return s.scalar(select(NcmecReport.id).where(NcmecReport.case_id == case_id))

    # -- reading ------------------------------------------------------------------------
    def report_for_case(self, case_id: str) -> ReportInfo | None:
        """The report a confirmed case became (None: none queued)."""
        rid = self._report_for_case(case_id)
        return self.report(rid) if rid is not None else None

    def reports(self, state: str | None = None) -> list[ReportInfo]:
        with self._session() as s:
            q = select(NcmecReport).order_by(NcmecReport.created_at, NcmecReport.id)
            if state is not None:
                q = q.where(NcmecReport.state == state)
            return [_info(r, self._files(s, r.id)) for r in s.scalars(q)]

    def report(self, report_id: str) -> ReportInfo:
        with self._session() as s:
            r = s.get(NcmecReport, report_id)
            if r is None:
                raise ReportNotFound(f"no report {report_id}")
            return _info(r, self._files(s, r.id))

    @staticmethod
    def _files(s: Session, report_id: str) -> list[NcmecReportFile]:
        q = select(NcmecReportFile).where(NcmecReportFile.report_id == report_id)
        return list(s.scalars(q.order_by(NcmecReportFile.seq)))

    # -- sending ------------------------------------------------------------------------
    def run_once(self) -> list[Step]:
        """Advance every due report one or more steps; what was done, in order."""
        t = self.clock()
        with self._session() as s:
            due = list(
                s.scalars(
                    select(NcmecReport.id)
                    .where(
                        NcmecReport.state.in_(DUE_STATES),
                        or_(NcmecReport.next_attempt_at.is_(None),
                            NcmecReport.next_attempt_at <= t),
                    )
                    .order_by(NcmecReport.created_at, NcmecReport.id)
                )
            )  # fmt: skip
        steps: list[Step] = []
        for rid in due:
            steps.extend(self._advance(rid))
            if steps and steps[-1].outcome == "error":
                break  # the account or the evidence key: every other report would fail too
        return steps

    def _advance(self, rid: str) -> list[Step]:
        steps: list[Step] = []
        with self._session() as s:
            n = len(self._files(s, rid))
        for _ in range((MAX_REOPEN + 1) * (2 * n + 3)):  # every step of every reopening
            with self._session() as s:
                r = s.get(NcmecReport, rid)
                assert r is not None
                files = self._files(s, rid)
            if r.state == "pending":
                step = self._submit(r)
            elif r.state != "submitted":
                return steps
            elif f := next((f for f in files if f.file_id is None), None):
                step = self._upload(r, f)
            elif f := next((f for f in files if f.details_at is None), None):
                step = self._fileinfo(r, f)
            else:
                step = self._finish(r, files)
            steps.append(step)
            if step.outcome != "ok":
                return steps
        steps.append(Step(rid, "run", "error", "internal error: more steps than a report has"))
        return steps

    def _begin(self, rid: str, inflight: str) -> str | None:
        """Note ``inflight`` as sent (committed before the request); the previous note."""
        with self._session.begin() as s:
            row = s.get(NcmecReport, rid)
            assert row is not None
            before = row.inflight
            if before == "submit" and inflight == "submit":
                row.possible_orphans += 1  # the last submit's answer never got recorded
            row.inflight = inflight
            row.updated_at = self.clock()
            return before

    def _done(self, rid: str, apply: Callable[[Session, NcmecReport], None]) -> None:
        with self._session.begin() as s:
            row = s.get(NcmecReport, rid)
            assert row is not None
            apply(s, row)
            row.inflight = None
            row.attempts = 0
            row.next_attempt_at = None
            row.error = None
            row.error_code = None
            row.updated_at = self.clock()

    def _submit(self, r: NcmecReport) -> Step:
        xml = r.report_xml.encode("utf-8")

        def call() -> Response:
            return self.client.submit(xml)

        def ok(resp: Response) -> Step:
            def apply(s: Session, row: NcmecReport) -> None:
                row.state = "submitted"
                row.ncmec_report_id = resp.report_id
                row.endpoint = self.config.base_url
                row.submitted_at = self.clock()

            self._done(r.id, apply)
            self._audit("ncmec.submit", r.id, {"ncmec_report_id": resp.report_id})
            return Step(r.id, "submit", "ok", f"NCMEC report {resp.report_id}")

        return self._send(r, "submit", "submit", call, ok)

    def _upload(self, r: NcmecReport, f: NcmecReportFile) -> Step:
        try:
            data = self.evidence.read(f.evidence_id)
        except EvidenceError as e:
            return self._stop(r.id, "upload", e.message)
        rid = r.ncmec_report_id
        assert rid is not None

        def call() -> Response:
            return self.client.upload(rid, f.filename, data)

        def ok(resp: Response) -> Step:
            def apply(s: Session, row: NcmecReport) -> None:
                frow = s.get(NcmecReportFile, f.id)
                assert frow is not None
                frow.file_id = resp.file_id
                frow.uploaded_at = self.clock()

            self._done(r.id, apply)
            self._audit("ncmec.upload", r.id, {"file": f.seq, "file_id": resp.file_id})
            return Step(r.id, "upload", "ok", f"file {f.seq} → {resp.file_id}")

        return self._send(r, "upload", f"upload:{f.seq}", call, ok)

    def _fileinfo(self, r: NcmecReport, f: NcmecReportFile) -> Step:
        rid, fid = r.ncmec_report_id, f.file_id
        assert rid is not None and fid is not None
        try:
            xml = rpt.build_file_details(
                rid, fid, filename=f.filename, hashes={"SHA256": f.sha256, "MD5": f.md5},
                classification=r.category, viewed_by_esp=f.viewed_by_esp,
            )  # fmt: skip
        except NcmecInvalidXml as e:
            return self._fail(r.id, "fileinfo", None, e.message)

        def call() -> Response:
            return self.client.fileinfo(xml)

        def ok(resp: Response) -> Step:
            def apply(s: Session, row: NcmecReport) -> None:
                frow = s.get(NcmecReportFile, f.id)
                assert frow is not None
                frow.details_at = self.clock()

            self._done(r.id, apply)
            self._audit("ncmec.fileinfo", r.id, {"file": f.seq, "file_id": fid})
            return Step(r.id, "fileinfo", "ok", f"file {f.seq} described")

        return self._send(r, "fileinfo", f"fileinfo:{f.seq}", call, ok)

    def _finish(self, r: NcmecReport, files: list[NcmecReportFile]) -> Step:
        rid = r.ncmec_report_id
        assert rid is not None

        def call() -> Response:
            return self.client.finish(rid)

        def ok(resp: Response) -> Step:
            return self._finished(r, files, resp.files, "finished")

        return self._send(r, "finish", "finish", call, ok)

    def _finished(
        self, r: NcmecReport, files: list[NcmecReportFile], held: list[str] | None, how: str
    ) -> Step:
        t = self.clock()

        def apply(s: Session, row: NcmecReport) -> None:
            row.state = "finished"
            row.finished_at = t
            if held is not None:
                row.ncmec_files = json.dumps(held)
            self.evidence.extend(s, [f.evidence_id for f in files], t)

        self._done(r.id, apply)
        extra = sorted(set(held or []) - {f.file_id for f in files})
        detail = f"NCMEC report {r.ncmec_report_id} {how}"
        if extra:
            detail += f"; NCMEC also holds {len(extra)} file(s) whose upload answer was lost"
        self._audit("ncmec.finish", r.id, {"ncmec_report_id": r.ncmec_report_id, "how": how})
        return Step(r.id, "finish", "ok", detail)

    def _send(
        self,
        r: NcmecReport,
        action: str,
        inflight: str,
        call: Callable[[], Response],
        ok: Callable[[Response], Step],
    ) -> Step:
        before = self._begin(r.id, inflight)
        try:
            resp = call()
        except NcmecAuthFailed as e:
            self._clear_inflight(r.id, e.message, e.ncmec_code)
            return Step(r.id, action, "error", e.message, e.ncmec_code)
        except NcmecRejected as e:
            return self._rejected(r, action, e, before)
        except NcmecUnavailable as e:
            return self._retry(r.id, action, e)
        except NcmecInvalidXml as e:
            self._clear_inflight(r.id, e.message, None)
            return self._fail(r.id, action, None, e.message)
        return ok(resp)

    def _rejected(self, r: NcmecReport, action: str, e: NcmecRejected, before: str | None) -> Step:
        code = e.ncmec_code
        if action == "finish" and code == ALREADY_FINISHED:
            with self._session() as s:
                files = self._files(s, r.id)
            how = "(an earlier /finish was accepted; its answer was lost)"
            return self._finished(r, files, None, "finished " + how)
        if code == ALREADY_RETRACTED:
            self._done(r.id, lambda s, row: _set_retracted(row, self.clock()))
            self._audit("ncmec.retract", r.id, {"how": "NCMEC says already retracted"})
            return Step(r.id, action, "failed", "NCMEC says the report was retracted", code)
        if code == REPORT_NOT_FOUND and action != "submit":
            return self._reopen(r, action, e)
        return self._fail(r.id, action, code, e.description or e.message)

    def _reopen(self, r: NcmecReport, action: str, e: NcmecRejected) -> Step:
        if r.reopened >= MAX_REOPEN:
            return self._fail(
                r.id, action, e.ncmec_code, f"{e.description} (reopened {MAX_REOPEN} times)"
            )

        def apply(s: Session, row: NcmecReport) -> None:
            row.state = "pending"
            row.ncmec_report_id = None
            row.reopened += 1
            for f in self._files(s, row.id):
                f.file_id = f.uploaded_at = f.details_at = None

        self._done(r.id, apply)
        self._audit("ncmec.reopen", r.id, {"expired_ncmec_report_id": r.ncmec_report_id})
        return Step(
            r.id, "reopen", "ok",
            f"NCMEC no longer has report {r.ncmec_report_id} (deleted unfinished): "
            "submitting again",
            e.ncmec_code,
        )  # fmt: skip

    def _retry(self, rid: str, action: str, e: NcmecUnavailable) -> Step:
        t = self.clock()
        with self._session.begin() as s:
            row = s.get(NcmecReport, rid)
            assert row is not None
            if e.answered and row.inflight == "submit":
                row.inflight = None  # NCMEC said it did not process it: no orphan
            row.attempts += 1
            row.error = e.message
            row.error_code = None
            row.updated_at = t
            if row.attempts >= self.config.max_attempts:
                row.state = "failed"
                row.error = f"gave up after {row.attempts} attempts: {e.message}"
                row.next_attempt_at = None
                failed = row.error
            else:
                delay = min(
                    self.config.backoff_base * 2 ** (row.attempts - 1), self.config.backoff_max
                )
                row.next_attempt_at = t + timedelta(seconds=delay)
                failed = None
        if failed:
            self._audit("ncmec.failed", rid, {"action": action, "error": failed})
            return Step(rid, action, "failed", failed)
        return Step(rid, action, "retry", e.message)

    def _fail(self, rid: str, action: str, code: int | None, description: str) -> Step:
        with self._session.begin() as s:
            row = s.get(NcmecReport, rid)
            assert row is not None
            row.state = "failed"
            row.error_code = code
            row.error = description
            row.next_attempt_at = None
            row.updated_at = self.clock()
        self._audit(
            "ncmec.failed", rid, {"action": action, "ncmec_code": code, "error": description}
        )
        return Step(rid, action, "failed", description, code)

    def _stop(self, rid: str, action: str, message: str) -> Step:
        self._clear_inflight(rid, message, None, keep_inflight=True)
        return Step(rid, action, "error", message)

    def _clear_inflight(
        self, rid: str, message: str, code: int | None, *, keep_inflight: bool = False
    ) -> None:
        with self._session.begin() as s:
            row = s.get(NcmecReport, rid)
            assert row is not None
            if not keep_inflight:
                row.inflight = None
            row.error = message
            row.error_code = code
            row.updated_at = self.clock()

    # -- retract ------------------------------------------------------------------------
    def retract(self, report_id: str, *, actor: str = "system") -> Step:
        """Withdraw an unfinished report: ``/retract`` at NCMEC if it was submitted, else
        only here. A finished report cannot be retracted (NCMEC has no way to)."""
        with self._session() as s:
            r = s.get(NcmecReport, report_id)
            if r is None:
                raise ReportNotFound(f"no report {report_id}")
        if r.state in ("finished", "retracted"):
            raise ReportStateError(
                f"report {report_id} is {r.state}; "
                + (
                    "NCMEC offers no way to withdraw a finished report"
                    if r.state == "finished"
                    else "nothing to do"
                )  # fmt: skip
            )
        if r.ncmec_report_id is None:
            self._done(r.id, lambda s, row: _set_retracted(row, self.clock()))
            self._audit("ncmec.retract", r.id, {"sent": False}, actor)
            note = "nothing had been submitted"
            if r.inflight == "submit" or r.possible_orphans:
                note += "; an unanswered submit may have left an open report NCMEC deletes in 24 h"
            return Step(r.id, "retract", "ok", note)
        rid = r.ncmec_report_id
        self._begin(r.id, "retract")
        try:
            self.client.retract(rid)
        except NcmecRejected as e:
            if e.ncmec_code == ALREADY_FINISHED:
                with self._session() as s:
                    files = self._files(s, r.id)
                self._finished(r, files, None, "finished (an earlier /finish answer was lost)")
                raise ReportStateError(
                    f"report {report_id} was already finished at NCMEC; it cannot be retracted"
                ) from None
            if e.ncmec_code not in (ALREADY_RETRACTED, REPORT_NOT_FOUND) or isinstance(
                e, NcmecAuthFailed
            ):
                self._clear_inflight(r.id, e.message, e.ncmec_code)
                raise
        except NcmecUnavailable as e:
            self._clear_inflight(r.id, e.message, None, keep_inflight=True)
            raise
        self._done(r.id, lambda s, row: _set_retracted(row, self.clock()))
        self._audit("ncmec.retract", r.id, {"sent": True, "ncmec_report_id": rid}, actor)
        return Step(r.id, "retract", "ok", f"NCMEC report {rid} retracted")


def _set_retracted(row: NcmecReport, t: datetime) -> None:
    row.state = "retracted"
    row.retracted_at = t
