"""Concurrent writers on one store (issue 11, items 1, 2 and the store side of 4).

Each race is forced, not hoped for: writer A is paused inside its transaction right
after it inserted its entries (so it holds the write lock, in the old code as in the
new), writer B is started, and A is let go only once B is waiting for A's lock —
whether B read the list and the sequence number before it waited (the old code) or
waits before reading anything (the fix). The ``check_*`` functions take the database
URL and a probe that tells when B waits; ``tests/integration/postgres`` runs the same
checks on PostgreSQL. Every hash here is random: benign by construction.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, func, insert, select
from sqlalchemy.exc import IntegrityError

from blindmatch.errors import BlindmatchError
from blindmatch.lists import ListEntry, dump_list
from blindmatch.matching import Matcher
from blindmatch.store import Store, db, open_store
from blindmatch.store.models import Entry, HashList, ImportRecord, Meta
from tests.unit.test_store_matching import _hex

WAIT = 20.0  # a safety net only: a passing run never waits this long

# Given a store, returns a function that is true once that store's writer waits for
# another writer's lock.
Probe = Callable[[Store], Callable[[], bool]]


class _Hold:
    """Pause a store's writer right after its first INSERT into ``entries``, with its
    transaction (and so the write lock) still open, until ``release`` is set."""

    def __init__(self, store: Store) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        event.listen(store.engine, "after_cursor_execute", self._after)

    def _after(self, _conn: Any, _cur: Any, statement: str, *_: Any) -> None:
        if (
            statement.lstrip().upper().startswith("INSERT INTO ENTRIES")
            and not self.reached.is_set()
        ):
            self.reached.set()
            if not self.release.wait(WAIT):
                raise RuntimeError("the test never released this writer")


class _Run(threading.Thread):
    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        super().__init__(daemon=True)
        self.fn, self.args = fn, args
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn(*self.args)
        except BaseException as e:  # reported by outcome()
            self.error = e

    def outcome(self) -> Any:
        self.join(WAIT)
        assert not self.is_alive(), "a writer never finished"
        if self.error is not None:
            raise self.error
        return self.result


def _until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.002)


def sqlite_waits(store: Store) -> Callable[[], bool]:
    """SQLite: the writer waits from the moment it runs its first statement that needs
    the write lock (``BEGIN IMMEDIATE``, or an INSERT/UPDATE/DELETE) while another holds it."""
    started = threading.Event()
    write = re.compile(r"\s*(BEGIN\s+IMMEDIATE|INSERT|UPDATE|DELETE)\b", re.IGNORECASE)

    def before(_conn: Any, _cur: Any, statement: str, *_: Any) -> None:
        if write.match(statement):
            started.set()

    event.listen(store.engine, "before_cursor_execute", before)
    return started.is_set


def _entries(rng: random.Random, n: int, prefix: str) -> list[ListEntry]:
    return [ListEntry(source_id=f"{prefix}{i}", pdq=_hex(rng), category="A1") for i in range(n)]


def _race(url: str, waits: Probe, a: tuple[str, list[ListEntry]],
          b: tuple[str, list[ListEntry]], while_b_uncommitted: Callable[[], None] | None = None,
          ) -> tuple[Any, Any]:  # fmt: skip
    """Import ``a`` and ``b`` at once, B arriving while A holds the write lock."""
    store_a, store_b = open_store(url), open_store(url)  # two writers, as two processes
    hold_a, hold_b = _Hold(store_a), _Hold(store_b)
    if while_b_uncommitted is None:
        hold_b.release.set()
    b_waits = waits(store_b)
    ta = _Run(store_a.import_entries, *a)
    ta.start()
    assert hold_a.reached.wait(WAIT)
    tb = _Run(store_b.import_entries, *b)
    tb.start()
    _until(lambda: b_waits() or not tb.is_alive(), "B waits for A's lock")
    hold_a.release.set()
    got_a = ta.outcome()
    if while_b_uncommitted is not None:
        assert hold_b.reached.wait(WAIT)
        while_b_uncommitted()
        hold_b.release.set()
    got_b = tb.outcome()
    store_a.engine.dispose()
    store_b.engine.dispose()
    return got_a, got_b


def check_no_duplicate_live_ids(url: str, waits: Probe) -> None:
    """Item 1: a small import of an id that a concurrent big import also adds leaves one
    live row (the later import's), an export works, and one tombstone removes the id."""
    rng = random.Random(1101)
    store = open_store(url)
    store.import_entries("hl", _entries(rng, 5, "seed"))
    p1, p2 = _hex(rng), _hex(rng)
    big = [*_entries(rng, 299, "e"), ListEntry(source_id="dup", pdq=p1, category="A1")]
    small = [ListEntry(source_id="dup", pdq=p2, category="A1")]
    _, got_b = _race(url, waits, ("hl", big), ("hl", small))

    live = [e for e in store.live_entries("hl") if e.source_id == "dup"]
    assert [e.pdq for e in live] == [p2]  # one live row: the later import's word
    assert (got_b.added, got_b.changed) == (0, 1)
    assert store.get_list("hl").live_entries == 305
    dump_list(list(store.live_entries("hl")), "csv")  # no "duplicate id"
    matcher = Matcher(store)
    assert [m.entry_id for m in matcher.match_pdq(p2)] == ["dup"]
    store.import_entries("hl", [ListEntry(source_id="dup", removed=True)])
    matcher.refresh()
    assert matcher.match_pdq(p1) == [] and matcher.match_pdq(p2) == []
    store.engine.dispose()


def check_concurrent_imports_get_distinct_sequence_numbers(url: str, waits: Probe) -> None:
    """Item 2: two imports into two lists at once get different sequence numbers, and a
    matcher that caught up between the two commits still finds the second one's entry."""
    rng = random.Random(1102)
    store = open_store(url)
    store.import_entries("big", _entries(rng, 3, "seed"))
    store.import_entries("small", _entries(rng, 3, "seed"))
    matcher = Matcher(store)
    big, small = _entries(rng, 300, "e"), [ListEntry(source_id="new", pdq=_hex(rng))]

    _race(url, waits, ("big", big), ("small", small), while_b_uncommitted=matcher.refresh)

    with store.engine.connect() as conn:
        seqs = dict(conn.execute(select(HashList.name, Entry.added_seq)
                                 .join(HashList, HashList.id == Entry.list_id)
                                 .where(Entry.source_id.in_(["e0", "new"]))).all())  # fmt: skip
    assert seqs["big"] != seqs["small"]
    assert store.current_seq() == max(seqs.values())
    matcher.refresh()  # caught up after both
    assert [(m.list, m.entry_id) for m in matcher.match_pdq(small[0].pdq or "")] == [
        ("small", "new")
    ]
    assert [(m.list, m.entry_id) for m in matcher.match_pdq(big[0].pdq or "")] == [("big", "e0")]
    store.engine.dispose()


def check_unique_index_refuses_a_second_live_row(url: str) -> None:
    """The database itself refuses a second live row for one (list, source id); tombstoned
    rows, and the same id in another list, are not in its way."""
    rng = random.Random(1103)
    store = open_store(url)
    store.import_entries("hl", [ListEntry(source_id="x", pdq=_hex(rng))])
    store.import_entries("hl", [ListEntry(source_id="x", pdq=_hex(rng))])  # a change
    store.import_entries("other", [ListEntry(source_id="x", pdq=_hex(rng))])
    hl = store.get_list("hl")
    assert (hl.live_entries, hl.removed_entries) == (1, 1)
    row = {"list_id": hl.id, "source_id": "x", "pdq": _hex(rng), "added_at": datetime.now(UTC),
           "added_seq": store.current_seq()}  # fmt: skip
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(insert(Entry).values(**row))
    with store.engine.begin() as conn:  # as a tombstone it may go in
        conn.execute(insert(Entry).values(**row, removed_seq=store.current_seq()))
    assert store.get_list("hl").live_entries == 1
    store.engine.dispose()


def check_migration_tombstones_existing_duplicates(url: str) -> None:
    """A database the race already damaged: the upgrade keeps the newest live row of each
    (list, source id) and tombstones the others under a new sequence number."""
    rng = random.Random(1104)
    engine = create_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(db._MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0007")  # before the unique index
    now = datetime.now(UTC)
    old, new = _hex(rng), _hex(rng)
    with engine.begin() as conn:
        conn.execute(insert(HashList).values(id=1, name="hl", source="", version="",
                                             description="", pdq_threshold=31,
                                             created_at=now, updated_at=now))  # fmt: skip
        conn.execute(insert(Meta).values(key="change_seq", value="4"))
        for sid, pdq, seq in (("dup", old, 3), ("other", _hex(rng), 3), ("dup", new, 4)):
            conn.execute(insert(Entry).values(list_id=1, source_id=sid, pdq=pdq, added_at=now,
                                              added_seq=seq))  # fmt: skip
    engine.dispose()
    store = open_store(url)  # migrates to head
    assert store.current_seq() == 5
    assert sorted((e.source_id, e.pdq) for e in store.live_entries("hl") if e.source_id == "dup") \
        == [("dup", new)]  # fmt: skip
    ch = store.pdq_changes(4)
    assert (ch.seq, ch.added_ids, len(ch.removed_ids)) == (5, [], 1)
    with store.engine.connect() as conn:
        gone = conn.execute(select(Entry.pdq).where(Entry.removed_seq == 5)).scalars().all()
    assert gone == [old]
    assert Matcher(store).match_pdq(old) == []
    store.engine.dispose()


def check_a_writer_that_waits_too_long_gets_a_coded_error(url: str) -> None:
    """Store side of item 4: a write that waits past the lock timeout raises
    DatabaseBusy (code ``database_busy``), never the driver's traceback; the same write
    succeeds once the lock is free."""
    rng = random.Random(1105)
    store_a = open_store(url)
    store_a.create_list("hl")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(db, "LOCK_TIMEOUT_SECONDS", 0.2, raising=False)
        store_b = open_store(url)
    hold = _Hold(store_a)
    ta = _Run(store_a.import_entries, "hl", _entries(rng, 10, "a"))
    ta.start()
    assert hold.reached.wait(WAIT)
    tb = _Run(store_b.import_entries, "hl", _entries(rng, 1, "b"))
    tb.start()
    tb.join(WAIT)
    stuck = tb.is_alive()
    hold.release.set()
    ta.outcome()
    assert not stuck, "the second writer waited past its lock timeout"
    assert isinstance(tb.error, BlindmatchError), repr(tb.error)
    assert tb.error.code == "database_busy"
    assert store_b.import_entries("hl", _entries(rng, 1, "b")).added == 1
    assert store_b.get_list("hl").live_entries == 11
    store_a.engine.dispose()
    store_b.engine.dispose()


# -- SQLite ------------------------------------------------------------------------------
@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def test_no_duplicate_live_ids(url: str) -> None:
    check_no_duplicate_live_ids(url, sqlite_waits)


def test_concurrent_imports_get_distinct_sequence_numbers(url: str) -> None:
    check_concurrent_imports_get_distinct_sequence_numbers(url, sqlite_waits)


def test_unique_index_refuses_a_second_live_row(url: str) -> None:
    check_unique_index_refuses_a_second_live_row(url)


def test_migration_tombstones_existing_duplicates(url: str) -> None:
    check_migration_tombstones_existing_duplicates(url)


def test_a_writer_that_waits_too_long_gets_a_coded_error(url: str) -> None:
    check_a_writer_that_waits_too_long_gets_a_coded_error(url)


def test_a_large_import_commits_in_chunks_and_a_rerun_completes_it(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks: each its own transaction and sequence number; a failure partway leaves the
    chunks before it, and importing the same entries again completes the import."""
    monkeypatch.setattr(db, "IMPORT_CHUNK", 7)
    rng = random.Random(1106)
    store = open_store(url)
    entries = _entries(rng, 20, "e")
    calls = {"n": 0}
    real = Store._apply

    def fail_third(self: Store, *args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("the disk is full")
        return real(self, *args)

    monkeypatch.setattr(Store, "_apply", fail_third)
    with pytest.raises(RuntimeError):
        store.import_entries("hl", entries, source="S", version="v2", file_sha256="a" * 64)
    info = store.get_list("hl")
    assert (info.live_entries, info.version, store.current_seq()) == (14, "", 2)
    monkeypatch.setattr(Store, "_apply", real)
    again = store.import_entries("hl", entries, source="S", version="v2", file_sha256="a" * 64)
    assert (again.added, again.unchanged) == (6, 14)
    info = store.get_list("hl")
    assert (info.live_entries, info.source, info.version, store.current_seq()) == (20, "S", "v2", 3)
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ImportRecord)).scalar() == 1
    matcher = Matcher(store)
    assert all(matcher.match_pdq(e.pdq or "") for e in entries)
    store.engine.dispose()
