"""No match oracle (issue 10, finding 1): what the server answers must not depend on
whether a voucher's pair opened, except where the policy says so.

Under the block policy a confirmed match is refused; so is a voucher whose pair opened but
whose inner layers were changed (a match attempt with a forged voucher: refused, never
stored, kept by the integration for review). Under the threshold policy the sender must see
the same for every voucher: nothing raises after a pair opens, ``block`` is always False, and
the server alone learns (``tampered``) that an opened voucher was forged.
"""

from __future__ import annotations

import random

import pytest

from blindmatch.errors import InvalidVoucher
from blindmatch.protocol import OpenResult, ServerSession
from blindmatch.protocol.server import TAMPERED_MID
from blindmatch.protocol.voucher import Layout
from tests.protocol.conftest import World, flip_bits

rnd = random.Random(1010)


def inner_regions(world: World) -> dict[str, int]:
    """Byte offsets inside the layers a server reads only after a pair opened."""
    lay = Layout.for_table(world.prep.table)
    return {
        "share": lay.share_offset + 3,
        "share tag": lay.mid_offset - 1,
        "mid": lay.mid_offset + 7,
        "mid commitment": lay.mid_offset + 40,
        "mid tag": lay.ev_offset - 1,
        "evidence": lay.ev_offset + 5,
        "evidence tag": lay.total - 1,
    }


def outcome(server: ServerSession, voucher: bytes) -> tuple[str, bool]:
    """What an integration may show the sender: an error, or the policy's block bit."""
    try:
        r = server.open(voucher, account=f"acct-{rnd.random()}")
    except InvalidVoucher:
        return ("error", False)
    return ("answer", r.block)


def flipped(voucher: bytes, i: int) -> bytes:
    bad = bytearray(voucher)
    bad[i] ^= 0x01
    return bytes(bad)


@pytest.mark.parametrize("policy", ["block", "threshold"])
def test_no_error_depends_on_whether_a_pair_opened(
    policy: str, block_world: World, threshold_world: World
) -> None:
    """The review's attack: flip a byte of C_ev (or C_mid, C_share) and watch for an error.
    Listed and unlisted images must get the same kind of answer (no error either way)."""
    world = block_world if policy == "block" else threshold_world
    client = world.new_client()
    server = world.new_server()
    for name, i in inner_regions(world).items():
        for k in range(3):
            listed = client._build(world.listed[k], None, b"", bytes(32), synthetic=False)
            unlisted = client._build(rnd.randbytes(32), None, b"", bytes(32), synthetic=False)
            got_listed = outcome(server, flipped(listed, i))
            got_unlisted = outcome(server, flipped(unlisted, i))
            assert got_listed[0] == got_unlisted[0] == "answer", name
            if policy == "threshold":  # the sender must see exactly the same
                assert got_listed == got_unlisted == ("answer", False), name
            else:  # block: a match attempt with a forged voucher is refused as a match
                assert got_listed == ("answer", True) and got_unlisted == ("answer", False), name


def test_block_refuses_a_forged_match_attempt_and_stores_nothing(block_world: World) -> None:
    server = block_world.new_server()
    lay = Layout.for_table(block_world.prep.table)
    v = block_world.client.make_voucher(block_world.listed[50], evidence=b"ev")
    # C_mid's AAD covers every other byte, so a change anywhere fails the middle layer (a
    # client that re-seals C_mid reaches the layers below: tests/protocol/test_opening.py)
    for i in (lay.share_offset + 3, lay.mid_offset + 7, lay.ev_offset + 5):
        r = server.open(flipped(v, i), account="forger")
        assert r.opened and r.block and r.tampered == TAMPERED_MID and not r.released
    assert server.account_state("forger") == (0, False)
    assert server.open(v, account="forger").matched  # the honest voucher still counts


def test_near_miss_with_a_forged_layer_is_refused_under_block(block_world: World) -> None:
    """The price of finding 1's rule, stated in docs/protocol.md §8: a sender that forges its
    own voucher learns that one of its probe keys is listed even when d > 31 — and every such
    probe is refused as a match attempt the integration records against the account."""
    off_sample = sorted(set(range(256)) - set(block_world.scheme.positions[0]))
    near = flip_bits(block_world.listed[51], rnd.sample(off_sample, 50))
    v = block_world.client.make_voucher(near)
    server = block_world.new_server()
    honest = server.open(v, account="n")
    assert honest.opened and not honest.matched and not honest.block  # a plain near miss
    lay = Layout.for_table(block_world.prep.table)
    forged = server.open(flipped(v, lay.mid_offset + 7), account="n")
    assert forged.block and forged.tampered == TAMPERED_MID


def test_threshold_forged_vouchers_are_told_to_the_server_only(threshold_world: World) -> None:
    client = threshold_world.new_client()
    server = threshold_world.new_server()
    lay = Layout.for_table(threshold_world.prep.table)
    real = client._build(threshold_world.listed[5], None, b"", bytes(32), synthetic=False)
    synthetic = client._build(rnd.randbytes(32), None, b"", bytes(32), synthetic=True)
    for v in (real, synthetic):
        r: OpenResult = server.open(flipped(v, lay.share_offset + 3), account="t")
        assert r.opened and r.tampered == TAMPERED_MID and not r.block and not r.matched
    assert server.account_state("t") == (0, False)


def test_replays_are_answered_as_the_first_time_and_count_nothing(
    block_world: World, threshold_world: World
) -> None:
    """Finding 8: a replay of an opened voucher no longer raises while a replay of an unopened
    one passes; each gets its first answer again, and nothing counts twice."""
    server = block_world.new_server()
    listed = block_world.client.make_voucher(block_world.listed[52])
    unlisted = block_world.client.make_voucher(rnd.randbytes(32))
    for v in (listed, unlisted):
        first = server.open(v, account="r")
        again = server.open(v, account="r")
        assert first.block == again.block
    assert server.account_state("r") == (1, False)
    tserver = threshold_world.new_server()
    tclient = threshold_world.new_client()
    for v in (
        tclient._build(threshold_world.listed[6], None, b"", bytes(32), synthetic=False),
        tclient._build(rnd.randbytes(32), None, b"", bytes(32), synthetic=False),
    ):
        assert not tserver.open(v, account="r").block
        assert not tserver.open(v, account="r").block
    assert tserver.account_state("r") == (1, False)


def test_a_point_that_does_not_decode_is_malformed_whatever_opened(block_world: World) -> None:
    """Every pair and R are checked for every voucher (not only up to the pair that opened),
    so an invalid point is an error for listed and unlisted images alike."""
    lay = Layout.for_table(block_world.prep.table)
    for pdq in (block_world.listed[53], rnd.randbytes(32)):
        v = block_world.client.make_voucher(pdq)
        last_q = lay.r_offset - 80
        for o in (last_q, lay.r_offset):
            bad = v[:o] + b"\xff" * 32 + v[o + 32 :]
            with pytest.raises(InvalidVoucher):
                block_world.new_server().open(bad, account="p")
