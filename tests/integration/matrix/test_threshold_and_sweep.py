"""A second Synapse: a threshold-policy table, a short bind window so the sweep runs,
table reloads every second (a new table is served while vouchers for the old one are
still accepted for a grace period), a low report limit, and the worker that opens queued
vouchers every second (the send path opens nothing under the threshold policy)."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator

import pytest
from PIL import Image

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.integrations.matrix.events import voucher_field
from blindmatch.integrations.matrix.homeserver import build_table_dir
from blindmatch.integrations.matrix.state import MatrixState
from blindmatch.private import load_trust_file
from blindmatch.protocol import AccountSecret, ClientSession, verify_table
from tests.integration.matrix.conftest import (
    HARNESS_FLOORS,
    LISTED_SEED,
    MatrixWorld,
    break_a_point,
    forge_evidence,
    jpeg,
    listed_pdq,
    not_opened,
    rejection,
    running_world,
    wait_until_opened,
)

WINDOW = 4  # seconds an upload may stay unbound before the sweep quarantines it


@pytest.fixture(scope="module")
def threshold_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatrixWorld]:
    root = tmp_path_factory.mktemp("matrix-threshold")
    with running_world(
        root,
        policy="threshold",
        threshold=3,
        bind_window_seconds=WINDOW,
        sweep_interval_seconds=1,
        reload_interval_seconds=1,
        max_reports_per_hour=3,
        open_interval_seconds=1,
    ) as world:
        yield world


def listed_copy() -> Image.Image:
    return Image.open(io.BytesIO(jpeg(synthetic_photo(LISTED_SEED), quality=80)))


def test_threshold_policy_delivers_and_releases_evidence_at_t(
    threshold_world: MatrixWorld,
) -> None:
    s = threshold_world.new_sender(invite_recipient=True)
    state = MatrixState.open(threshold_world.database_url)
    for i in range(3):
        image = listed_copy()
        voucher = s.voucher_for(image, evidence=f"thumb-{i}".encode())
        mxc, digest, _ = s.encrypted_upload(jpeg(image))
        r = s.send(voucher_field([(voucher, mxc, digest)]))
        assert r.status == 200, r.body  # threshold: nothing is blocked
        wait_until_opened(threshold_world, s.user.user_id)  # through the queue
        mine = state.cases(kind="threshold", account=s.user.user_id)
        assert mine == [] if i < 2 else len(mine) == 3  # nothing before t, all three at t
    cases = state.cases(kind="threshold", account=s.user.user_id)
    assert sorted(state.case_evidence(c.id) or b"" for c in cases) == [
        b"thumb-0", b"thumb-1", b"thumb-2",
    ]  # fmt: skip
    for c in cases:
        assert [r["entry_id"] for m in c.entry_refs for r in m["refs"]] == ["listed-10"] * 2
        assert c.room == s.room_id and c.event_id and c.event_id.startswith("$")
    assert len({c.blobs[0] for c in cases}) == 3  # each case names the blob it came with
    assert not state.cases(kind="match", account=s.user.user_id)


def test_an_upload_left_unbound_is_quarantined_by_the_sweep(
    threshold_world: MatrixWorld,
) -> None:
    s = threshold_world.new_sender(invite_recipient=True)
    mxc, digest, _ = s.encrypted_upload(jpeg(synthetic_photo(12)))
    assert rejection(s.send())["org.blindmatch.reason"] == "voucher_required"
    deadline = time.monotonic() + 10 * WINDOW  # a bounded wait, not a timing assertion
    status = 200
    while time.monotonic() < deadline:
        status = threshold_world.download(mxc, threshold_world.recipient).status
        if status == 404:
            break
        time.sleep(0.5)
    assert status == 404  # quarantined: nobody can fetch it any more
    assert s.send().status == 200  # no longer pending
    v = s.voucher_for(synthetic_photo(12))
    body = rejection(s.send(voucher_field([(v, mxc, digest)])))
    assert body["org.blindmatch.reason"] == "blob_quarantined"


def test_a_new_table_is_served_and_the_old_ones_vouchers_still_accepted(
    threshold_world: MatrixWorld,
) -> None:
    http = threshold_world.hs.http
    s = threshold_world.new_sender()
    old_voucher = s.voucher_for(synthetic_photo(13))  # made against the table in use
    old = http.request("GET", "/_blindmatch/v1/table")
    old_digest = http.request("GET", "/_blindmatch/v1/info").json()["table_digest"]
    # The platform publishes a new table (same policy and t): files replaced one by one,
    # as a deployment would copy them (a half-replaced set must not be loaded).
    new_dir = build_table_dir(threshold_world.table_dir.parent / "v2", {"listed-10": listed_pdq(),
                              "other": bytes(32)}, policy="threshold", threshold=3,
                              floors=HARNESS_FLOORS)  # fmt: skip
    for name in ("table.bin", "manifest.json", "trust.json", "server.key"):
        tmp = threshold_world.table_dir / f".{name}.new"
        tmp.write_bytes((new_dir / name).read_bytes())
        os.replace(tmp, threshold_world.table_dir / name)
    deadline = time.monotonic() + 60  # bounded wait for the reload loop
    info = {}
    while time.monotonic() < deadline:
        info = http.request("GET", "/_blindmatch/v1/info").json()
        if info["table_digest"] != old_digest:
            break
        time.sleep(0.5)
    new_table = (new_dir / "table.bin").read_bytes()
    assert info["table_digest"] != old_digest
    polled = http.request(
        "GET", "/_blindmatch/v1/table", headers={"If-None-Match": old.headers["ETag"]}
    )
    assert polled.status == 200 and polled.body == new_table
    again = http.request(
        "GET", "/_blindmatch/v1/table", headers={"If-None-Match": polled.headers["ETag"]}
    )
    assert again.status == 304
    # A client that verified the new table (against the new keys, here) sends with it ...
    manifest = http.request("GET", "/_blindmatch/v1/manifest").body
    # (the throwaway table was signed with new keys: later tests trust them too)
    threshold_world.trust = load_trust_file(str(new_dir / "trust.json"))
    verified = verify_table(new_table, manifest, threshold_world.trust)
    new_session = ClientSession(verified, AccountSecret.generate())
    mxc, digest, _ = s.encrypted_upload(jpeg(synthetic_photo(13)))
    new_voucher = new_session.make_voucher(bytes.fromhex("0f" * 32))
    assert s.send(voucher_field([(new_voucher, mxc, digest)])).status == 200
    # ... and a voucher made just before the update is still accepted (grace period).
    mxc, digest, _ = s.encrypted_upload(jpeg(synthetic_photo(13)))
    assert s.send(voucher_field([(old_voucher, mxc, digest)])).status == 200
    # The worker opens it with the previous table's session (else it would stay queued).
    wait_until_opened(threshold_world, s.user.user_id)


def test_report_attempts_are_limited_per_account(threshold_world: MatrixWorld) -> None:
    s = threshold_world.new_sender(invite_recipient=True)
    body = {"event_id": "$x", "room_id": s.room_id, "payload": {}}
    answers = [
        threshold_world.hs.http.request("POST", "/_blindmatch/v1/report", json_body=body,
                                        token=threshold_world.recipient.access_token)
        for _ in range(4)
    ]  # fmt: skip
    assert [a.status for a in answers] == [404, 404, 404, 429]
    last = answers[-1].json()
    assert last["errcode"] == "M_LIMIT_EXCEEDED" and last["retry_after_ms"] > 0
    assert last["org.blindmatch.reason"] == "too_many_reports"
    # Another account is not held back.
    other = threshold_world.hs.http.request("POST", "/_blindmatch/v1/report", json_body=body,
                                            token=s.user.access_token)  # fmt: skip
    assert other.status == 404


def test_forged_listed_and_unlisted_vouchers_get_identical_answers(
    threshold_world: MatrixWorld,
) -> None:
    """Threshold policy: a listed picture's voucher with a flipped C_ev byte (its pair opens)
    and an unlisted one's with the same flip (nothing opens) are answered alike — accepted,
    the same response — and only the server learns, once the worker ran, that the first
    was forged: a ``tampered`` case that keeps the voucher."""
    s = threshold_world.new_sender()
    answers = []
    forged = []
    for image in (listed_copy(), synthetic_photo(11)):
        v = forge_evidence(s.voucher_for(image), s.session)
        mxc, digest, _ = s.encrypted_upload(jpeg(image))
        r = s.send(voucher_field([(v, mxc, digest)]))
        answers.append((r.status, sorted(r.json())))
        forged.append((v, mxc))
    assert answers[0] == answers[1] == (200, ["event_id"])
    from blindmatch.protocol.server import TAMPERED_MID  # C_mid's AAD covers C_ev

    wait_until_opened(threshold_world, s.user.user_id)
    state = MatrixState.open(threshold_world.database_url)
    [case] = state.cases(kind="tampered", account=s.user.user_id)
    (listed_v, listed_mxc), _ = forged
    assert case.blobs == [listed_mxc] and case.voucher_ids == [listed_v[24:40].hex()]
    [kept] = state.kept_vouchers(case.id)
    assert (kept.tampered, kept.voucher) == (TAMPERED_MID, listed_v)
    assert state.cases(kind="match", account=s.user.user_id) == []
    assert state.cases(kind="threshold", account=s.user.user_id) == []
    assert {b.outcome for b in state.bindings(voucher_ids=[v[24:40].hex() for v, _ in forged])} == {
        "accepted"
    }  # fmt: skip


def test_replays_of_an_opened_and_an_unopened_voucher_get_the_same_answers(
    threshold_world: MatrixWorld,
) -> None:
    """A voucher of an event refused for its form is never opened nor counted: sent again,
    listed or not, it is accepted; once bound, replaying either (one that opened, one that
    did not) is refused alike, voucher_replayed."""
    s = threshold_world.new_sender()
    listed, unlisted = s.voucher_for(listed_copy()), s.voucher_for(synthetic_photo(11))
    for v in (listed, unlisted):
        bad = break_a_point(s.voucher_for(synthetic_photo(11)), s.session)
        (m1, d1, _), (m2, d2, _) = s.encrypted_upload(b"a"), s.encrypted_upload(b"b")
        body = rejection(s.send(voucher_field([(v, m1, d1), (bad, m2, d2)])))
        assert body["org.blindmatch.reason"] == "invalid_voucher"
        assert not_opened(threshold_world, s)  # refused for its form: nothing of it was opened
        fresh = [(s.voucher_for(synthetic_photo(11)), m1, d1),
                 (s.voucher_for(synthetic_photo(11)), m2, d2)]  # fmt: skip
        assert s.send(voucher_field(fresh)).status == 200  # the two uploads bound honestly
    for v in (listed, unlisted):
        mxc, digest, _ = s.encrypted_upload(b"c")
        assert s.send(voucher_field([(v, mxc, digest)])).status == 200
    wait_until_opened(threshold_world, s.user.user_id)
    for v in (listed, unlisted):
        mxc, digest, _ = s.encrypted_upload(b"d")
        body = rejection(s.send(voucher_field([(v, mxc, digest)])))
        assert body["org.blindmatch.reason"] == "voucher_replayed"
    state = MatrixState.open(threshold_world.database_url)
    assert state.cases(account=s.user.user_id) == []  # nothing forged, t not reached


def test_queued_vouchers_survive_a_restart(threshold_world: MatrixWorld) -> None:
    """With the worker off, accepted vouchers stay queued (bindings ``pending``, no case);
    after a restart with the worker on, they are opened and the threshold cases appear."""
    hs = threshold_world.hs
    assert hs.module_config is not None
    hs.stop()
    hs.module_config["open_interval_seconds"] = 0  # this process opens nothing
    hs.start()
    try:
        s = threshold_world.new_sender()
        state = MatrixState.open(threshold_world.database_url)
        for i in range(3):
            image = listed_copy()
            mxc, digest, _ = s.encrypted_upload(jpeg(image))
            v = s.voucher_for(image, evidence=f"kept-{i}".encode())
            assert s.send(voucher_field([(v, mxc, digest)])).status == 200
        queued = state.queued(account=s.user.user_id)
        assert len(queued) == 3
        assert {b.outcome for b in state.bindings(voucher_ids=[q.voucher_id for q in queued])} == {
            "pending"
        }  # fmt: skip
        assert state.cases(account=s.user.user_id) == []
    finally:
        hs.stop()
        hs.module_config["open_interval_seconds"] = 1
        hs.start()
    wait_until_opened(threshold_world, s.user.user_id)
    cases = state.cases(kind="threshold", account=s.user.user_id)
    assert sorted(state.case_evidence(c.id) or b"" for c in cases) == [
        b"kept-0", b"kept-1", b"kept-2",
    ]  # fmt: skip
