"""A real Synapse with the blindmatch module, started once per test session.

Benign pictures only: synthetic abstract photos stand in for the listed images.
The table lists ``synthetic_photo(10)`` (on both demo hotlines' lists).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("synapse", reason="the matrix extra (matrix-synapse) is not installed")
pytest.importorskip("nio", reason="the matrix extra (matrix-nio) is not installed")

from blindmatch.demo.synthetic import synthetic_photo  # noqa: E402
from blindmatch.hashing.image import pdq_with_vector_from_rgb  # noqa: E402
from blindmatch.integrations.matrix.events import voucher_field  # noqa: E402
from blindmatch.integrations.matrix.homeserver import (  # noqa: E402
    Homeserver,
    Response,
    User,
    build_table_dir,
)
from blindmatch.private import load_trust_file, query_hashes  # noqa: E402
from blindmatch.protocol import (  # noqa: E402
    AccountSecret,
    ClientSession,
    Floors,
    TrustPolicy,
    verify_table,
)
from blindmatch.protocol.voucher import Layout  # noqa: E402

LISTED_SEED = 10
#: The harness's tables use t = 3 and no synthetic vouchers (a threshold reached in three
#: sends, deterministic counts): below the default floors, lowered for them explicitly
#: (written into their trust.json, which the module and the test clients read).
HARNESS_FLOORS = Floors(min_threshold=3, min_synthetic_ppm=0)


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def listed_pdq() -> bytes:
    pdq, _ = pdq_with_vector_from_rgb(np.asarray(synthetic_photo(LISTED_SEED)))
    return bytes.fromhex(pdq.hex)


@dataclass
class Sender:
    """A fresh account (so no earlier test's uploads are pending for it) and its room."""

    world: MatrixWorld
    user: User
    room_id: str
    session: ClientSession
    txn: int = 0

    def upload(self, data: bytes, content_type: str = "application/octet-stream") -> str:
        r = self.world.hs.http.request(
            "POST",
            "/_matrix/media/v3/upload",
            data=data,
            token=self.user.access_token,
            headers={"Content-Type": content_type},
        )
        assert r.status == 200, r.body
        return str(r.json()["content_uri"])

    def voucher_for(self, image: Image.Image, evidence: bytes = b"") -> bytes:
        pdq, confidence, variants = query_hashes(
            np.asarray(image.convert("RGB")), companions=self.session.verified.has_companions
        )
        return self.session.make_voucher(
            pdq, confidence=confidence, variants=variants, evidence=evidence
        )

    def encrypted_upload(self, image_bytes: bytes) -> tuple[str, str, dict[str, Any]]:
        """Encrypt as Matrix clients do (AES-CTR, nio), upload; (mxc, sha256 hex, file info)."""
        from nio.crypto.attachments import encrypt_attachment

        blob, keys = encrypt_attachment(image_bytes)
        mxc = self.upload(blob)
        return mxc, hashlib.sha256(blob).hexdigest(), {"url": mxc, **keys}

    def send(
        self,
        field_value: Any = None,
        *,
        raw: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Response:
        """Send an ``m.room.encrypted`` event (an opaque Megolm-shaped body) with the
        voucher field and any ``extra`` outer fields."""
        self.txn += 1
        content: dict[str, Any] = raw or {
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": base64.b64encode(secrets.token_bytes(300)).decode().rstrip("="),
            "sender_key": base64.b64encode(secrets.token_bytes(32)).decode().rstrip("="),
            "session_id": base64.b64encode(secrets.token_bytes(32)).decode().rstrip("="),
            "device_id": self.user.device_id,
        }
        if field_value is not None:
            content["org.blindmatch.voucher"] = field_value
        content.update(extra or {})
        return self.world.hs.http.request(
            "PUT",
            f"/_matrix/client/v3/rooms/{self.room_id}/send/m.room.encrypted/t{self.txn}",
            json_body=content,
            token=self.user.access_token,
        )

    def send_image(self, image: Image.Image, *, voucher: bytes | None = None) -> Response:
        mxc, digest, _ = self.encrypted_upload(jpeg(image))
        v = voucher if voucher is not None else self.voucher_for(image)
        return self.send(voucher_field([(v, mxc, digest)]))


@dataclass
class MatrixWorld:
    hs: Homeserver
    table_dir: Path
    database_url: str
    trust: TrustPolicy
    recipient: User
    counter: int = 0
    senders: list[Sender] = field(default_factory=list)

    def client_session(self) -> ClientSession:
        """What a client does: fetch the table and manifest from the server, verify them
        against the trust it was configured with (not the server's copy)."""
        table = self.hs.http.request("GET", "/_blindmatch/v1/table").body
        manifest = self.hs.http.request("GET", "/_blindmatch/v1/manifest").body
        return ClientSession(verify_table(table, manifest, self.trust), AccountSecret.generate())

    def new_sender(self, invite_recipient: bool = False) -> Sender:
        self.counter += 1
        user = self.hs.register_user(f"sender{self.counter}", secrets.token_hex(12))
        body: dict[str, Any] = {
            "preset": "private_chat",
            "initial_state": [
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ],
        }
        if invite_recipient:
            body["invite"] = [self.recipient.user_id]
        r = self.hs.http.request(
            "POST", "/_matrix/client/v3/createRoom", json_body=body, token=user.access_token
        )
        assert r.status == 200, r.body
        room_id = r.json()["room_id"]
        if invite_recipient:
            j = self.hs.http.request(
                "POST",
                f"/_matrix/client/v3/rooms/{room_id}/join",
                json_body={},
                token=self.recipient.access_token,
            )
            assert j.status == 200, j.body
        s = Sender(self, user, room_id, self.client_session())
        self.senders.append(s)
        return s

    def download(self, mxc: str, user: User) -> Response:
        server_media = mxc.removeprefix("mxc://")
        return self.hs.http.request(
            "GET", f"/_matrix/client/v1/media/download/{server_media}", token=user.access_token
        )


def rejection(r: Response) -> dict[str, Any]:
    assert r.status == 403, (r.status, r.body)
    body = r.json()
    assert body["errcode"] == "M_FORBIDDEN"
    assert body["error"] == body["org.blindmatch.message"]  # shown by any client
    return dict(body)


@contextmanager
def running_world(
    root: Path,
    *,
    policy: str = "block",
    threshold: int = 3,
    distance_radius: int | None = None,
    server_notices: bool = False,
    **module_config: Any,
) -> Iterator[MatrixWorld]:
    """A table listing ``synthetic_photo(LISTED_SEED)`` and a Synapse with the module;
    ``distance_radius``: a distance-checked table (docs/protocol.md §11)."""
    table_dir = build_table_dir(
        root / "table", {"listed-10": listed_pdq()}, policy=policy, threshold=threshold,
        seed=b"\x42" * 32, floors=HARNESS_FLOORS, distance_radius=distance_radius,
    )  # fmt: skip
    url = f"sqlite:///{root / 'blindmatch.db'}"
    config = {
        "table_dir": str(table_dir),
        "database_url": url,
        "policy": policy,
        "bind_window_seconds": 600,
        "sweep_interval_seconds": 3600,
        "expose_stats": True,
        "max_reports_per_hour": 1000,  # tests share the recipient; the limit is tested apart
        # Tests send the listed picture from many new accounts: no flood quarantine here
        # (tests/review/test_defences.py tests it).
        "flood_accounts": 1_000_000,
        **module_config,
    }
    hs = Homeserver(root / "hs", module_config=config, server_notices=server_notices)
    hs.start()
    try:
        recipient = hs.register_user("recipient", secrets.token_hex(12))
        # The client's trust is pinned out of band: here, the file the platform published.
        trust = load_trust_file(str(table_dir / "trust.json"))
        yield MatrixWorld(hs, table_dir, url, trust, recipient)
    finally:
        hs.stop()
    log = hs.log_tail(100_000)
    # The module logged no unexpected failure (its errors are logged with a traceback).
    assert "blindmatch.integrations.matrix.module ERROR" not in log, log


@pytest.fixture(scope="session")
def matrix_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatrixWorld]:
    with running_world(tmp_path_factory.mktemp("matrix")) as world:
        yield world


def forge_evidence(voucher: bytes, session: ClientSession) -> bytes:
    """The voucher with one byte of its evidence layer ``C_ev`` flipped: its pair still opens
    (for a listed picture), the evidence layer no longer authenticates."""
    o = Layout.for_table(session.table).ev_offset + 5
    return voucher[:o] + bytes([voucher[o] ^ 0x01]) + voucher[o + 1 :]


def break_a_point(voucher: bytes, session: ClientSession) -> bytes:
    """The voucher with its first pair's ``Q`` replaced by bytes that are no point: malformed
    on its face (the server needs no secret to see it)."""
    o = Layout.for_table(session.table).pairs_offset
    return voucher[:o] + b"\xff" * 32 + voucher[o + 32 :]


def wait_until_opened(world: MatrixWorld, account: str, timeout: float = 60.0) -> None:
    """Wait (bounded; not a timing assertion) until the module's worker has opened every
    voucher ``account`` queued."""
    import time

    from blindmatch.integrations.matrix.state import MatrixState

    state = MatrixState.open(world.database_url)
    deadline = time.monotonic() + timeout
    while state.queued(account=account) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert state.queued(account=account) == [], "the worker did not open the queue"
    state.engine.dispose()


def not_opened(world: MatrixWorld, sender: Sender) -> bool:
    """Whether the server's threshold store holds nothing for ``sender`` (no voucher of
    theirs was opened and kept)."""
    from blindmatch.store.db import open_store
    from blindmatch.store.threshold import SqlThresholdStore

    engine = open_store(world.database_url).engine
    store = SqlThresholdStore(engine, namespace=f"t{sender.session.table.threshold}:")
    empty = store.load(sender.user.user_id).vouchers == ()
    engine.dispose()
    return empty


def stats(world: MatrixWorld) -> dict[str, Any]:
    return dict(json.loads(world.hs.http.request("GET", "/_blindmatch/v1/stats").body))
