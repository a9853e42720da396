"""The case workflow: queue order, assignment, notes, decisions and roles, all audited."""

from __future__ import annotations

import pytest

from blindmatch.errors import CaseNotFound, InvalidArgument, InvalidCaseState, NotAllowed

from .conftest import PASSWORD


@pytest.fixture
def people(world):
    r = world.reviewers
    return r.add("ann", PASSWORD), r.add("sam", PASSWORD, "senior"), r.add("ada", PASSWORD, "admin")


def test_the_queue_puts_the_gravest_category_first_then_the_oldest(world) -> None:
    older_b2 = world.match_case("@a:x", "e-b2")
    a1 = world.match_case("@b:x", "e-a1")
    newer_b2 = world.match_case("@c:x", "e-b2")
    unknown = world.match_case("@d:x", "not-listed")
    report = world.state.add_case(kind="report", account="@e:x")
    queue = world.review.queue()
    assert [c.id for c in queue] == [a1, older_b2, newer_b2, report, unknown]
    assert queue[0].categories == ("A1",)
    assert [c.id for c in world.review.queue(kind="report")] == [report]
    with pytest.raises(InvalidArgument, match="match, report"):
        world.review.queue(kind="matches")


def test_a_confirmation_needs_a_category_runs_the_hooks_and_is_final(world, people) -> None:
    ann, _, _ = people
    seen = []
    world.review.on_confirmed.append(seen.append)
    case = world.match_case("@a:x", "e-a1")
    with pytest.raises(InvalidArgument, match="A1, A2, B1, B2"):
        world.review.decide(case, ann, "confirmed")
    with pytest.raises(InvalidArgument, match="A1, A2, B1, B2"):
        world.review.decide(case, ann, "confirmed", category="C")
    assert seen == [] and world.review.summary(case).status == "open"
    out = world.review.decide(case, ann, "confirmed", category="A1", reason="clear match")
    assert out.status == "decided" and out.decision == "confirmed" and out.category == "A1"
    [confirmed] = seen
    assert (confirmed.case_id, confirmed.account, confirmed.category, confirmed.reviewer) == (
        case,
        "@a:x",
        "A1",
        "ann",
    )
    assert confirmed.entries[0]["refs"][0]["entry_id"] == "e-a1"
    with pytest.raises(InvalidCaseState, match="on appeal"):
        world.review.decide(case, ann, "false_positive")
    assert len(seen) == 1
    assert case not in [c.id for c in world.review.queue()]


def test_a_false_positive_runs_its_own_hooks(world, people) -> None:
    ann, _, _ = people
    confirmed, fps = [], []
    world.review.on_confirmed.append(confirmed.append)
    world.review.on_false_positive.append(lambda cid, who: fps.append((cid, who.name)))
    case = world.match_case("@a:x", "e-b2")
    world.review.decide(case, ann, "false_positive")
    assert confirmed == [] and fps == [(case, "ann")]


def test_an_escalated_case_is_decided_by_a_senior_only(world, people) -> None:
    ann, sam, _ = people
    case = world.match_case("@a:x", "e-b2")
    world.review.assign(case, ann)
    world.review.decide(case, ann, "escalate", reason="unsure of the age")
    assert world.review.summary(case).status == "escalated"
    assert world.review.summary(case).assignee is None
    with pytest.raises(NotAllowed, match="senior"):
        world.review.decide(case, ann, "confirmed", category="B2")
    with pytest.raises(NotAllowed, match="senior"):
        world.review.assign(case, ann)
    world.review.assign(case, sam)
    world.review.decide(case, sam, "confirmed", category="B1")
    assert world.review.summary(case).decision == "confirmed"


def test_only_seniors_assign_to_others_and_disabled_reviewers_act_on_nothing(world, people) -> None:
    ann, sam, _ = people
    case = world.match_case("@a:x", "e-b2")
    with pytest.raises(NotAllowed):
        world.review.assign(case, ann, to=sam)
    world.review.assign(case, sam, to=ann)
    assert world.review.summary(case).assignee == "ann"
    gone = world.reviewers.set_disabled("ann")
    with pytest.raises(NotAllowed, match="disabled"):
        world.review.decide(case, gone, "false_positive")


def test_the_case_page_has_categories_history_and_notes_and_every_step_is_audited(
    world, people
) -> None:
    ann, _, _ = people
    earlier = world.match_case("@a:x", "e-b2")
    world.state.add_rejection("@a:x", "!r:x", "$old", "listed_image", "refused")
    case = world.match_case("@a:x", "e-a1")
    world.review.assign(case, ann)
    world.review.note(case, ann, "looks like the listed picture")
    detail = world.review.case(case, ann)
    assert detail.entries[0]["refs"][0]["category"] == "A1"
    assert [c.id for c in detail.history.cases] == [earlier]
    assert detail.history.refusals == 1
    assert [n.text for n in detail.notes] == ["looks like the listed picture"]
    with pytest.raises(InvalidArgument):
        world.review.note(case, ann, "   ")
    world.review.decide(case, ann, "confirmed", category="A1")
    world.review.close(case, ann, "reported")
    actions = [(e.actor, e.action, e.subject) for e in world.audit.entries(subject=f"case:{case}")]
    assert actions == [
        ("reviewer:ann", "case.assign", f"case:{case}"),
        ("reviewer:ann", "case.note", f"case:{case}"),
        ("reviewer:ann", "case.view", f"case:{case}"),
        ("reviewer:ann", "case.decide", f"case:{case}"),
        ("reviewer:ann", "case.close", f"case:{case}"),
    ]
    assert world.audit.verify().ok


def test_reveals_are_counted_per_reviewer(world, people) -> None:
    ann, sam, _ = people
    case = world.match_case("@a:x", "e-a1")
    assert world.review.exposures_today(ann) == 0
    assert world.review.record_reveal(case, ann, "m1") == 1
    assert world.review.record_reveal(case, ann, "m2") == 2
    assert world.review.exposures_today(sam) == 0


def test_unknown_cases_and_decisions_are_refused(world, people) -> None:
    ann, _, _ = people
    with pytest.raises(CaseNotFound):
        world.review.case("nope", ann)
    case = world.match_case("@a:x", "e-a1")
    with pytest.raises(InvalidArgument, match="confirmed, false_positive, escalate"):
        world.review.decide(case, ann, "ban")
    tampered = world.state.add_case(kind="tampered", account="@t:x")
    with pytest.raises(InvalidCaseState, match="close it"):
        world.review.decide(tampered, ann, "confirmed", category="A1")
