"""The durable outbox against the local conformance server: the whole flow, retries
without a second submit, crashes after every step, a lost /finish answer, permanent
refusals, retract, and NCMEC deleting an unfinished report."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from blindmatch.errors import NcmecInvalidXml, ReportStateError
from blindmatch.ncmec.client import NcmecClient
from blindmatch.ncmec.conformance import ConformanceServer
from blindmatch.ncmec.outbox import Outbox
from blindmatch.review.evidence import EvidenceStore
from blindmatch.store.db import open_store
from tests.ncmec.helpers import DECIDED, make_case, make_config


class Clock:
    def __init__(self) -> None:
        self.t = DECIDED

    def __call__(self) -> Any:
        return self.t

    def later(self, hours: float = 2) -> None:
        self.t += timedelta(hours=hours)


class Crash(BaseException):
    """The process dies here (not an Exception: nothing catches it)."""


class CrashingClient:
    """The real client, but the process dies just before or just after ``endpoint``."""

    def __init__(self, real: NcmecClient, endpoint: str, when: str) -> None:
        self.real, self.endpoint, self.when = real, endpoint, when

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self.real, name)
        if name != self.endpoint:
            return fn

        def wrapped(*a: Any, **k: Any) -> Any:
            if self.when == "before":
                raise Crash(name)
            fn(*a, **k)
            raise Crash(name)

        return wrapped


class World:
    def __init__(self, tmp: Path, server: ConformanceServer) -> None:
        self.engine = open_store(f"sqlite:///{tmp / 'db.sqlite'}").engine
        self.server = server
        self.key = tmp / "evidence.key"
        self.clock = Clock()
        self.config = make_config(server.base_url)
        self.audit: list[tuple[str, str, str]] = []

    def outbox(self, client: Any = None, password: str = "secret") -> Outbox:
        """A new Outbox object on the same database (as after a restart)."""
        return Outbox(
            self.engine,
            make_config(self.server.base_url, password=password),
            evidence=EvidenceStore(self.engine, self.key, retention_days=90, clock=self.clock),
            client=client,
            clock=self.clock,
            audit=lambda actor, action, subject, detail: self.audit.append(
                (actor, action, subject)
            ),
        )

    def real_client(self) -> NcmecClient:
        return NcmecClient(self.server.base_url, "esp", "secret", timeout=10)


@pytest.fixture
def world(tmp_path: Path, ncmec: ConformanceServer) -> World:
    return World(tmp_path, ncmec)


def _finished_on_server(server: ConformanceServer) -> list[Any]:
    return [r for r in server.reports.values() if r.state == "finished"]


def test_full_flow(world: World) -> None:
    box = world.outbox()
    case = make_case(files=2)
    rid = box.enqueue(case)
    assert box.enqueue(case) == rid  # idempotent per case
    steps = box.run_once()
    assert [(s.action, s.outcome) for s in steps] == [
        ("submit", "ok"), ("upload", "ok"), ("upload", "ok"),
        ("fileinfo", "ok"), ("fileinfo", "ok"), ("finish", "ok"),
    ]  # fmt: skip
    info = box.report(rid)
    assert info.state == "finished" and info.endpoint == world.server.base_url
    [server_report] = _finished_on_server(world.server)
    assert server_report.report_id == info.ncmec_report_id
    assert sorted(server_report.files) == sorted(f.file_id for f in info.files if f.file_id)
    assert all(f.details is not None for f in server_report.files.values())
    assert box.run_once() == []  # nothing left to do
    assert [a[1] for a in world.audit] == [
        "ncmec.enqueue", "ncmec.submit", "ncmec.upload", "ncmec.upload",
        "ncmec.fileinfo", "ncmec.fileinfo", "ncmec.finish",
    ]  # fmt: skip
    assert all(a[2] == f"report:{rid}" for a in world.audit)


def test_invalid_case_is_refused_before_anything_is_stored_or_sent(world: World) -> None:
    box = world.outbox()
    with pytest.raises(NcmecInvalidXml):
        box.enqueue(make_case(category="C"))
    assert box.reports() == []
    assert box.run_once() == []
    assert world.server.requests == []


def test_503_on_upload_is_retried_without_a_second_submit(world: World) -> None:
    box = world.outbox()
    rid = box.enqueue(make_case(files=1))
    world.server.fail_next("upload")
    steps = box.run_once()
    assert [(s.action, s.outcome) for s in steps] == [("submit", "ok"), ("upload", "retry")]
    info = box.report(rid)
    assert info.state == "submitted" and info.attempts == 1 and info.next_attempt_at
    assert box.run_once() == []  # not due before its backoff
    world.clock.later()
    steps = box.run_once()
    assert [s.action for s in steps] == ["upload", "fileinfo", "finish"]
    assert len(world.server.calls("submit")) == 1
    assert len(world.server.calls("finish", ok=True)) == 1
    assert box.report(rid).state == "finished"


CRASH_POINTS = [
    (e, w) for e in ("submit", "upload", "fileinfo", "finish") for w in ("before", "after")
]


@pytest.mark.parametrize(("endpoint", "when"), CRASH_POINTS)
def test_crash_at_every_step_finishes_exactly_once(world: World, endpoint: str, when: str) -> None:
    case = make_case(files=2)
    rid = world.outbox().enqueue(case)
    with pytest.raises(Crash):
        world.outbox(CrashingClient(world.real_client(), endpoint, when)).run_once()
    box = world.outbox()  # a restart: a new Outbox on the same database
    steps = box.run_once()
    assert steps and steps[-1].action == "finish" and steps[-1].outcome == "ok", steps
    assert box.run_once() == []
    info = box.report(rid)
    assert info.state == "finished"
    assert len(world.server.calls("finish", ok=True)) == 1
    [server_report] = _finished_on_server(world.server)
    assert server_report.report_id == info.ncmec_report_id
    ours = {f.file_id for f in info.files}
    assert ours <= set(server_report.files)
    assert all(server_report.files[f].details is not None for f in ours if f)
    uploads = world.server.calls("upload", ok=True)
    # a file with a recorded fileId is never uploaded again: one extra upload at most,
    # and only when the process died after NCMEC took an upload
    assert len(uploads) == 2 + (endpoint == "upload" and when == "after")
    # an unanswered submit is counted as a possible orphan (we cannot tell before from
    # after); only after is there really one, left open for NCMEC to delete
    assert info.possible_orphans == (endpoint == "submit")
    open_reports = [r.state for r in world.server.reports.values()].count("open")
    assert open_reports == (endpoint == "submit" and when == "after")
    assert len(world.server.reports) == 1 + open_reports


def test_dropped_answer_to_finish_does_not_finish_twice(world: World) -> None:
    box = world.outbox()
    rid = box.enqueue(make_case(files=1))
    world.server.drop_next("finish")
    steps = box.run_once()
    assert (steps[-1].action, steps[-1].outcome) == ("finish", "retry")
    assert box.report(rid).state == "submitted"
    world.clock.later()
    steps = world.outbox().run_once()
    assert [(s.action, s.outcome) for s in steps] == [("finish", "ok")]
    assert "answer was lost" in steps[0].detail
    assert [c.response_code for c in world.server.calls("finish")] == [0, 5102]
    assert [c.fault for c in world.server.calls("finish")] == ["drop", None]
    assert box.report(rid).state == "finished"
    assert len(_finished_on_server(world.server)) == 1


def test_permanent_rejection_ends_failed_with_ncmecs_code(world: World) -> None:
    box = world.outbox()
    rid = box.enqueue(make_case(files=1))
    world.server.reject_next("fileinfo", 4100, "Validation failed")
    steps = box.run_once()
    assert (steps[-1].action, steps[-1].outcome, steps[-1].ncmec_code) == (
        "fileinfo",
        "failed",
        4100,
    )
    info = box.report(rid)
    assert (info.state, info.error_code, info.error) == ("failed", 4100, "Validation failed")
    world.clock.later(100)
    assert box.run_once() == []  # given up: never retried, never finished
    assert world.server.calls("finish") == []


def test_transient_failures_give_up_after_max_attempts(world: World) -> None:
    box = world.outbox()
    rid = box.enqueue(make_case(files=0))
    world.server.fail_next("submit", 100)
    outcomes = []
    for _ in range(world.config.max_attempts):
        outcomes += [s.outcome for s in box.run_once()]
        world.clock.later(2)
    assert outcomes == ["retry"] * (world.config.max_attempts - 1) + ["failed"]
    assert box.report(rid).state == "failed"
    assert box.report(rid).possible_orphans == 0  # a 503 processed nothing


def test_wrong_credentials_stop_the_run_and_lose_nothing(world: World) -> None:
    rid = world.outbox().enqueue(make_case(files=1))
    steps = world.outbox(password="wrong").run_once()
    assert [(s.action, s.outcome) for s in steps] == [("submit", "error")]
    assert world.outbox().report(rid).state == "pending"
    steps = world.outbox().run_once()
    assert steps[-1].action == "finish" and steps[-1].outcome == "ok"


def test_retract(world: World) -> None:
    box = world.outbox()
    rid = box.enqueue(make_case("BM-RETR-ACTS-0001", files=1))
    world.server.fail_next("upload")
    box.run_once()  # submitted, upload pending
    ncmec_id = box.report(rid).ncmec_report_id
    assert ncmec_id is not None
    step = box.retract(rid)
    assert step.outcome == "ok"
    assert box.report(rid).state == "retracted"
    assert world.server.reports[ncmec_id].state == "retracted"
    world.clock.later()
    assert box.run_once() == []
    with pytest.raises(ReportStateError):
        box.retract(rid)
    # never submitted: retracted here only, nothing sent
    other = box.enqueue(make_case("BM-RETR-ACTS-0002", files=1))
    before = len(world.server.requests)
    assert box.retract(other).detail.startswith("nothing had been submitted")
    assert len(world.server.requests) == before


def test_finished_report_cannot_be_retracted(world: World) -> None:
    box = world.outbox()
    rid = box.enqueue(make_case(files=1))
    box.run_once()
    with pytest.raises(ReportStateError):
        box.retract(rid)
    assert world.server.calls("retract") == []


def test_report_deleted_by_ncmec_is_submitted_again(world: World) -> None:
    box = world.outbox()
    rid = box.enqueue(make_case(files=1))
    world.server.fail_next("upload")
    box.run_once()
    first = box.report(rid).ncmec_report_id
    assert first is not None
    world.server.expire(first)  # NCMEC deletes an unfinished report after 24 h
    world.clock.later(25)
    steps = box.run_once()
    assert [s.action for s in steps] == ["reopen", "submit", "upload", "fileinfo", "finish"]
    info = box.report(rid)
    assert info.state == "finished" and info.ncmec_report_id != first and info.reopened == 1


def test_evidence_of_an_unfinished_report_is_not_purged(world: World) -> None:
    box = world.outbox()
    rid = box.enqueue(make_case(files=1))
    world.server.fail_next("submit")
    box.run_once()
    world.clock.later(24 * 91)  # past the 90-day retention
    assert box.evidence.purge() == []  # still in the outbox
    box.run_once()
    assert box.report(rid).state == "finished"
    assert box.evidence.purge() == []  # finishing restarted its retention
    world.clock.later(24 * 91)
    assert len(box.evidence.purge()) == 1
