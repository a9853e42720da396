"""Threshold recovery among synthetic shares (issue 10, finding 3): the server finds the
account's polynomial by Reed–Solomon decoding, with bounded work per voucher.

The review's case: at t = 30, 3 synthetic vouchers then 40 real matches released nothing
(a lexicographic subset search capped at 1,000 trials), and each open took up to 2.2 s.
"""

from __future__ import annotations

import random

import pytest

from blindmatch.protocol import Policy
from tests.protocol.conftest import World, make_world

rnd = random.Random(303)


@pytest.fixture(scope="module")
def world30() -> World:
    return make_world(Policy.THRESHOLD, threshold=30, synthetic_ppm=10_000)


def send(world: World, synthetic: int, real: int, order: str = "synthetic first") -> list[int]:
    """Open ``synthetic`` synthetic and ``real`` real vouchers of one account on a fresh
    server; return, for each real voucher in order, how many evidence releases it made."""
    client, server = world.new_client(), world.new_server()
    kinds = ["s"] * synthetic + ["r"] * real
    if order == "random":
        rnd.shuffle(kinds)
    out, k = [], 0
    for kind in kinds:
        if kind == "s":
            v = client._build(rnd.randbytes(32), None, b"", bytes(32), synthetic=True)
        else:
            v = client._build(world.listed[k % len(world.listed)], None, b"ev%d" % k, bytes(32),
                              synthetic=False)  # fmt: skip
            k += 1
        r = server.open(v, account="a")
        assert not r.tampered
        if kind == "r":
            out.append(len(r.released))
    return out


@pytest.mark.parametrize("order", ["synthetic first", "random"])
def test_three_synthetic_and_forty_real_release_every_real_one(world30: World, order: str) -> None:
    """The review's case (synthetic first) and the same vouchers in random order: unique
    decoding guarantees release once a window's real shares reach t plus its synthetic
    ones (at most t + 3 = 33 real here); synthetic first, the window of the last t shares
    holds only real ones at r = 30."""
    releases = send(world30, synthetic=3, real=40, order=order)
    first = next(i for i, n in enumerate(releases) if n) + 1  # real vouchers sent by then
    assert 30 <= first <= 33
    if order == "synthetic first":
        assert first == 30
    assert releases[first - 1] == first  # every real voucher so far, none of the synthetic
    assert sum(releases) == 40  # and each later one at once


def test_a_burst_after_a_synthetic_history_releases_at_t(world30: World) -> None:
    """90 synthetic shares (three epochs at t per epoch) then real matches: decoding every
    stored share would need 120 real ones; the window of the last t releases at 30."""
    releases = send(world30, synthetic=90, real=30)
    assert releases[-1] == 30 and sum(releases) == 30


def test_fewer_than_t_real_shares_never_release(world30: World) -> None:
    assert sum(send(world30, synthetic=20, real=29, order="random")) == 0
