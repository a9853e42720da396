"""Private-matching cost: table build, client vouchers, server opening, sizes.

Runs the real recipes of ``blindmatch.protocol`` on random (benign) hashes and
prints each figure beside the issue's target and beside baselines measured in
the same process:

  raw scalar mult     one ristretto255 scalar multiplication through rbcl (the
                      unit of cost: a voucher pair costs the client 3 and the
                      server 1)
  plaintext MIH       blindmatch.index.MultiIndexHash radius-31 lookup of the
                      same query hashes over the same listed hashes (what the
                      server would do if it saw every hash)

    .venv/bin/python bench/bench_protocol.py                  # ~30 s: 20,000 entries
    .venv/bin/python bench/bench_protocol.py --million         # 1M entries, 2 workers

Lookup keys: the default scheme, ``VariantProbeLSH`` (k=72, 37 probes shared
across an image's robust variants; docs/protocol.md §11). Each query carries 11
variant hashes, as ``voucher make`` sends for a photo: its own 512-px hash, 7
other orientations and 3 trimmed frames (random stand-ins here).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import rbcl

from blindmatch.index import MultiIndexHash
from blindmatch.protocol import (
    AccountSecret,
    ClientSession,
    EntryRef,
    ListedEntry,
    Policy,
    QueryHash,
    ServerSession,
    VariantProbeLSH,
    blind_keys,
    build_table,
)
from blindmatch.protocol.voucher import VerifiedTable

TARGETS = {
    "client": 25.0,  # ms per image
    "server": 5.0,  # ms per voucher per core
    "voucher": 12 * 1024,  # bytes
    "table": 48.0,  # bytes per listed hash per lookup table
}


def parallel_blind(workers: int):  # type: ignore[no-untyped-def]
    def blind(alpha: bytes, keys: Sequence[bytes]) -> list[bytes]:
        if workers <= 1 or len(keys) < 10_000:
            return blind_keys(alpha, keys)
        step = (len(keys) + 4 * workers - 1) // (4 * workers)
        chunks = [keys[i : i + step] for i in range(0, len(keys), step)]
        with ProcessPoolExecutor(workers) as ex:
            parts = ex.map(blind_keys, [alpha] * len(chunks), chunks)
            return [p for part in parts for p in part]

    return blind


def ms(samples: Sequence[float]) -> str:
    p90 = sorted(samples)[int(len(samples) * 0.9)]
    return f"{statistics.median(samples) * 1e3:7.2f} ms (p90 {p90 * 1e3:.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=20_000, help="listed hashes (default 20,000)")
    ap.add_argument("--million", action="store_true", help="1,000,000 entries, 2 workers")
    ap.add_argument("--images", type=int, default=40, help="vouchers to make and open")
    ap.add_argument("--workers", type=int, default=1, help="processes for table blinding")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="time per voucher as this process's CPU time (default: robust on a shared "
        "machine) or wall-clock time",
    )
    args = ap.parse_args()
    if args.million:
        args.entries, args.workers = 1_000_000, max(args.workers, 2)

    rnd = random.Random(args.seed)
    print(
        f"bench_protocol: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus, python {platform.python_version()}"
    )
    scheme = VariantProbeLSH(seed=rnd.randbytes(32))
    print(
        f"lookup keys: VariantProbeLSH(k={scheme.k}, tables={scheme.tables}), "
        f"{scheme.n_probes} probes, {3 * scheme.n_probes} pairs per voucher, 11 variant hashes"
    )

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"clock: {args.clock} time per operation")

    # --- baseline: one scalar multiplication
    s = rbcl.crypto_core_ristretto255_scalar_random()
    p = rbcl.crypto_core_ristretto255_random()
    t0 = clock()
    for _ in range(2000):
        rbcl.crypto_scalarmult_ristretto255(s, p)
    smul = (clock() - t0) / 2000
    print(f"baseline raw scalar mult: {smul * 1e6:.1f} us")

    # --- table build
    pdqs = [rnd.randbytes(32) for _ in range(args.entries)]
    entries = [ListedEntry(h, (EntryRef("HL-A", "bench", str(i)),)) for i, h in enumerate(pdqs)]
    t0 = time.perf_counter()
    built = build_table(
        entries,
        scheme=scheme,
        policy=Policy.BLOCK,
        threshold=30,
        blind=parallel_blind(args.workers),
    )
    build_s = time.perf_counter() - t0
    table = built.table
    per_hash = len(table.raw) / max(1, len(entries)) / scheme.tables
    print(
        f"table build: {len(entries):,} entries, {built.n_keys:,} keys, {table.n_slots:,} slots "
        f"in {build_s:.1f} s ({args.workers} worker(s)); "
        f"{build_s / max(1, len(entries)) * 1e6:.0f} us/entry"
    )
    print(
        f"table size: {len(table.raw):,} B = {len(table.raw) / table.n_slots:.1f} B/slot, "
        f"{per_hash:.1f} B per listed hash per lookup table (target <= {TARGETS['table']:.0f})"
    )

    # --- client
    client = ClientSession(VerifiedTable(table, None), AccountSecret.generate())  # type: ignore[arg-type]
    server = ServerSession(built.server_secret, table)
    queries = [pdqs[i] for i in rnd.sample(range(len(pdqs)), args.images // 2)]
    queries += [rnd.randbytes(32) for _ in range(args.images - len(queries))]
    client_t, vouchers = [], []
    for q in queries:
        conf = [rnd.random() for _ in range(256)]
        variants = [QueryHash(q, conf, 1.0)]
        variants += [QueryHash(rnd.randbytes(32), conf, 0.05) for _ in range(7)]
        variants += [QueryHash(rnd.randbytes(32), conf, 0.3) for _ in range(3)]
        t0 = clock()
        vouchers.append(
            client.make_voucher(q, confidence=conf, evidence=bytes(1000), variants=variants)
        )
        client_t.append(clock() - t0)
    vb = client.voucher_bytes
    print(
        f"client: {ms(client_t)} per image (target <= {TARGETS['client']:.0f} ms); "
        f"= {statistics.median(client_t) / smul:.0f} scalar mults"
    )
    print(f"voucher: {vb:,} B (target <= {TARGETS['voucher']:,})")

    # --- server
    hit_t, miss_t, opened = [], [], 0
    for i, v in enumerate(vouchers):
        t0 = clock()
        r = server.open(v, account=f"acct{i}")
        dt = clock() - t0
        opened += r.matched
        (hit_t if r.opened else miss_t).append(dt)
    print(
        f"server, voucher that does not open (all pairs tried): {ms(miss_t)} "
        f"(target <= {TARGETS['server']:.0f} ms/core); "
        f"= {statistics.median(miss_t) / smul:.0f} scalar mults"
    )
    if hit_t:
        print(
            "server, voucher that opens (every pair tried too, alpha*R, confirms d<=31): "
            f"{ms(hit_t)}"
        )
    print(f"matched {opened} of {len(queries) // 2} listed queries (exact copies)")

    # --- baseline: plaintext lookup of the same queries
    index = MultiIndexHash(
        np.frombuffer(b"".join(pdqs), np.uint8).reshape(-1, 32),
        np.arange(len(pdqs), dtype=np.int64),
    )
    mih_t = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q, 31)
        mih_t.append(time.perf_counter() - t0)
    print(
        f"baseline plaintext MIH radius-31 lookup: {ms(mih_t)} per query "
        f"(private server costs {statistics.median(miss_t) / statistics.median(mih_t):.0f}x)"
    )


if __name__ == "__main__":
    main()
