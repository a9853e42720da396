"""``blindmatch reviewers``, ``cases queue/show/assign/note/decide/close`` and ``audit``."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from blindmatch.store.models import AuditRecord
from tests.conftest import run_cli

from .conftest import PASSWORD


def _db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


def test_reviewers_add_list_disable(world, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    db = _db(tmp_path)
    res = run_cli("reviewers", "add", "ann", "--role", "senior", "--password-file", pw,
                  "--database-url", db)  # fmt: skip
    assert res.code == 0 and "database: sqlite:///" in res.err, res.err
    assert world.reviewers.authenticate("ann", PASSWORD) is not None  # the newline is not in it
    again = run_cli("reviewers", "add", "ann", "--password-file", pw, "--database-url", db)
    assert again.code == 2 and "exists" in again.err
    listed = run_cli("reviewers", "list", "--json", "--database-url", db).json_lines
    assert [(r["name"], r["role"], r["disabled"]) for r in listed] == [("ann", "senior", False)]
    assert run_cli("reviewers", "disable", "ann", "--database-url", db).code == 0
    assert world.reviewers.get("ann").disabled
    with pytest.raises(SystemExit):  # argparse: "invalid choice: 'boss' (choose from ...)"
        run_cli("reviewers", "add", "bob", "--role", "boss", "--database-url", db)


def test_a_case_from_queue_to_decision_on_the_command_line(world, tmp_path: Path) -> None:
    db = _db(tmp_path)
    world.reviewers.add("ann", PASSWORD)
    b2 = world.match_case("@a:x", "e-b2")
    a1 = world.match_case("@b:x", "e-a1")
    queue = run_cli("cases", "queue", "--json", "--database-url", db).json_lines
    assert [c["id"] for c in queue] == [a1, b2]
    assert run_cli("cases", "assign", a1, "--reviewer", "ann", "--database-url", db).code == 0
    assert run_cli("cases", "note", a1, "same picture", "--reviewer", "ann",
                   "--database-url", db).code == 0  # fmt: skip
    shown = run_cli("cases", "show", a1, "--reviewer", "ann", "--database-url", db)
    assert shown.code == 0
    assert "category=A1" in shown.out and "ann: same picture" in shown.out
    no_cat = run_cli("cases", "decide", a1, "confirmed", "--reviewer", "ann", "--database-url", db)
    assert no_cat.code == 2 and "A1, A2, B1, B2" in no_cat.err
    ok = run_cli("cases", "decide", a1, "confirmed", "--category", "A1", "--reviewer", "ann",
                 "--database-url", db)  # fmt: skip
    assert ok.code == 0, ok.err
    twice = run_cli("cases", "decide", a1, "false_positive", "--reviewer", "ann",
                    "--database-url", db)  # fmt: skip
    assert twice.code == 2 and "appeal" in twice.err
    no_reason = run_cli("cases", "close", b2, "--reviewer", "ann", "--reason", " ",
                        "--database-url", db)  # fmt: skip
    assert no_reason.code == 2
    assert run_cli("cases", "close", b2, "--reviewer", "ann", "--reason", "duplicate",
                   "--database-url", db).code == 0  # fmt: skip
    listed = {c["id"]: c["status"] for c in
              run_cli("cases", "list", "--json", "--database-url", db).json_lines}  # fmt: skip
    assert listed == {a1: "decided", b2: "closed"}
    missing = run_cli("cases", "show", "nope", "--database-url", db)
    assert missing.code == 2 and "no case" in missing.err
    nobody = run_cli("cases", "assign", b2, "--reviewer", "zed", "--database-url", db)
    assert nobody.code == 2 and "no reviewer" in nobody.err


def test_audit_verify_head_and_a_broken_chain(world, tmp_path: Path) -> None:
    db = _db(tmp_path)
    for i in range(3):
        world.audit.append("reviewer:ann", "case.view", f"case:c{i}")
    head = run_cli("audit", "head", "--database-url", db).out.strip()
    assert head.startswith("3:")
    ok = run_cli("audit", "verify", "--expect", head, "--database-url", db)
    assert ok.code == 0 and ok.out.startswith("ok: 3 line(s)")
    lines = run_cli("audit", "list", "--json", "--database-url", db).json_lines
    assert [x["subject"] for x in lines] == ["case:c0", "case:c1", "case:c2"]
    with world.store.engine.begin() as c:
        c.execute(update(AuditRecord).where(AuditRecord.seq == 2).values(subject="case:zz"))
    broken = run_cli("audit", "verify", "--database-url", db)
    assert broken.code == 1 and "BROKEN at line 2" in broken.out
    bad = run_cli("audit", "verify", "--expect", "x", "--database-url", db)
    assert bad.code == 2 and "SEQ:HASH" in bad.err
