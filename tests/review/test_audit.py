"""The audit log is a hash chain: any edit, deletion, insertion or reorder is found."""

from __future__ import annotations

import json

from sqlalchemy import delete, update

from blindmatch.review.audit import GENESIS, AuditLog
from blindmatch.store.models import AuditRecord


def _fill(audit: AuditLog, n: int = 5) -> None:
    for i in range(n):
        audit.append("reviewer:ann", "case.view", f"case:c{i}", {"i": i, "note": "é"})


def test_an_untouched_chain_verifies_and_links_each_line(world) -> None:
    audit = world.audit
    assert audit.verify().ok and audit.head() == (0, GENESIS)
    _fill(audit)
    check = audit.verify()
    assert check.ok and check.lines == 5 and check.head_seq == 5
    entries = audit.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev == GENESIS
    assert all(b.prev == a.hash for a, b in zip(entries, entries[1:], strict=False))
    assert audit.head() == (5, entries[-1].hash)
    assert entries[2].detail == {"i": 2, "note": "é"}


def test_an_edited_line_is_found(world) -> None:
    _fill(world.audit)
    with world.store.engine.begin() as c:
        c.execute(update(AuditRecord).where(AuditRecord.seq == 3)
                  .values(detail=json.dumps({"i": 99, "note": "é"})))  # fmt: skip
    check = world.audit.verify()
    assert not check.ok and check.bad_seq == 3 and "edited" in (check.problem or "")


def test_an_edit_that_rehashes_its_line_breaks_the_next_link(world) -> None:
    from blindmatch.review.audit import line_hash

    _fill(world.audit)
    row = world.audit.entries()[2]
    forged = line_hash(row.prev, 3, row.to_json()["at"], "reviewer:eve", row.action, row.subject,
                       json.dumps(row.detail, sort_keys=True, ensure_ascii=False,
                                  separators=(",", ":")))  # fmt: skip
    with world.store.engine.begin() as c:
        c.execute(update(AuditRecord).where(AuditRecord.seq == 3)
                  .values(actor="reviewer:eve", hash=forged))  # fmt: skip
    check = world.audit.verify()
    assert not check.ok and check.bad_seq == 4


def test_a_deleted_line_is_found(world) -> None:
    _fill(world.audit)
    with world.store.engine.begin() as c:
        c.execute(delete(AuditRecord).where(AuditRecord.seq == 2))
    check = world.audit.verify()
    assert not check.ok and check.bad_seq == 3 and "missing" in (check.problem or "")


def test_a_truncated_tail_is_found_only_against_a_recorded_head(world) -> None:
    _fill(world.audit)
    head = world.audit.head()
    with world.store.engine.begin() as c:
        c.execute(delete(AuditRecord).where(AuditRecord.seq >= 4))
    assert world.audit.verify().ok  # a chain alone cannot see its tail cut off
    check = world.audit.verify(expect=head)
    assert not check.ok and "shorter" in (check.problem or "")


def test_a_rewritten_line_differs_from_a_recorded_head(world) -> None:
    _fill(world.audit, 3)
    head = world.audit.head()
    assert world.audit.verify(expect=head).ok
    assert not world.audit.verify(expect=(head[0], "0" * 64)).ok
