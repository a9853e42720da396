"""Companion hashes (docs/protocol.md §3): extra hashes of a listed picture that pass
governance on their own, add lookup keys to the table and confirm a candidate."""

from __future__ import annotations

import random

import pytest

from blindmatch.errors import InvalidKey
from blindmatch.protocol import (
    AccountSecret,
    ClientSession,
    HotlineList,
    QueryHash,
    ServerSecret,
    ServerSession,
    VariantProbeLSH,
    new_opening_seed,
    prepare_table,
    select_entries,
    variants_for_table,
    verify_table,
)
from blindmatch.protocol.hazmat.rng import SeededRng
from blindmatch.protocol.table import MAX_COMPANIONS, MAX_HOT_COMPANIONS
from tests.protocol.conftest import flip_bits
from tests.protocol.kat_fixture import sign_all, trust

rnd = random.Random("companions")
PDQ = [rnd.randbytes(32) for _ in range(6)]
COMP = [rnd.randbytes(32) for _ in range(6)]
NONE = 10_000  # no match


def hl(hotline: str, where: str, entries: list[tuple]) -> HotlineList:  # type: ignore[type-arg]
    return HotlineList(hotline, where, "l", "1", tuple(entries))


def test_a_companion_needs_the_same_agreement_as_a_hash() -> None:
    a = hl("HL-A", "GB", [("a0", PDQ[0], (COMP[0],)), ("a1", PDQ[1], (COMP[1],))])
    b = hl("HL-B", "US", [("b0", PDQ[0], (COMP[0],)), ("b1", PDQ[1])])
    got = {e.pdq: e for e in select_entries([a, b])}
    assert got[PDQ[0]].companions == (COMP[0],)
    # one hotline alone cannot add a lookup key through a companion
    assert got[PDQ[1]].companions == ()
    assert got[PDQ[1]].hashes == (PDQ[1],)
    # nor can two hotlines in one jurisdiction, when jurisdictions must differ
    c = hl("HL-C", "GB", [("c1", PDQ[1], (COMP[1],))])
    assert {e.pdq: e for e in select_entries([a, b, c])}[PDQ[1]].companions == ()
    d = hl("HL-D", "DE", [("d1", PDQ[1], (COMP[1],))])
    assert {e.pdq: e for e in select_entries([a, b, d])}[PDQ[1]].companions == (COMP[1],)


def test_bad_companions_are_refused() -> None:
    with pytest.raises(ValueError):
        hl("HL-A", "GB", [("a0", PDQ[0], (b"short",))])
    with pytest.raises(ValueError):
        hl("HL-A", "GB", [("a0", PDQ[0], tuple(COMP[:MAX_COMPANIONS]) + (PDQ[5],))])
    with pytest.raises(ValueError):
        hl("HL-A", "GB", [("a0", PDQ[0], COMP[0])])  # not a tuple of hashes


def _world():  # type: ignore[no-untyped-def]
    entries = [(f"e{i}", PDQ[i], (COMP[i],)) for i in range(3)] + [("e3", PDQ[3])]
    lists = [hl("HL-A", "GB", entries), hl("HL-B", "US", entries)]
    prep = prepare_table(lists, scheme=VariantProbeLSH(seed=bytes(32)), rng=SeededRng(b"c"))
    verified = verify_table(prep.table.to_bytes(), sign_all(prep, ["HL-A", "HL-B"]), trust())
    client = ClientSession(verified, AccountSecret.generate())
    return prep, client, ServerSession(prep.server_secret, prep.table)


def test_companions_add_keys_and_open_a_voucher_near_the_companion_only() -> None:
    prep, client, server = _world()
    assert prep.manifest.n_keys == 7  # 4 PDQs + 3 companions (one table, one key each)
    assert [len(e.companions) for e in prep.server_secret.entries].count(1) == 3

    def open_with(pdq: bytes, variants: list[QueryHash]) -> int:
        v = client.make_voucher(pdq, variants=variants, opening_seed=new_opening_seed())
        r = server.open(v, account=str(rnd.random()))
        return min((m.distance for m in r.matches), default=NONE)

    unrelated = rnd.randbytes(32)
    # the query's own hash is unrelated; the hash it computes near the companion opens
    # the entry, and the distance is the companion's
    near = flip_bits(COMP[1], [5, 77, 200])
    assert open_with(unrelated, [QueryHash(near)]) == 3
    assert open_with(unrelated, []) == NONE
    # an entry without companions opens only through its PDQ
    assert open_with(flip_bits(PDQ[3], [9]), []) == 1


def _old_key(raw: bytes, secret: ServerSecret, version: int) -> bytes:
    """``raw`` (version 3) rewritten as a version 1 or 2 server key."""
    parts = [raw[:4], bytes([version]), raw[5:69], raw[69:73]]  # magic, version, α, digest, n
    for e in secret.entries:
        parts.append(e.pdq)
        if version == 2:
            parts += [bytes([len(e.companions)]), *e.companions]
        parts.append(len(e.refs).to_bytes(2, "big"))
        for ref in e.refs:
            for s in (ref.hotline, ref.list_name, ref.entry_id):
                parts.append(len(s.encode()).to_bytes(2, "big") + s.encode())
    return b"".join(parts)


def test_server_key_carries_companions_and_reads_versions_1_and_2() -> None:
    prep, _, _ = _world()
    raw = prep.server_secret.to_bytes()
    assert raw[4] == 3
    back = ServerSecret.from_bytes(raw)
    assert back == prep.server_secret and back.entries[0].companions
    # version 1: the same entries without companions; version 2: without hot companions
    old = ServerSecret.from_bytes(_old_key(raw, prep.server_secret, 1))
    assert [e.pdq for e in old.entries] == [e.pdq for e in back.entries]
    assert all(e.companions == () for e in old.entries)
    v2 = ServerSecret.from_bytes(_old_key(raw, prep.server_secret, 2))
    assert v2 == back  # this world has no hot entries
    # more companions than allowed is a malformed key
    first = 73 + 32  # the first entry's companion count
    bad = raw[:first] + bytes([MAX_COMPANIONS + 1]) + raw[first + 1 :]
    with pytest.raises(InvalidKey):
        ServerSecret.from_bytes(bad)
    hot_count = first + 1 + 32  # then its hot companion count
    bad = raw[:hot_count] + bytes([MAX_HOT_COMPANIONS + 1]) + raw[hot_count + 1 :]
    with pytest.raises(InvalidKey):
        ServerSecret.from_bytes(bad)


HOT = [rnd.randbytes(32) for _ in range(MAX_HOT_COMPANIONS + 1)]


def test_hot_companions_need_agreement_hash_by_hash() -> None:
    a = hl("HL-A", "GB", [("a0", PDQ[0], (COMP[0],), tuple(HOT[:5]))])
    b = hl("HL-B", "US", [("b0", PDQ[0], (COMP[0],), tuple(HOT[2:8]))])
    (entry,) = select_entries([a, b])
    # only the hot hashes both hotlines carry: no single hotline adds a key
    assert entry.hot == tuple(sorted(HOT[2:5]))
    assert entry.hashes == (PDQ[0], COMP[0], *sorted(HOT[2:5]))
    c = hl("HL-C", "GB", [("c0", PDQ[0], (), tuple(HOT[:5]))])  # same place as HL-A
    (entry,) = select_entries([a, c, hl("HL-D", "FR", [("d0", PDQ[0])])])
    assert entry.hot == ()
    with pytest.raises(ValueError, match="hot companions"):
        hl("HL-A", "GB", [("a0", PDQ[0], (), tuple(HOT))])  # one too many
    with pytest.raises(ValueError):
        hl("HL-A", "GB", [("a0", PDQ[0], (), (b"short",))])


def test_a_hot_entry_opens_near_any_of_its_hot_companions() -> None:
    hot = tuple(HOT[:MAX_HOT_COMPANIONS])
    entries = [("e0", PDQ[0], (COMP[0],), hot), ("e1", PDQ[1], (COMP[1],))]
    lists = [hl("HL-A", "GB", entries), hl("HL-B", "US", entries)]
    prep = prepare_table(lists, scheme=VariantProbeLSH(seed=bytes(32)), rng=SeededRng(b"h"))
    assert prep.manifest.n_keys == 2 + 2 + MAX_HOT_COMPANIONS
    verified = verify_table(prep.table.to_bytes(), sign_all(prep, ["HL-A", "HL-B"]), trust())
    client = ClientSession(verified, AccountSecret.generate())
    server = ServerSession(prep.server_secret, prep.table)
    assert ServerSecret.from_bytes(prep.server_secret.to_bytes()) == prep.server_secret

    def open_with(variants: list[QueryHash]) -> set[tuple[str, int]]:
        v = client.make_voucher(
            rnd.randbytes(32), variants=variants, opening_seed=new_opening_seed()
        )
        r = server.open(v, account=str(rnd.random()))
        return {(m.refs[0].entry_id, m.distance) for m in r.matches}

    # a client hash 2 bits (outside the key's sample) from the last hot companion opens
    # the hot entry at distance 2
    unsampled = [i for i in range(256) if i not in prep.table.scheme.positions[0]][:2]
    assert open_with([QueryHash(flip_bits(hot[-1], unsampled), companion=True)]) == {("e0", 2)}
    # the entry without hot companions does not open near the hot entry's hashes
    assert open_with([QueryHash(flip_bits(COMP[1], [1]), companion=True)]) == {("e1", 1)}
    assert open_with([QueryHash(rnd.randbytes(32), companion=True)]) == set()


def test_companion_queries_are_probed_only_against_a_table_with_companions() -> None:
    """Against a bare-PDQ table a companion query hash would take probes from the image's own
    hash for nothing: sender and recipient both leave it out (variants_for_table)."""
    bare_entries = [(f"e{i}", PDQ[i]) for i in range(3)]
    lists = [hl("HL-A", "GB", bare_entries), hl("HL-B", "US", bare_entries)]
    prep = prepare_table(lists, scheme=VariantProbeLSH(seed=bytes(32)), rng=SeededRng(b"b"))
    bare = verify_table(prep.table.to_bytes(), sign_all(prep, ["HL-A", "HL-B"]), trust())
    server = ServerSession(prep.server_secret, prep.table)
    client = ClientSession(bare, AccountSecret.generate())
    assert not bare.has_companions
    _, with_client, _ = _world()
    assert with_client.verified.has_companions

    near = PDQ[1]  # exactly a listed hash: its unflipped key is listed
    as_companion = QueryHash(near, companion=True)
    assert variants_for_table(bare, [as_companion, QueryHash(near)]) == [QueryHash(near)]
    assert variants_for_table(with_client.verified, [as_companion]) == [as_companion]

    def opens(variants: list[QueryHash]) -> bool:
        seed = new_opening_seed()
        v = client.make_voucher(rnd.randbytes(32), variants=variants, opening_seed=seed)
        return server.open(v, account=str(rnd.random())).opened

    assert opens([QueryHash(near)]) and not opens([as_companion])
