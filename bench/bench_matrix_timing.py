"""Matrix: does the module's answer time to a send depend on what the voucher hides?

Starts a real Synapse with the module (127.0.0.1, SQLite), once per policy, and times the
``PUT …/send/m.room.encrypted`` of events that each carry one voucher, two classes
interleaved (the upload before each send is not timed):

* **threshold** — a voucher of the listed picture (its pair opens; a real match) against
  a voucher of a random hash (nothing opens). Both are accepted; the question is whether
  the answer comes faster or slower for one class (docs/protocol.md: what a sender can
  observe).
* **block** — a *near miss* (a hash 40 bits from a listed one that shares its first lookup
  key: its pair opens, no match within 31) against a random hash (nothing opens). Both are
  accepted; a match is refused, so its outcome is public anyway and is not timed.

Before sending, each class is checked in-process with the table's server key (the near
miss opens and does not match, the random one does not open, the listed one opens).
Reports min / median / max per class, how many of each class were faster than the fastest
of the other, and the probability that a random send of the first class is faster than a
random send of the second (0.5: indistinguishable by one sample).

    .venv/bin/python bench/bench_matrix_timing.py            # 40 sends per class, ~40 s
    .venv/bin/python bench/bench_matrix_timing.py --sends 100

Run it with ``PYTHONPATH`` pointing at another checkout's ``src`` to time that module
(the Synapse child inherits the environment). Benign data only: random hashes and one
synthetic picture.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
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

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.hashing.image import pdq_with_vector_from_rgb
from blindmatch.integrations.matrix.events import voucher_field
from blindmatch.integrations.matrix.homeserver import ENCRYPTED_ROOM, Homeserver, build_table_dir
from blindmatch.private import load_trust_file
from blindmatch.protocol import (
    AccountSecret,
    ClientSession,
    ServerSecret,
    ServerSession,
    verify_table,
)

WARMUP = 6


def flip(pdq: bytes, bits: list[int]) -> bytes:
    v = bytearray(pdq)
    for i in bits:
        v[i >> 3] ^= 0x80 >> (i & 7)
    return bytes(v)


def summary(xs: list[float]) -> str:
    return f"{1000 * min(xs):5.1f} / {1000 * statistics.median(xs):5.1f} / {1000 * max(xs):5.1f} ms"


def faster(a: list[float], b: list[float]) -> float:
    """P(a random sample of a < a random sample of b), ties counted half."""
    wins = sum((x < y) + 0.5 * (x == y) for x in a for y in b)
    return wins / (len(a) * len(b))


def run(policy: str, args: argparse.Namespace, root: Path, rnd: random.Random) -> None:
    listed = {f"r{i}": rnd.randbytes(32) for i in range(args.entries)}
    pdq, _ = pdq_with_vector_from_rgb(np.asarray(synthetic_photo(10, (800, 600))))
    photo = bytes.fromhex(pdq.hex)
    listed["photo-10"] = photo
    table_dir = build_table_dir(root / policy / "table", listed, policy=policy, threshold=30)
    trust = load_trust_file(str(table_dir / "trust.json"))
    verified = verify_table((table_dir / "table.bin").read_bytes(),
                            (table_dir / "manifest.json").read_bytes(), trust)  # fmt: skip
    client = ClientSession(verified, AccountSecret.generate())
    table = verified.table
    if policy == "threshold":
        names = ("listed (opens)", "unlisted (does not open)")
        opened = lambda: client.make_voucher(photo)  # noqa: E731
    else:
        names = ("near miss (opens, d = 40)", "unlisted (does not open)")
        off = sorted(set(range(256)) - set(table.scheme.positions[0]))  # type: ignore[attr-defined]
        opened = lambda: client.make_voucher(flip(photo, rnd.sample(off, 40)))  # noqa: E731
    total = WARMUP + args.sends
    classes = [[opened() for _ in range(total)],
               [client.make_voucher(rnd.randbytes(32)) for _ in range(total)]]  # fmt: skip
    check = ServerSession(ServerSecret.from_bytes((table_dir / "server.key").read_bytes()), table)
    for i, vs in enumerate(classes):
        for v in vs[:3]:
            r = check.open(v, account=f"@check{i}:x")
            assert r.opened == (i == 0) and not (policy == "block" and r.matched), (names[i], r)
    module_config: dict[str, Any] = {
        "table_dir": str(table_dir),
        "database_url": f"sqlite:///{root / policy / 'blindmatch.db'}",
        "policy": policy,
        "sweep_interval_seconds": 3600,
    }
    times: list[list[float]] = [[], []]
    with Homeserver(root / policy / "hs", module_config=module_config) as hs:
        user = hs.register_user("bench", secrets.token_hex(8))
        r = hs.http.request("POST", "/_matrix/client/v3/createRoom",
                            json_body={"preset": "private_chat", "initial_state": ENCRYPTED_ROOM},
                            token=user.access_token)  # fmt: skip
        room = r.json()["room_id"]
        order = [(i % 2 if (i // 2) % 2 == 0 else 1 - i % 2) for i in range(2 * total)]
        seen = [0, 0]
        for k, c in enumerate(order):
            v = classes[c][seen[c]]
            seen[c] += 1
            blob = secrets.token_bytes(4096)
            up = hs.http.request("POST", "/_matrix/media/v3/upload", data=blob,
                                 token=user.access_token,
                                 headers={"Content-Type": "application/octet-stream"})  # fmt: skip
            assert up.status == 200, up.body
            mxc = up.json()["content_uri"]
            content = {
                "algorithm": "m.megolm.v1.aes-sha2",
                "ciphertext": base64.b64encode(secrets.token_bytes(400)).decode(),
                "sender_key": "x" * 43, "session_id": "y" * 43, "device_id": user.device_id,
                "org.blindmatch.voucher": voucher_field(
                    [(v, mxc, hashlib.sha256(blob).hexdigest())]
                ),
            }  # fmt: skip
            t0 = time.perf_counter()
            r = hs.http.request(
                "PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.encrypted/b{k}",
                json_body=content, token=user.access_token,
            )  # fmt: skip
            dt = time.perf_counter() - t0
            assert r.status == 200, r.body  # every class here is accepted
            if k >= 2 * WARMUP:
                times[c].append(dt)
            time.sleep(args.pause)  # let a kicked worker finish: no queueing behind it
    a, b = times
    print(f"\n{policy} policy, {args.sends} sends per class, {len(listed):,} listed hashes, t = 30")
    print(f"  send answer, min / median / max:  {names[0]:28} {summary(a)}")
    print(f"                                    {names[1]:28} {summary(b)}")
    print(f"  {names[0]} faster than the fastest {names[1]}: "
          f"{sum(x < min(b) for x in a)}/{len(a)}; the reverse: {sum(y < min(a) for y in b)}/"
          f"{len(b)}; P(first faster than second) = {faster(a, b):.2f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sends", type=int, default=40, help="timed sends per class")
    ap.add_argument("--entries", type=int, default=2_000, help="random listed hashes")
    ap.add_argument("--pause", type=float, default=0.05, help="seconds between sends")
    ap.add_argument("--policy", choices=("threshold", "block", "both"), default="both")
    args = ap.parse_args()
    import blindmatch

    print(f"# bench_matrix_timing: module from {Path(blindmatch.__file__).parent}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="bench-matrix-timing-"))
    for policy in ("threshold", "block") if args.policy == "both" else (args.policy,):
        run(policy, args, root, random.Random(7))


if __name__ == "__main__":
    main()
