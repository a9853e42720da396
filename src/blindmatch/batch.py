"""Hash many files across cores, in input order, never stopping at a bad one."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

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


def hash_one(path: str, limits: Limits = DEFAULT_LIMITS, variants: bool = False) -> Outcome:
    try:
        return Hashed(path, hash_file(path, limits, variants=variants))
    except InputError as e:
        return Failure(path, e)
    except Exception as e:  # noqa: BLE001 - one file must never stop a batch
        return Failure(path, HashFailed(f"hashing failed: {type(e).__name__}: {e}"))


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def hash_many(
    paths: Iterable[str],
    limits: Limits = DEFAULT_LIMITS,
    workers: int | None = None,
    *,
    variants: bool = False,
) -> Iterator[Outcome]:
    """Hash every file under ``paths``; yields one outcome per file, in order.

    With more than one worker, files are hashed in a process pool with a
    bounded window of work in flight. If a decoder crashes its worker process,
    the files in flight are retried one by one in a fresh pool so the crash is
    pinned on the right file.
    """
    workers = default_workers() if workers is None else max(1, workers)
    items = iter_files(paths)
    if workers == 1:
        for item in items:
            yield item if isinstance(item, Failure) else hash_one(item, limits, variants)
        return
    window = workers * 4
    pending: list[tuple[str, Future[Outcome]] | Failure] = []
    pool = ProcessPoolExecutor(max_workers=workers)
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
                    pending.append((item, pool.submit(hash_one, item, limits, variants)))
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
                pool = ProcessPoolExecutor(max_workers=workers)
                for p in retry:
                    yield _isolated(p, limits, variants)
                yield from failures
    finally:
        pool.shutdown(cancel_futures=True)


def _isolated(path: str, limits: Limits, variants: bool) -> Outcome:
    """Hash one file in a single-use process, so a crash is attributed to it alone."""
    with ProcessPoolExecutor(max_workers=1) as one:
        try:
            return one.submit(hash_one, path, limits, variants).result()
        except BrokenProcessPool:
            return Failure(path, HashFailed("the decoder crashed on this file"))
