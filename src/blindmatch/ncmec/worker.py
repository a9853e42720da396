"""Run the NCMEC outbox in the background of ``blindmatch serve``.

Every ``interval`` seconds the worker takes a *lease* — a row of the store's ``meta``
table naming this process until ``2 × interval`` from now, taken under the store's write
lock — and, holding it, runs :meth:`~blindmatch.ncmec.outbox.Outbox.run_once`. So with
``serve --workers N`` (N processes, one worker each) or several hosts on one database, one
process at a time sends: two senders could otherwise both submit a report (the outbox never
finishes one twice, but the second would be an orphan NCMEC deletes after 24 h). A worker
that dies leaves the lease to expire; another takes it over. ``reports send`` on the
command line takes the same lease. After each round the worker also erases evidence past
its retention (``EvidenceStore.purge``; ``reports purge`` does it by hand).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from blindmatch.errors import BlindmatchError
from blindmatch.store.db import write_transaction
from blindmatch.store.models import Meta

logger = logging.getLogger("blindmatch.ncmec")
LEASE_KEY = "ncmec_outbox_lease"
INTERVAL_ENV = "BLINDMATCH_NCMEC_INTERVAL_SECONDS"
DEFAULT_INTERVAL = 60.0


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def take_lease(engine: Engine, holder: str, seconds: float) -> bool:
    """Take (or renew) the outbox lease for ``seconds``; False while another holds it."""
    now = datetime.now(UTC)
    with write_transaction(engine) as s:
        row = s.get(Meta, LEASE_KEY)
        if row is not None:
            who, _, until = row.value.partition("|")
            try:
                expires = datetime.fromisoformat(until)
            except ValueError:
                expires = now
            if who != holder and expires > now:
                return False
        value = f"{holder}|{(now + timedelta(seconds=seconds)).isoformat()}"
        if row is None:
            s.add(Meta(key=LEASE_KEY, value=value))
        else:
            row.value = value
    return True


def release_lease(engine: Engine, holder: str) -> None:
    with write_transaction(engine) as s:
        row = s.get(Meta, LEASE_KEY)
        if row is not None and row.value.partition("|")[0] == holder:
            s.delete(row)


class OutboxWorker:
    """A daemon thread running ``outbox.run_once`` under the lease; :meth:`stop` ends it."""

    def __init__(self, outbox: Any, interval: float = DEFAULT_INTERVAL) -> None:
        if interval <= 0:
            raise ValueError("the outbox interval must be positive")
        self.outbox = outbox
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="blindmatch-ncmec", daemon=True)
        self.holder = ""
        self.runs = 0

    def start(self) -> OutboxWorker:
        self._thread.start()
        return self

    def _run(self) -> None:
        self.holder = holder_id()
        while not self._stop.is_set():
            try:
                if take_lease(self.outbox.engine, self.holder, 2 * self.interval):
                    steps = self.outbox.run_once()
                    self.runs += 1
                    if steps:
                        logger.info("blindmatch: NCMEC outbox: %d step(s)", len(steps))
                    purged = self.outbox.evidence.purge()  # retention ended (never a file
                    if purged:  # of a report still in the outbox)
                        logger.info("blindmatch: evidence past retention erased: %d", len(purged))
            except BlindmatchError as e:  # logged, retried next round; never kills the thread
                logger.warning("blindmatch: NCMEC outbox: %s (%s)", e.message, e.code)
            except Exception:  # noqa: BLE001 - a bug: logged with its traceback, retried
                logger.exception("blindmatch: NCMEC outbox failed")
            self._stop.wait(self.interval)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self.holder:
            with contextlib.suppress(BlindmatchError):
                release_lease(self.outbox.engine, self.holder)


def interval_from_env(environ: dict[str, str] | None = None) -> float:
    from blindmatch.errors import ConfigError

    text = (os.environ if environ is None else environ).get(INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{INTERVAL_ENV} must be a positive number of seconds, not {text!r}")
    return value


__all__ = ["DEFAULT_INTERVAL", "INTERVAL_ENV", "OutboxWorker", "release_lease", "take_lease"]
