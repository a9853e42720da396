"""False-positive defences: the negative bank and flood quarantine."""

from __future__ import annotations

import random

import pytest

from blindmatch.errors import ConfigError, InvalidCaseState
from blindmatch.review.defences import Defences, entry_key

from .conftest import PASSWORD

REF_A1 = {"hotline": "HL-A", "list": "hl-a", "entry_id": "e-a1"}
REF_B2 = {"hotline": "HL-A", "list": "hl-a", "entry_id": "e-b2"}


def _flip(h: bytes, n: int, seed: int = 0) -> bytes:
    v = int.from_bytes(h, "big")
    for i in random.Random(seed).sample(range(256), n):
        v ^= 1 << i
    return v.to_bytes(32, "big")


def _match(ref: dict, probe: bytes, distance: int = 5) -> dict:
    return {"distance": distance, "refs": [ref], "probe": probe.hex()}


def test_a_false_positive_is_banked_and_its_near_copies_stop_blocking(world) -> None:
    ann = world.reviewers.add("ann", PASSWORD)
    d = Defences(world.store.engine)
    world.review.on_false_positive.append(d.bank_false_positive)
    benign = random.Random(1).randbytes(32)
    case = world.state.add_case(kind="match", account="@a:x", entry_refs=[_match(REF_A1, benign)])
    # before review: it blocks
    assert d.screen("@b:x", [[_match(REF_A1, benign)]]).kept == [[_match(REF_A1, benign)]]
    world.review.decide(case, ann, "false_positive")
    near, far = _flip(benign, 10), _flip(benign, 11)
    got = d.screen("@b:x", [[_match(REF_A1, near)], [_match(REF_A1, far)]])
    assert got.kept == [[], [_match(REF_A1, far)]] and got.suppressed == 1
    # another entry matched by an unrelated hash still blocks
    other = random.Random(2).randbytes(32)
    assert d.screen("@c:x", [[_match(REF_B2, other)]]).kept == [[_match(REF_B2, other)]]
    disputes = d.disputes()
    assert [(x["hotline"], x["list"], x["entry_id"], x["case"]) for x in disputes] == [
        ("HL-A", "hl-a", "e-a1", case)
    ]
    assert benign.hex() not in str(disputes)  # the user's picture hash never leaves
    d.mark_disputed([x["_row"] for x in disputes])
    assert d.disputes() == [] and len(d.disputes(include_exported=True)) == 1


def test_a_confirmed_case_banks_nothing(world) -> None:
    ann = world.reviewers.add("ann", PASSWORD)
    d = Defences(world.store.engine)
    world.review.on_false_positive.append(d.bank_false_positive)
    probe = random.Random(3).randbytes(32)
    case = world.state.add_case(kind="match", account="@a:x", entry_refs=[_match(REF_A1, probe)])
    world.review.decide(case, ann, "confirmed", category="A1")
    assert d.screen("@b:x", [[_match(REF_A1, probe)]]).kept == [[_match(REF_A1, probe)]]


def test_an_entry_blocking_too_many_accounts_is_quarantined_until_lifted(world) -> None:
    ann = world.reviewers.add("ann", PASSWORD, "senior")
    d = Defences(world.store.engine, flood_accounts=2)
    rnd = random.Random(4)
    for account in ("@a:x", "@b:x", "@a:x"):  # two distinct accounts: not a flood
        got = d.screen(account, [[_match(REF_A1, rnd.randbytes(32))]])
        assert got.kept[0] and got.flood_cases == []
    third = d.screen("@c:x", [[_match(REF_A1, rnd.randbytes(32))]])
    assert third.kept[0] and len(third.flood_cases) == 1  # this one blocked; then quarantine
    [flood] = third.flood_cases
    assert [q["entry_key"] for q in d.quarantined()] == [entry_key(REF_A1)]
    after = d.screen("@d:x", [[_match(REF_A1, rnd.randbytes(32)), _match(REF_B2, b"\0" * 32)]])
    assert [m["refs"] for m in after.kept[0]] == [[REF_B2]]  # only the flooded entry stops
    b2 = world.match_case("@e:x", "e-a1")
    assert [c.id for c in world.review.queue()][:2] == [flood, b2]  # the flood case first
    d.lift(flood, ann)
    with pytest.raises(InvalidCaseState):
        d.lift(flood, ann)
    assert d.screen("@f:x", [[_match(REF_A1, rnd.randbytes(32))]]).kept[0]
    # checked and lifted: never quarantined again, however many accounts follow
    for account in ("@g:x", "@h:x", "@i:x"):
        got = d.screen(account, [[_match(REF_A1, rnd.randbytes(32))]])
        assert got.kept[0] and got.flood_cases == []


def test_a_quarantine_lifted_without_exemption_comes_back_at_the_next_flood(world) -> None:
    d = Defences(world.store.engine, flood_accounts=1)
    rnd = random.Random(8)
    d.screen("@a:x", [[_match(REF_A1, rnd.randbytes(32))]])
    [first] = d.screen("@b:x", [[_match(REF_A1, rnd.randbytes(32))]]).flood_cases
    d.lift(first, "ann", exempt=False)
    [again] = d.screen("@c:x", [[_match(REF_A1, rnd.randbytes(32))]]).flood_cases
    assert again != first


def test_a_match_on_several_entries_blocks_while_one_is_not_quarantined(world) -> None:
    d = Defences(world.store.engine, flood_accounts=1)
    rnd = random.Random(5)
    for account in ("@a:x", "@b:x"):
        d.screen(account, [[_match(REF_A1, rnd.randbytes(32))]])
    both = {"distance": 3, "refs": [REF_A1, REF_B2], "probe": rnd.randbytes(32).hex()}
    assert d.screen("@c:x", [[both]]).kept == [[both]]


def test_the_module_refuses_bad_defence_settings(tmp_path) -> None:
    from blindmatch.integrations.matrix.module import parse_config

    base = {"table_dir": str(tmp_path), "database_url": "sqlite://"}
    assert parse_config(base).negative_radius == 10
    with pytest.raises(ConfigError, match="negative_radius"):
        parse_config({**base, "negative_radius": 40})
    with pytest.raises(ConfigError, match="flood_accounts"):
        parse_config({**base, "flood_accounts": 0})
    with pytest.raises(ConfigError, match="flood_window_seconds"):
        parse_config({**base, "flood_window_seconds": 0})


def test_disputes_export_and_floods_on_the_command_line(world, tmp_path) -> None:
    from tests.conftest import run_cli

    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    world.reviewers.add("ann", PASSWORD, "senior")
    probe = random.Random(6).randbytes(32)
    case = world.state.add_case(kind="match", account="@a:x", entry_refs=[_match(REF_B2, probe)])
    assert run_cli("cases", "decide", case, "false_positive", "--reviewer", "ann",
                   "--database-url", db).code == 0  # fmt: skip
    out = tmp_path / "disputes.jsonl"
    res = run_cli("disputes", "export", "-o", out, "--database-url", db)
    assert res.code == 0 and "1 disputed entry" in res.err
    assert '"entry_id": "e-b2"' in out.read_text() and probe.hex() not in out.read_text()
    again = run_cli("disputes", "export", "--database-url", db)
    assert again.code == 0 and again.out == ""  # exported once
    d = Defences(world.store.engine, flood_accounts=1)
    other = random.Random(7).randbytes(32)  # not the banked hash
    d.screen("@a:x", [[_match(REF_A1, other)]])
    [flood] = d.screen("@b:x", [[_match(REF_A1, other)]]).flood_cases
    listed = run_cli("floods", "list", "--json", "--database-url", db).json_lines
    assert [q["case"] for q in listed] == [flood]
    assert run_cli("floods", "lift", flood, "--reviewer", "ann", "--database-url", db).code == 0
    assert run_cli("floods", "list", "--json", "--database-url", db).json_lines == []
