"""Properties of the primitives: group laws, Shamir secrecy, RNG plumbing."""

from __future__ import annotations

import random

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from blindmatch.protocol.hazmat import group
from blindmatch.protocol.hazmat.rng import SeededRng, randbelow, shuffle
from blindmatch.protocol.hazmat.shamir import (
    Share,
    evaluate,
    interpolate_at,
    make_shares,
    recover_secret,
)

L = group.ORDER
scalars = st.integers(min_value=1, max_value=L - 1)


def sc(v: int) -> bytes:
    return group.scalar_from_int(v)


@settings(max_examples=15, deadline=None)
@given(scalars, scalars)
def test_scalar_mult_composes(a: int, b: int) -> None:
    assume((a + b) % L != 0)  # a zero scalar is refused (tested below)
    g = group.GENERATOR
    assert group.mul(sc(a), group.mul(sc(b), g)) == group.base_mul(sc(a * b))
    assert group.add(group.base_mul(sc(a)), group.base_mul(sc(b))) == group.base_mul(sc(a + b))


def test_psi_pair_opens_only_on_the_listed_point() -> None:
    """The outer-layer algebra: α·Q = S iff the slot holds α·H(key)."""
    alpha, beta, gamma = (group.random_scalar() for _ in range(3))
    h = group.hash_to_group(b"t", b"key")
    big_l = group.base_mul(alpha)
    q = group.add(group.mul(beta, h), group.base_mul(gamma))
    listed_slot = group.mul(alpha, h)
    other_slot = group.mul(alpha, group.hash_to_group(b"t", b"other"))
    for slot, opens in ((listed_slot, True), (other_slot, False), (group.random_point(), False)):
        s = group.add(group.mul(beta, slot), group.mul(gamma, big_l))
        assert (group.mul(alpha, q) == s) is opens


def test_zero_scalar_is_refused() -> None:
    with pytest.raises(ValueError):
        group.base_mul(bytes(32))
    with pytest.raises(ValueError):
        group.mul(bytes(32), group.GENERATOR)


@settings(max_examples=20, deadline=None)
@given(st.lists(scalars, min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_any_t_shares_recover_and_t_minus_1_do_not(coefs: list[int], r: random.Random) -> None:
    t = len(coefs)  # leading coefficient non-zero: the polynomial has degree exactly t − 1
    shares = make_shares(coefs, r.sample(range(1, 10**9), t + 3))
    for _ in range(4):
        assert recover_secret(r.sample(shares, t)) == coefs[0]
    if t > 1:
        # interpolating t−1 shares gives a polynomial of lower degree: wrong secret
        assert recover_secret(shares[: t - 1]) != coefs[0]


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=2, max_value=6), st.randoms(use_true_random=False))
def test_t_minus_1_shares_are_consistent_with_every_secret(t: int, r: random.Random) -> None:
    """For any candidate secret there is a degree-(t−1) polynomial through it and the shares."""
    coefs = [r.randrange(L) for _ in range(t)]
    seen = make_shares(coefs, r.sample(range(1, 10**9), t - 1))
    for candidate in [0, 1, coefs[0], r.randrange(L), L - 1]:
        anchor = [*seen, _zero_share(candidate)]
        # the unique polynomial of degree ≤ t−1 through (0, candidate) and the seen shares
        for s in seen:
            assert interpolate_at(anchor, s.x) == s.y
        assert interpolate_at(anchor, 0) == candidate


def _zero_share(secret: int) -> Share:
    # a share object cannot have x = 0 (that is the secret), so build the anchor point directly
    s = object.__new__(Share)
    object.__setattr__(s, "x", 0)
    object.__setattr__(s, "y", secret % L)
    return s


def test_share_repr_hides_y_and_checks_range() -> None:
    s = Share(5, 123456789)
    assert "123456789" not in repr(s)
    with pytest.raises(ValueError):
        Share(0, 1)
    with pytest.raises(ValueError):
        Share(1, L)


def test_evaluate_is_horner() -> None:
    assert evaluate([3, 2, 1], 10) == 123


def test_seeded_rng_is_deterministic_and_split_invariant() -> None:
    a, b = SeededRng(b"s"), SeededRng(b"s")
    assert a(10) + a(100) + a(3) == b(113)
    assert "s" not in repr(a).replace("SeededRng", "").replace("test", "")


def test_randbelow_and_shuffle() -> None:
    rng = SeededRng(b"r")
    counts = [0] * 5
    for _ in range(2000):
        counts[randbelow(rng, 5)] += 1
    assert all(300 < c < 500 for c in counts)
    items = list(range(50))
    shuffle(rng, items)
    assert sorted(items) == list(range(50)) and items != list(range(50))


def test_drbg_streams_are_deterministic_separated_and_chunking_free() -> None:
    from blindmatch.protocol.hazmat.drbg import Drbg

    seed = bytes(range(32))
    whole = Drbg(seed, salt=b"h", label=b"a")(1000)
    parts = Drbg(seed, salt=b"h", label=b"a")
    assert b"".join(parts(n) for n in (1, 0, 63, 64, 872)) == whole
    others = [
        Drbg(seed, salt=b"h", label=b"b")(1000),
        Drbg(seed, salt=b"i", label=b"a")(1000),
        Drbg(bytes(32), salt=b"h", label=b"a")(1000),
    ]
    assert len({whole, *others}) == 4
    assert 0.45 < sum(bin(b).count("1") for b in whole) / 8000 < 0.55
    for bad in (bytes(31), "x" * 32):
        with pytest.raises(ValueError):
            Drbg(bad, salt=b"", label=b"a")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Drbg(seed, salt=b"", label=b"a")(-1)
