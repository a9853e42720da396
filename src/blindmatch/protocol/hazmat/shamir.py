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

Reconstruction from correct shares is :func:`recover_secret`. When some of
the shares are not on ``f`` (synthetic vouchers carry a random ``y``), the
shares form a Reed–Solomon codeword with errors, and :func:`decode_shares`
finds ``f`` and the shares on it (Gao's decoder, unique decoding: ``e``
wrong shares among ``n`` are corrected whenever ``2e ≤ n − t``).

Why hand-written, the decoder too: no Python library decodes Reed–Solomon
codes over this 253-bit prime field at arbitrary evaluation points. ``reedsolo``
and ``unireedsolomon`` work in GF(2^8)/GF(2^m). ``galois`` is well kept and its
GF(p) takes a 253-bit prime, but then in its "python-calculate" mode (object
arrays of Python ints: no faster than the plain ints here), its
``ReedSolomon`` is the cyclic (BCH) code — evaluation points are consecutive
powers of an ``n``-th root of unity, ``n | q − 1`` — whereas our ``x`` are hash
outputs, and it states that it is not meant for production security. It would
also bring numba and llvmlite in for about 150 lines of algebra.
"""

from __future__ import annotations

import operator
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


# --- Reed–Solomon decoding of shares -------------------------------------------------------
#
# Polynomials are lists of coefficients, lowest degree first, with no trailing zeros (the zero
# polynomial is ``[]``, of degree −1). Every coefficient is reduced into [0, ℓ).


@dataclass(frozen=True)
class Decoded:
    """The result of :func:`decode_shares`.

    ``coefficients`` are ``a_0 … a_{t−1}`` of the polynomial (``a_0`` is the secret);
    ``agreeing`` and ``errors`` are indices into the shares given, in increasing order: the
    shares on the polynomial and the ones off it.
    """

    coefficients: tuple[int, ...]
    agreeing: tuple[int, ...]
    errors: tuple[int, ...]

    def __repr__(self) -> str:  # the coefficients are secret material
        return (
            f"Decoded(t={len(self.coefficients)}, agreeing={len(self.agreeing)}, "
            f"errors={self.errors}, coefficients=<hidden>)"
        )


def on_polynomial(coefficients: Sequence[int], share: Share) -> bool:
    """Whether ``share`` lies on the polynomial with these coefficients."""
    return evaluate(coefficients, share.x) == share.y


def decoding_radius(n: int, t: int) -> int:
    """How many wrong shares among ``n`` :func:`decode_shares` corrects for threshold ``t``
    (``⌊(n − t) / 2⌋``; −1 when ``n < t``: not even correct shares suffice)."""
    return (n - t) // 2 if n >= t else -1


def decode_shares(shares: Sequence[Share], t: int) -> Decoded | None:
    """The polynomial of degree < ``t`` on which all but at most ``⌊(n − t)/2⌋`` of the ``n``
    shares lie, or None if there is none.

    Gao's algorithm (S. Gao, "A new algorithm for decoding Reed–Solomon codes", 2003):
    interpolate ``g₁`` through all ``n`` points, run the extended Euclidean algorithm on
    ``g₀ = Π (X − x_i)`` and ``g₁`` until the remainder ``g`` has degree < ``(n + t)/2``, with
    ``g = u·g₀ + v·g₁``; then ``f = g / v`` if ``v`` divides ``g`` and ``deg f < t`` (``v`` is
    the error locator: its roots include every wrong share's ``x``). O(n²) field operations.

    Unique decoding: whenever at most ``⌊(n − t)/2⌋`` shares are off ``f``, ``f`` is returned
    with exactly those shares as ``errors``; no other polynomial of degree < ``t`` can then
    agree with as many shares (two such polynomials would agree at ≥ ``t`` points). When more
    shares are wrong the result is None, and the last check below — at least ``⌈(n + t)/2⌉``
    shares on the returned polynomial — makes that hold for any input, not only for the
    algorithm's own guarantees. For shares with random ``y`` (synthetic vouchers only, or too
    few real ones) a wrong answer needs ``≥ ⌈(n − t)/2⌉`` random values to land on a polynomial
    through ``t`` others: probability at most ``(n / ℓ)^⌈(n − t)/2⌉``, negligible for ``n > t``.

    With ``n = t`` there is no redundancy: every set of points decodes (to its interpolant),
    and only a check outside the shares (the server's evidence key opening a voucher) tells a
    right answer from a wrong one. A client choosing its own shares can also place enough of
    them on a polynomial of its choosing to be decoded instead of ``f``; the caller must
    always confirm the secret that way.

    Raises ValueError if two shares have the same ``x`` or ``t < 1``.
    """
    if t < 1:
        raise ValueError("threshold must be at least 1")
    xs = [s.x for s in shares]
    if len(set(xs)) != len(xs):
        raise ValueError("shares must have distinct x")
    n = len(shares)
    if n < t:
        return None
    g0 = _vanishing(xs)
    g1 = _interpolate(shares, g0)
    # Partial extended Euclid: keep (r0, v0), (r1, v1) with r_i ≡ v_i·g1 (mod g0).
    r0, r1 = g0, g1
    v0: list[int] = []
    v1 = [1]
    while 2 * _deg(r1) >= n + t:
        q, rem = _divmod(r0, r1)
        r0, r1 = r1, rem
        v0, v1 = v1, _sub(v0, _mul(q, v1))
    f, rem = _divmod(r1, v1)
    if rem or len(f) > t:
        return None
    agreeing = tuple(i for i, s in enumerate(shares) if on_polynomial(f, s))
    if 2 * len(agreeing) < n + t:
        return None
    errors = tuple(sorted(set(range(n)) - set(agreeing)))
    coefficients = tuple(f) + (0,) * (t - len(f))
    return Decoded(coefficients, agreeing, errors)


def _deg(p: Sequence[int]) -> int:
    return len(p) - 1


def _trim(p: list[int]) -> list[int]:
    while p and p[-1] == 0:
        p.pop()
    return p


def _sub(a: Sequence[int], b: Sequence[int]) -> list[int]:
    m = max(len(a), len(b))
    a = list(a) + [0] * (m - len(a))
    b = list(b) + [0] * (m - len(b))
    return _trim([(x - y) % ORDER for x, y in zip(a, b, strict=True)])


def _mul(a: Sequence[int], b: Sequence[int]) -> list[int]:
    if not a or not b:
        return []
    out = [0] * (len(a) + len(b) - 1)
    for i, ai in enumerate(a):
        if ai:
            for j, bj in enumerate(b):
                out[i + j] += ai * bj
    return _trim([c % ORDER for c in out])


def _divmod(a: Sequence[int], b: Sequence[int]) -> tuple[list[int], list[int]]:
    """Quotient and remainder of ``a / b`` (``b`` non-zero, trimmed)."""
    if not b:
        raise ZeroDivisionError("polynomial division by zero")
    rem = list(a)
    db = len(b) - 1
    if len(rem) <= db:
        return [], rem
    inv = pow(b[-1], -1, ORDER)
    low = b[:db]
    quot = [0] * (len(rem) - db)
    for k in range(len(rem) - 1, db - 1, -1):
        c = rem[k] * inv % ORDER
        quot[k - db] = c
        if c:
            base = k - db
            rem[base:k] = [(r - c * bj) % ORDER for r, bj in zip(rem[base:k], low, strict=True)]
    return _trim(quot), _trim(rem[:db])


def _vanishing(xs: Sequence[int]) -> list[int]:
    """``Π (X − x)`` over ``xs`` (monic, degree ``len(xs)``)."""
    p = [1]
    for x in xs:  # p·(X − x): new[i] = p[i−1] − x·p[i]
        p = [(a - x * b) % ORDER for a, b in zip([0, *p], [*p, 0], strict=True)]
    return p


def _interpolate(shares: Sequence[Share], g0: Sequence[int]) -> list[int]:
    """Coefficients of the polynomial of degree < n through all ``n`` shares (Lagrange:
    ``Σ y_i · (g₀ / (X − x_i)) / g₀'(x_i)``), given ``g₀ = Π (X − x_i)``; one inversion.

    The quotients ``g₀ / (X − x_i)`` come from synthetic division, run for all ``i`` at once
    (one list per coefficient, highest first); Horner over those same coefficients gives
    ``g₀'(x_i)`` in the same pass."""
    xs = [s.x for s in shares]
    acc = [0] * len(xs)
    w = [0] * len(xs)
    rows = []  # rows[j][i]: coefficient of X^(n−1−j) in g0 / (X − x_i)
    for g in reversed(g0[1:]):
        acc = [(a * x + g) % ORDER for a, x in zip(acc, xs, strict=True)]
        w = [(v * x + a) % ORDER for v, a, x in zip(w, acc, xs, strict=True)]
        rows.append(acc)
    c = [s.y * v % ORDER for s, v in zip(shares, _batch_inverse(w), strict=True)]
    return _trim([sum(map(operator.mul, c, row)) % ORDER for row in reversed(rows)])


def _batch_inverse(values: Sequence[int]) -> list[int]:
    """Inverses of non-zero field elements with one modular inversion (Montgomery's trick)."""
    prefix = [1] * (len(values) + 1)
    for i, v in enumerate(values):
        prefix[i + 1] = prefix[i] * v % ORDER
    inv = pow(prefix[-1], -1, ORDER)
    out = [0] * len(values)
    for i in range(len(values) - 1, -1, -1):
        out[i] = prefix[i] * inv % ORDER
        inv = inv * values[i] % ORDER
    return out
