"""VariantProbeLSH: probes shared across an image's variants (see docs/protocol.md §2)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from blindmatch.protocol import (
    AccountSecret,
    ClientSession,
    HotlineList,
    Policy,
    QueryHash,
    ServerSession,
    VariantProbeLSH,
    prepare_table,
)
from blindmatch.protocol.hazmat.rng import SeededRng
from blindmatch.protocol.lookup import hamming, scheme_from_params
from blindmatch.protocol.server import TAMPERED_MATCH
from blindmatch.protocol.voucher import VerifiedTable
from tests.protocol.conftest import flip_bits

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "protocol"


def _conf(rnd: random.Random) -> list[float]:
    return [rnd.uniform(-100, 100) for _ in range(256)]


def test_params_round_trip_and_registry() -> None:
    s = VariantProbeLSH(k=56, tables=2, probes=33, weak=9, max_flips=3, max_variants=7)
    again = scheme_from_params(s.params_bytes())
    assert isinstance(again, VariantProbeLSH)
    assert again.params_bytes() == s.params_bytes() and again.positions == s.positions
    assert again.describe() == s.describe()
    with pytest.raises(ValueError):
        VariantProbeLSH.from_params(s.params_bytes()[:-1])


def test_disjoint_tables_while_they_fit() -> None:
    s = VariantProbeLSH(k=64, tables=4)
    assert len({p for pos in s.positions for p in pos}) == 256
    assert all(len(pos) == 64 for pos in s.positions)


def test_fixed_probe_count_and_hint_size() -> None:
    rnd = random.Random(1)
    s = VariantProbeLSH()
    for n in (1, 4, 12, 20):
        qs = [QueryHash(rnd.randbytes(32), _conf(rnd), 1.0 if i == 0 else 0.1) for i in range(n)]
        ps = s.probe_variants(qs)
        assert len(ps.keys) == s.n_probes and len(set(ps.keys)) == s.n_probes
        assert len(ps.hint) == s.hint_size
    # no confidence: only the unflipped key of each hash is real, the rest is padding
    ps = s.probe(rnd.randbytes(32), None)
    assert len(ps.keys) == s.n_probes and len(s.probes_from_hint(b"\0" * 32, ps.hint)) == 1


def test_server_recomputes_exactly_the_real_probes() -> None:
    rnd = random.Random(2)
    s = VariantProbeLSH(tables=2, probes=30)
    qs = [QueryHash(rnd.randbytes(32), _conf(rnd), p) for p in (1.0, 1.0, 0.05, 0.3)]
    ps = s.probe_variants(qs)
    pairs = s.probe_hashes(qs[0].pdq, ps.hint)
    assert [k for k, _ in pairs] == list(ps.keys[: len(pairs)])
    assert {h for _, h in pairs} <= {q.pdq for q in qs}
    # each key is within the flip budget of the sample of the hash it names
    for k, h in pairs:
        t = k[1]
        base = s._key(t, s._sample(h, t))
        assert (int.from_bytes(k, "big") ^ int.from_bytes(base, "big")).bit_count() <= 3


def test_weak_bits_are_probed_first() -> None:
    rnd = random.Random(3)
    s = VariantProbeLSH(probes=8)
    pdq = rnd.randbytes(32)
    conf = [50.0] * 256
    weakest = s.positions[0][7]
    conf[weakest] = 0.01
    listed = flip_bits(pdq, [weakest])
    assert set(s.list_keys(listed)) & set(s.probe(pdq, conf).keys)


def test_known_answer_vectors() -> None:
    v = json.loads((VECTORS / "lookup_variants.json").read_text())
    sp = v["scheme"]
    s = VariantProbeLSH(
        k=sp["k"], tables=sp["tables"], probes=sp["probes"], weak=sp["weak"],
        max_flips=sp["max_flips"], max_variants=sp["max_variants"], seed=bytes.fromhex(sp["seed"]),
    )  # fmt: skip
    assert s.params_bytes().hex() == v["params_bytes"]
    assert [list(p) for p in s.positions] == v["positions"]
    for case in v["cases"]:
        qs = [
            QueryHash(bytes.fromhex(q["pdq"]), q["confidence"], q["prior"])
            for q in case["variants"]
        ]
        ps = s.probe_variants(qs, SeededRng(bytes.fromhex(case["pad_seed"])))
        assert [k.hex() for k in ps.keys] == case["probe_keys"]
        assert ps.hint.hex() == case["hint"]
        assert [k.hex() for k in s.list_keys(qs[0].pdq)] == case["list_keys"]
        got = [[k.hex(), h.hex()] for k, h in s.probe_hashes(qs[0].pdq, ps.hint)]
        assert got == case["probe_hashes"]


def _hostile_hints(s: VariantProbeLSH, hint: bytes) -> list[bytes]:
    extra = 1 + 32 * (s.max_variants - 1)
    d = s._desc_size
    out = [hint[:-1], hint + b"\0", b"\0" + hint[1:], bytes([s.max_variants + 1]) + hint[1:]]
    h = bytearray(hint)
    h[extra] = 5  # first probe names a variant that is not there (hint carries 2)
    out.append(bytes(h))
    h = bytearray(hint)
    h[extra + 1] = s.tables  # a table that does not exist
    out.append(bytes(h))
    h = bytearray(hint)
    h[extra + 2 : extra + 4] = bytes([9, 3])  # flips out of order
    out.append(bytes(h))
    h = bytearray(hint)
    h[extra + 2] = s.k  # a flip outside the sample
    out.append(bytes(h))
    h = bytearray(hint)
    h[1 + 32 * 2] = 1  # bytes in an unused variant slot
    out.append(bytes(h))
    h = bytearray(hint)
    h[extra : extra + d] = b"\xff" * d  # padding before a real probe
    out.append(bytes(h))
    return out


def test_hostile_hints_are_refused() -> None:
    rnd = random.Random(4)
    s = VariantProbeLSH(probes=20)
    qs = [QueryHash(rnd.randbytes(32), _conf(rnd)), QueryHash(rnd.randbytes(32), _conf(rnd), 0.3)]
    ps = s.probe_variants(qs)
    s.probe_hashes(qs[0].pdq, ps.hint)
    for bad in _hostile_hints(s, ps.hint):
        with pytest.raises(ValueError):
            s.probe_hashes(qs[0].pdq, bad)


def test_bad_query_hashes_are_refused() -> None:
    s = VariantProbeLSH()
    with pytest.raises(ValueError):
        s.probe_variants([])
    with pytest.raises(ValueError):
        s.probe_variants([QueryHash(b"\0" * 31)])
    with pytest.raises(ValueError):
        s.probe_variants([QueryHash(b"\0" * 32, [1.0] * 255)])
    with pytest.raises(ValueError):
        s.probe_variants([QueryHash(b"\0" * 32, None, 0.0)])


def test_round_trip_matches_through_a_variant_and_confirms_against_it() -> None:
    """A mirrored copy of a listed picture: the image's own hash is far from the entry, its
    mirrored variant is 2 bits away; the voucher matches at the variant's distance."""
    rnd = random.Random(5)
    scheme = VariantProbeLSH(seed=rnd.randbytes(32))
    listed = [rnd.randbytes(32) for _ in range(40)]
    lists = [
        HotlineList(h, j, "l", "1", tuple((f"e{i}", p) for i, p in enumerate(listed)))
        for h, j in (("HL-A", "GB"), ("HL-B", "US"))
    ]
    prep = prepare_table(lists, scheme=scheme, policy=Policy.BLOCK, rng=SeededRng(b"variants"))
    client = ClientSession(VerifiedTable(prep.table, prep.manifest), AccountSecret.generate())
    server = ServerSession(prep.server_secret, prep.table)
    own = rnd.randbytes(32)
    assert min(hamming(own, p) for p in listed) > 31
    off_sample = [i for i in range(256) if i not in scheme.positions[0]]
    weak = scheme.positions[0][10]
    mirrored = flip_bits(listed[7], [weak, off_sample[0]])
    conf = [40.0] * 256
    conf[weak] = 0.0
    v = client.make_voucher(own, confidence=_conf(rnd), variants=[QueryHash(mirrored, conf, 0.05)])
    r = server.open(v, account="a")
    assert r.matched and r.matches[0].distance == 2
    assert {ref.entry_id for ref in r.matches[0].refs} == {"e7"}
    # the server says how it matched: through the variant, whose hash it read in M
    assert r.matches[0].variant and r.matches[0].probe == mirrored
    direct = server.open(client.make_voucher(listed[3], confidence=_conf(rnd)), account="b")
    assert direct.matched and not direct.matches[0].variant
    assert direct.matches[0].probe == listed[3]
    # the same image without the variant: a non-match, and the same voucher size
    v2 = client.make_voucher(own, confidence=_conf(rnd))
    assert len(v2) == len(v) and not server.open(v2, account="a").opened


def test_a_variant_far_from_the_entry_is_not_confirmed() -> None:
    """A probe collision alone is not a match: the hash that produced it must be within 31."""
    rnd = random.Random(6)
    scheme = VariantProbeLSH(seed=rnd.randbytes(32))
    listed = [rnd.randbytes(32) for _ in range(10)]
    lists = [
        HotlineList(h, j, "l", "1", tuple((f"e{i}", p) for i, p in enumerate(listed)))
        for h, j in (("HL-A", "GB"), ("HL-B", "US"))
    ]
    prep = prepare_table(lists, scheme=scheme, rng=SeededRng(b"far"))
    client = ClientSession(VerifiedTable(prep.table, prep.manifest), AccountSecret.generate())
    server = ServerSession(prep.server_secret, prep.table)
    off = [i for i in range(256) if i not in scheme.positions[0]]
    near_miss = flip_bits(listed[2], off[:40])  # same key, 40 bits away
    v = client.make_voucher(rnd.randbytes(32), variants=[QueryHash(near_miss, None, 0.3)])
    r = server.open(v, account="a")
    assert r.opened and not r.matched


def test_server_refuses_a_voucher_with_a_malformed_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(7)
    scheme = VariantProbeLSH(seed=rnd.randbytes(32))
    listed = [rnd.randbytes(32) for _ in range(10)]
    lists = [
        HotlineList(h, j, "l", "1", tuple((f"e{i}", p) for i, p in enumerate(listed)))
        for h, j in (("HL-A", "GB"), ("HL-B", "US"))
    ]
    prep = prepare_table(lists, scheme=scheme, rng=SeededRng(b"hostile"))
    client = ClientSession(VerifiedTable(prep.table, prep.manifest), AccountSecret.generate())
    server = ServerSession(prep.server_secret, prep.table)
    target = client.table.scheme
    assert isinstance(target, VariantProbeLSH)
    real = target.probe_variants

    def broken(variants, rng=None):  # type: ignore[no-untyped-def]
        ps = real(variants)
        h = bytearray(ps.hint)
        h[0] = target.max_variants + 3
        return type(ps)(ps.keys, bytes(h))

    monkeypatch.setattr(target, "probe_variants", broken)
    v = client.make_voucher(listed[0], variants=[QueryHash(rnd.randbytes(32))])
    r = server.open(v, account="a")  # it opened, so it is refused as a match attempt
    assert r.block and r.tampered == TAMPERED_MATCH and not r.matched
