"""Shared protocol fixtures: benign random "listed" hashes, signed tables, sessions."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from blindmatch.protocol import (
    AccountSecret,
    BitSamplingLSH,
    ClientSession,
    HotlineList,
    Policy,
    PreparedTable,
    ServerSession,
    prepare_table,
    verify_table,
)
from blindmatch.protocol.hazmat.rng import SeededRng
from tests.protocol.kat_fixture import sign_all, trust

N_LISTED = 60


def flip_bits(pdq: bytes, positions: list[int]) -> bytes:
    v = bytearray(pdq)
    for i in positions:
        v[i >> 3] ^= 0x80 >> (i & 7)
    return bytes(v)


@dataclass
class World:
    prep: PreparedTable
    signed: bytes
    listed: list[bytes]
    client: ClientSession
    server: ServerSession
    scheme: BitSamplingLSH

    def new_server(self) -> ServerSession:
        return ServerSession(self.prep.server_secret, self.prep.table)

    def new_client(self, account: AccountSecret | None = None) -> ClientSession:
        verified = verify_table(self.prep.table.to_bytes(), self.signed, trust())
        return ClientSession(verified, account or AccountSecret.generate())


def make_world(policy: Policy, threshold: int, synthetic_ppm: int = 0) -> World:
    rnd = random.Random(f"world-{policy.value}")
    listed = [rnd.randbytes(32) for _ in range(N_LISTED)]
    lists = [
        HotlineList("HL-A", "GB", "a", "3", tuple((f"a{i}", p) for i, p in enumerate(listed))),
        HotlineList("HL-B", "US", "b", "9", tuple((f"b{i}", p) for i, p in enumerate(listed))),
    ]
    scheme = BitSamplingLSH(seed=rnd.randbytes(32))
    prep = prepare_table(
        lists,
        scheme=scheme,
        policy=policy,
        threshold=threshold,
        synthetic_ppm=synthetic_ppm,
        evidence_bytes=256,
        rng=SeededRng(policy.value.encode()),
    )
    signed = sign_all(prep, ["HL-A", "HL-B"])
    verified = verify_table(prep.table.to_bytes(), signed, trust())
    client = ClientSession(verified, AccountSecret.generate())
    server = ServerSession(prep.server_secret, prep.table)
    return World(prep, signed, listed, client, server, scheme)


@pytest.fixture(scope="session")
def block_world() -> World:
    return make_world(Policy.BLOCK, threshold=3)


@pytest.fixture(scope="session")
def threshold_world() -> World:
    return make_world(Policy.THRESHOLD, threshold=3, synthetic_ppm=50_000)
