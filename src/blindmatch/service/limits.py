"""What keeps ``blindmatch serve`` standing under abuse.

* :class:`DecodeBudget` — how many pixels the service decodes at once. Decoding needs
  the full-size buffer (4 bytes a pixel: 256 MB for a 64 MP PNG, whatever its file
  size), so concurrent uploads reserve their declared pixel count first; one that does
  not fit within ``wait`` seconds is refused with ``503 busy``.
* :class:`GuardedH11Protocol` — uvicorn's h11 protocol with two more limits: a
  connection that has not sent a complete request head within ``header_timeout``
  seconds is closed (uvicorn itself waits for ever: slow or idle connections held every
  file descriptor), and past ``max_connections`` open connections a new one gets an
  immediate 503 and is closed.
* :class:`RateLimitFilter` and :func:`log_config` — logs that cannot amplify an attack:
  at most ``burst`` lines a ``period`` per logger and message; later ones are counted
  and reported in one line; only the first of each carries a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from blindmatch.errors import ServiceBusy

HEADER_TIMEOUT_ENV = "BLINDMATCH_HEADER_TIMEOUT"
MAX_CONNECTIONS_ENV = "BLINDMATCH_MAX_CONNECTIONS"
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_MAX_CONNECTIONS = 1000
MIN_DECODE_COST = 1_000_000  # a small picture still costs its variants and keypoints


class DecodeBudget:
    """A counting semaphore of pixels in flight (thread-safe: endpoints run in a
    thread pool)."""

    def __init__(self, total: int, wait: float = 5.0) -> None:
        if total < 1:
            raise ValueError("the decode budget must be positive")
        self.total, self.wait = total, wait
        self.in_use = 0
        self._cond = threading.Condition()

    @contextmanager
    def reserve(self, pixels: int) -> Iterator[None]:
        """Hold ``pixels`` (at least ``MIN_DECODE_COST``, at most the whole budget)
        while the block runs; raise :class:`ServiceBusy` if they are not free within
        ``wait`` seconds."""
        cost = min(max(pixels, MIN_DECODE_COST), self.total)
        deadline = time.monotonic() + self.wait
        with self._cond:
            while self.in_use + cost > self.total:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ServiceBusy(
                        "the service is decoding as many pixels as it may at once; retry",
                        retry_after=max(1, round(self.wait)),
                    )
                self._cond.wait(left)
            self.in_use += cost
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= cost
                self._cond.notify_all()


class FifoGate:
    """At most ``slots`` callers inside at once, admitted in arrival order.

    The upload routes hash on the CPU under the GIL: with every request thread of a worker
    competing at once, the interpreter serves them in no particular order, and under a steady
    load the unlucky ones wait several times the mean (measured: p50 0.63 s, p99 3.4 s at 32
    clients). Admitting them first come, first served keeps each request's wait near the
    queue's length times the work, for the same throughput."""

    def __init__(self, slots: int = 1) -> None:
        if slots < 1:
            raise ValueError("a gate needs at least one slot")
        self.slots = slots
        self._inside = 0
        self._next = 0  # the next ticket to admit
        self._issued = 0
        self._cond = threading.Condition()

    @contextmanager
    def enter(self) -> Iterator[None]:
        with self._cond:
            ticket = self._issued
            self._issued += 1
            while ticket != self._next or self._inside >= self.slots:
                self._cond.wait()
            self._next += 1
            self._inside += 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._inside -= 1
                self._cond.notify_all()


_BUSY_BODY = b'{"error": {"code": "busy", "message": "too many connections; retry later"}}\n'
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"connection: close\r\nretry-after: 1\r\ncontent-length: %d\r\n\r\n" % len(_BUSY_BODY)
) + _BUSY_BODY


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head timeout and a connection cap, read
    from ``BLINDMATCH_HEADER_TIMEOUT`` and ``BLINDMATCH_MAX_CONNECTIONS`` (``serve``
    sets them, so every worker process sees the same values)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout = float(os.environ.get(HEADER_TIMEOUT_ENV) or DEFAULT_HEADER_TIMEOUT)
        self.max_connections = int(os.environ.get(MAX_CONNECTIONS_ENV) or DEFAULT_MAX_CONNECTIONS)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(_BUSY)
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self._busy():
            self._disarm()  # the head is in; the app's own limits take over

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self._busy():
            self._arm()  # waiting for the next request head on a kept-alive connection

    def _busy(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing() and not self._busy():
            self.transport.close()


class RateLimitFilter(logging.Filter):
    """Let through at most ``burst`` records a ``period`` seconds for each (logger,
    level, message template); count the rest and say how many were dropped with the
    next one let through. Only the first record of a key in each period keeps its
    traceback; the others keep the exception's one-line summary."""

    def __init__(self, name: str = "", burst: int = 10, period: float = 10.0) -> None:
        super().__init__(name)
        self.burst, self.period = burst, period
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # start, count, dropped
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        with self._lock:
            state = self._seen.get(key)
            if state is None or now - state[0] >= self.period:
                dropped = int(state[2]) if state else 0
                state = [now, 0, 0]
                self._seen[key] = state
                if len(self._seen) > 10_000:  # many distinct messages: forget the old ones
                    self._seen = {key: state}
            else:
                dropped = 0
            state[1] += 1
            if state[1] > self.burst:
                state[2] += 1
                return False
            first = state[1] == 1
        if record.exc_info and not first:
            exc = record.exc_info[1]
            summary = f"{type(exc).__name__}: {exc}".replace("%", "%%")
            record.msg = f"{record.msg} [{summary}]"
            record.exc_info = None
            record.exc_text = None
        if dropped:
            record.msg = f"{record.msg} ({dropped} similar lines suppressed)"
        return True


def log_config(access_log: bool = True) -> dict[str, Any]:
    """uvicorn's logging setup with :class:`RateLimitFilter` on every handler, also
    catching asyncio's own errors (``socket.accept() out of system resource``)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "errors": {"()": RateLimitFilter, "burst": 10, "period": 10.0},
            "access": {"()": RateLimitFilter, "burst": 200, "period": 1.0},
        },
        "formatters": {
            "default": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(message)s",
                "use_colors": None,
            },
            "access": {
                "()": "uvicorn.logging.AccessFormatter",
                "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
            },
        },
        "handlers": {
            "default": {
                "formatter": "default",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "filters": ["errors"],
            },
            "access": {
                "formatter": "access",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "filters": ["access"],
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {
                "handlers": ["access"] if access_log else [],
                "level": "INFO",
                "propagate": False,
            },
            "asyncio": {"handlers": ["default"], "level": "WARNING", "propagate": False},
            "blindmatch": {"handlers": ["default"], "level": "INFO", "propagate": False},
        },
    }


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft limit on open files to the hard limit; return (soft, hard)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return (-1, -1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft, hard
