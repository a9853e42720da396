"""Matrix: what the blindmatch Synapse module adds to an encrypted image send.

Starts two real Synapses in one run (127.0.0.1, SQLite), one with the module and
one without, and sends the same kind of message to both, interleaved so that both
see the same machine load: upload an AES-CTR-encrypted JPEG (as Matrix clients do),
then send an ``m.room.encrypted`` event referencing it — with a voucher (made
beforehand by the client) on the module's server, without one on the plain server.
Reports per-send latency (upload, event) on each server, the difference, the
module's own time per event (its counters), and the client's voucher cost for the
same images. Then opens vouchers in-process with the module's session (SQL state
store) on one thread: vouchers opened per second per core.

    .venv/bin/python bench/bench_matrix.py              # 100 sends each, ~1 min
    .venv/bin/python bench/bench_matrix.py --sends 300

Benign pictures only: synthetic abstract photos; the listed entries are random hashes
plus one synthetic photo.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import platform
import random
import secrets
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from nio.crypto.attachments import encrypt_attachment

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.hashing.image import pdq_with_vector_from_rgb
from blindmatch.integrations.matrix.events import voucher_field
from blindmatch.integrations.matrix.homeserver import (
    ENCRYPTED_ROOM,
    Homeserver,
    User,
    build_table_dir,
)
from blindmatch.private import load_trust_file, query_hashes
from blindmatch.protocol import AccountSecret, ClientSession, ServerSession, verify_table
from blindmatch.store.db import open_store
from blindmatch.store.threshold import SqlThresholdStore

WARMUP = 5


def jpeg(seed: int) -> tuple[bytes, Any]:
    im = synthetic_photo(seed, (800, 600))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=88)
    return buf.getvalue(), np.asarray(im)


def ms(xs: list[float]) -> str:
    xs = sorted(xs)
    p90 = xs[int(0.9 * (len(xs) - 1))]
    return f"median {1000 * statistics.median(xs):6.1f} ms  p90 {1000 * p90:6.1f} ms"


class Side:
    def __init__(self, hs: Homeserver, user: User) -> None:
        self.hs, self.user = hs, user
        body = {
            "preset": "private_chat",
            "initial_state": ENCRYPTED_ROOM,
        }
        r = hs.http.request("POST", "/_matrix/client/v3/createRoom", json_body=body,
                            token=user.access_token)  # fmt: skip
        self.room = r.json()["room_id"]
        self.txn = 0
        self.upload_s: list[float] = []
        self.send_s: list[float] = []

    def send(self, blob: bytes, voucher: bytes | None) -> None:
        t0 = time.perf_counter()
        r = self.hs.http.request("POST", "/_matrix/media/v3/upload", data=blob,
                                 token=self.user.access_token,
                                 headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        t1 = time.perf_counter()
        assert r.status == 200, r.body
        mxc = r.json()["content_uri"]
        content: dict[str, Any] = {
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": base64.b64encode(secrets.token_bytes(400)).decode(),
            "sender_key": "x" * 43, "session_id": "y" * 43, "device_id": self.user.device_id,
        }  # fmt: skip
        if voucher is not None:
            content["org.blindmatch.voucher"] = voucher_field(
                [(voucher, mxc, hashlib.sha256(blob).hexdigest())]
            )
        self.txn += 1
        t2 = time.perf_counter()
        r = self.hs.http.request(
            "PUT", f"/_matrix/client/v3/rooms/{self.room}/send/m.room.encrypted/b{self.txn}",
            json_body=content, token=self.user.access_token,
        )  # fmt: skip
        t3 = time.perf_counter()
        assert r.status == 200, r.body
        self.upload_s.append(t1 - t0)
        self.send_s.append(t3 - t2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sends", type=int, default=100)
    ap.add_argument("--entries", type=int, default=5_000, help="listed hashes in the table")
    ap.add_argument("--open", type=int, default=200, help="vouchers for the in-process rate")
    args = ap.parse_args()

    rnd = random.Random(7)
    root = Path(tempfile.mkdtemp(prefix="bench-matrix-"))
    listed = {f"r{i}": rnd.randbytes(32) for i in range(args.entries)}
    pdq, _ = pdq_with_vector_from_rgb(np.asarray(synthetic_photo(10, (800, 600))))
    listed["photo-10"] = bytes.fromhex(pdq.hex)
    table_dir = build_table_dir(root / "table", listed)
    trust = load_trust_file(str(table_dir / "trust.json"))
    verified = verify_table((table_dir / "table.bin").read_bytes(),
                            (table_dir / "manifest.json").read_bytes(), trust)  # fmt: skip
    client = ClientSession(verified, AccountSecret.generate())

    # Client side, for the same images: hash (PDQ + robust variants) and voucher.
    images = [jpeg(100 + i) for i in range(20)]
    hash_s, voucher_s = [], []
    for _data, pixels in images:
        t0 = time.perf_counter()
        q = query_hashes(pixels, companions=client.verified.has_companions)
        t1 = time.perf_counter()
        client.make_voucher(q[0], confidence=q[1], variants=q[2])
        t2 = time.perf_counter()
        hash_s.append(t1 - t0)
        voucher_s.append(t2 - t1)
    queries = [query_hashes(p, companions=client.verified.has_companions) for _, p in images]
    total = WARMUP + args.sends
    vouchers = [client.make_voucher(q[0], confidence=q[1], variants=q[2])
                for q in (queries * (total // len(queries) + 1))[:total]]  # fmt: skip
    blobs = [encrypt_attachment(images[i % len(images)][0])[0] for i in range(total)]

    db = f"sqlite:///{root / 'blindmatch.db'}"
    module = Homeserver(root / "with", module_config={
        "table_dir": str(table_dir), "database_url": db, "expose_stats": True,
    })  # fmt: skip
    plain = Homeserver(root / "without")
    with module, plain:
        a = Side(module, module.register_user("bench", secrets.token_hex(8)))
        b = Side(plain, plain.register_user("bench", secrets.token_hex(8)))
        for i in range(WARMUP):  # caches, first SQL statements; not counted
            a.send(blobs[i], vouchers[i])
            b.send(blobs[i], None)
        for side in (a, b):
            side.upload_s.clear()
            side.send_s.clear()
        # Reactor responsiveness: while the sends run, another thread asks each server's
        # /health every 20 ms (a request the reactor answers itself, no database).
        lag: dict[str, list[float]] = {"with": [], "without": []}
        done = threading.Event()

        def probe() -> None:
            while not done.is_set():
                for name, hs in (("with", module), ("without", plain)):
                    t = time.perf_counter()
                    hs.http.request("GET", "/health")
                    lag[name].append(time.perf_counter() - t)
                done.wait(0.02)

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        for i in range(WARMUP, WARMUP + args.sends):
            first, second = (a, b) if i % 2 == 0 else (b, a)
            for side in (first, second):
                side.send(blobs[i], vouchers[i] if side is a else None)
        done.set()
        prober.join()
        stats = json.loads(module.http.request("GET", "/_blindmatch/v1/stats").body)

    # In-process opening rate: the module's session and SQL store, one thread.
    secret_bytes = (table_dir / "server.key").read_bytes()
    from blindmatch.protocol import ServerSecret

    engine = open_store(f"sqlite:///{root / 'open.db'}").engine
    session = ServerSession(ServerSecret.from_bytes(secret_bytes), verified.table,
                            store=SqlThresholdStore(engine))  # fmt: skip
    fresh = [client.make_voucher(q[0], confidence=q[1], variants=q[2])
             for q in (queries * (args.open // len(queries) + 1))[: args.open]]  # fmt: skip
    t0, c0 = time.perf_counter(), time.process_time()
    for v in fresh:
        session.open(v, account="@bench:localhost")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0

    print(f"# bench_matrix: {args.sends} sends per server, {len(listed):,} listed hashes, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")  # fmt: skip
    print(f"client: hash (PDQ + robust variants) {ms(hash_s)}; voucher {ms(voucher_s)}")
    print(f"upload, with module   : {ms(a.upload_s)}")
    print(f"upload, without       : {ms(b.upload_s)}")
    print(f"send,   with module   : {ms(a.send_s)}")
    print(f"send,   without       : {ms(b.send_s)}")
    added = statistics.median(a.send_s) - statistics.median(b.send_s)
    added_up = statistics.median(a.upload_s) - statistics.median(b.upload_s)
    print(f"added by the module (medians): send {1000 * added:.1f} ms, upload "
          f"{1000 * added_up:.1f} ms")  # fmt: skip
    n = max(stats["events_checked"], 1)
    print(f"module's own time per event: {1000 * stats['check_seconds'] / n:.1f} ms "
          f"(of which opening {1000 * stats['open_seconds'] / max(stats['vouchers_opened'], 1):.1f}"
          f" ms per voucher); rejected {stats['events_rejected']}")  # fmt: skip
    for name in ("with", "without"):
        xs = sorted(lag[name])
        print(f"/health during the sends, {name:7} module: {ms(xs)}  "
              f"max {1000 * xs[-1]:6.1f} ms ({len(xs)} probes)")  # fmt: skip
    phases = ", ".join(f"{k} {1000 * v / n:.1f} ms" for k, v in stats["phase_seconds"].items())
    print(f"  per event, by step (wall): {phases}")
    print(
        f"in-process opening (SQL state, 1 thread): {len(fresh) / wall:.0f} vouchers/s wall, "
        f"{len(fresh) / cpu:.0f} per CPU-second ({1000 * cpu / len(fresh):.2f} ms each)"
    )


if __name__ == "__main__":
    main()
