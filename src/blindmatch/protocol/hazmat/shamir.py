"""Shamir secret sharing over the ristretto255 scalar field ``Z/ℓZ``.

Hand-written (about forty lines of integer arithmetic), on purpose: no
dependency offers sharing over this particular prime, and the arithmetic is
simple enough to review in one sitting. A secret ``s`` is the constant term of
a polynomial ``f`` of degree ``t − 1`` with the other coefficients uniform;
a share is ``(x, f(x))`` with ``x ≠ 0``. Any ``t`` shares with distinct ``x``
give ``s = f(0)`` by Lagrange interpolation; any ``t − 1`` shares are
consistent with every possible secret (for each candidate secret there is
exactly one polynomial of degree ≤ ``t − 1`` through them and it), so they
reveal nothing about ``s``.

Only reconstruction from *correct* shares is here. Telling correct shares from
synthetic ones is the caller's job (see ``blindmatch.protocol.server``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from blindmatch.protocol.hazmat.group import ORDER


@dataclass(frozen=True)
class Share:
    """One point ``(x, y)`` on the sharing polynomial, both in ``[0, ℓ)``."""

    x: int
    y: int

    def __post_init__(self) -> None:
        if not (0 < self.x < ORDER and 0 <= self.y < ORDER):
            raise ValueError("share coordinates out of range")

    def __repr__(self) -> str:  # y is secret material
        return f"Share(x={self.x:#x}, y=<hidden>)"


def evaluate(coefficients: Sequence[int], x: int) -> int:
    """``f(x)`` for ``f = Σ coefficients[i]·x^i`` (Horner), mod ``ℓ``."""
    acc = 0
    for c in reversed(coefficients):
        acc = (acc * x + c) % ORDER
    return acc


def make_shares(coefficients: Sequence[int], xs: Iterable[int]) -> list[Share]:
    """Shares of ``coefficients[0]`` at each ``x`` (non-zero, distinct mod ``ℓ``)."""
    return [Share(x % ORDER, evaluate(coefficients, x % ORDER)) for x in xs]


def interpolate_at(shares: Sequence[Share], x0: int) -> int:
    """Lagrange interpolation of the unique polynomial of degree < len(shares) at ``x0``."""
    xs = [s.x for s in shares]
    if len(set(xs)) != len(xs):
        raise ValueError("shares must have distinct x")
    total = 0
    for i, si in enumerate(shares):
        num, den = 1, 1
        for j, sj in enumerate(shares):
            if i != j:
                num = num * (x0 - sj.x) % ORDER
                den = den * (si.x - sj.x) % ORDER
        total = (total + si.y * num * pow(den, -1, ORDER)) % ORDER
    return total


def recover_secret(shares: Sequence[Share]) -> int:
    """``f(0)`` from exactly the shares given (the caller picks ``t`` of them)."""
    if not shares:
        raise ValueError("no shares")
    return interpolate_at(shares, 0)
