"""Saving the PDQ index: several processes at once (each `scan` saves it when it
starts behind the store) never crash and leave an index the next process can
load; a pair (index, meta) torn between two saves is rebuilt, never trusted."""

from __future__ import annotations

import multiprocessing
import random
import traceback
from pathlib import Path
from typing import Any

import pytest

from blindmatch.errors import IoFailed
from blindmatch.lists import ListEntry
from blindmatch.matching import Matcher
from blindmatch.store import open_store

PROCESSES = 4
ROUNDS = 40


def _hex(rng: random.Random) -> str:
    return rng.getrandbits(256).to_bytes(32, "big").hex()


@pytest.fixture
def store(tmp_path: Path):
    return open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")


def _saver(m: Matcher, barrier: Any, rounds: int, errors: Any) -> None:
    try:
        barrier.wait(timeout=30)
        for _ in range(rounds):
            m.save()
    except BaseException:  # noqa: BLE001 - reported to the test
        errors.put(traceback.format_exc())
        raise


def test_concurrent_saves_never_crash_and_leave_a_loadable_index(store, tmp_path: Path) -> None:
    rng = random.Random(5)
    pdqs = [_hex(rng) for _ in range(5000)]
    store.import_entries("hl", [ListEntry(source_id=f"e{i}", pdq=h) for i, h in enumerate(pdqs)])
    idx = tmp_path / "idx"
    # matchers built here, saving from forked processes (saving touches no database)
    matchers = [Matcher(store, idx) for _ in range(PROCESSES)]
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(PROCESSES)
    errors = ctx.SimpleQueue()
    procs = [ctx.Process(target=_saver, args=(m, barrier, ROUNDS, errors)) for m in matchers]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(timeout=120)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert not failures, failures[0]
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    assert sorted(f.name for f in idx.iterdir() if "tmp" in f.name) == []  # no litter
    fresh = Matcher(store, idx)
    assert fresh.unsaved_changes == 0  # loaded from the saved file, already current
    assert len(fresh) == len(pdqs)
    assert [x.entry_id for x in fresh.match_pdq(pdqs[1234])] == ["e1234"]


def test_a_torn_index_and_meta_pair_is_rebuilt_not_trusted(store, tmp_path: Path) -> None:
    """Two saves interleaved (A's index, B's index, B's meta... or a crash between
    the two renames) can pair a newer sequence with an older index: entries the
    older index lacks would then never match. The meta names its index's digest."""
    rng = random.Random(6)
    a, b = _hex(rng), _hex(rng)
    idx = tmp_path / "idx"
    store.import_entries("hl", [ListEntry(source_id="a", pdq=a)])
    Matcher(store, idx).save()
    older = (idx / "pdq.bmidx").read_bytes()
    store.import_entries("hl", [ListEntry(source_id="b", pdq=b)])
    Matcher(store, idx).save()  # the meta now says: current with b
    (idx / "pdq.bmidx").write_bytes(older)  # but the index is the one without b
    m = Matcher(store, idx)
    assert [x.entry_id for x in m.match_pdq(b)] == ["b"]
    assert [x.entry_id for x in m.match_pdq(a)] == ["a"]


def test_a_save_that_cannot_write_raises_a_coded_error(store, tmp_path: Path) -> None:
    store.import_entries("hl", [ListEntry(source_id="a", pdq=_hex(random.Random(7)))])
    blocked = tmp_path / "idx"
    blocked.write_text("a file where the index folder should be")
    m = Matcher(store, blocked)
    with pytest.raises(IoFailed) as e:
        m.save()
    assert e.value.code == "io_error" and str(blocked) in e.value.message
