"""Matrix client: what BlindmatchClient adds to an encrypted image send and to receiving one.

Starts two real Synapses in one run (127.0.0.1, SQLite): one plain, one with the
blindmatch module. On each, two matrix-nio clients with their own Olm devices share an
end-to-end-encrypted room. Each round sends the same fresh 800x600 JPEG five ways,
in a shuffled order so all see the same machine load:

* ``plain``      — plain nio on the plain server: ``upload(encrypt=True)`` + ``room_send``
                   of an ``m.image`` (what any Matrix client does);
* ``client``     — BlindmatchClient on the plain server (table installed out of band):
                   the client's own cost (decode, hash, voucher, franking), no module;
* ``full``       — BlindmatchClient on the module's server: client + module;
* ``full-1thr``  — the same with one hashing thread (no parallel PDQs);
* ``prepared``   — the same, the picture prepared (decoded, encrypted, hashed, vouchered:
                   ``prepare_image``) before the timed send, as an app can while the user
                   writes a caption: what is left on the send path.

Receiving: the plain recipient downloads and decrypts the attachment (nio decrypted the
event during sync); the blindmatch recipient runs ``check_received`` (raw event, nio
decryption, franking, download, blob hashes, decryption, hashing, voucher check).

    .venv/bin/python bench/bench_matrix_client.py             # 40 rounds, ~1 min
    .venv/bin/python bench/bench_matrix_client.py --rounds 100 --json

Benign pictures only: synthetic abstract photos; the listed entries are random hashes plus
one synthetic photo (never sent).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import random
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from nio import AsyncClient, AsyncClientConfig, RoomEncryptedImage, RoomSendResponse
from nio.crypto.attachments import decrypt_attachment

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.hashing.image import pdq_with_vector_from_rgb
from blindmatch.integrations.matrix.client import BlindmatchClient
from blindmatch.integrations.matrix.homeserver import (
    Homeserver,
    build_table_dir,
    encrypted_room,
)

WARMUP = 3


def jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    synthetic_photo(seed, (800, 600)).save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def med(xs: list[float]) -> float:
    return 1000 * statistics.median(xs)


def p90(xs: list[float]) -> float:
    return 1000 * sorted(xs)[int(0.9 * (len(xs) - 1))]


async def login(hs: Homeserver, cls: type[AsyncClient], root: Path, **kw: Any) -> Any:
    name = f"u{secrets.token_hex(4)}"
    password = secrets.token_hex(12)
    user = hs.register_user(name, password)
    (root / name).mkdir(parents=True)
    config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
    c = cls(hs.url, user.user_id, store_path=str(root / name), config=config, **kw)
    await c.login(password, device_name=name)
    if c.should_upload_keys:
        await c.keys_upload()
    return c


class Lane:
    """One sender, one recipient, one room; per-send and per-receive timings."""

    def __init__(self, name: str, alice: Any, bob: Any, room_id: str,
                 prepared: bool = False) -> None:  # fmt: skip
        self.name, self.alice, self.bob, self.room = name, alice, bob, room_id
        self.prepared = prepared
        self.send_s: list[float] = []
        self.recv_s: list[float] = []
        self.steps: dict[str, list[float]] = {}

    async def send(self, data: bytes, keep: bool) -> None:
        if isinstance(self.alice, BlindmatchClient):
            image: Any = data
            if self.prepared:  # the client's work done ahead (while composing), not timed
                image = await self.alice.prepare_image(data, body="photo.jpg")
            t = time.perf_counter()
            sent = await self.alice.send_image(self.room, image, body="photo.jpg")
            dt = time.perf_counter() - t
            steps = sent.timings
        else:
            t = time.perf_counter()
            up, keys = await self.alice.upload(io.BytesIO(data), content_type="image/jpeg",
                                               encrypt=True, filesize=len(data))  # fmt: skip
            t1 = time.perf_counter()
            content = {"msgtype": "m.image", "body": "photo.jpg",
                       "info": {"mimetype": "image/jpeg", "size": len(data)},
                       "file": {"url": up.content_uri, **keys}}  # fmt: skip
            r = await self.alice.room_send(self.room, "m.room.message", content,
                                           ignore_unverified_devices=True)  # fmt: skip
            t2 = time.perf_counter()
            dt = t2 - t
            assert isinstance(r, RoomSendResponse), r
            steps = {"encrypt+upload": t1 - t, "megolm+send": t2 - t1}
        # Receive: sync (not timed: the same for both), then the recipient's work.
        await self.bob.sync(timeout=0)
        t = time.perf_counter()
        if isinstance(self.bob, BlindmatchClient):
            [v] = await self.bob.check_received()
            assert v.ok and v.images == [data], (v.reason, v.detail)
        else:
            ev = self._last_image  # nio decrypted the event during sync (callback)
            dl = await self.bob.download(ev.url)
            plain = decrypt_attachment(dl.body, ev.key["k"], ev.hashes["sha256"], ev.iv)
            assert plain == data
        rt = time.perf_counter() - t
        if keep:
            self.send_s.append(dt)
            self.recv_s.append(rt)
            for k, v in steps.items():
                self.steps.setdefault(k, []).append(v)

    _last_image: Any = None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rnd = random.Random(7)
    root = Path(tempfile.mkdtemp(prefix="bench-matrix-client-"))
    listed = {f"r{i}": rnd.randbytes(32) for i in range(args.entries)}
    pdq, _ = pdq_with_vector_from_rgb(np.asarray(synthetic_photo(10, (800, 600))))
    listed["photo-10"] = bytes.fromhex(pdq.hex)
    table_dir = build_table_dir(root / "table", listed)
    trust = table_dir / "trust.json"
    db = f"sqlite:///{root / 'blindmatch.db'}"
    module = Homeserver(root / "with", module_config={"table_dir": str(table_dir),
                                                      "database_url": db})  # fmt: skip
    plain = Homeserver(root / "without")
    # --distance-radius: a third server whose table is distance-checked (the second check's
    # challenge round trip and answer on the send path; docs/protocol.md §11)
    checked: Homeserver | None = None
    checked_trust = trust
    if args.distance_radius is not None:
        checked_dir = build_table_dir(
            root / "checked-table", listed, distance_radius=args.distance_radius
        )
        checked_trust = checked_dir / "trust.json"
        config = {"table_dir": str(checked_dir), "database_url": f"sqlite:///{root / 'c.db'}"}
        checked = Homeserver(root / "checked", module_config=config)
    images = [jpeg(1000 + i) for i in range(WARMUP + args.rounds)]
    with module, plain, checked if checked is not None else contextlib.nullcontext():
        c = root / "clients"
        lanes = []
        a, b = await login(plain, AsyncClient, c), await login(plain, AsyncClient, c)
        lanes.append(Lane("plain", a, b, await encrypted_room(a, b)))
        a = await login(plain, BlindmatchClient, c, trust=trust)
        b = await login(plain, BlindmatchClient, c, trust=trust)
        for x in (a, b):  # no module on this server: the table comes out of band
            await x.install_table((table_dir / "table.bin").read_bytes(),
                                  (table_dir / "manifest.json").read_bytes())  # fmt: skip
        lanes.append(Lane("client", a, b, await encrypted_room(a, b)))
        a = await login(module, BlindmatchClient, c, trust=trust)
        b = await login(module, BlindmatchClient, c, trust=trust)
        lanes.append(Lane("full", a, b, await encrypted_room(a, b)))
        a = await login(module, BlindmatchClient, c, trust=trust, hash_threads=1)
        b = await login(module, BlindmatchClient, c, trust=trust, hash_threads=1)
        lanes.append(Lane("full-1thr", a, b, await encrypted_room(a, b)))
        a = await login(module, BlindmatchClient, c, trust=trust)
        b = await login(module, BlindmatchClient, c, trust=trust)
        lanes.append(Lane("prepared", a, b, await encrypted_room(a, b), prepared=True))
        if checked is not None:
            a = await login(checked, BlindmatchClient, c, trust=checked_trust)
            b = await login(checked, BlindmatchClient, c, trust=checked_trust)
            lanes.append(Lane("checked", a, b, await encrypted_room(a, b)))
        for lane in lanes:
            if isinstance(lane.alice, BlindmatchClient) and lane.alice.verified_table is None:
                await lane.alice.refresh_table()
                await lane.bob.refresh_table()
        plain_lane = lanes[0]

        def remember(_room: Any, event: Any) -> None:
            plain_lane._last_image = event

        plain_lane.bob.add_event_callback(remember, RoomEncryptedImage)
        try:
            for i, data in enumerate(images):
                order = lanes[:]
                rnd.shuffle(order)
                for lane in order:
                    await lane.send(data, keep=i >= WARMUP)
        finally:
            for lane in lanes:
                await lane.alice.close()
                await lane.bob.close()

    by = {lane.name: lane for lane in lanes}
    base = by["plain"]
    out: dict[str, Any] = {
        "rounds": args.rounds,
        "entries": len(listed),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "image": "800x600 JPEG q88 (synthetic)",
        "send_ms": {n: {"median": med(x.send_s), "p90": p90(x.send_s)} for n, x in by.items()},
        "receive_ms": {
            n: {"median": med(x.recv_s), "p90": p90(x.recv_s)} for n, x in by.items()
        },  # fmt: skip
        "added_send_ms": {
            n: med(x.send_s) - med(base.send_s) for n, x in by.items() if x is not base
        },  # fmt: skip
        "added_receive_ms": {
            n: med(x.recv_s) - med(base.recv_s) for n, x in by.items() if x is not base
        },  # fmt: skip
        "client_steps_ms": {
            n: {k: med(v) for k, v in x.steps.items()} for n, x in by.items() if x.steps
        },  # fmt: skip
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--entries", type=int, default=5_000, help="listed hashes in the table")
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--distance-radius", type=int, default=None,
        help="add a lane whose server's table is distance-checked at this radius",
    )  # fmt: skip
    args = ap.parse_args()
    out = asyncio.run(run(args))
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"# bench_matrix_client: {out['rounds']} rounds, {out['entries']:,} listed hashes, "
          f"{out['machine']}, {out['image']}")  # fmt: skip
    for name in out["send_ms"]:
        s, r = out["send_ms"][name], out["receive_ms"][name]
        added = out["added_send_ms"].get(name)
        extra = f"  (+{added:.1f} ms vs plain)" if added is not None else ""
        print(f"send    {name:10} median {s['median']:6.1f} ms  p90 {s['p90']:6.1f} ms{extra}")
    for name in out["receive_ms"]:
        r = out["receive_ms"][name]
        added = out["added_receive_ms"].get(name)
        extra = f"  (+{added:.1f} ms vs plain)" if added is not None else ""
        print(f"receive {name:10} median {r['median']:6.1f} ms  p90 {r['p90']:6.1f} ms{extra}")
    for name, steps in out["client_steps_ms"].items():
        print(f"steps   {name:10} " + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()))


if __name__ == "__main__":
    main()
