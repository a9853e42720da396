"""Hash many files across cores, in input order, never stopping at a bad one."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Any

from blindmatch.errors import InputError
from blindmatch.files import DEFAULT_LIMITS, Failure, Limits, hash_file, iter_files
from blindmatch.hashing import Hashes


class HashFailed(InputError):
    """The hasher itself failed on this file (a bug or a crash in a decoder)."""

    code = "hash_failed"


@dataclass(frozen=True, slots=True)
class Hashed:
    path: str
    hashes: Hashes

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, **self.hashes.to_json()}


Outcome = Hashed | Failure


def hash_one(
    path: str,
    limits: Limits = DEFAULT_LIMITS,
    variants: bool = False,
    companion: bool = False,
    hot: bool = False,
) -> Outcome:
    try:
        return Hashed(
            path, hash_file(path, limits, variants=variants, companion=companion, hot=hot)
        )
    except InputError as e:
        return Failure(path, e)
    except Exception as e:  # noqa: BLE001 - one file must never stop a batch
        return Failure(path, HashFailed(f"hashing failed: {type(e).__name__}: {e}"))


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """Pool initializer: end this worker when the process that made it dies.

    A worker holds its parent's stdout; one left alive after its parent is
    killed (SIGKILL runs no cleanup) keeps a supervisor that reads to EOF
    waiting for ever. On Linux the kernel sends SIGKILL to the worker when its
    parent dies (``PR_SET_PDEATHSIG``); the parent may already be gone by the
    time that is set, so the parent pid is checked right after. Elsewhere a
    daemon thread polls the parent pid once a second."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # it died before the line above
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass  # no prctl: fall back to watching
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def worker_pool(workers: int, mp_context: BaseContext | None = None) -> ProcessPoolExecutor:
    """A process pool whose workers die with the process that created it.

    Every pool blindmatch starts (``scan``, ``hash``, ``lists add``, ``voucher
    make``, ``eval``) comes from here. On Linux the signal follows the thread
    that forked the worker (the one that submits work): submit from a thread
    that outlives the pool, as the CLI's main thread does."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp_context,
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def hash_many(
    paths: Iterable[str],
    limits: Limits = DEFAULT_LIMITS,
    workers: int | None = None,
    *,
    variants: bool = False,
    companion: bool = False,
    hot: bool = False,
) -> Iterator[Outcome]:
    """Hash every file under ``paths``; yields one outcome per file, in order.

    ``variants``, ``companion`` and ``hot`` as for :func:`blindmatch.files.hash_file`
    (companion and hot companion hashes are for the list side, ``lists add``: ``scan``
    does not need them).

    With more than one worker, files are hashed in a process pool with a
    bounded window of work in flight. If a decoder crashes its worker process,
    the files in flight are retried one by one in a fresh pool so the crash is
    pinned on the right file.
    """
    workers = default_workers() if workers is None else max(1, workers)
    items = iter_files(paths)
    if workers == 1:
        for item in items:
            yield (
                item
                if isinstance(item, Failure)
                else hash_one(item, limits, variants, companion, hot)
            )
        return
    window = workers * 4
    pending: list[tuple[str, Future[Outcome]] | Failure] = []
    pool = worker_pool(workers)
    try:
        exhausted = False
        while True:
            while not exhausted and len(pending) < window:
                try:
                    item = next(items)
                except StopIteration:
                    exhausted = True
                    break
                if isinstance(item, Failure):
                    pending.append(item)
                else:
                    pending.append(
                        (item, pool.submit(hash_one, item, limits, variants, companion, hot))
                    )
            if not pending:
                return
            head = pending.pop(0)
            if isinstance(head, Failure):
                yield head
                continue
            path, fut = head
            try:
                yield fut.result()
            except BrokenProcessPool:
                pool.shutdown(cancel_futures=True)
                retry = [path] + [p[0] for p in pending if not isinstance(p, Failure)]
                failures = [p for p in pending if isinstance(p, Failure)]
                pending = []
                pool = worker_pool(workers)
                for p in retry:
                    yield _isolated(p, limits, variants, companion, hot)
                yield from failures
    finally:
        pool.shutdown(cancel_futures=True)


def _isolated(
    path: str, limits: Limits, variants: bool, companion: bool, hot: bool = False
) -> Outcome:
    """Hash one file in a single-use process, so a crash is attributed to it alone."""
    with worker_pool(1) as one:
        try:
            return one.submit(hash_one, path, limits, variants, companion, hot).result()
        except BrokenProcessPool:
            return Failure(path, HashFailed("the decoder crashed on this file"))


def parallel_records(workers: int | None = None) -> Any:
    """A drop-in for :func:`blindmatch.protocol.table.make_records` (``prepare_table(...,
    records=)``) that builds a distance-checked table's committed records on ``workers``
    processes (~12 ms a record on one core): runs of hashes, each with its first leaf index,
    so the records are byte-identical to the serial ones."""
    from blindmatch.protocol.table import make_records

    n_workers = workers or default_workers()

    def build(x: bytes, audit_seed: bytes, hashes: Sequence[bytes]) -> list[bytes]:
        if n_workers <= 1 or len(hashes) < 64:
            return make_records(x, audit_seed, hashes)
        step = -(-len(hashes) // (4 * n_workers))
        with worker_pool(n_workers) as pool:
            runs = [
                pool.submit(make_records, x, audit_seed, list(hashes[a : a + step]), a)
                for a in range(0, len(hashes), step)
            ]
            return [rec for run in runs for rec in run.result()]

    return build
