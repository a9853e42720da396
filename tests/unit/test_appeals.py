"""Appeals (EU DSA Art. 20): the case's own account only, within the window, one open
appeal per case, decided by a senior reviewer who did not decide the case."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from blindmatch.errors import AppealRefused
from blindmatch.integrations.matrix.state import MatrixState
from blindmatch.review.appeals import UNKNOWN_CASE, Appeals, Reviewer
from blindmatch.review.enforcement import EnforcementPolicy, Enforcer
from tests.unit.test_enforcement import FakeAdmin, confirmed

RITA = Reviewer("rita", "senior")  # decided the case
SAM = Reviewer("sam", "senior")
ADA = Reviewer("ada", "admin")
RON = Reviewer("ron", "reviewer")
M = "@m:example.org"
World = tuple[MatrixState, Enforcer, FakeAdmin]


@pytest.fixture
def world(tmp_path: Path) -> World:
    state = MatrixState.open(f"sqlite:///{tmp_path / 'a.db'}")
    admin = FakeAdmin()
    return state, Enforcer(state.engine, EnforcementPolicy.parse("suspend@1"), admin), admin


def refused(reason: str, fn: object, *args: object) -> AppealRefused:
    with pytest.raises(AppealRefused) as e:
        fn(*args)  # type: ignore[operator]
    assert e.value.reason == reason, e.value.message
    return e.value


def test_an_appeal_goes_to_another_senior_reviewer_and_overturns(world: World) -> None:
    state, enf, admin = world
    a = enf.on_confirmed(confirmed(state, M, reviewer="rita"))
    appeals = Appeals(state.engine, enforcer=enf)
    ap = appeals.open(a.case_id, M, "this is a photo of my garden")
    # Rita decided the case: never hers, whatever the caller passes as the decider.
    for _ in range(3):
        assigned = appeals.assign(ap.id, [RITA, RON, SAM], decider=None)
        assert assigned.assigned_to == "sam" and assigned.case_decided_by == "rita"
    refused("no_eligible_reviewer", appeals.assign, ap.id, [RITA, RON])
    # Rita cannot decide it even as its assignee; a reviewer without the role cannot either.
    refused("own_decision", appeals.decide, ap.id, RITA, "upheld", "looks right")
    refused("not_assigned", appeals.decide, ap.id, ADA, "upheld", "looks right")
    refused("bad_outcome", appeals.decide, ap.id, SAM, "maybe", "hmm")
    done, undone = appeals.decide(ap.id, SAM, "overturned", "not a listed picture")
    assert done.status == "overturned" and done.decided_by == "sam"
    assert undone is not None and undone.lift == "lifted"
    assert ("suspend", M, False) in admin.calls
    assert admin.calls[-1][0] == "notice" and "overturned" in admin.calls[-1][2]["body"]
    refused("appeal_decided", appeals.decide, ap.id, SAM, "upheld", "again")


def test_the_least_loaded_eligible_senior_gets_the_appeal(world: World) -> None:
    state, enf, _ = world
    appeals = Appeals(state.engine, enforcer=enf)
    first = appeals.open(enf.on_confirmed(confirmed(state, M)).case_id, M, "first")
    assert appeals.assign(first.id, [SAM, ADA, RITA]).assigned_to == "ada"  # by name on a tie
    second = appeals.open(enf.on_confirmed(confirmed(state, "@n:example.org")).case_id,
                          "@n:example.org", "second")  # fmt: skip
    assert appeals.assign(second.id, [SAM, ADA, RITA]).assigned_to == "sam"


def test_the_decider_given_by_the_caller_is_excluded_too(world: World) -> None:
    state, _, _ = world
    case_id = state.add_case(kind="match", account=M)  # refused send, not reviewed yet
    appeals = Appeals(state.engine)
    ap = appeals.open(case_id, M, "why was this blocked?")
    assert appeals.assign(ap.id, [SAM, ADA], decider=ADA).assigned_to == "sam"


def test_only_the_cases_own_account_may_appeal_and_learns_nothing_else(world: World) -> None:
    state, enf, _ = world
    a = enf.on_confirmed(confirmed(state, M))
    appeals = Appeals(state.engine)
    someone_elses = refused("unknown_case", appeals.open, a.case_id, "@x:example.org", "mine")
    no_such_case = refused("unknown_case", appeals.open, "BM-AAAA-BBBB-CCCC", "@x:example.org",
                           "mine")  # fmt: skip
    assert someone_elses.message == no_such_case.message == UNKNOWN_CASE
    assert someone_elses.as_dict() == no_such_case.as_dict()
    # A case the user was never told about (a report nobody acted on) is unknown too.
    quiet = state.add_case(kind="report", account=M)
    refused("unknown_case", appeals.open, quiet, M, "what report?")
    refused("malformed_appeal", appeals.open, a.case_id, M, "   ")
    refused("malformed_appeal", appeals.open, a.case_id, M, "x" * 4001)


def test_one_open_appeal_per_case(world: World) -> None:
    state, enf, _ = world
    a = enf.on_confirmed(confirmed(state, M))
    appeals = Appeals(state.engine, enforcer=enf)
    ap = appeals.open(a.case_id, M, "first")
    e = refused("appeal_open", appeals.open, a.case_id, M, "second")
    assert ap.id in e.message
    assert [x.id for x in appeals.list(status="open")] == [ap.id]
    appeals.assign(ap.id, [SAM])
    appeals.decide(ap.id, SAM, "upheld", "the picture is the listed one")
    refused("appeal_decided", appeals.open, a.case_id, M, "third")


def test_the_appeal_window(world: World) -> None:
    state, enf, _ = world
    a = enf.on_confirmed(confirmed(state, M))
    decided = a.decided_at
    late = Appeals(state.engine, clock=lambda: decided + timedelta(days=184))
    refused("appeal_window_closed", late.open, a.case_id, M, "too late")
    in_time = Appeals(state.engine, clock=lambda: decided + timedelta(days=182))
    assert in_time.open(a.case_id, M, "in time").status == "open"
    with pytest.raises(Exception, match="at least 183 days"):
        Appeals(state.engine, window_days=30)
    assert datetime.now(UTC) - decided < timedelta(days=1)


def test_the_cli_lists_statements_exports_dsa_json_and_shows_appeals(world: World) -> None:
    from tests.conftest import run_cli

    state, enf, _ = world
    url = state.engine.url.render_as_string(hide_password=False)
    a = enf.on_confirmed(confirmed(state, M))
    ap = Appeals(state.engine).open(a.case_id, M, "my garden")
    listed = run_cli("statements", "list", "--json", "--database-url", url)
    assert [s["puid"] for s in listed.json_lines] == [a.puid]
    exported = run_cli("statements", "export", "--format", "dsa-json", "--database-url", url)
    [s] = json.loads(exported.out)["statements"]
    assert s["puid"] == a.puid and s["decision_account"] == "DECISION_ACCOUNT_SUSPENDED"
    shown = run_cli("appeals", "show", ap.id, "--json", "--database-url", url)
    assert shown.json_lines[0]["case_id"] == a.case_id
    opened = run_cli("appeals", "list", "--status", "open", "--json", "--database-url", url)
    assert [x["id"] for x in opened.json_lines] == [ap.id]
    missing = run_cli("appeals", "show", "AP-NONE", "--database-url", url)
    assert missing.code == 2 and "appeal_refused" in missing.err
