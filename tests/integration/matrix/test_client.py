"""The blindmatch Matrix client (BlindmatchClient) against a real Synapse with the module.

Two fresh accounts per test, each a real matrix-nio client with its own Olm device, in an
end-to-end-encrypted room: Megolm keys are shared by nio, pictures are encrypted as Matrix
does, the voucher and the franking commitment travel beside the ciphertext. Modified
senders are subclasses overriding one step, as a modified app would.

Benign pictures only: synthetic abstract photos; the session table lists
``synthetic_photo(LISTED_SEED)`` (conftest).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import io
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
from PIL import Image

pytest.importorskip("nio", reason="the matrix extra (matrix-nio) is not installed")

from nio import AsyncClientConfig, MemoryDownloadResponse  # noqa: E402
from nio.crypto.attachments import decrypt_attachment as nio_decrypt  # noqa: E402

from blindmatch.demo.synthetic import synthetic_photo  # noqa: E402
from blindmatch.errors import ConfigError, InputError, InvalidManifest, NotAnImage  # noqa: E402
from blindmatch.integrations.matrix.client import (  # noqa: E402
    FRANKING_FIELD,
    OPENING_FIELD,
    BlindmatchClient,
    HomeserverError,
    ImageHashes,
    ReportRefused,
    SendRefused,
    _TableState,
    load_trust,
)
from blindmatch.integrations.matrix.homeserver import (  # noqa: E402
    build_table_dir,
    encrypted_room,
)
from blindmatch.integrations.matrix.receive import Hidden, Verdict, check_event  # noqa: E402
from blindmatch.protocol import (  # noqa: E402
    AccountSecret,
    ClientSession,
    FrankingContext,
    FrankingKeyring,
    FrankingReport,
    encrypt_attachment,
    frank,
    verify_table,
)
from blindmatch.protocol.franking import FRANKING_KEY_FIELD  # noqa: E402
from tests.conftest import run_cli  # noqa: E402
from tests.integration.matrix.conftest import LISTED_SEED, MatrixWorld, jpeg  # noqa: E402
from tests.protocol.test_franking import matrix_ctr  # noqa: E402

C = TypeVar("C", bound=BlindmatchClient)
BENIGN = jpeg(synthetic_photo(11))
OTHER_BENIGN = jpeg(synthetic_photo(12, (800, 600)))


def listed_copy() -> bytes:
    """The listed picture as someone would re-share it: half size, re-compressed."""
    im = synthetic_photo(LISTED_SEED)
    return jpeg(im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS), 75)


async def login(world: MatrixWorld, tmp: Path, cls: type[C], **kw: Any) -> C:
    name = f"c{secrets.token_hex(4)}"
    password = secrets.token_hex(12)
    user = world.hs.register_user(name, password)
    config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
    kw.setdefault("trust", world.table_dir / "trust.json")  # pinned out of band
    (tmp / name).mkdir(parents=True)
    c = cls(world.hs.url, user.user_id, store_path=str(tmp / name), config=config, **kw)
    await c.login(password, device_name=name)
    assert c.access_token
    if c.should_upload_keys:
        await c.keys_upload()
    return c


@asynccontextmanager
async def pair(
    world: MatrixWorld, tmp: Path, sender_cls: type[C]
) -> AsyncIterator[tuple[C, BlindmatchClient, str]]:
    """A sender and a recipient in a new encrypted room, both synced."""
    alice = await login(world, tmp, sender_cls)
    bob = await login(world, tmp, BlindmatchClient)
    try:
        room_id = await encrypted_room(alice, bob)
        await bob.check_received()  # nothing encrypted yet
        yield alice, bob, room_id
    finally:
        await alice.close()
        await bob.close()


async def received(bob: BlindmatchClient) -> list[Verdict]:
    await bob.sync(timeout=0)
    return await bob.check_received()


R = TypeVar("R")


def run(world: MatrixWorld, tmp: Path, body: Callable[..., Awaitable[R]],
        sender_cls: type[BlindmatchClient] = BlindmatchClient) -> R:  # fmt: skip
    async def go() -> R:
        async with pair(world, tmp, sender_cls) as (alice, bob, room):
            return await body(alice, bob, room)

    return asyncio.run(go())


# -- honest clients ---------------------------------------------------------------------------
def test_an_ordinary_photo_is_delivered_decrypted_and_verified(
    matrix_world: MatrixWorld, tmp_path: Path
) -> None:
    async def body(alice: BlindmatchClient, bob: BlindmatchClient, room: str) -> None:
        sent = await alice.send_image(room, BENIGN, body="photo.jpg")
        text = await alice.send_text(room, "look at this")
        [image, message] = await received(bob)
        # The recipient decrypted the event and the blob, checked the franking and that the
        # voucher was made for this very picture: shown.
        assert image.ok and image.reason is None, (image.reason, image.detail)
        assert image.event_id == sent.event_id and image.sender == alice.user_id
        assert image.images == [BENIGN]
        assert image.franking_ok and image.commitment == sent.commitment and image.reportable
        assert image.payload is not None and image.payload["msgtype"] == "m.image"
        [att] = sent.attachments
        assert image.payload[OPENING_FIELD] == [
            {"blob": att.mxc, "seed": base64.b64encode(att.opening_seed).decode()}
        ]
        assert FRANKING_KEY_FIELD in image.payload and image.payload["file"]["url"] == att.mxc
        assert message.ok and message.payload is not None
        assert message.payload["body"] == "look at this" and message.commitment == text.commitment
        # What the server stored: voucher and franking commitment beside the ciphertext,
        # nothing of the picture or the opening.
        raw = await bob.fetch_event(room, sent.event_id)
        outer = raw["content"]
        assert set(outer) == {"algorithm", "ciphertext", "sender_key", "session_id",
                              "device_id", "org.blindmatch.voucher", FRANKING_FIELD}  # fmt: skip
        v = outer["org.blindmatch.voucher"]
        assert (v["v"], v["blob"], v["blob_sha256"]) == (1, att.mxc, att.blob_sha256.hex())
        assert base64.b64decode(v["voucher"])[24:40] == att.voucher_id
        assert len(base64.b64decode(v["voucher"])) == alice.session.voucher_bytes
        assert outer[FRANKING_FIELD] == {"v": 1, "commitment": base64.b64encode(
            sent.commitment).decode()}  # fmt: skip
        raw_text = await bob.fetch_event(room, text.event_id)
        assert "org.blindmatch.voucher" not in raw_text["content"]
        assert FRANKING_FIELD in raw_text["content"]
        assert att.opening_seed.hex() not in str(raw) and "seed" not in str(outer)
        # Prepared ahead (decode, encrypt, hash, voucher), sent later; once only.
        prepared = await alice.prepare_image(OTHER_BENIGN, body="later.jpg")
        later = await alice.send_image(room, prepared)
        assert later.attachments[0].voucher_id == prepared.voucher_id
        with pytest.raises(ConfigError):
            await alice.send_image(room, prepared)
        [v] = await received(bob)
        assert v.ok and v.images == [OTHER_BENIGN] and v.event_id == later.event_id
        # What cannot be hashed is refused before anything is uploaded: an unvouchered
        # upload would make the server refuse this account's next encrypted events.
        with pytest.raises(InputError):
            await alice.send_image(room, BENIGN[: len(BENIGN) // 2])
        with pytest.raises(NotAnImage):
            await alice.send_image(room, b"%PDF-1.4 not a picture")
        await alice.send_text(room, "still here")
        assert [v.ok for v in await received(bob)] == [True]

    run(matrix_world, tmp_path, body)


def test_a_listed_photo_is_refused_with_a_case_and_never_delivered(
    matrix_world: MatrixWorld, tmp_path: Path
) -> None:
    async def body(alice: BlindmatchClient, bob: BlindmatchClient, room: str) -> None:
        with pytest.raises(SendRefused) as refused:
            await alice.send_image(room, listed_copy(), body="copy.jpg")
        e = refused.value
        assert e.reason == "listed_image" and "known abuse image" in e.message
        assert e.case_id is not None and e.case_id.startswith("BM-")
        assert e.appeal is not None and e.appeal["case"] == e.case_id
        assert e.as_dict()["case"] == e.case_id
        assert await received(bob) == []
        # The sender's next messages go through (the refused blob is quarantined, not pending).
        await alice.send_text(room, "sorry")
        [v] = await received(bob)
        assert v.ok
        cases = run_cli("cases", "list", "--json", "--database-url", matrix_world.database_url)
        assert [c["account"] for c in cases.json_lines if c["id"] == e.case_id] == [alice.user_id]

    run(matrix_world, tmp_path, body)


def test_a_client_on_an_old_table_refetches_once_and_sends(
    matrix_world: MatrixWorld, tmp_path: Path
) -> None:
    other = build_table_dir(tmp_path / "old-table", {"x": b"\x01" * 32})
    old = verify_table((other / "table.bin").read_bytes(), (other / "manifest.json").read_bytes(),
                       load_trust(other / "trust.json"))  # fmt: skip

    async def body(alice: BlindmatchClient, bob: BlindmatchClient, room: str) -> None:
        current = alice.verified_table
        assert current is not None
        # Pretend the server changed its table since this client fetched one.
        alice._table = _TableState(old, ClientSession(old, AccountSecret.generate()), None,
                                   None, b"")  # fmt: skip
        prepared = await alice.prepare_image(OTHER_BENIGN)  # vouchered on the old table too
        assert prepared.table_id == old.table.table_id
        sent = await alice.send_image(room, BENIGN)
        assert sent.table_refetched
        assert alice.verified_table is not None
        assert alice.verified_table.table.table_id == current.table.table_id
        # A picture prepared before the table changed is vouchered again when sent.
        later = await alice.send_image(room, prepared)
        assert not later.table_refetched and later.attachments[0].voucher_id != (
            prepared.voucher_id
        )
        [v, w] = await received(bob)
        assert v.ok and v.images == [BENIGN]
        assert w.ok and w.images == [OTHER_BENIGN]

    async def with_table(alice: BlindmatchClient, bob: BlindmatchClient, room: str) -> None:
        await alice.refresh_table()
        await body(alice, bob, room)

    run(matrix_world, tmp_path, with_table)


def test_the_table_is_polled_with_etags_and_only_pinned_keys_are_trusted(
    matrix_world: MatrixWorld, tmp_path: Path
) -> None:
    rogue = build_table_dir(tmp_path / "rogue", {"x": b"\x02" * 32})

    async def body(alice: BlindmatchClient, bob: BlindmatchClient, room: str) -> None:
        assert await alice.refresh_table() is True
        assert alice.table_downloads == 1
        assert await alice.refresh_table() is False  # 304: the manifest did not change
        assert (alice.table_downloads, alice.manifest_checks) == (1, 2)
        alice.start_table_updates(interval=0.05)
        for _ in range(200):  # wait for the background poll to run a few times
            if alice.manifest_checks >= 5:
                break
            await asyncio.sleep(0.05)
        assert alice.manifest_checks >= 5 and alice.table_downloads == 1
        assert alice.table_error is None
        await alice.send_image(room, BENIGN)  # sends while the poll runs
        await alice.stop_table_updates()
        # A client pinned to other keys refuses this server's table, and cannot send.
        stranger = await login(matrix_world, tmp_path, BlindmatchClient,
                               trust=rogue / "trust.json")  # fmt: skip
        try:
            with pytest.raises(InvalidManifest):
                await stranger.refresh_table()
            assert stranger.verified_table is None
            with pytest.raises(InvalidManifest):
                await stranger.send_image(room, BENIGN)
        finally:
            await stranger.close()

    run(matrix_world, tmp_path, body)


# -- modified senders ---------------------------------------------------------------------------
class DecoyVoucherClient(BlindmatchClient):
    """Attaches the picture it is given but vouchers a harmless one instead."""

    decoy = OTHER_BENIGN

    async def hash_image(self, data: bytes, **kw: Any) -> ImageHashes:
        return await super().hash_image(self.decoy, companions=kw["companions"])


class NoVoucherClient(BlindmatchClient):
    """Uploads the attachment and sends the event without a voucher."""

    def voucher_field_for(self, attachments: Any, vouchers: Any, answers: Any = None) -> Any:
        return None


class TamperedFrankingClient(BlindmatchClient):
    """Changes the message after committing to it."""

    def frank_content(self, content: Any) -> tuple[dict[str, Any], bytes]:
        payload, commitment = super().frank_content(content)
        return {**payload, "body": "not what was committed"}, commitment


class CounterHalfClient(BlindmatchClient):
    """Encrypts its attachments with Matrix's 64-bit wrapping counter (as nio runs it) but
    starts the counter half of the IV at FF…FF: every Matrix client decrypts the picture,
    while a 128-bit counter gives other bytes from the second block on."""

    @staticmethod
    def _encrypt(data: bytes) -> tuple[bytes, dict[str, Any], bytes]:
        key, iv = secrets.token_bytes(32), secrets.token_bytes(8) + b"\xff" * 8
        ciphertext = matrix_ctr(key, iv, data)
        digest = hashlib.sha256(ciphertext).digest()
        keys = {
            "v": "v2",
            "key": {"kty": "oct", "alg": "A256CTR", "ext": True, "key_ops": ["encrypt", "decrypt"],
                    "k": base64.urlsafe_b64encode(key).decode().rstrip("=")},
            "iv": base64.b64encode(iv).decode().rstrip("="),
            "hashes": {"sha256": base64.b64encode(digest).decode().rstrip("=")},
        }  # fmt: skip
        return ciphertext, keys, digest


def test_an_attachment_iv_with_a_nonzero_counter_half_is_hidden_and_its_report_refused(
    matrix_world: MatrixWorld, tmp_path: Path
) -> None:
    async def body(alice: BlindmatchClient, bob: BlindmatchClient, room: str) -> None:
        sent = await alice.send_image(room, BENIGN)  # the server cannot see the IV
        [v] = await received(bob)
        # nio (what Matrix clients run) would show the picture from this very blob...
        [att] = sent.attachments
        dl = await bob.download(mxc=att.mxc)
        assert isinstance(dl, MemoryDownloadResponse)
        f = sent.payload["file"]
        assert nio_decrypt(dl.body, f["key"]["k"], f["hashes"]["sha256"], f["iv"]) == BENIGN
        # ...but the server would decrypt it to other bytes: not shown, not reportable.
        assert not v.ok and v.images == [], (v.reason, v.detail)
        assert v.reason is Hidden.UNVERIFIABLE_ATTACHMENT and "low 64 bits" in v.detail
        assert v.franking_ok and not v.reportable and v.payload == sent.payload
        with pytest.raises(ReportRefused) as refused:
            await bob.report(v, "sent with a wrapped counter")
        assert refused.value.reason == "unverifiable_attachment"

    run(matrix_world, tmp_path, body, CounterHalfClient)


class StubRecipient:
    """Just what ``check_event`` calls before it would download: no homeserver."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        self.downloads: list[str] = []

    def decrypt_event(self, event: Any) -> Any:
        return SimpleNamespace(source={"content": dict(self.payload)})

    def remember(self, verdict: Verdict) -> None:
        pass

    async def download(self, mxc: str) -> Any:
        self.downloads.append(mxc)
        return None  # "unavailable"


def stub_event(file: dict[str, Any], blob: bytes) -> tuple[dict[str, Any], StubRecipient]:
    """A raw franked m.image event carrying ``file`` and a stub recipient that decrypts it."""
    mxc = file["url"]
    seed = base64.b64encode(bytes(32)).decode()
    franked = frank({"msgtype": "m.image", "body": "a.jpg", "file": file,
                     OPENING_FIELD: [{"blob": mxc, "seed": seed}]})  # fmt: skip
    commitment = base64.b64encode(franked.commitment).decode()
    voucher = {"v": 1, "blob": mxc, "voucher": "AAAA",
               "blob_sha256": hashlib.sha256(blob).hexdigest()}  # fmt: skip
    raw = {"type": "m.room.encrypted", "event_id": "$e", "sender": "@a:hs.test",
           "origin_server_ts": 1, "content": {
               "algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AAAA", "sender_key": "AAAA",
               "session_id": "AAAA", "device_id": "D",
               FRANKING_FIELD: {"v": 1, "commitment": commitment},
               "org.blindmatch.voucher": voucher}}  # fmt: skip
    return raw, StubRecipient(franked.payload)


@pytest.mark.parametrize("counter_half", [b"\xff" * 8, (1).to_bytes(8, "big")])
def test_check_event_refuses_a_nonzero_iv_counter_before_downloading(counter_half: bytes) -> None:
    blob, honest = encrypt_attachment(BENIGN, url="mxc://hs.test/blob")
    iv = base64.b64encode(honest.iv[:8] + counter_half).decode().rstrip("=")
    raw, stub = stub_event({**honest.to_json(), "iv": iv}, blob)
    v = asyncio.run(check_event(stub, "!r:hs.test", raw))  # type: ignore[arg-type]
    assert stub.downloads == [], v  # refused before anything was fetched or decrypted
    assert v.reason == "unverifiable_attachment", (v.reason, v.detail)
    assert "low 64 bits" in v.detail and v.detail.startswith("file:")
    assert v.franking_ok and not v.reportable and v.images == []
    # The same event with the counter half zero passes this check and goes on to download.
    raw, stub = stub_event(honest.to_json(), blob)
    v = asyncio.run(check_event(stub, "!r:hs.test", raw))  # type: ignore[arg-type]
    assert v.reason is Hidden.BLOB_UNAVAILABLE and stub.downloads == ["mxc://hs.test/blob"]


def test_a_voucher_made_for_another_image_is_accepted_by_the_server_but_hidden_by_the_recipient(
    matrix_world: MatrixWorld, tmp_path: Path
) -> None:
    async def body(alice: BlindmatchClient, bob: BlindmatchClient, room: str) -> None:
        sent = await alice.send_image(room, listed_copy())  # the server cannot see the lie
        [v] = await received(bob)
        assert v.reason is Hidden.VOUCHER_NOT_FOR_IMAGE and not v.ok
        assert v.message == "voucher not for this image"
        assert v.images == []  # not shown
        # ... and everything a report needs is kept.
        assert v.reportable and v.commitment == sent.commitment
        assert v.payload is not None and v.payload == sent.payload
        assert (v.event_id, v.room_id, v.sender) == (sent.event_id, room, alice.user_id)
        assert v.origin_server_ts > 0 and bob.verdicts[v.event_id] is v
        # The honest picture from the same modified client still passes (the check is exact).
        alice.decoy = BENIGN  # type: ignore[attr-defined]
        await alice.send_image(room, BENIGN)
        [ok] = await received(bob)
        assert ok.ok

    run(matrix_world, tmp_path, body, DecoyVoucherClient)


def test_a_sender_that_skips_the_voucher_is_refused(
    matrix_world: MatrixWorld, tmp_path: Path
) -> None:
    async def body(alice: BlindmatchClient, bob: BlindmatchClient, room: str) -> None:
        with pytest.raises(SendRefused) as refused:
            await alice.send_image(room, BENIGN)
        assert refused.value.reason == "voucher_required" and refused.value.case_id is None
        assert await received(bob) == []

    run(matrix_world, tmp_path, body, NoVoucherClient)


def test_tampered_franking_is_hidden_and_not_reportable(
    matrix_world: MatrixWorld, tmp_path: Path
) -> None:
    async def body(alice: BlindmatchClient, bob: BlindmatchClient, room: str) -> None:
        await alice.send_text(room, "hello")
        await alice.send_image(room, BENIGN)
        # nio's own room_send (no blindmatch): no franking commitment outside at all.
        await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "plain"},
                              ignore_unverified_devices=True)  # fmt: skip
        verdicts = await received(bob)
        assert [v.reason for v in verdicts] == [Hidden.BAD_FRANKING] * 2 + [Hidden.MISSING_FRANKING]
        assert not any(v.reportable for v in verdicts) and verdicts[1].images == []
        assert verdicts[2].payload is not None and verdicts[2].payload["body"] == "plain"

    run(matrix_world, tmp_path, body, TamperedFrankingClient)


# -- reports --------------------------------------------------------------------------------------
def test_a_report_carries_what_the_server_needs_to_verify_it(
    matrix_world: MatrixWorld, tmp_path: Path
) -> None:
    async def body(alice: BlindmatchClient, bob: BlindmatchClient, room: str) -> Any:
        await alice.send_text(room, "first")
        await alice.send_text(room, "second")
        await alice.send_image(room, listed_copy())  # decoy voucher: hidden by bob
        first, second, hidden = await received(bob)
        assert hidden.reason is Hidden.VOUCHER_NOT_FOR_IMAGE
        req = bob.report_body(hidden, "voucher not for this image")
        assert set(req) == {"event_id", "room_id", "payload", "reason", "context"}
        assert (req["event_id"], req["room_id"]) == (hidden.event_id, room)
        assert [c["event_id"] for c in req["context"]] == [first.event_id, second.event_id]
        assert req["context"][0]["payload"]["body"] == "first"
        # With the server's tag over (C, sender, room, timestamp) this verifies, as the
        # module will check it (FrankingKeyring.verify_report); any other payload does not.
        keyring = FrankingKeyring.generate()
        ctx = FrankingContext(alice.user_id, room, hidden.origin_server_ts)
        assert hidden.commitment is not None
        tag = keyring.tag(hidden.commitment, ctx)
        keyring.verify_report(FrankingReport.from_payload(req["payload"], hidden.commitment,
                                                          tag, ctx))  # fmt: skip
        forged = {**req["payload"], "body": "something else"}
        with pytest.raises(Exception, match="did not verify"):
            keyring.verify_report(FrankingReport.from_payload(forged, hidden.commitment, tag,
                                                              ctx))  # fmt: skip
        try:
            result = await bob.report(hidden, "voucher not for this image")
        except HomeserverError as e:
            return e, None
        # A report of something the accused did not send is refused, typed, with the reason.
        with pytest.raises(ReportRefused) as refused:
            await bob.report(dataclasses.replace(hidden, payload=forged), "forged")
        return result, refused.value

    result, refused = run(matrix_world, tmp_path, body, DecoyVoucherClient)
    if isinstance(result, HomeserverError) and result.status == 404:
        pytest.skip(
            "POST /_blindmatch/v1/report is not served by the module yet (the module owner "
            "adds it: server-side franking tag per event, verify_report, a 'report' case)"
        )
    assert not isinstance(result, HomeserverError), result.as_dict()
    assert result.case_id is not None and result.case_id.startswith("BM-")
    assert result.context_verified == [True, True]  # both earlier messages were franked
    assert refused is not None and refused.reason == "report_not_verified"
    cases = run_cli("cases", "list", "--kind", "report", "--json", "--database-url",
                    matrix_world.database_url)  # fmt: skip
    assert result.case_id in [c["id"] for c in cases.json_lines]


def test_the_listed_copy_really_is_a_resized_recompressed_copy() -> None:
    # Guard for the tests above: the copy is half the size of the listed picture.
    im = Image.open(io.BytesIO(listed_copy()))
    assert (im.width, im.height) == (320, 240) and im.format == "JPEG"
