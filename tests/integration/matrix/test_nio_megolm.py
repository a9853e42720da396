"""Real end-to-end encryption: matrix-nio clients (Olm/Megolm via vodozemac) through the module.

The sender's client encrypts the attachment and the ``m.image`` event as Matrix does and
puts the voucher beside the Megolm ciphertext (by overriding ``AsyncClient.encrypt``);
the recipient decrypts the event and the attachment. A listed picture is refused and
nio surfaces the module's reason.
"""

from __future__ import annotations

import asyncio
import base64
import io
import secrets
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("nio", reason="the matrix extra (matrix-nio) is not installed")

from nio import (  # noqa: E402
    AsyncClient,
    AsyncClientConfig,
    MegolmEvent,
    RoomEncryptedImage,
    RoomSendError,
    RoomSendResponse,
    UploadResponse,
)
from nio.crypto.attachments import decrypt_attachment  # noqa: E402

from blindmatch.demo.synthetic import synthetic_photo  # noqa: E402
from blindmatch.integrations.matrix.events import voucher_field  # noqa: E402
from blindmatch.integrations.matrix.homeserver import encrypted_room  # noqa: E402
from tests.integration.matrix.conftest import LISTED_SEED, MatrixWorld, jpeg  # noqa: E402


class VoucherClient(AsyncClient):  # type: ignore[misc]
    """Adds the next voucher field to the outer content of the next encrypted event."""

    next_field: Any = None

    def encrypt(
        self, room_id: str, message_type: str, content: dict[Any, Any]
    ) -> tuple[str, dict[str, Any]]:
        mtype, encrypted = super().encrypt(room_id, message_type, content)
        if self.next_field is not None:
            encrypted = {**encrypted, "org.blindmatch.voucher": self.next_field}
            self.next_field = None
        return mtype, encrypted


def unb64(s: str) -> bytes:
    """Matrix's unpadded standard base64."""
    return base64.b64decode(s + "=" * (-len(s) % 4))


async def login(world: MatrixWorld, name: str, store: Path) -> VoucherClient:
    password = secrets.token_hex(12)
    user = world.hs.register_user(name, password)
    store.mkdir(parents=True, exist_ok=True)
    config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
    c = VoucherClient(world.hs.url, user.user_id, store_path=str(store), config=config)
    resp = await c.login(password, device_name=name)
    assert c.access_token, resp
    if c.should_upload_keys:
        await c.keys_upload()
    return c


async def scenario(world: MatrixWorld, tmp: Path) -> dict[str, Any]:
    alice = await login(world, "nio-alice", tmp / "alice")
    bob = await login(world, "nio-bob", tmp / "bob")
    out: dict[str, Any] = {}
    try:
        room_id = await encrypted_room(alice, bob)
        session = world.client_session()

        async def send_image(img: Image.Image) -> RoomSendResponse | RoomSendError:
            data = jpeg(img)
            up, keys = await alice.upload(io.BytesIO(data), content_type="application/octet-stream",
                                          encrypt=True, filesize=len(data))  # fmt: skip
            assert isinstance(up, UploadResponse) and keys is not None
            import numpy as np

            from blindmatch.private import query_hashes

            pdq, conf, variants = query_hashes(
                np.asarray(img.convert("RGB")), companions=session.verified.has_companions
            )
            voucher = session.make_voucher(pdq, confidence=conf, variants=variants)
            digest = unb64(keys["hashes"]["sha256"]).hex()
            alice.next_field = voucher_field([(voucher, up.content_uri, digest)])
            content = {"msgtype": "m.image", "body": "photo.jpg",
                       "info": {"mimetype": "image/jpeg", "size": len(data)},
                       "file": {"url": up.content_uri, **keys}}  # fmt: skip
            out.setdefault("sent", []).append(data)
            return await alice.room_send(room_id, "m.room.message", content,
                                         ignore_unverified_devices=True)  # fmt: skip

        out["benign"] = await send_image(synthetic_photo(11))
        listed = Image.open(io.BytesIO(jpeg(synthetic_photo(LISTED_SEED), quality=80)))
        out["listed"] = await send_image(listed)
        # The recipient decrypts what was delivered.
        sync = await bob.sync(timeout=0)
        events = sync.rooms.join[room_id].timeline.events if room_id in sync.rooms.join else []
        out["received"] = [e for e in events if isinstance(e, RoomEncryptedImage | MegolmEvent)]
        images = [e for e in events if isinstance(e, RoomEncryptedImage)]
        if images:
            e = images[0]
            dl = await bob.download(e.url)
            out["plaintext"] = decrypt_attachment(dl.body, e.key["k"], e.hashes["sha256"], e.iv)
        return out
    finally:
        await alice.close()
        await bob.close()


def test_nio_megolm_send_delivered_and_listed_refused(
    matrix_world: MatrixWorld, tmp_path: Path
) -> None:
    out = asyncio.run(scenario(matrix_world, tmp_path))
    assert isinstance(out["benign"], RoomSendResponse), out["benign"]
    refused = out["listed"]
    assert isinstance(refused, RoomSendError)
    assert refused.status_code == "M_FORBIDDEN"
    assert "known abuse image" in refused.message and "BM-" in refused.message
    # Delivered: exactly the benign image, decrypted by the recipient to the bytes sent.
    assert [type(e).__name__ for e in out["received"]] == ["RoomEncryptedImage"]
    assert out["plaintext"] == out["sent"][0]
