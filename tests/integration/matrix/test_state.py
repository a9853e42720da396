"""The module's state in SQL: the threshold store adapter across restarts, the
migration against the models, cases. No homeserver needed."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from blindmatch.errors import InvalidVoucher
from blindmatch.integrations.matrix.state import Binding, BindingConflict, MatrixState
from blindmatch.protocol import Release, ServerSession, StoredVoucher
from blindmatch.store.db import open_store
from blindmatch.store.models import Base
from blindmatch.store.threshold import SqlThresholdStore
from tests.protocol.conftest import World, make_world
from tests.protocol.test_voucher import _real, _synthetic

rnd = random.Random(5)


@pytest.fixture(scope="module")
def block_world() -> World:
    from blindmatch.protocol import Policy

    return make_world(Policy.BLOCK, threshold=3)


@pytest.fixture(scope="module")
def threshold_world() -> World:
    from blindmatch.protocol import Policy

    return make_world(Policy.THRESHOLD, threshold=3, synthetic_ppm=50_000)


def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bm.db'}"


def test_the_migrations_build_exactly_the_models(tmp_path: Path) -> None:
    engine = open_store(url(tmp_path)).engine
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_block_evidence_is_released_after_restarts(tmp_path: Path, block_world: World) -> None:
    check_block_evidence_survives_restarts(open_store(url(tmp_path)).engine, block_world)


def check_block_evidence_survives_restarts(engine: Any, block_world: World) -> None:
    """Shared with the PostgreSQL suite: the same checks on another database."""
    secret, table = block_world.prep.server_secret, block_world.prep.table
    client = block_world.new_client()

    def server() -> ServerSession:  # a new process: a new session over the same database
        return ServerSession(secret, table, store=SqlThresholdStore(engine, namespace="t1:"))

    for i in range(2):
        r = server().open(client.make_voucher(block_world.listed[i], evidence=b"e%d" % i),
                          account="@a:x")  # fmt: skip
        assert r.matched and r.released == ()
    assert server().account_state("@a:x") == (2, False)
    r = server().open(client.make_voucher(block_world.listed[2], evidence=b"e2"), account="@a:x")
    assert sorted(x.evidence for x in r.released) == [b"e0", b"e1", b"e2"]
    assert server().account_state("@a:x") == (3, True)
    later = server().open(client.make_voucher(block_world.listed[3], evidence=b"e3"),
                          account="@a:x")  # fmt: skip
    assert [x.evidence for x in later.released] == [b"e3"]
    # Another namespace (another table) sees nothing of it.
    other = ServerSession(secret, table, store=SqlThresholdStore(engine, namespace="t2:"))
    assert other.account_state("@a:x") == (0, False)


def test_threshold_state_and_replays_survive_restarts(
    tmp_path: Path, threshold_world: World
) -> None:
    check_threshold_state_survives_restarts(open_store(url(tmp_path)).engine, threshold_world)


def check_threshold_state_survives_restarts(engine: Any, threshold_world: World) -> None:
    """Shared with the PostgreSQL suite."""
    prep = threshold_world.prep
    client = threshold_world.new_client()
    stream = [_synthetic(client, random.Random(5).randbytes(32))]
    stream += [_real(client, threshold_world.listed[i], b"ev%d" % i) for i in range(3)]
    released: list[Release] = []
    for v in stream:
        s = ServerSession(prep.server_secret, prep.table, store=SqlThresholdStore(engine))
        released += s.open(v, account="b").released
    assert sorted(r.evidence for r in released) == [b"ev0", b"ev1", b"ev2"]
    s = ServerSession(prep.server_secret, prep.table, store=SqlThresholdStore(engine))
    again = s.open(stream[1], account="b")  # a replay after a restart counts nothing
    assert again.replayed and not again.released and s.account_state("b") == (4, True)


def test_a_queued_voucher_is_opened_and_dequeued_in_one_transaction(
    tmp_path: Path, threshold_world: World
) -> None:
    check_queue_and_deferred_writes(open_store(url(tmp_path)).engine, threshold_world)


def check_queue_and_deferred_writes(engine: Any, threshold_world: World) -> None:
    """Shared with the PostgreSQL suite: what the worker does. Vouchers bound ``pending`` and
    queued in one transaction; opened with the store's writes deferred — dropped (a crash
    before the commit) they leave no trace, so opening again is not a replay; written with
    the cases and the queue row's removal, all of it lands at once."""
    prep = threshold_world.prep
    client = threshold_world.new_client()
    vouchers = [_real(client, threshold_world.listed[i], b"ev%d" % i) for i in range(3)]
    state = MatrixState(engine)
    store = SqlThresholdStore(engine, namespace="t3:")
    session = ServerSession(prep.server_secret, prep.table, store=store)
    for i, v in enumerate(vouchers):
        b = Binding(v[24:40].hex(), f"m{i}", "@a:x", "!r:x", f"$e{i}", "h" * 64, "pending", None)
        state.bind([b], (), None, (), [("@a:x", prep.table.table_id, v)])
    queued = state.queued()
    assert [q.voucher for q in queued] == vouchers and state.queued(account="@b:x") == []
    assert {q.table_id for q in queued} == state.queue_tables() == {prep.table.table_id.hex()}
    with store.deferred() as dropped:
        first = session.open(vouchers[0], account="@a:x")
    assert first.opened and dropped and SqlThresholdStore(engine, namespace="t3:").load(
        "@a:x"
    ).vouchers == ()  # fmt: skip
    released: list[Release] = []
    for q in queued:
        with store.deferred() as writes:
            r = session.open(q.voucher, account=q.account)
        assert not r.replayed  # the dropped run above left nothing behind
        released += r.released
        cases = [{"kind": "threshold", "account": q.account, "evidence": rel.evidence}
                 for rel in r.released]  # fmt: skip
        state.finish_queued(q, cases, lambda s, w=writes: store.write(s, w))  # type: ignore[misc]
    assert sorted(r.evidence for r in released) == [b"ev0", b"ev1", b"ev2"]
    assert state.queued() == [] and session.account_state("@a:x") == (3, True)
    assert {b.outcome for b in state.bindings(voucher_ids=[q.voucher_id for q in queued])} == {
        "accepted"
    }  # fmt: skip
    assert sorted(state.case_evidence(c.id) or b"" for c in state.cases(kind="threshold")) == [
        b"ev0", b"ev1", b"ev2",
    ]  # fmt: skip


def test_a_duplicate_append_is_an_invalid_voucher(tmp_path: Path) -> None:
    check_duplicate_append_and_round_trip(open_store(url(tmp_path)).engine)


def check_duplicate_append_and_round_trip(engine: Any) -> None:
    """Shared with the PostgreSQL suite: a second append of one voucher id is refused;
    32-byte shares, a 100 KB layer and bytes starting with a zero come back as stored."""
    store = SqlThresholdStore(engine)
    x = (1 << 252) + 12345  # shares are up to 253 bits: 32 bytes little-endian
    v = StoredVoucher(bytes(range(16)), bytes(32), x, x - 1, b"m" * 100_000, True, b"\x00e")
    store.append("a", v)
    with pytest.raises(InvalidVoucher):
        store.append("a", v)
    assert store.contains("a", v.voucher_id) and not store.contains("b", v.voucher_id)
    store.mark_released("a", v.voucher_id)
    store.set_evidence_key("a", b"k" * 32)
    store.set_evidence_key("a", b"j" * 32)
    state = SqlThresholdStore(engine).load("a")
    assert state.vouchers == (StoredVoucher(bytes(range(16)), bytes(32), x, x - 1, b"m" * 100_000,
                                            True, b"\x00e", released=True),)  # fmt: skip
    assert state.evidence_key == b"j" * 32


def test_bindings_are_unique_and_cases_listed(tmp_path: Path) -> None:
    state = MatrixState.open(url(tmp_path))
    state.record_upload("m1", "ab" * 32, 10, "opaque")
    b = Binding("00" * 16, "m1", "@a:x", "!r:x", "$e", "cd" * 32, "accepted", None)
    state.bind([b])
    with pytest.raises(BindingConflict):
        state.bind([Binding("11" * 16, "m1", "@a:x", "!r:x", "$f", "cd" * 32, "accepted", None)])
    with pytest.raises(BindingConflict):  # nothing of a failed event is kept, case included
        state.bind(
            [Binding("00" * 16, "m2", "@a:x", "!r:x", "$g", "cd" * 32, "blocked", "BM-1")],
            [{"id": "BM-1", "kind": "match", "account": "@a:x"}],
        )
    assert state.cases() == []
    cid = state.add_case(kind="threshold", account="@a:x", evidence=b"thumb",
                         entry_refs=[{"distance": 3, "refs": []}])  # fmt: skip
    [c] = state.cases(kind="threshold")
    assert c.id == cid and c.has_evidence and state.case_evidence(cid) == b"thumb"
    with pytest.raises(ValueError):
        state.add_case(kind="other", account="@a:x")


def test_the_sweep_spares_bound_declared_and_plaintext_blobs(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from blindmatch.integrations.matrix.state import Use

    state = MatrixState.open(url(tmp_path))
    for m in ("vouched", "declared", "plain", "stray", "picture"):
        state.record_upload(m, "ab" * 32, 10, "image" if m == "picture" else "opaque")
    state.bind([Binding("01" * 16, "vouched", "@a:x", "!r:x", "$e", "cd" * 32, "accepted", None)],
               uses=[Use("declared", "file", "@a:x", "!r:x", "$e")])  # fmt: skip
    plain = [Use(m, "plaintext", "@a:x", "!r:x", "$p") for m in ("plain", "vouched")]
    assert state.record_plaintext_uses(plain) == 1  # a vouched blob keeps its binding
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert state.unbound_opaque_before(later) == ["stray"]
    snap = state.snapshot([], ["declared"], ["plain", "stray"])
    assert snap.bound == {"declared", "plain"} and snap.uses["declared"].use == "file"
