"""The server's threshold-state port: ServerSession against a second, independent store.

``RowStore`` keeps every record as the row a SQL adapter would write (a JSON text of hex
strings, ints as decimal strings, booleans), so each read rebuilds the records from plain
values; a "restart" is a new ServerSession over the same RowStore.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import fields

import pytest

from blindmatch.errors import InvalidVoucher
from blindmatch.protocol import (
    AccountState,
    MemoryThresholdStore,
    Release,
    ServerSession,
    StoredVoucher,
    ThresholdStore,
)
from blindmatch.protocol.hazmat import group
from tests.protocol.conftest import World
from tests.protocol.test_voucher import _real, _synthetic, near_miss

rnd = random.Random(11)


class RowStore:
    """A ThresholdStore that keeps only serialised rows, as a database would."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], str] = {}  # (account, voucher id hex) -> JSON
        self.order: list[tuple[str, str]] = []
        self.keys: dict[str, str] = {}
        self.calls: list[str] = []

    @staticmethod
    def _encode(v: StoredVoucher) -> str:
        row: dict[str, object] = {}
        for f in fields(v):
            value = getattr(v, f.name)
            if isinstance(value, bytes):
                row[f.name] = value.hex()
            elif isinstance(value, bool):
                row[f.name] = value
            else:
                row[f.name] = str(value)
        return json.dumps(row, sort_keys=True)

    @staticmethod
    def _decode(text: str) -> StoredVoucher:
        row = json.loads(text)
        return StoredVoucher(
            voucher_id=bytes.fromhex(row["voucher_id"]),
            transcript=bytes.fromhex(row["transcript"]),
            share_x=int(row["share_x"]),
            share_y=int(row["share_y"]),
            match_layer=bytes.fromhex(row["match_layer"]),
            match_sealed=row["match_sealed"],
            evidence=bytes.fromhex(row["evidence"]),
            released=row["released"],
        )

    def load(self, account: str) -> AccountState:
        self.calls.append("load")
        vouchers = tuple(self._decode(self.rows[k]) for k in self.order if k[0] == account)
        key = self.keys.get(account)
        return AccountState(vouchers, bytes.fromhex(key) if key else None)

    def contains(self, account: str, voucher_id: bytes) -> bool:
        self.calls.append("contains")
        return (account, voucher_id.hex()) in self.rows

    def append(self, account: str, voucher: StoredVoucher) -> None:
        self.calls.append("append")
        k = (account, voucher.voucher_id.hex())
        if k in self.rows:
            raise InvalidVoucher("duplicate voucher")
        self.rows[k] = self._encode(voucher)
        self.order.append(k)

    def mark_released(self, account: str, voucher_id: bytes) -> None:
        self.calls.append("mark_released")
        k = (account, voucher_id.hex())
        row = json.loads(self.rows[k])
        row["released"] = True
        self.rows[k] = json.dumps(row, sort_keys=True)

    def set_evidence_key(self, account: str, key: bytes) -> None:
        self.calls.append("set_evidence_key")
        self.keys[account] = key.hex()


def _as_store(s: ThresholdStore) -> ThresholdStore:  # a type checker sees both satisfy the port
    return s


STORES: dict[str, Callable[[], ThresholdStore]] = {
    "memory": lambda: _as_store(MemoryThresholdStore()),
    "rows": lambda: _as_store(RowStore()),
}


@pytest.mark.parametrize("kind", sorted(STORES))
def test_block_evidence_released_after_a_restart(block_world: World, kind: str) -> None:
    store = STORES[kind]()
    client = block_world.new_client()
    first = ServerSession(block_world.prep.server_secret, block_world.prep.table, store=store)
    for i in range(2):  # t = 3: two matches before the "restart"
        v = client.make_voucher(block_world.listed[i], evidence=f"ev{i}".encode())
        r = first.open(v, account="acct")
        assert r.matched and r.released == ()
    assert first.account_state("acct") == (2, False)

    again = ServerSession(block_world.prep.server_secret, block_world.prep.table, store=store)
    assert again.account_state("acct") == (2, False)
    r = again.open(client.make_voucher(block_world.listed[2], evidence=b"ev2"), account="acct")
    assert r.matched
    assert sorted(x.evidence for x in r.released) == [b"ev0", b"ev1", b"ev2"]
    assert {x.matches[0].refs[0].entry_id for x in r.released} == {"a0", "a1", "a2"}

    third = ServerSession(block_world.prep.server_secret, block_world.prep.table, store=store)
    assert third.account_state("acct") == (3, True)
    # the key survived too: a later match is released at once, earlier ones not again
    later = third.open(client.make_voucher(block_world.listed[3], evidence=b"ev3"), account="acct")
    assert [x.evidence for x in later.released] == [b"ev3"]


@pytest.mark.parametrize("kind", sorted(STORES))
def test_threshold_state_survives_a_restart(threshold_world: World, kind: str) -> None:
    store = STORES[kind]()
    prep = threshold_world.prep
    client = threshold_world.new_client()
    stream = [_synthetic(client, rnd.randbytes(32))]
    stream += [_real(client, threshold_world.listed[i], f"ev{i}".encode()) for i in range(3)]
    released: list[Release] = []
    for v in stream:  # a new server (a restart) for every voucher
        released += (
            ServerSession(prep.server_secret, prep.table, store=store).open(v, account="b").released
        )
    assert sorted(r.evidence for r in released) == [b"ev0", b"ev1", b"ev2"]
    server = ServerSession(prep.server_secret, prep.table, store=store)
    assert server.account_state("b") == (4, True)
    r = server.open(_real(client, threshold_world.listed[5], b"ev5"), account="b")
    assert r.matched and [x.evidence for x in r.released] == [b"ev5"]


@pytest.mark.parametrize("kind", sorted(STORES))
def test_replay_is_refused_across_a_restart(block_world: World, kind: str) -> None:
    store = STORES[kind]()
    secret, table = block_world.prep.server_secret, block_world.prep.table
    v = block_world.client.make_voucher(block_world.listed[7])
    assert ServerSession(secret, table, store=store).open(v, account="r").matched
    again = ServerSession(secret, table, store=store).open(v, account="r")
    assert again.replayed and again.block and not again.matched  # refused again, counts nothing
    assert ServerSession(secret, table, store=store).account_state("r") == (1, False)
    # another account may hold the same voucher id (ids are unique per account)
    assert ServerSession(secret, table, store=store).open(v, account="other").matched


def test_near_misses_and_unopened_vouchers_leave_no_trace(block_world: World) -> None:
    store = RowStore()
    server = ServerSession(block_world.prep.server_secret, block_world.prep.table, store=store)
    near = block_world.client.make_voucher(near_miss(block_world, block_world.listed[8], 45))
    miss = block_world.client.make_voucher(rnd.randbytes(32))
    for v in (near, miss, near):  # a replayed near miss gives the same answer again
        r = server.open(v, account="n")
        assert not r.matched and r.released == ()
    assert store.rows == {} and store.keys == {}
    assert "append" not in store.calls


def test_threshold_store_records_every_opened_voucher(threshold_world: World) -> None:
    store = RowStore()
    prep = threshold_world.prep
    server = ServerSession(prep.server_secret, prep.table, store=store)
    client = threshold_world.new_client()
    fake = _synthetic(client, rnd.randbytes(32))
    assert server.open(fake, account="s").opened
    assert len(store.rows) == 1
    (row,) = (json.loads(r) for r in store.rows.values())
    assert row["match_sealed"] is True and row["released"] is False
    again = server.open(fake, account="s")  # a replayed synthetic voucher counts nothing either
    assert again.replayed and not again.block and len(store.rows) == 1


def test_stored_voucher_rejects_bad_values() -> None:
    good = {
        "voucher_id": bytes(16), "transcript": bytes(32), "share_x": 1, "share_y": 0,
        "match_layer": b"m", "match_sealed": True, "evidence": b"e",
    }  # fmt: skip
    StoredVoucher(**good)  # type: ignore[arg-type]
    bad: list[dict[str, object]] = [
        {"voucher_id": bytes(15)}, {"transcript": "x" * 32}, {"share_x": 0},
        {"share_x": group.ORDER}, {"share_y": -1}, {"share_y": 1.0}, {"match_layer": "m"},
        {"match_sealed": 1}, {"evidence": None}, {"share_x": True},
    ]  # fmt: skip
    for change in bad:
        with pytest.raises(ValueError):
            StoredVoucher(**{**good, **change})  # type: ignore[arg-type]


def test_memory_store_refuses_a_duplicate_append() -> None:
    store = MemoryThresholdStore()
    v = StoredVoucher(bytes(16), bytes(32), 1, 2, b"m", False, b"e")
    store.append("a", v)
    with pytest.raises(InvalidVoucher):
        store.append("a", v)
    store.mark_released("a", v.voucher_id)
    assert store.load("a").vouchers[0].released and store.load("b") == AccountState()
