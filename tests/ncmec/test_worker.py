"""The outbox worker of `blindmatch serve`: one sender at a time, under a lease."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from blindmatch.errors import ConfigError, DatabaseBusy
from blindmatch.ncmec.worker import (
    OutboxWorker,
    interval_from_env,
    release_lease,
    take_lease,
)
from blindmatch.store.db import open_store


def test_the_lease_admits_one_holder_until_released_or_expired(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}").engine
    assert take_lease(engine, "a", 60)
    assert take_lease(engine, "a", 60)  # renewing
    assert not take_lease(engine, "b", 60)
    release_lease(engine, "b")  # not b's: nothing happens
    assert not take_lease(engine, "b", 60)
    release_lease(engine, "a")
    assert take_lease(engine, "b", -1)  # b holds it, already expired
    assert take_lease(engine, "a", 60)


class _Evidence:
    def __init__(self) -> None:
        self.purges = 0

    def purge(self) -> list[str]:
        self.purges += 1
        return []


class _Box:
    def __init__(self, engine) -> None:
        self.engine = engine
        self.calls = 0
        self.ran = threading.Event()
        self.evidence = _Evidence()

    def run_once(self) -> list:
        self.calls += 1
        self.ran.set()
        if self.calls == 1:
            raise DatabaseBusy("a failing round is logged, not fatal")
        return []


def test_a_worker_runs_the_outbox_only_holding_the_lease(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}").engine
    assert take_lease(engine, "someone-else", 60)
    blocked = _Box(engine)
    w = OutboxWorker(blocked, interval=0.05).start()
    assert not blocked.ran.wait(0.5)  # someone else holds the lease
    w.stop()
    release_lease(engine, "someone-else")
    box = _Box(engine)
    w = OutboxWorker(box, interval=0.01).start()
    assert box.ran.wait(10)
    for _ in range(200):  # survives the failing first round and runs again
        if box.calls >= 2:
            break
        threading.Event().wait(0.01)
    w.stop()
    assert box.calls >= 2 and box.evidence.purges >= 1  # retention is enforced as it runs
    assert take_lease(engine, "next", 60)  # stop released it


def test_the_interval_setting_is_checked() -> None:
    assert interval_from_env({}) == 60.0
    assert interval_from_env({"BLINDMATCH_NCMEC_INTERVAL_SECONDS": "5"}) == 5.0
    with pytest.raises(ConfigError, match="positive number"):
        interval_from_env({"BLINDMATCH_NCMEC_INTERVAL_SECONDS": "0"})
