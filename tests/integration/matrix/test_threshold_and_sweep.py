"""A second Synapse: a threshold-policy table, and a short bind window so the sweep runs."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import pytest
from PIL import Image

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.integrations.matrix.events import voucher_field
from blindmatch.integrations.matrix.state import MatrixState
from tests.integration.matrix.conftest import (
    LISTED_SEED,
    MatrixWorld,
    jpeg,
    rejection,
    running_world,
)

WINDOW = 4  # seconds an upload may stay unbound before the sweep quarantines it


@pytest.fixture(scope="module")
def threshold_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatrixWorld]:
    root = tmp_path_factory.mktemp("matrix-threshold")
    with running_world(
        root, policy="threshold", threshold=3, bind_window_seconds=WINDOW, sweep_interval_seconds=1
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
