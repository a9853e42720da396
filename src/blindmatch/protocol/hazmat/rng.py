"""Injectable randomness.

An ``Rng`` is any callable ``rng(n) -> n bytes``. Production code uses
:func:`system_rng` (``os.urandom``); known-answer tests use :class:`SeededRng`,
a deterministic SHA-512 counter stream that must never be used for real
secrets.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, MutableSequence
from typing import TypeVar

Rng = Callable[[int], bytes]

T = TypeVar("T")


def system_rng(n: int) -> bytes:
    """``n`` bytes from the operating system's CSPRNG."""
    return os.urandom(n)


class SeededRng:
    """Deterministic byte stream: block ``i`` is ``SHA-512(seed ‖ i as 8 bytes BE)``.

    For tests and known-answer vectors only: anyone who knows the seed knows
    every "random" value drawn from it.
    """

    def __init__(self, seed: bytes) -> None:
        self._seed = bytes(seed)
        self._counter = 0
        self._buffer = b""

    def __call__(self, n: int) -> bytes:
        while len(self._buffer) < n:
            block = hashlib.sha512(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
            self._buffer += block
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def __repr__(self) -> str:
        return "SeededRng(<test only>)"


def randbelow(rng: Rng, n: int) -> int:
    """A uniform integer in ``[0, n)`` by rejection sampling on 8-byte draws."""
    if n <= 0 or n > 1 << 63:
        raise ValueError("randbelow needs 0 < n <= 2**63")
    limit = (1 << 64) - ((1 << 64) % n)
    while True:
        v = int.from_bytes(rng(8), "big")
        if v < limit:
            return v % n


def shuffle(rng: Rng, items: MutableSequence[T]) -> None:
    """Fisher–Yates shuffle in place, drawing from ``rng``."""
    for i in range(len(items) - 1, 0, -1):
        j = randbelow(rng, i + 1)
        items[i], items[j] = items[j], items[i]
