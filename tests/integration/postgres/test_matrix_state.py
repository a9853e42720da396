"""The Matrix module's state and the SQL threshold store on a real PostgreSQL server:
blobs, bindings under their unique constraints (also from concurrent transactions),
cases with large evidence, franking, and threshold state across new sessions."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from blindmatch.integrations.matrix.state import (
    Binding,
    BindingConflict,
    FrankingRecord,
    MatrixState,
    Use,
)
from blindmatch.protocol import Policy
from blindmatch.store.db import open_store
from tests.integration.matrix.test_state import (
    check_block_evidence_survives_restarts,
    check_duplicate_append_and_round_trip,
    check_queue_and_deferred_writes,
    check_threshold_state_survives_restarts,
)
from tests.protocol.conftest import World, make_world


def _b(vid: str, media: str, event: str, outcome: str = "accepted") -> Binding:
    return Binding(vid, media, "@a:x", "!r:x", event, "cd" * 32, outcome, None)


def test_blobs_bindings_cases_and_franking(pg_url: str) -> None:
    state = MatrixState.open(pg_url)
    state.record_upload("m1", "ab" * 32, 10, "opaque")
    state.record_upload("m1", "ef" * 32, 5_000_000_000, "opaque")  # re-used id; size > 2**31
    [blob] = state.blobs(["m1"]).values()
    assert (blob.sha256, blob.size) == ("ef" * 32, 5_000_000_000)
    assert blob.uploaded_at.tzinfo is not None
    assert abs(datetime.now(UTC) - blob.uploaded_at) < timedelta(minutes=1)
    state.bind([_b("00" * 16, "m1", "$e")])
    with pytest.raises(BindingConflict):  # the blob is bound: (media_id, slot 0) is taken
        state.bind([_b("11" * 16, "m1", "$f")])
    with pytest.raises(BindingConflict):  # the voucher id is bound; nothing of it is kept
        state.bind([_b("00" * 16, "m2", "$g", "blocked")],
                   [{"id": "BM-1", "kind": "match", "account": "@a:x"}])  # fmt: skip
    assert state.cases() == []
    # A video: several vouchers of one event bind one blob in slots 0, 1, 2.
    state.record_upload("v1", "ab" * 32, 10, "video")
    state.bind([_b(f"{i:02d}" * 16, "v1", "$v") for i in range(2, 5)])
    assert len(state.bindings(media_ids=["v1"])) == 3
    big = random.Random(1).randbytes(2_000_000)  # a review derivative, well over TOAST size
    cid = state.add_case(kind="threshold", account="@a:x", evidence=big,
                         entry_refs=[{"distance": 3, "refs": []}])  # fmt: skip
    [c] = state.cases(kind="threshold")
    assert c.id == cid and c.has_evidence and state.case_evidence(cid) == big
    assert c.created_at.tzinfo is not None
    fr = FrankingRecord("$e", "!r:x", "@a:x", 1_700_000_000_000, b"c" * 32, b"t" * 36)
    state.record_franking(fr)
    state.record_franking(FrankingRecord("$e", "!r:x", "@a:x", 1, b"x" * 32, b"y" * 36))
    assert state.franking(["$e"]) == {"$e": fr}  # a retried event keeps its first tag
    state.add_rejection("@a:x", "!r:x", "$z", "no_voucher", "d" * 5000)
    assert state.rejections("@a:x") == [("@a:x", "$z", "no_voucher")]
    state.engine.dispose()


def test_the_sweep_compares_timezone_aware_times(pg_url: str) -> None:
    state = MatrixState.open(pg_url)
    for m in ("vouched", "declared", "plain", "stray", "picture"):
        state.record_upload(m, "ab" * 32, 10, "image" if m == "picture" else "opaque")
    state.bind([_b("01" * 16, "vouched", "$e")],
               uses=[Use("declared", "file", "@a:x", "!r:x", "$e")])  # fmt: skip
    plain = [Use(m, "plaintext", "@a:x", "!r:x", "$p") for m in ("plain", "vouched")]
    assert state.record_plaintext_uses(plain) == 1
    assert state.unbound_opaque_before(datetime.now(UTC) - timedelta(minutes=5)) == []
    assert state.unbound_opaque_before(datetime.now(UTC) + timedelta(seconds=5)) == ["stray"]
    # the same instant in another zone is the same cutoff
    east = datetime.now(UTC).astimezone(timezone(timedelta(hours=9)))
    assert state.unbound_opaque_before(east + timedelta(seconds=5)) == ["stray"]
    state.engine.dispose()


def _race(state: MatrixState, media: str, n: int) -> list[str]:
    """``n`` threads bind ``media`` at once, each for an event of its own."""
    start = threading.Barrier(n)
    results: list[str] = []

    def bind(i: int) -> None:
        start.wait()
        try:
            state.bind([_b(f"{media}-{i}".encode().hex().ljust(32, "0"), media, f"$e{i}")])
            results.append("bound")
        except BindingConflict:
            results.append("conflict")

    threads = [threading.Thread(target=bind, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return sorted(results)


def test_two_concurrent_bindings_of_one_blob_conflict(pg_url: str) -> None:
    state = MatrixState.open(pg_url)
    for round_ in range(5):
        media = f"m{round_}"
        state.record_upload(media, "ab" * 32, 10, "opaque")
        assert _race(state, media, 2) == ["bound", "conflict"]
        assert len(state.bindings(media_ids=[media])) == 1
    state.engine.dispose()


@pytest.fixture(scope="module")
def block_world() -> World:
    return make_world(Policy.BLOCK, threshold=3)


@pytest.fixture(scope="module")
def threshold_world() -> World:
    return make_world(Policy.THRESHOLD, threshold=3, synthetic_ppm=50_000)


def test_block_evidence_is_released_after_restarts(pg_url: str, block_world: World) -> None:
    check_block_evidence_survives_restarts(open_store(pg_url).engine, block_world)


def test_a_queued_voucher_is_opened_and_dequeued_in_one_transaction(
    pg_url: str, threshold_world: World
) -> None:
    check_queue_and_deferred_writes(open_store(pg_url).engine, threshold_world)


def test_threshold_state_and_replays_survive_restarts(pg_url: str, threshold_world: World) -> None:
    engine = open_store(pg_url).engine
    check_threshold_state_survives_restarts(engine, threshold_world)
    engine.dispose()


def test_a_duplicate_append_is_an_invalid_voucher_and_bytes_round_trip(pg_url: str) -> None:
    engine = open_store(pg_url).engine
    check_duplicate_append_and_round_trip(engine)
    engine.dispose()
