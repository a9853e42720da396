"""Threshold recovery: the Reed–Solomon decoder against the old subset search (issue 10, #3).

Under the threshold policy the server stores one Shamir share per opened voucher: real ones on
the account's polynomial f (degree t − 1), synthetic ones with a random y. It must find f(0)
once enough real shares are stored. Measured here, at t = 30, on random shares:

  decode            ``hazmat.shamir.decode_shares`` (Gao's algorithm) on n shares with the
                    largest decodable number of wrong ones, e = ⌊(n − t)/2⌋, and on n shares
                    that are all random (an innocent account); median of --reps runs.
  old search        the baseline, in the same run and on the same inputs: what
                    ``ServerSession._recover`` did at 77e8bd5 — t-subsets holding the newest
                    share, ``itertools.combinations`` in stored order, at most 1,000 trials,
                    each trial one Lagrange interpolation + the evidence-key check (HKDF, HKDF,
                    AEAD open), the newest share being a real one.
  interpolate_at    one Lagrange interpolation of t shares (the unit of the old search's cost).

Then the number of real shares needed before the secret is released, for s = 0, 1, 3, 10, 30
synthetic shares stored, (a) all synthetic ones first (the order the issue reproduced, the
worst case for a lexicographic search) and (b) synthetic ones at random positions: the decoder
really decodes at every arrival (and is right only if a_0 is the secret); the old search is
simulated by indices (a trial succeeds iff its t shares are all real — equivalent up to a
1/ℓ chance), still at most 1,000 trials per arriving real share. "GS bound" is what a
Guruswami–Sudan list decoder (not built) would need in theory, order-independent.
Last, a long-lived account (3t synthetic shares stored before any real one): decoding all
stored shares against decoding only the most recent w shares for a few window sizes w (the
proposed bound on server time: at most one decode per window per opened voucher), and the
time of that bound when every window fails.

    .venv/bin/python bench/bench_recovery.py            # ~30 s on a shared 2-core machine
"""

from __future__ import annotations

import argparse
import itertools
import platform
import random
import statistics
import time
from collections.abc import Callable, Sequence

from blindmatch.protocol.hazmat.aead import open_sealed, seal
from blindmatch.protocol.hazmat.group import ORDER
from blindmatch.protocol.hazmat.kdf import hkdf_sha256
from blindmatch.protocol.hazmat.shamir import (
    Share,
    decode_shares,
    decoding_radius,
    evaluate,
    interpolate_at,
    make_shares,
    recover_secret,
)
from blindmatch.protocol.voucher import INFO_EVIDENCE, evidence_key

T = 30
SIZES = (30, 36, 43, 60, 90, 120, 200)
SYNTHETIC = (0, 1, 3, 10, 30)
MAX_TRIALS = 1_000
EVIDENCE_BYTES = 1_028  # E = 1,024 B and its length prefix
WINDOWS = (T, T + 2, 2 * T, 3 * T, 4 * T)  # the proposed bound: decode these most recent shares


def old_search(
    stored: Sequence[Share], newest: Share, t: int, check: Callable[[int], bool]
) -> tuple[int | None, int]:
    """77e8bd5's ``_recover``: (secret or None, trials used)."""
    for trial, subset in enumerate(itertools.combinations(stored, t - 1)):
        if trial >= MAX_TRIALS:
            return None, trial
        shares = [newest, *subset]
        if len({s.x for s in shares}) < t:
            continue
        secret = recover_secret(shares)
        if check(secret):
            return secret, trial + 1
    return None, MAX_TRIALS


def evidence_check(secret: int, rng: random.Random) -> Callable[[int], bool]:
    """The server's per-trial check: derive ek from a_0 and open the newest evidence layer."""
    salt = rng.randbytes(32)
    sealed = seal(
        hkdf_sha256(evidence_key(secret), salt=salt, info=INFO_EVIDENCE),
        rng.randbytes(EVIDENCE_BYTES),
    )

    def check(a0: int) -> bool:
        k = hkdf_sha256(evidence_key(a0), salt=salt, info=INFO_EVIDENCE)
        return open_sealed(k, sealed) is not None

    return check


def timed(fn: Callable[[], object], reps: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def decode_table(rng: random.Random, reps: int) -> None:
    print(f"\n## Decode time at t = {T} (median of {reps}) vs the old search on the same shares")
    print(
        f"{'n':>4} {'e max':>5} | {'decode e=max':>12} {'ok':>3} | {'decode random':>13} "
        f"{'None':>4} | {'old search e=max':>16} {'trials':>6} {'released':>8} | "
        f"{'old search random':>17}"
    )
    for n in SIZES:
        f = [rng.randrange(ORDER) for _ in range(T)]
        xs = [rng.randrange(1, ORDER) for _ in range(n)]
        shares = make_shares(f, xs)
        e = decoding_radius(n, T)
        for i in rng.sample(range(n - 1), e):  # the newest (last) share stays real
            shares[i] = Share(shares[i].x, rng.randrange(ORDER))
        noise = [Share(x, rng.randrange(ORDER)) for x in xs]

        dt, got = timed(lambda s=shares: decode_shares(s, T), reps)
        ok = got is not None and got.coefficients[0] == f[0]  # type: ignore[attr-defined]
        dr, none = timed(lambda s=noise: decode_shares(s, T), reps)
        check = evidence_check(f[0], rng)
        t0 = time.perf_counter()
        secret, trials = old_search(shares[:-1], shares[-1], T, check)
        old_t = time.perf_counter() - t0
        t0 = time.perf_counter()
        old_search(noise[:-1], noise[-1], T, check)
        old_r = time.perf_counter() - t0
        print(
            f"{n:>4} {e:>5} | {dt * 1e3:>9.1f} ms {'yes' if ok else 'NO':>3} | "
            f"{dr * 1e3:>10.1f} ms {verdict(n, none):>4} | "
            f"{old_t * 1e3:>13.0f} ms {trials:>6} {'yes' if secret == f[0] else 'no':>8} | "
            f"{old_r * 1e3:>14.0f} ms"
        )


def verdict(n: int, decoded: object) -> str:
    if n == T:  # no redundancy: any t points decode (to their interpolant); the key check decides
        return "n=t"
    return "yes" if decoded is None else "NO"


def johnson_r(s: int) -> int:
    """Real shares a Guruswami–Sudan list decoder (not built) would need: the least r with
    s < n − √(n(t − 1)), n = r + s (the Johnson radius; exact integer test)."""
    r = T
    while True:
        n = r + s
        # s < n − √(n(t−1))  ⇔  n − s > 0 and (n − s)² > n(t − 1)
        if (n - s) ** 2 > n * (T - 1):
            return r
        r += 1


def release_sim(rng: random.Random, s: int, synthetic_first: bool, r_max: int) -> tuple[int, int]:
    """First number of real shares at which (decoder, old search) release; 0 = not by r_max."""
    f = [rng.randrange(ORDER) for _ in range(T)]
    kinds = [False] * s + [True] * r_max  # True: real
    if not synthetic_first:
        rng.shuffle(kinds)
    stored: list[Share] = []
    real = 0
    dec_at = old_at = 0
    for is_real in kinds:
        x = rng.randrange(1, ORDER)
        stored.append(Share(x, evaluate(f, x) if is_real else rng.randrange(ORDER)))
        if not is_real:
            continue  # the old search checks the newest share's evidence: only a real one helps
        real += 1
        if not dec_at and len(stored) >= T:
            got = decode_shares(stored, T)
            if got is not None and got.coefficients[0] == f[0]:
                dec_at = real
        if not old_at:
            flags = kinds[: len(stored) - 1]  # the stored shares before the newest
            for trial, subset in enumerate(itertools.combinations(flags, T - 1)):
                if trial >= MAX_TRIALS:
                    break
                if all(subset):
                    old_at = real
                    break
        if dec_at and old_at:
            break
    return dec_at, old_at


def release_table(rng: random.Random, r_max: int) -> None:
    print(f"\n## Real shares needed to release at t = {T} (up to {r_max} real shares sent)")
    print(
        f"{'s':>3} {'t + s':>5} {'GS bound':>8} | {'synthetic first':^23} | "
        f"{'synthetic at random':^23}"
    )
    cols = f"{'decoder':>10} {'old search':>12}"
    print(f"{'':>3} {'':>5} {'(theory)':>8} | {cols} | {cols}")

    def fmt(v: int) -> str:
        return str(v) if v else f"> {r_max}"

    for s in SYNTHETIC:
        d1, o1 = release_sim(rng, s, True, r_max)
        d2, o2 = release_sim(rng, s, False, r_max)
        print(
            f"{s:>3} {T + s:>5} {johnson_r(s):>8} | {fmt(d1):>10} {fmt(o1):>12} | "
            f"{fmt(d2):>10} {fmt(o2):>12}"
        )


def first_release(ok: Callable[[int], bool], lo: int, hi: int) -> int:
    """Least r in [lo, hi] with ok(r), for ok monotone in r; 0 if none."""
    if not ok(hi):
        return 0
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def history_table(rng: random.Random, history: int, r_max: int) -> None:
    """A long-lived account: ``history`` synthetic shares stored, then real ones only."""
    f = [rng.randrange(ORDER) for _ in range(T)]
    old = [Share(rng.randrange(1, ORDER), rng.randrange(ORDER)) for _ in range(history)]
    real = make_shares(f, [rng.randrange(1, ORDER) for _ in range(r_max)])

    def released(r: int, windows: Sequence[int | None]) -> bool:
        stored = old + real[:r]
        for w in windows:
            got = decode_shares(stored if w is None else stored[-w:], T)
            if got is not None and got.coefficients[0] == f[0]:
                return True
        return False

    print(
        f"\n## A long-lived account: {history} synthetic shares stored (≈ {history // T} epochs "
        f"at t per epoch), then real ones"
    )
    print("(first r that releases; release is monotone in r here, so found by bisection)")
    strategies: list[tuple[str, Sequence[int | None]]] = [
        ("all stored shares", [None]),
        (f"most recent N = 4t = {4 * T}", [4 * T]),
        ("most recent 2t, 3t, 4t (first that decodes)", [2 * T, 3 * T, 4 * T]),
        ("most recent t, t+2, 2t, 3t, 4t (first that decodes)", WINDOWS),
    ]
    for name, windows in strategies:
        at = first_release(lambda r, w=windows: released(r, w), T, r_max)
        print(f"  {name:<52} r = {at if at else f'> {r_max}'}")
    print(f"  {'GS bound over all stored shares (theory)':<52} r = {johnson_r(history)}")
    noise = [Share(rng.randrange(1, ORDER), rng.randrange(ORDER)) for _ in range(4 * T)]
    dt, _ = timed(lambda: [decode_shares(noise[-w:], T) for w in WINDOWS], 3)
    print(
        f"  server time per voucher, windows {', '.join(map(str, WINDOWS))} all failing "
        f"(the bound): {dt * 1e3:.0f} ms"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--r-max", type=int, default=120, help="real shares sent at most")
    args = ap.parse_args()
    rng = random.Random(10)
    print(f"# bench_recovery on {platform.python_implementation()} {platform.python_version()}")
    f = [rng.randrange(ORDER) for _ in range(T)]
    few = make_shares(f, [rng.randrange(1, ORDER) for _ in range(T)])
    ti, _ = timed(lambda: interpolate_at(few, 0), 20)
    check = evidence_check(f[0], rng)
    tc, _ = timed(lambda: check(f[0]), 20)
    print(f"interpolate_at, {T} shares: {ti * 1e3:.2f} ms; evidence-key check: {tc * 1e3:.3f} ms")
    decode_table(rng, args.reps)
    release_table(rng, args.r_max)
    history_table(rng, 3 * T, 4 * T + 30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
