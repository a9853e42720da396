"""Enforcement: the repeat-offender policy, the statement of reasons (EU DSA Art. 17) and
its DSA Transparency Database export, the enforcer's steps (a fake admin API here; the
real Synapse: tests/integration/matrix/test_enforcement.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from blindmatch.errors import ConfigError, EnforcementFailed
from blindmatch.integrations.matrix.state import MatrixState
from blindmatch.review.enforcement import (
    DSA_REQUIRED,
    DSA_VALUES,
    ConfirmedCase,
    EnforcementPolicy,
    Enforcer,
    dsa_export,
    statement_text,
)

ENTRY_REFS = [{"distance": 4, "refs": [{"hotline": "demo-hotline-a", "list": "a-list",
                                        "entry_id": "listed-10"}]}]  # fmt: skip


class FakeAdmin:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail_notice = False
        self.fail_suspend = False

    def suspend(self, user_id: str, suspend: bool = True) -> None:
        if self.fail_suspend:
            raise EnforcementFailed("Synapse refused PUT suspend: 500", 500)
        self.calls.append(("suspend", user_id, suspend))

    def deactivate(self, user_id: str) -> None:
        self.calls.append(("deactivate", user_id))

    def send_server_notice(self, user_id: str, content: Any) -> str:
        if self.fail_notice:
            raise EnforcementFailed("Server notices are not enabled on this server", 400)
        self.calls.append(("notice", user_id, content))
        return f"$notice{len(self.calls)}"

    def unquarantine_media(self, server_name: str, media_id: str) -> None:
        self.calls.append(("unquarantine", server_name, media_id))


@pytest.fixture
def state(tmp_path: Path) -> MatrixState:
    return MatrixState.open(f"sqlite:///{tmp_path / 'e.db'}")


def confirmed(state: MatrixState, account: str, reviewer: str = "rita", kind: str = "match",
              blobs: tuple[str, ...] = ()) -> ConfirmedCase:  # fmt: skip
    case_id = state.add_case(kind=kind, account=account, room="!r:example.org",
                             event_id="$e", blobs=list(blobs), entry_refs=ENTRY_REFS)  # fmt: skip
    return ConfirmedCase(case_id, kind, account, "!r:example.org", "$e", "A1", ENTRY_REFS,
                         reviewer, datetime.now(UTC))  # fmt: skip


# -- the policy ---------------------------------------------------------------------------
def test_the_policy_escalates_with_repeat_offences() -> None:
    p = EnforcementPolicy.parse("warn@1, suspend@2, deactivate@4")
    assert [p.action_for(n) for n in range(1, 7)] == [
        "warn", "suspend", "suspend", "deactivate", "deactivate", "deactivate"]  # fmt: skip
    assert str(p) == "warn@1,suspend@2,deactivate@4"
    assert EnforcementPolicy.parse("suspend").action_for(9) == "suspend"
    env = {"BLINDMATCH_ENFORCEMENT_POLICY": "warn@1,deactivate@3"}
    assert EnforcementPolicy.from_env(env).action_for(3) == "deactivate"


@pytest.mark.parametrize(
    ("text", "says"),
    [("ban@1", "allowed: warn, suspend, deactivate"), ("suspend@2", "from the 1st"),
     ("warn@1,suspend@0", "positive case number"), ("warn@1,suspend@x", "positive case number"),
     ("suspend@1,warn@2", "stricter"), ("warn@1,suspend@3,deactivate@3", "must increase"),
     ("warn@1,,suspend@2", "empty item")],
)  # fmt: skip
def test_a_bad_policy_is_refused_clearly(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        EnforcementPolicy.parse(text)


# -- the enforcer and the statement ---------------------------------------------------------
def test_repeat_offences_count_standing_cases_only(state: MatrixState) -> None:
    admin = FakeAdmin()
    enf = Enforcer(state.engine, EnforcementPolicy.parse("warn@1,suspend@2,deactivate@3"), admin)
    a1 = enf.on_confirmed(confirmed(state, "@m:example.org"))
    other = enf.on_confirmed(confirmed(state, "@other:example.org"))  # another account's
    assert (a1.action, a1.offence, other.action) == ("warn", 1, "warn")
    a2 = enf.on_confirmed(confirmed(state, "@m:example.org"))
    assert (a2.action, a2.offence) == ("suspend", 2)
    assert ("suspend", "@m:example.org", True) in admin.calls
    # Confirming the same case again decides nothing new.
    assert enf.on_confirmed(confirmed_again(a2)).id == a2.id
    # An overturned case is no strike: the next one is the second again, not the third.
    enf.on_overturned(a2.case_id, "sam")
    a3 = enf.on_confirmed(confirmed(state, "@m:example.org"))
    assert (a3.action, a3.offence) == ("suspend", 2)
    a4 = enf.on_confirmed(confirmed(state, "@m:example.org"))
    assert (a4.action, a4.offence) == ("deactivate", 3)
    assert admin.calls[-1] == ("deactivate", "@m:example.org")
    assert admin.calls[-2][0] == "notice"  # the statement goes out before the account does


def confirmed_again(a: Any) -> ConfirmedCase:
    return ConfirmedCase(a.case_id, "match", a.account, None, None, "A1", ENTRY_REFS, "rita",
                         datetime.now(UTC))  # fmt: skip


def test_the_statement_has_every_article_17_element(state: MatrixState) -> None:
    admin = FakeAdmin()
    enf = Enforcer(state.engine, EnforcementPolicy.parse("suspend@1"), admin)
    a = enf.on_confirmed(confirmed(state, "@m:example.org"))
    st = a.statement
    assert st["decision"]["action"] == "suspend" and "suspended" in st["decision"]["restriction"]
    facts = st["facts"]["summary"]
    assert a.case_id in facts and "a-list (demo-hotline-a)" in facts and "A1" in facts
    assert "Directive 2011/93/EU" in st["ground"]["legal_ground"] and st["ground"]["terms_ground"]
    assert st["automation"]["detection_automated"] is True
    assert st["automation"]["decision_automated"] is False
    assert a.case_id in st["redress"]["appeal"] and st["redress"]["window_days"] >= 183
    # ... and the user was sent all of it.
    [(_, user, content)] = [c for c in admin.calls if c[0] == "notice"]
    text = content["body"]
    assert user == "@m:example.org" and text == statement_text(st) == a.statement_text
    parts = ("Decision:", "Facts and circumstances:", "Legal ground:", "Contractual ground:",
             "Automated means:", "How to appeal:", "/_blindmatch/v1/appeal", a.case_id)  # fmt: skip
    for part in parts:
        assert part in text, part
    assert a.notified and a.applied_at is not None


def test_the_dsa_export_has_the_required_fields_with_allowed_values(state: MatrixState) -> None:
    enf = Enforcer(state.engine, EnforcementPolicy.parse("warn@1,suspend@2,deactivate@3"),
                   FakeAdmin())  # fmt: skip
    for _ in range(3):
        enf.on_confirmed(confirmed(state, "@m:example.org"))
    enf.on_confirmed(confirmed(state, "@r:example.org", kind="report"))
    export = dsa_export(enf.statements())
    assert len(export["statements"]) == 4
    for s in export["statements"]:
        for k in DSA_REQUIRED:
            assert s.get(k), k
        for k, v in s.items():
            if k in DSA_VALUES:
                for item in v if isinstance(v, list) else [v]:
                    assert item in DSA_VALUES[k], (k, item)
        assert any(k in s for k in ("decision_visibility", "decision_account"))
        assert len(s["decision_facts"]) <= 5000 and len(s["puid"]) <= 500
        assert datetime.strptime(s["content_date"], "%Y-%m-%d")
        assert s["decision_ground"] == "DECISION_GROUND_ILLEGAL_CONTENT"
        assert s["illegal_content_legal_ground"] and s["illegal_content_explanation"]
        # No personal data goes to the public database.
        assert "example.org" not in repr(s)
    warn, suspend, deactivate, report = export["statements"]
    assert "decision_account" not in warn
    assert suspend["decision_account"] == "DECISION_ACCOUNT_SUSPENDED"
    assert deactivate["decision_account"] == "DECISION_ACCOUNT_TERMINATED"
    assert warn["automated_detection"] == "Yes" and report["automated_detection"] == "No"
    assert (
        report["source_type"] == "SOURCE_ARTICLE_16" and warn["source_type"] == "SOURCE_VOLUNTARY"
    )
    assert {s["automated_decision"] for s in export["statements"]} == {
        "AUTOMATED_DECISION_NOT_AUTOMATED"}  # fmt: skip


def test_a_failed_step_is_recorded_and_resumed(state: MatrixState) -> None:
    admin = FakeAdmin()
    enf = Enforcer(state.engine, EnforcementPolicy.parse("suspend@1"), admin)
    case = confirmed(state, "@m:example.org")
    admin.fail_notice = admin.fail_suspend = True
    with pytest.raises(EnforcementFailed):
        enf.on_confirmed(case)
    a = enf.action(case.case_id)
    assert a is not None and a.applied_at is None and not a.notified
    assert a.notice_error and "not enabled" in a.notice_error
    admin.fail_notice = admin.fail_suspend = False
    b = enf.on_confirmed(case)
    assert b.id == a.id and b.notified and b.applied_at is not None
    assert [c[0] for c in admin.calls] == ["notice", "suspend"]


def test_overturning_lifts_only_what_no_other_case_holds(state: MatrixState) -> None:
    admin = FakeAdmin()
    enf = Enforcer(state.engine, EnforcementPolicy.parse("suspend@1,deactivate@3"), admin)
    blob = "mxc://example.org/abcdef"
    state.record_upload("abcdef", "00" * 32, 10, "opaque")
    state.mark_quarantined("abcdef", "match")
    first = enf.on_confirmed(confirmed(state, "@m:example.org", blobs=(blob,)))
    second = enf.on_confirmed(confirmed(state, "@m:example.org"))
    undone = enf.on_overturned(first.case_id, "sam")
    assert undone.lift == "kept"  # the second case still suspends the account
    assert ("suspend", "@m:example.org", False) not in admin.calls
    assert undone.restored == [blob] and ("unquarantine", "example.org", "abcdef") in admin.calls
    assert not state.blobs(["abcdef"])["abcdef"].quarantined
    assert enf.on_overturned(second.case_id, "sam").lift == "lifted"
    assert admin.calls[-1] == ("suspend", "@m:example.org", False)
    d = Enforcer(state.engine, EnforcementPolicy.parse("deactivate"), admin)
    gone = d.on_confirmed(confirmed(state, "@d:example.org"))
    assert d.on_overturned(gone.case_id, "sam").lift == "reactivation_needed"
    assert ("suspend", "@d:example.org", False) not in admin.calls
