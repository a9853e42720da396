"""The second distance check end to end: a real Synapse with the module on a
distance-checked table (k = 40, R = 31, one slot; docs/protocol.md §11), real matrix-nio
clients. What the eval's ``private+companion+check`` scheme measures, the messenger blocks.

Benign pictures only: the table lists ``synthetic_photo(LISTED_SEED)`` (conftest); edited
copies of it stand in for re-shared listed pictures.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("nio", reason="the matrix extra (matrix-nio) is not installed")

from blindmatch.demo.synthetic import synthetic_photo  # noqa: E402
from blindmatch.integrations.matrix.client import (  # noqa: E402
    BlindmatchClient,
    SendRefused,
    hash_image,
)
from blindmatch.integrations.matrix.events import ANSWER_KEY, voucher_field  # noqa: E402
from blindmatch.integrations.matrix.receive import Hidden  # noqa: E402
from blindmatch.protocol import VerifiedTable, answer_for_image, new_opening_seed  # noqa: E402
from blindmatch.protocol.challenge import answer_bytes  # noqa: E402
from tests.integration.matrix.conftest import (  # noqa: E402
    LISTED_SEED,
    MatrixWorld,
    jpeg,
    running_world,
    stats,
)
from tests.integration.matrix.test_client import pair, received  # noqa: E402


@pytest.fixture(scope="module")
def checked_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatrixWorld]:
    with running_world(tmp_path_factory.mktemp("checked"), distance_radius=31) as world:
        yield world


def brightened(img: Image.Image, gamma: float = 0.7) -> Image.Image:
    arr = np.asarray(img.convert("RGB")).astype(np.float64) / 255.0
    return Image.fromarray((255.0 * arr**gamma).round().clip(0, 255).astype(np.uint8))


LISTED = synthetic_photo(LISTED_SEED)
RECOMPRESSED = jpeg(LISTED, 40)  # the listed picture re-compressed at quality 40
BRIGHTENED = jpeg(brightened(LISTED), 85)  # … and brightened (gamma 0.7)
UNRELATED = jpeg(synthetic_photo(11))


class DecoyAnswer(BlindmatchClient):
    """A modified app: vouchers the real picture, but answers the challenge for a harmless
    one (well-formed: the server's check fails, so a candidate goes through)."""

    decoy = jpeg(synthetic_photo(12))

    async def answer_vouchers(
        self, verified: VerifiedTable, vouchers: Any, seeds: Any, answer_for: Any,
        timings: Any = None,
    ) -> list[bytes] | None:  # fmt: skip
        h = hash_image(self.decoy, companions=verified.has_companions)
        challenges = [await self.fetch_challenge(v, verified) for v in vouchers]
        return [
            answer_for_image(verified, c, s, h.pdq, confidence=h.confidence,
                             variants=h.variants, commitment=bytes(32))
            for c, s in zip(challenges, seeds, strict=True)
        ]  # fmt: skip


def test_edited_copies_of_a_listed_picture_are_refused_and_others_delivered(
    checked_world: MatrixWorld, tmp_path: Path
) -> None:
    async def body(alice: BlindmatchClient, bob: BlindmatchClient, room: str) -> dict[str, Any]:
        assert alice.session.table.distance is not None  # the client sees a checked table
        sent = await alice.send_image(room, UNRELATED, body="photo.jpg")
        for copy in (RECOMPRESSED, BRIGHTENED):
            with pytest.raises(SendRefused) as e:
                await alice.send_image(room, copy, body="copy.jpg")
            assert e.value.reason == "listed_image" and e.value.case_id
        [verdict] = await received(bob)
        # the recipient fetched the challenge the sender answered and checked the answer
        assert verdict.ok, (verdict.reason, verdict.detail)
        assert verdict.event_id == sent.event_id and verdict.images == [UNRELATED]
        raw = await bob.fetch_event(room, sent.event_id)
        field = raw["content"]["org.blindmatch.voucher"]
        params = alice.session.table.distance
        assert params is not None
        assert len(base64.b64decode(field[ANSWER_KEY])) == answer_bytes(params)
        return dict(sent.timings)

    timings = asyncio.run(_run(checked_world, tmp_path, body))
    assert {"challenge", "answer"} <= set(timings)
    print(f"\nsend timings (s): {timings}")
    # a modified sender that answers for another picture slips past the server's check (the
    # pair opened, the check did not pass): the recipient recomputes the answer and hides it
    dodged = asyncio.run(_run(checked_world, tmp_path, _decoy_send, DecoyAnswer))
    assert dodged.reason is Hidden.VOUCHER_NOT_FOR_IMAGE, (dodged.reason, dodged.detail)
    assert dodged.images == []


async def _decoy_send(alice: BlindmatchClient, bob: BlindmatchClient, room: str) -> Any:
    await alice.send_image(room, RECOMPRESSED, body="copy.jpg")
    [verdict] = await received(bob)
    return verdict


async def _run(world: MatrixWorld, tmp: Path, body: Any,
               cls: type[BlindmatchClient] = BlindmatchClient) -> Any:  # fmt: skip
    async with pair(world, tmp, cls) as (alice, bob, room):
        await alice.refresh_table()
        return await body(alice, bob, room)


def test_a_missing_or_garbage_answer_is_refused_and_the_module_keeps_serving(
    checked_world: MatrixWorld,
) -> None:
    s = checked_world.new_sender()
    params = s.session.table.distance
    assert params is not None
    image = synthetic_photo(13)
    data = jpeg(image)
    h = hash_image(data, companions=s.session.verified.has_companions)

    def prepared() -> tuple[str, str, bytes, bytes]:
        mxc, digest, _ = s.encrypted_upload(data)
        seed = new_opening_seed()
        v = s.session.make_voucher(h.pdq, confidence=h.confidence, variants=h.variants,
                                   commitment=bytes.fromhex(digest), opening_seed=seed)  # fmt: skip
        return mxc, digest, v, seed

    def challenge(voucher: bytes, token: str | None = s.user.access_token) -> Any:
        return checked_world.hs.http.request(
            "POST", "/_blindmatch/v1/challenge", token=token,
            json_body={"voucher": base64.b64encode(voucher).decode()},
        )  # fmt: skip

    before = stats(checked_world)["reasons"]
    # no answer
    mxc, digest, v, seed = prepared()
    r = s.send(voucher_field([(v, mxc, digest)]))
    assert r.status == 403 and r.json()["org.blindmatch.reason"] == "malformed_voucher", r.body
    # an answer of the right size that is no answer (no valid points)
    r = s.send(voucher_field([(v, mxc, digest)], [secrets.token_bytes(answer_bytes(params))]))
    assert r.status == 403 and r.json()["org.blindmatch.reason"] == "invalid_voucher", r.body
    # the challenge endpoint: a token is needed, garbage gets a 400, the same voucher the
    # same challenge
    assert challenge(v, token=None).status == 401
    bad = checked_world.hs.http.request("POST", "/_blindmatch/v1/challenge",
                                        token=s.user.access_token,
                                        json_body={"voucher": "garbage"})  # fmt: skip
    assert bad.status == 400 and bad.json()["org.blindmatch.reason"] == "malformed_voucher"
    first, again = challenge(v), challenge(v)
    assert first.status == 200 and first.json() == again.json()
    # the module keeps serving: the same voucher (a refused event binds nothing) with the
    # answer to its challenge is delivered
    answer = answer_for_image(
        s.session.verified, base64.b64decode(first.json()["challenge"]), seed, h.pdq,
        confidence=h.confidence, variants=h.variants, commitment=bytes.fromhex(digest),
    )  # fmt: skip
    r = s.send(voucher_field([(v, mxc, digest)], [answer]))
    assert r.status == 200, r.body
    after = stats(checked_world)["reasons"]
    assert after.get("internal_error", 0) == before.get("internal_error", 0)
