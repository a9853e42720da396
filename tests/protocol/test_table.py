"""Tables, governance and manifests: properties 2 and 4 of the brief."""

from __future__ import annotations

import hashlib
import json
import math
import random

import pytest

from blindmatch.errors import InvalidKey, InvalidManifest, InvalidTable, ProtocolError
from blindmatch.protocol import (
    BitSamplingLSH,
    HotlineList,
    ServerSecret,
    SignedManifest,
    Table,
    TrustPolicy,
    prepare_table,
    select_entries,
    verify_table,
)
from blindmatch.protocol.hazmat import group
from blindmatch.protocol.hazmat.cuckoo import cuckoo_place, slot_positions
from blindmatch.protocol.hazmat.rng import SeededRng
from blindmatch.protocol.table import KEY_DOMAIN
from tests.protocol.conftest import World
from tests.protocol.kat_fixture import sign_all, trust

P = [bytes([i]) * 32 for i in range(10)]


def hl(hotline: str, where: str, pdqs: list[bytes], name: str = "l") -> HotlineList:
    return HotlineList(
        hotline, where, name, "1", tuple((f"{hotline}{i}", p) for i, p in enumerate(pdqs))
    )


# --- governance -------------------------------------------------------------------------


def test_only_hashes_in_two_hotlines_lists_are_included() -> None:
    lists = [hl("HL-A", "GB", P[:5]), hl("HL-B", "US", P[3:8]), hl("HL-A", "GB", P[8:], "x")]
    got = select_entries(lists)
    assert [e.pdq for e in got] == [P[3], P[4]]
    assert {r.hotline for r in got[0].refs} == {"HL-A", "HL-B"}


def test_two_lists_of_one_hotline_do_not_count_twice() -> None:
    lists = [hl("HL-A", "GB", P[:5], "one"), hl("HL-A", "GB", P[:5], "two")]
    assert select_entries(lists) == []
    assert len(select_entries(lists, min_hotlines=1)) == 5


def test_distinct_jurisdictions_are_required() -> None:
    lists = [hl("HL-A", "GB", P[:5]), hl("HL-C", "GB", P[:5])]
    assert select_entries(lists) == []
    assert len(select_entries(lists, distinct_jurisdictions=False)) == 5


def test_min_hotlines_is_configurable() -> None:
    lists = [hl("HL-A", "GB", P[:5]), hl("HL-B", "US", P[:4]), hl("HL-C", "DE", P[:3])]
    assert len(select_entries(lists, min_hotlines=3)) == 3


# --- manifest verification --------------------------------------------------------------


def test_valid_table_verifies(block_world: World) -> None:
    vt = verify_table(block_world.prep.table.to_bytes(), block_world.signed, trust())
    assert vt.manifest.n_entries == len(block_world.listed)
    assert vt.manifest.table_digest == block_world.prep.table.digest


def test_table_signed_by_one_hotline_only_is_refused(block_world: World) -> None:
    one = sign_all(block_world.prep, ["HL-A"])
    with pytest.raises(InvalidManifest):
        verify_table(block_world.prep.table.to_bytes(), one, trust())


def test_table_from_one_hotline_is_refused_even_if_fully_signed() -> None:
    prep = prepare_table([hl("HL-A", "GB", P[:5])], min_hotlines=1, rng=SeededRng(b"one"))
    signed = sign_all(prep, ["HL-A"])
    with pytest.raises(InvalidManifest):
        verify_table(prep.table.to_bytes(), signed, trust())
    # ...and a client that asks for one hotline accepts it: the refusal above is the policy
    verify_table(prep.table.to_bytes(), signed, trust(min_hotlines=1))


def test_platform_signature_is_required(block_world: World) -> None:
    sm = SignedManifest.from_bytes(block_world.signed)
    no_platform = SignedManifest(
        sm.manifest, tuple(s for s in sm.signatures if s.role != "platform")
    )
    with pytest.raises(InvalidManifest):
        verify_table(block_world.prep.table.to_bytes(), no_platform.to_bytes(), trust())


def test_untrusted_or_misplaced_hotline_is_refused(block_world: World) -> None:
    t = trust()
    only_a = TrustPolicy(t.platform_key, {"HL-A": t.hotlines["HL-A"]}, t.log_check)
    wrong_place = TrustPolicy(
        t.platform_key,
        {**t.hotlines, "HL-B": type(t.hotlines["HL-B"])(t.hotlines["HL-B"].public_key, "FR")},
        t.log_check,
    )
    swapped = TrustPolicy(
        t.platform_key,
        {"HL-A": t.hotlines["HL-B"], "HL-B": t.hotlines["HL-A"]},
        t.log_check,
    )
    for policy in (only_a, wrong_place, swapped):
        with pytest.raises(InvalidManifest):
            verify_table(block_world.prep.table.to_bytes(), block_world.signed, policy)


def test_transparency_log_seam_can_refuse(block_world: World) -> None:
    seen: list[bytes] = []

    def not_in_log(signed: bytes) -> None:
        seen.append(signed)
        raise LookupError("absent from the log")

    t = trust()
    policy = TrustPolicy(t.platform_key, t.hotlines, not_in_log)
    with pytest.raises(InvalidManifest):
        verify_table(block_world.prep.table.to_bytes(), block_world.signed, policy)
    assert seen == [block_world.signed]


def test_every_manifest_byte_flip_is_refused(block_world: World) -> None:
    table = block_world.prep.table.to_bytes()
    signed = block_world.signed
    for i in range(0, len(signed), max(1, len(signed) // 400)):
        bad = bytearray(signed)
        bad[i] ^= 0x01
        with pytest.raises(InvalidManifest):
            verify_table(table, bytes(bad), trust())


def test_every_table_region_flip_is_refused(block_world: World) -> None:
    table = block_world.prep.table.to_bytes()
    # header fields, cuckoo seed, server point, scheme params, first/last slot
    for i in [0, 4, 5, 6, 9, 13, 17, 20, 51, 52, 83, 84, 86, 100, 130, len(table) - 1]:
        bad = bytearray(table)
        bad[i] ^= 0x01
        with pytest.raises((InvalidManifest, InvalidTable)):
            verify_table(bytes(bad), block_world.signed, trust())
    with pytest.raises(InvalidManifest):
        verify_table(table + b"\x00" * 32, block_world.signed, trust())


def test_manifest_field_changes_break_signatures(block_world: World) -> None:
    d = json.loads(block_world.signed)
    for key, value in [("threshold", 1), ("policy", "threshold"), ("min_hotlines", 1),
                       ("issued", "tomorrow"), ("sequence", 7)]:  # fmt: skip
        bad = json.loads(json.dumps(d))
        bad["manifest"][key] = value
        raw = json.dumps(bad, sort_keys=True, separators=(",", ":")).encode()
        with pytest.raises(InvalidManifest):
            verify_table(block_world.prep.table.to_bytes(), raw, trust())


@pytest.mark.parametrize(
    "raw",
    [b"", b"{}", b"[]", b"null", b"\xff\xfe", b'{"format":1}', b"{" * 5000, b"1e999",
     b'{"a":1,"a":2}', b"x" * (2 << 20)],
)  # fmt: skip
def test_hostile_manifests_raise_the_protocol_error(raw: bytes, block_world: World) -> None:
    with pytest.raises(InvalidManifest):
        verify_table(block_world.prep.table.to_bytes(), raw, trust())


# --- table and server-key parsing -------------------------------------------------------


def test_truncated_tables_raise_invalid_table(block_world: World) -> None:
    table = block_world.prep.table.to_bytes()
    for n in list(range(0, 120)) + list(range(120, len(table), 97)):
        with pytest.raises(InvalidTable):
            Table.from_bytes(table[:n])
    assert Table.from_bytes(table).digest == block_world.prep.table.digest


def test_random_bytes_raise_invalid_table() -> None:
    rnd = random.Random(3)
    for n in (0, 1, 90, 200, 5000):
        with pytest.raises(InvalidTable):
            Table.from_bytes(rnd.randbytes(n))
    with pytest.raises(InvalidTable):
        Table.from_bytes(b"BMTB\x01" + bytes(300))


def test_server_key_round_trip_and_truncation(block_world: World) -> None:
    raw = block_world.prep.server_secret.to_bytes()
    assert ServerSecret.from_bytes(raw) == block_world.prep.server_secret
    for n in list(range(0, 80)) + list(range(80, len(raw), 53)):
        with pytest.raises(InvalidKey):
            ServerSecret.from_bytes(raw[:n])
    with pytest.raises(InvalidKey):
        ServerSecret.from_bytes(raw + b"\x00")
    zero_alpha = raw[:5] + bytes(32) + raw[37:]
    with pytest.raises(ProtocolError):
        ServerSecret.from_bytes(zero_alpha)


def test_secrets_stay_out_of_repr(block_world: World) -> None:
    s = block_world.prep.server_secret
    assert s.alpha.hex() not in repr(s) and s.alpha.hex()[:8] not in repr(block_world.prep)


# --- cuckoo placement -------------------------------------------------------------------


def test_cuckoo_places_every_key_in_one_of_its_positions() -> None:
    rnd = random.Random(5)
    keys = [rnd.randbytes(10) for _ in range(800)]
    seed = rnd.randbytes(32)
    n = math.ceil(800 / 0.8)
    slots = cuckoo_place(keys, n, seed, rng=SeededRng(b"c"))
    placed = [i for i in slots if i >= 0]
    assert sorted(placed) == list(range(800))
    for pos, i in enumerate(slots):
        if i >= 0:
            assert pos in slot_positions(seed, keys[i], n)


def test_listed_keys_sit_in_a_slot_as_alpha_times_hash(block_world: World) -> None:
    table = block_world.prep.table
    alpha = block_world.prep.server_secret.alpha
    for pdq in block_world.listed[:10]:
        (key,) = block_world.scheme.list_keys(pdq)
        want = group.mul(alpha, group.hash_to_group(KEY_DOMAIN, key))
        assert want in {
            table.slot(p) for p in slot_positions(table.cuckoo_seed, key, table.n_slots)
        }


# --- property 2: dummy slots look like real ones ------------------------------------------


def _byte_histogram(points: list[bytes]) -> list[int]:
    h = [0] * 256
    for p in points:
        for b in p:
            h[b] += 1
    return h


def _chi2_homogeneity(a: list[int], b: list[int]) -> float:
    na, nb = sum(a), sum(b)
    stat = 0.0
    for x, y in zip(a, b, strict=True):
        tot = x + y
        if tot == 0:
            continue
        ea, eb = tot * na / (na + nb), tot * nb / (na + nb)
        stat += (x - ea) ** 2 / ea + (y - eb) ** 2 / eb
    return stat


def _bit_z_max(a: list[bytes], b: list[bytes]) -> float:
    """Largest |z| of a two-proportion test over the 256 bit positions."""
    worst = 0.0
    for i in range(256):
        pa = sum((p[i >> 3] >> (i & 7)) & 1 for p in a) / len(a)
        pb = sum((p[i >> 3] >> (i & 7)) & 1 for p in b) / len(b)
        pool = (pa * len(a) + pb * len(b)) / (len(a) + len(b))
        var = pool * (1 - pool) * (1 / len(a) + 1 / len(b))
        if var == 0:
            if pa != pb:
                return math.inf
            continue
        worst = max(worst, abs(pa - pb) / math.sqrt(var))
    return worst


# chi-square with 255 degrees of freedom: p = 1e-4 at about 340.
CHI2_CRITICAL = 340.0
# 256 bit tests at family-wise p ≈ 1e-3: |z| < 4.4.
Z_CRITICAL = 4.4


def test_dummy_slots_are_statistically_indistinguishable_from_real_ones() -> None:
    rnd = random.Random(11)
    pdqs = [rnd.randbytes(32) for _ in range(1500)]
    lists = [hl("HL-A", "GB", pdqs), hl("HL-B", "US", pdqs)]
    prep = prepare_table(lists, scheme=BitSamplingLSH(seed=rnd.randbytes(32)), rng=SeededRng(b"s"))
    table = prep.table
    real_slots = set()
    for pdq in pdqs:
        for key in table.scheme.list_keys(pdq):
            want = group.mul(prep.server_secret.alpha, group.hash_to_group(KEY_DOMAIN, key))
            real_slots.add(want)
    all_slots = [table.slot(i) for i in range(table.n_slots)]
    real = [s for s in all_slots if s in real_slots]
    dummy = [s for s in all_slots if s not in real_slots]
    assert len(real) == len(real_slots) and len(dummy) > 300
    assert all(group.is_valid_point(s) for s in dummy)
    assert _chi2_homogeneity(_byte_histogram(real), _byte_histogram(dummy)) < CHI2_CRITICAL
    assert _bit_z_max(real, dummy) < Z_CRITICAL

    # The same tests do catch a distinguishable filler: uniform bytes are not point encodings.
    fake = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(len(dummy))]
    assert (
        _chi2_homogeneity(_byte_histogram(real), _byte_histogram(fake)) >= CHI2_CRITICAL
        or _bit_z_max(real, fake) >= Z_CRITICAL
    )
