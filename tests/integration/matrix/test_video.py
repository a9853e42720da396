"""Videos through the Matrix integration: the client vouchers up to three frames of a
video (vPDQ), the module opens all of them for the one blob, the recipient checks them.

Benign content only: the videos are made with ffmpeg from synthetic abstract photos, one
picture per second; the session table lists ``synthetic_photo(LISTED_SEED)`` (conftest).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("vpdq", reason="vPDQ (Meta's vpdq) is not installed")
pytest.importorskip("nio", reason="the matrix extra (matrix-nio) is not installed")
if shutil.which("ffmpeg") is None:
    pytest.skip("ffmpeg is needed to make the test videos", allow_module_level=True)

from blindmatch.demo.synthetic import synthetic_photo  # noqa: E402
from blindmatch.errors import VideoError  # noqa: E402
from blindmatch.integrations.matrix.client import (  # noqa: E402
    OPENING_FIELD,
    VIDEO_FRAMES,
    BlindmatchClient,
    SendRefused,
    VideoHashes,
    choose_frames,
    hash_video,
)
from blindmatch.integrations.matrix.events import voucher_field  # noqa: E402
from blindmatch.integrations.matrix.receive import Hidden  # noqa: E402
from blindmatch.integrations.matrix.state import Binding, BindingConflict, MatrixState  # noqa: E402
from blindmatch.lists.model import VpdqFrame  # noqa: E402
from blindmatch.store.db import open_store  # noqa: E402
from tests.conftest import run_cli  # noqa: E402
from tests.integration.matrix.conftest import LISTED_SEED, MatrixWorld, rejection  # noqa: E402
from tests.integration.matrix.test_client import received, run  # noqa: E402

SYNAPSE_EVENT_LIMIT = 65_536


@cache
def video(seeds: tuple[int, ...]) -> bytes:
    """An H.264 MP4 showing ``synthetic_photo(seed)`` for one second each (10 fps)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for i, seed in enumerate(seeds):
            synthetic_photo(seed).save(d / f"f{i:03d}.png")
        subprocess.run(
            [
                "ffmpeg", "-y", "-loglevel", "error", "-framerate", "1",
                "-i", str(d / "f%03d.png"), "-r", "10", "-c:v", "libx264",
                "-pix_fmt", "yuv420p", str(d / "v.mp4"),
            ],
            check=True,
        )  # fmt: skip
        return (d / "v.mp4").read_bytes()


BENIGN_VIDEO = (21, 22, 23, 24, 25)  # five seconds: three of five frames are vouchered
LISTED_VIDEO = (21, LISTED_SEED, 22)  # the listed picture in the middle second
OTHER_VIDEO = (31, 32, 33, 34)


def _frame(q: int, t: float) -> VpdqFrame:
    return VpdqFrame("0" * 64, q, t)


# -- the choice of frames (no homeserver) -------------------------------------------------------
def test_the_frames_are_chosen_deterministically_and_spread_over_the_video() -> None:
    qualities = [100, 40, 100, 100, 90, 100, 20]
    frames = [_frame(q, float(i)) for i, q in enumerate(qualities)]
    # Runs [0,1], [2,3,4], [5,6]: the best frame of each, the earliest on a tie.
    assert choose_frames(frames) == (0, 2, 5)
    frames[0] = _frame(10, 0.0)
    assert choose_frames(frames) == (1, 2, 5)
    assert choose_frames(frames[:2]) == (0, 1)  # fewer frames than K: all of them
    assert choose_frames([]) == ()
    assert VIDEO_FRAMES == 3
    # A real video: one hash a second, the same choice from the same bytes.
    h = hash_video(video(BENIGN_VIDEO))
    assert len(h.frames) == 5 and [f.timestamp for f in h.frames] == [0, 1, 2, 3, 4]
    assert h.chosen == (0, 1, 3) and h == hash_video(video(BENIGN_VIDEO))
    # What is not a video is refused with a clear error, never a crash.
    with pytest.raises(VideoError):
        hash_video(b"%PDF-1.4 not a video")
    with pytest.raises(VideoError):
        hash_video(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)  # an MP4 header, no frames


def test_one_event_binds_a_blob_with_several_vouchers_and_no_other_event_can(
    tmp_path: Path,
) -> None:
    state = MatrixState(open_store(f"sqlite:///{tmp_path / 'bm.db'}").engine)

    def b(vid: str, media: str, event: str) -> Binding:
        return Binding(vid, media, "@a:x", "!r:x", event, "0" * 64, "accepted", None)

    state.bind([b("01", "video", "$1"), b("02", "video", "$1"), b("03", "video", "$1")])
    assert {x.voucher_id for x in state.bindings(media_ids=["video"])} == {"01", "02", "03"}
    with pytest.raises(BindingConflict):  # another event, the same blob
        state.bind([b("04", "video", "$2")])
    with pytest.raises(BindingConflict):  # a voucher id again
        state.bind([b("01", "other", "$3")])
    assert {x.voucher_id for x in state.bindings(media_ids=["video", "other"])} == {
        "01", "02", "03"}  # fmt: skip


# -- the module (raw events) -------------------------------------------------------------------
def test_the_module_opens_every_frame_voucher_of_one_blob_and_keeps_replay_protection(
    matrix_world: MatrixWorld,
) -> None:
    s = matrix_world.new_sender()
    h = hash_video(video(BENIGN_VIDEO))
    mxc, digest, _ = s.encrypted_upload(video(BENIGN_VIDEO))

    def frame_vouchers() -> list[bytes]:
        commitment = bytes.fromhex(digest)
        return [s.session.make_voucher(bytes.fromhex(f.pdq), commitment=commitment)
                for f in h.chosen_frames]  # fmt: skip

    vs = frame_vouchers()
    # Two different hashes for the one blob: malformed.
    bad = voucher_field([(vs[0], mxc, digest), (vs[1], mxc, "0" * 64)])
    assert rejection(s.send(bad))["org.blindmatch.reason"] == "malformed_voucher"
    # Five vouchers: over the cap of four.
    five = voucher_field([(v, mxc, digest) for v in vs[:3]]) + voucher_field(
        [(v, mxc, digest) for v in frame_vouchers()[:2]])  # fmt: skip
    body = rejection(s.send(five))
    assert body["org.blindmatch.reason"] == "malformed_voucher"
    # The same voucher twice for the blob: a replay, as before.
    body = rejection(s.send(voucher_field([(vs[0], mxc, digest), (vs[0], mxc, digest)])))
    assert body["org.blindmatch.reason"] == "voucher_replayed"
    # Three vouchers, one blob, one event: accepted.
    r = s.send(voucher_field([(v, mxc, digest) for v in vs]))
    assert r.status == 200, r.body
    # Another event binding the same blob with fresh vouchers: refused, as for a picture.
    body = rejection(s.send(voucher_field([(v, mxc, digest) for v in frame_vouchers()])))
    assert body["org.blindmatch.reason"] == "blob_already_bound"
    # One of the three vouchers on a new blob: a replay.
    mxc2, digest2, _ = s.encrypted_upload(video(BENIGN_VIDEO))
    body = rejection(s.send(voucher_field([(vs[1], mxc2, digest2)])))
    assert body["org.blindmatch.reason"] == "voucher_replayed"


# -- the client and the recipient ---------------------------------------------------------------
def test_a_benign_video_is_delivered_and_each_chosen_frame_verified(
    matrix_world: MatrixWorld, tmp_path: Path
) -> None:
    data = video(BENIGN_VIDEO)

    async def body(alice: BlindmatchClient, bob: BlindmatchClient, room: str) -> None:
        sent = await alice.send_video(room, data, body="clip.mp4")
        [v] = await received(bob)
        assert v.ok, (v.reason, v.detail)
        assert v.videos == [data] and v.images == []
        assert v.payload is not None and v.payload["msgtype"] == "m.video"
        assert v.payload["info"]["mimetype"] == "video/mp4"
        assert v.payload["info"]["duration"] == 4000  # the last hashed frame's time
        # Three vouchers, three opening seeds (frame 0..2), one blob.
        assert len(sent.attachments) == 3 and len({a.mxc for a in sent.attachments}) == 1
        assert len({a.voucher_id for a in sent.attachments}) == 3
        assert v.payload[OPENING_FIELD] == [
            {"blob": a.mxc, "seed": base64.b64encode(a.opening_seed).decode(), "frame": j}
            for j, a in enumerate(sent.attachments)
        ]
        raw = await bob.fetch_event(room, sent.event_id)
        field = raw["content"]["org.blindmatch.voucher"]
        assert [f["blob"] for f in field] == [sent.attachments[0].mxc] * 3
        assert [base64.b64decode(f["voucher"])[24:40] for f in field] == [
            a.voucher_id for a in sent.attachments
        ]
        size = len(json.dumps(raw["content"], separators=(",", ":")))
        assert 3 * 14_000 < size < SYNAPSE_EVENT_LIMIT - 8_000, size
        # The timings say where the time went.
        assert {"hash", "encrypt", "upload", "voucher", "send", "total"} <= set(sent.timings)
        # What is no video, or cannot be decoded, is refused before anything is uploaded.
        with pytest.raises(VideoError):
            await alice.send_video(room, b"%PDF-1.4 not a video")
        with pytest.raises(VideoError):
            await alice.send_video(room, b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
        await alice.send_text(room, "nothing pending")
        assert [x.ok for x in await received(bob)] == [True]

    run(matrix_world, tmp_path, body)


def test_a_video_showing_the_listed_picture_is_refused_listed_image(
    matrix_world: MatrixWorld, tmp_path: Path
) -> None:
    async def body(alice: BlindmatchClient, bob: BlindmatchClient, room: str) -> None:
        with pytest.raises(SendRefused) as refused:
            await alice.send_video(room, video(LISTED_VIDEO), body="clip.mp4")
        e = refused.value
        assert e.reason == "listed_image" and e.case_id is not None
        assert e.appeal is not None and e.appeal["case"] == e.case_id
        assert await received(bob) == []
        cases = run_cli("cases", "list", "--json", "--database-url", matrix_world.database_url)
        [case] = [c for c in cases.json_lines if c["id"] == e.case_id]
        assert case["account"] == alice.user_id
        # The blob was quarantined (not pending): the sender's next message goes through.
        await alice.send_text(room, "sorry")
        [v] = await received(bob)
        assert v.ok

    run(matrix_world, tmp_path, body)


class DecoyVideoClient(BlindmatchClient):
    """Attaches the video it is given but vouchers the frames of another one."""

    decoy = video(OTHER_VIDEO)

    async def hash_video(self, data: bytes) -> VideoHashes:
        return await super().hash_video(self.decoy)


class OneFrameClient(BlindmatchClient):
    """Vouchers only the first chosen frame of its video."""

    async def hash_video(self, data: bytes) -> VideoHashes:
        h = await super().hash_video(data)
        return VideoHashes(h.frames, h.chosen[:1])


def _hidden(reason: Hidden, sent_payload: dict[str, Any], v: Any) -> None:
    assert v.reason is reason and not v.ok, (v.reason, v.detail)
    assert v.videos == [] and v.images == []
    assert v.reportable and v.payload == sent_payload


def test_a_video_vouchered_with_another_videos_frames_is_hidden_by_the_recipient(
    matrix_world: MatrixWorld, tmp_path: Path
) -> None:
    async def body(alice: BlindmatchClient, bob: BlindmatchClient, room: str) -> None:
        # The listed video, vouchered with a harmless video's frames: the server opens the
        # decoy's vouchers and cannot see the lie; the recipient can.
        sent = await alice.send_video(room, video(LISTED_VIDEO))
        [v] = await received(bob)
        _hidden(Hidden.VOUCHER_NOT_FOR_IMAGE, sent.payload, v)
        assert "frame 0" in v.detail

    run(matrix_world, tmp_path, body, DecoyVideoClient)


def test_a_video_with_fewer_vouchers_than_chosen_frames_is_hidden(
    matrix_world: MatrixWorld, tmp_path: Path
) -> None:
    async def body(alice: BlindmatchClient, bob: BlindmatchClient, room: str) -> None:
        sent = await alice.send_video(room, video(BENIGN_VIDEO))
        assert len(sent.attachments) == 1
        [v] = await received(bob)
        _hidden(Hidden.VOUCHER_NOT_FOR_IMAGE, sent.payload, v)
        assert "1 vouchers for 3 chosen frames" in v.detail

    run(matrix_world, tmp_path, body, OneFrameClient)


def _chosen_seconds(seeds: Sequence[int]) -> list[float]:
    h = hash_video(video(tuple(seeds)))
    return [f.timestamp for f in h.chosen_frames]


def test_a_listed_frame_outside_the_chosen_ones_is_not_seen_documented_gap(
    matrix_world: MatrixWorld, tmp_path: Path
) -> None:
    """docs/matrix.md "Videos": only K frames are vouchered. The listed picture in the
    second second of a six-second video is not among frames 0, 2 and 4: it goes through."""
    seeds = (21, LISTED_SEED, 22, 23, 24, 25)
    assert _chosen_seconds(seeds) == [0.0, 2.0, 4.0]
    digest = hashlib.sha256(video(seeds)).hexdigest()

    async def body(alice: BlindmatchClient, bob: BlindmatchClient, room: str) -> None:
        await alice.send_video(room, video(seeds))
        [v] = await received(bob)
        assert v.ok and hashlib.sha256(v.videos[0]).hexdigest() == digest

    run(matrix_world, tmp_path, body)
