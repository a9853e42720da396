"""Vouchers and the server: properties 1 and 3 of the brief, both policies."""

from __future__ import annotations

import random

import pytest

from blindmatch.errors import InvalidVoucher
from blindmatch.protocol import AccountSecret, ClientSession, Policy, ServerSession, verify_table
from blindmatch.protocol.hazmat import group
from blindmatch.protocol.lookup import PDQ_BITS, hamming
from blindmatch.protocol.voucher import HEADER_BYTES, PAIR_BYTES, Layout, voucher_is_synthetic
from tests.protocol.conftest import World, flip_bits
from tests.protocol.kat_fixture import trust

rnd = random.Random(7)


def confidence() -> list[float]:
    return [rnd.random() for _ in range(PDQ_BITS)]


def near_miss(world: World, pdq: bytes, distance: int) -> bytes:
    """A hash ``distance`` bits from ``pdq`` whose lookup key is identical (flips off-sample)."""
    off_sample = sorted(set(range(PDQ_BITS)) - set(world.scheme.positions[0]))
    return flip_bits(pdq, rnd.sample(off_sample, distance))


def regions(world: World, voucher: bytes) -> dict[str, int]:
    lay = Layout.for_table(world.prep.table)
    return {
        "magic": 0,
        "version": 4,
        "n_pairs": 7,
        "table_id": 10,
        "voucher_id": HEADER_BYTES + 3,
        "first_q": lay.pairs_offset + 5,
        "first_w": lay.pairs_offset + 40,
        "last_pair": lay.r_offset - 1,
        "r": lay.r_offset + 3,
        "share": lay.share_offset + 5,
        "share_tag": lay.mid_offset - 1,
        "mid": lay.mid_offset + 10,
        "mid_tag": lay.ev_offset - 1,
        "evidence": lay.ev_offset + 3,
        "last": len(voucher) - 1,
    }


# --- property 1: nothing about non-matches --------------------------------------------------


def test_non_matching_vouchers_never_open(block_world: World) -> None:
    for _ in range(12):
        v = block_world.client.make_voucher(rnd.randbytes(32), confidence=confidence())
        r = block_world.server.open(v, account="u")
        assert not r.opened and not r.matched and r.matches == () and r.released == ()


def test_every_voucher_has_the_same_size_and_structure(block_world: World) -> None:
    c = block_world.client
    listed = block_world.listed[0]
    vouchers = [
        c.make_voucher(listed, confidence=confidence(), evidence=b"e" * 200),
        c.make_voucher(listed),
        c.make_voucher(rnd.randbytes(32), confidence=confidence()),
        c.make_voucher(rnd.randbytes(32)),
        c.make_voucher(near_miss(block_world, listed, 50), evidence=b""),
    ]
    lay = Layout.for_table(block_world.prep.table)
    assert {len(v) for v in vouchers} == {c.voucher_bytes} == {lay.total}
    assert len({v[:HEADER_BYTES] for v in vouchers}) == 1
    for v in vouchers:
        for i in range(lay.n_pairs):
            o = lay.pairs_offset + PAIR_BYTES * i
            assert group.is_valid_point(v[o : o + 32])


def test_default_voucher_fits_the_budget(block_world: World) -> None:
    assert block_world.scheme.n_probes == 37
    assert block_world.client.voucher_bytes <= 12 * 1024


def test_two_vouchers_of_one_image_share_nothing_beyond_the_header(block_world: World) -> None:
    pdq, conf = block_world.listed[1], confidence()
    a = block_world.client.make_voucher(pdq, confidence=conf, evidence=b"same")
    b = block_world.client.make_voucher(pdq, confidence=conf, evidence=b"same")
    assert a[:HEADER_BYTES] == b[:HEADER_BYTES]
    grams = {a[i : i + 8] for i in range(HEADER_BYTES, len(a) - 7)}
    assert not any(b[i : i + 8] in grams for i in range(HEADER_BYTES, len(b) - 7))
    # ...and both open to the same entry
    ra = block_world.new_server().open(a, account="x")
    rb = block_world.new_server().open(b, account="x")
    assert ra.matches == rb.matches and ra.matched


# --- property 3: matches only, confirmed by distance ------------------------------------------


def test_listed_image_opens_and_names_its_entry(block_world: World) -> None:
    server = block_world.new_server()
    for i in (2, 3):
        r = server.open(block_world.client.make_voucher(block_world.listed[i]), account="m")
        assert r.opened and r.matched
        assert r.matches[0].distance == 0
        assert {ref.entry_id for ref in r.matches[0].refs} == {f"a{i}", f"b{i}"}


def test_near_duplicate_within_31_matches_with_its_distance(block_world: World) -> None:
    pdq = near_miss(block_world, block_world.listed[4], 20)
    r = block_world.new_server().open(block_world.client.make_voucher(pdq), account="m")
    assert r.matched and r.matches[0].distance == 20


def test_multi_probe_recovers_flipped_weak_bits(block_world: World) -> None:
    listed = block_world.listed[5]
    sample = block_world.scheme.positions[0]
    flipped = flip_bits(listed, [sample[3], sample[40]])
    conf = [1.0] * PDQ_BITS
    conf[sample[3]] = conf[sample[40]] = 0.01  # the client sees these two as unsure
    server = block_world.new_server()
    assert not server.open(block_world.client.make_voucher(flipped), account="p").opened
    r = server.open(block_world.client.make_voucher(flipped, confidence=conf), account="p")
    assert r.matched and r.matches[0].distance == 2


def test_near_miss_opens_as_candidate_but_is_not_a_match(block_world: World) -> None:
    pdq = near_miss(block_world, block_world.listed[6], 45)
    assert hamming(pdq, block_world.listed[6]) == 45
    server = block_world.new_server()
    r = server.open(block_world.client.make_voucher(pdq, evidence=b"private"), account="n")
    assert r.opened and not r.matched and r.matches == () and r.released == ()
    assert server.account_state("n") == (0, False)  # it did not count towards t


def test_evidence_opens_at_t_confirmed_matches_and_not_before(block_world: World) -> None:
    server = block_world.new_server()
    client = block_world.new_client()
    results = []
    for i in range(3):  # t = 3
        v = client.make_voucher(block_world.listed[10 + i], evidence=f"thumb{i}".encode())
        results.append(server.open(v, account="acct"))
        noise = client.make_voucher(rnd.randbytes(32), evidence=b"never")
        assert not server.open(noise, account="acct").opened
    assert [r.released for r in results[:2]] == [(), ()]
    released = results[2].released
    assert sorted(r.evidence for r in released) == [b"thumb0", b"thumb1", b"thumb2"]
    assert all(r.matches for r in released)
    # after t, a new match is released at once
    later = server.open(client.make_voucher(block_world.listed[20], evidence=b"t3"), account="acct")
    assert [r.evidence for r in later.released] == [b"t3"]


def test_accounts_do_not_pool_shares(block_world: World) -> None:
    server = block_world.new_server()
    clients = [block_world.new_client() for _ in range(3)]
    for i, c in enumerate(clients):
        r = server.open(c.make_voucher(block_world.listed[30 + i]), account=f"u{i}")
        assert r.matched and not r.released
    # the same three vouchers' shares filed under one account would still not interpolate
    mixed = block_world.new_server()
    out = [mixed.open(c.make_voucher(block_world.listed[33]), account="one") for c in clients]
    assert not any(r.released for r in out) and mixed.account_state("one") == (3, False)


def test_a_replayed_voucher_does_not_count_twice(block_world: World) -> None:
    server = block_world.new_server()
    v = block_world.client.make_voucher(block_world.listed[40])
    assert server.open(v, account="r").matched
    again = server.open(v, account="r")
    assert again.replayed and again.block and not again.matched and not again.released
    assert server.account_state("r") == (1, False)


# --- tampering and hostile input ------------------------------------------------------------


#: Regions where a flipped byte makes the voucher malformed on its face (no secret needed).
ON_ITS_FACE = {"magic", "version", "n_pairs", "table_id"}


def test_tampered_vouchers_are_malformed_closed_or_refused(block_world: World) -> None:
    """A changed byte anywhere: the voucher is malformed on its face, or no pair opens, or
    (the pair opened, an inner layer failed) it is refused as a match attempt — it never
    opens cleanly, and nothing is stored."""
    v = block_world.client.make_voucher(block_world.listed[41], evidence=b"x")
    seen = set()
    for name, i in regions(block_world, v).items():
        bad = bytearray(v)
        bad[i] ^= 0x01
        server = block_world.new_server()
        try:
            r = server.open(bytes(bad), account="t")
        except InvalidVoucher:
            # header fields, or a point (Q, R) that no longer decodes
            assert name in ON_ITS_FACE | {"first_q", "last_pair", "r"}, name
            continue
        assert name not in ON_ITS_FACE, name
        assert not r.opened or (r.tampered and r.block), name
        assert server.account_state("t") == (0, False), name
        seen.add("tampered" if r.opened else "closed")
    assert seen == {"tampered", "closed"}


def test_hostile_and_truncated_vouchers_raise_only_invalid_voucher(block_world: World) -> None:
    v = block_world.client.make_voucher(rnd.randbytes(32))
    server = block_world.server
    lay = Layout.for_table(block_world.prep.table)
    cases = [v[:n] for n in range(0, len(v), 211)] + [v + b"\x00", b"", rnd.randbytes(len(v))]
    identity_q = v[: lay.pairs_offset] + bytes(32) + v[lay.pairs_offset + 32 :]
    non_canonical = v[: lay.pairs_offset] + b"\xff" * 32 + v[lay.pairs_offset + 32 :]
    cases += [identity_q, non_canonical, bytearray(v)]  # type: ignore[list-item]
    for bad in cases:
        with pytest.raises(InvalidVoucher):
            server.open(bad, account="h")


def test_voucher_for_another_table_is_rejected(block_world: World, threshold_world: World) -> None:
    v = threshold_world.client.make_voucher(threshold_world.listed[0])
    with pytest.raises(InvalidVoucher):
        block_world.server.open(v, account="o")


# --- threshold policy: synthetic vouchers ---------------------------------------------------


def _synthetic(client: ClientSession, pdq: bytes) -> bytes:
    return client._build(pdq, None, b"", bytes(32), synthetic=True)


def _real(client: ClientSession, pdq: bytes, evidence: bytes = b"") -> bytes:
    return client._build(pdq, None, evidence, bytes(32), synthetic=False)


def test_synthetic_vouchers_look_like_real_matches_before_t(threshold_world: World) -> None:
    client = threshold_world.new_client()
    server = threshold_world.new_server()
    real = _real(client, threshold_world.listed[0], b"r0")
    fake = _synthetic(client, rnd.randbytes(32))
    assert len(real) == len(fake) and real[:HEADER_BYTES] == fake[:HEADER_BYTES]
    lay = Layout.for_table(threshold_world.prep.table)
    for v in (real, fake):
        assert all(
            group.is_valid_point(v[o : o + 32])
            for o in range(lay.pairs_offset, lay.mid_offset, PAIR_BYTES)
        )
    r_real, r_fake = server.open(real, account="a"), server.open(fake, account="a")
    # the server sees the same thing for both: opened, nothing matched, nothing released
    strip = lambda r: (r.opened, r.matched, r.matches, r.released)  # noqa: E731
    assert strip(r_real) == strip(r_fake) == (True, False, (), ())
    assert server.account_state("a") == (2, False)


def test_threshold_releases_real_evidence_and_drops_synthetic(threshold_world: World) -> None:
    client = threshold_world.new_client()
    server = threshold_world.new_server()
    stream = [_synthetic(client, rnd.randbytes(32)) for _ in range(2)]
    stream += [_real(client, threshold_world.listed[i], f"ev{i}".encode()) for i in range(3)]
    stream.append(_real(client, rnd.randbytes(32), b"unlisted"))
    rnd.shuffle(stream)
    released = []
    for v in stream:
        released += server.open(v, account="b").released
    assert sorted(r.evidence for r in released) == [b"ev0", b"ev1", b"ev2"]
    assert server.account_state("b")[1]


def test_t_minus_one_real_plus_synthetic_release_nothing(threshold_world: World) -> None:
    client = threshold_world.new_client()
    server = threshold_world.new_server()
    stream = [_real(client, threshold_world.listed[i], b"e") for i in range(2)]
    stream += [_synthetic(client, rnd.randbytes(32)) for _ in range(3)]
    for v in stream:
        assert server.open(v, account="c").released == ()
    assert server.account_state("c") == (5, False)


def test_synthetic_rate_is_applied_by_make_voucher(threshold_world: World) -> None:
    # the seed's coin: 5% synthetic, as the table says (20,000 seeds: sd 0.15%)
    verified = verify_table(threshold_world.prep.table.to_bytes(), threshold_world.signed, trust())
    seeds = [random.Random(99).randbytes(32)] + [rnd.randbytes(32) for _ in range(19_999)]
    coins = [voucher_is_synthetic(verified, s) for s in seeds]
    assert 0.044 <= sum(coins) / len(coins) <= 0.056
    # ...and make_voucher obeys it: an unlisted image opens exactly when the coin says synthetic
    client = ClientSession(verified, AccountSecret.generate())
    server = threshold_world.new_server()
    fake = next(s for s, c in zip(seeds, coins, strict=True) if c)
    real = next(s for s, c in zip(seeds, coins, strict=True) if not c)
    unlisted = rnd.randbytes(32)
    assert server.open(client.make_voucher(unlisted, opening_seed=fake), account="s").opened
    assert not server.open(client.make_voucher(unlisted, opening_seed=real), account="s").opened


def test_block_policy_never_makes_synthetic_vouchers(block_world: World) -> None:
    with pytest.raises(ValueError):
        _synthetic(block_world.client, rnd.randbytes(32))
    assert block_world.prep.table.synthetic_ppm == 0
    assert block_world.prep.table.policy is Policy.BLOCK


def test_client_rejects_bad_inputs(block_world: World) -> None:
    c = block_world.client
    for kwargs in ({"evidence": b"x" * 257}, {"commitment": b"short"}, {"confidence": [0.1] * 3}):
        with pytest.raises(ValueError):
            c.make_voucher(block_world.listed[0], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        c.make_voucher(b"short")
    with pytest.raises(TypeError):
        ClientSession(block_world.prep.table, AccountSecret.generate())  # type: ignore[arg-type]


def test_server_refuses_a_key_for_another_table(block_world: World, threshold_world: World) -> None:
    from blindmatch.errors import InvalidKey

    with pytest.raises(InvalidKey):
        ServerSession(block_world.prep.server_secret, threshold_world.prep.table)
