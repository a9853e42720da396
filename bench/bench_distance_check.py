"""Cost of the second private distance check (``blindmatch.protocol.distance``), beside baselines.

Measures, on random (benign) hashes, median over ``--runs`` runs at ``--radius`` (default 31):

  precompute    per listed entry: the 256 encrypted bits, with the server's secret
                (``DistanceKey.encrypt_bits``, 512 fixed-base mults) and from the public key
                alone (``encrypt_bits``, 256 fixed- + 256 variable-base mults)
  client        ``respond``: E = Σ s_i·Enc(y_i) (512 point additions), then R+1 re-randomised
                conditional-disclosure ciphertexts (3 variable- + 1 fixed-base mult each)
  server        ``disclose``: R+1 decryptions (1 variable-base mult each) and key hashes

and in the same process, to read the figures against:

  raw mults     one variable-base and one fixed-base ristretto255 scalar multiplication,
                one point addition (rbcl, on 32-byte encodings)
  one voucher   ``ClientSession.make_voucher`` and ``ServerSession.open`` on a small table
                (default lookup keys, 11 variant hashes, as bench/bench_protocol.py)

and the whole exchange on a distance-checked table of the same entries (k = 40 keys, ``--slots``
candidate slots; the records are built once, ~12 ms each): the client's ``make_voucher`` (format
4) and ``answer_for_image``, the server's ``begin`` and ``finish`` — for an unrelated image and
for a near copy (a candidate that passes), beside the format-3 baseline above.

    .venv/bin/python bench/bench_distance_check.py            # ~1 min
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace

import rbcl

from blindmatch.protocol import (
    AccountSecret,
    ClientSession,
    EntryRef,
    ListedEntry,
    Policy,
    QueryHash,
    ServerSession,
    VariantProbeLSH,
    build_table,
)
from blindmatch.protocol.distance import (
    ENCRYPTED_BITS_BYTES,
    DistanceKey,
    disclose,
    disclosed_key,
    encrypt_bits,
    encrypted_distance,
    respond,
    response_bytes,
)
from blindmatch.protocol.hazmat.rng import SeededRng
from blindmatch.protocol.voucher import VerifiedTable


def med(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def timed(clock: Callable[[], float], fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = clock()
        fn()
        out.append(clock() - t0)
    return out


def flip(pdq: bytes, d: int, rnd: random.Random) -> bytes:
    v = bytearray(pdq)
    for i in rnd.sample(range(256), d):
        v[i >> 3] ^= 0x80 >> (i & 7)
    return bytes(v)


def flip_outside(pdq: bytes, d: int, positions: Sequence[int], rnd: random.Random) -> bytes:
    v = bytearray(pdq)
    for i in rnd.sample(list(positions), d):
        v[i >> 3] ^= 0x80 >> (i & 7)
    return bytes(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--radius", type=int, default=31)
    ap.add_argument("--runs", type=int, default=25, help="runs per figure (median reported)")
    ap.add_argument("--entries", type=int, default=2000, help="listed hashes of the baseline table")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--slots", type=int, default=1, help="candidate slots of the checked table")
    args = ap.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    rnd = random.Random(args.seed)
    radius, runs = args.radius, args.runs
    print(
        f"bench_distance_check: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus, python {platform.python_version()}; clock: {args.clock}; "
        f"radius {radius}, median of {runs} runs"
    )

    # --- baselines: raw group operations
    s = rbcl.crypto_core_ristretto255_scalar_random()
    p = rbcl.crypto_core_ristretto255_random()
    smul = (
        med(
            timed(clock, lambda: [rbcl.crypto_scalarmult_ristretto255(s, p) for _ in range(200)], 5)
        )
        / 200
    )
    bmul = (
        med(
            timed(
                clock, lambda: [rbcl.crypto_scalarmult_ristretto255_base(s) for _ in range(200)], 5
            )
        )
        / 200
    )
    padd = (
        med(timed(clock, lambda: [rbcl.crypto_core_ristretto255_add(p, p) for _ in range(200)], 5))
        / 200
    )
    print(
        f"baseline: variable-base mult {smul * 1e6:.1f} us, fixed-base mult {bmul * 1e6:.1f} us, "
        f"point addition {padd * 1e6:.1f} us (rbcl, encoded points)"
    )

    # --- baseline: one voucher made and opened
    pdqs = [rnd.randbytes(32) for _ in range(args.entries)]
    entries = [ListedEntry(h, (EntryRef("HL-A", "bench", str(i)),)) for i, h in enumerate(pdqs)]
    built = build_table(
        entries, scheme=VariantProbeLSH(seed=rnd.randbytes(32)), policy=Policy.BLOCK, threshold=30
    )
    # a stand-in for the signed manifest: the client reads only its counts here
    counts = SimpleNamespace(n_keys=built.n_keys, n_entries=len(entries))
    client = ClientSession(VerifiedTable(built.table, counts), AccountSecret.generate())  # type: ignore[arg-type]
    server = ServerSession(built.server_secret, built.table)
    make_t, open_t = [], []
    for i in range(runs):
        q = rnd.randbytes(32)
        conf = [rnd.random() for _ in range(256)]
        variants = [QueryHash(q, conf, 1.0)]
        variants += [QueryHash(rnd.randbytes(32), conf, 0.05) for _ in range(7)]
        variants += [QueryHash(rnd.randbytes(32), conf, 0.3) for _ in range(3)]
        t0 = clock()
        v = client.make_voucher(q, confidence=conf, evidence=bytes(1000), variants=variants)
        make_t.append(clock() - t0)
        t0 = clock()
        server.open(v, account=f"acct{i}")
        open_t.append(clock() - t0)
    vmake, vopen = med(make_t), med(open_t)
    print(
        f"baseline voucher ({args.entries:,}-entry table): make_voucher {vmake * 1e3:.2f} ms "
        f"({vmake / smul:.0f} mults), ServerSession.open (no match) {vopen * 1e3:.2f} ms "
        f"({vopen / smul:.0f} mults), {client.voucher_bytes:,} B"
    )

    # --- the distance check
    dk = DistanceKey.generate()
    listed = rnd.randbytes(32)
    enc_secret = timed(clock, lambda: dk.encrypt_bits(listed), runs)
    enc_public = timed(clock, lambda: encrypt_bits(listed, dk.public), runs)
    enc = dk.encrypt_bits(listed)
    key = rnd.randbytes(32)
    near, far = flip(listed, radius // 2, rnd), flip(listed, radius + 1, rnd)

    def client_for(query: bytes) -> list[float]:
        return timed(
            clock,
            lambda: respond(
                enc,
                query,
                public=dk.public,
                radius=radius,
                key=key,
                stream=SeededRng(rnd.randbytes(32)),
            ),
            runs,
        )

    resp_near, resp_far = client_for(near), client_for(far)
    r_near = respond(enc, near, public=dk.public, radius=radius, key=key, stream=SeededRng(b"n"))
    r_far = respond(enc, far, public=dk.public, radius=radius, key=key, stream=SeededRng(b"f"))
    sum_t = timed(clock, lambda: encrypted_distance(enc, far), runs)
    srv_near = timed(clock, lambda: disclose(r_near, dk), runs)
    srv_far = timed(clock, lambda: disclose(r_far, dk), runs)
    assert disclosed_key(key) in disclose(r_near, dk)
    assert disclosed_key(key) not in disclose(r_far, dk)

    def row(name: str, samples: Sequence[float]) -> None:
        m = med(samples)
        print(
            f"  {name:<44} {m * 1e3:7.2f} ms  = {m / smul:5.0f} mults "
            f"= {m / vmake:5.2f} make_voucher = {m / vopen:5.2f} open"
        )

    print(f"distance check at radius {radius}:")
    row("precompute per entry, with x (512 base mults)", enc_secret)
    row("precompute per entry, from X only", enc_public)
    row(f"client respond, d = {radius // 2} (discloses)", resp_near)
    row(f"client respond, d = {radius + 1} (does not)", resp_far)
    row("  of which E = sum s_i*Enc(y_i) (512 additions)", sum_t)
    row(f"server disclose, d = {radius // 2} (discloses)", srv_near)
    row(f"server disclose, d = {radius + 1} (does not)", srv_far)
    print(
        f"sizes: encrypted bits {ENCRYPTED_BITS_BYTES:,} B per entry (down, per candidate slot); "
        f"response {response_bytes(radius):,} B (up, per slot); "
        f"server key 32 B secret, 32 B public"
    )
    exchange(args, clock, rnd, entries, smul, vmake, vopen)


def exchange(
    args: argparse.Namespace,
    clock: Callable[[], float],
    rnd: random.Random,
    entries: Sequence[ListedEntry],
    smul: float,
    vmake: float,
    vopen: float,
) -> None:
    """The two rounds on a distance-checked table, against the format-3 baseline."""
    from blindmatch.protocol import answer_for_image, new_opening_seed
    from blindmatch.protocol.challenge import answer_bytes, challenge_bytes

    t0 = time.perf_counter()
    built = build_table(
        entries, scheme=VariantProbeLSH(k=40, seed=rnd.randbytes(32)), policy=Policy.BLOCK,
        threshold=30, distance_radius=args.radius, distance_slots=args.slots,
    )  # fmt: skip
    build_s = time.perf_counter() - t0
    manifest = SimpleNamespace(n_keys=built.n_keys, n_entries=len(entries))
    verified = VerifiedTable(built.table, manifest)  # type: ignore[arg-type]
    client = ClientSession(verified, AccountSecret.generate())
    server = ServerSession(built.server_secret, built.table, records=built.records)
    params = built.table.distance
    assert params is not None
    # a near copy: 8 bits flipped outside the key's sample, so its own key finds the entry
    sample = set(getattr(built.table.scheme, "positions", ((),))[0])
    outside = [i for i in range(256) if i not in sample]
    rows: dict[str, list[list[float]]] = {}
    for kind in ("unrelated", "near copy"):
        times: list[list[float]] = [[], [], [], []]
        for i in range(args.runs):
            base = entries[i % len(entries)].pdq if kind == "near copy" else rnd.randbytes(32)
            q = flip_outside(base, 8, outside, rnd) if kind == "near copy" else base
            conf = [rnd.random() for _ in range(256)]
            variants = [QueryHash(q, conf, 1.0)]
            variants += [QueryHash(rnd.randbytes(32), conf, 0.05) for _ in range(7)]
            variants += [QueryHash(rnd.randbytes(32), conf, 0.3) for _ in range(3)]
            seed = new_opening_seed()
            t0 = clock()
            v = client.make_voucher(
                q, confidence=conf, evidence=bytes(1000), variants=variants, opening_seed=seed
            )
            t1 = clock()
            pending = server.begin(v)
            t2 = clock()
            answer = answer_for_image(
                verified, pending.challenge, seed, q, confidence=conf, variants=variants
            )
            t3 = clock()
            result = server.finish(pending, answer, account=f"x{kind}{i}")
            t4 = clock()
            if kind == "near copy":
                assert result.matched, "a near copy must pass the check"
            for j, dt in enumerate((t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[j].append(dt)
        rows[kind] = times
    print(
        f"the exchange on a distance-checked table ({len(entries):,} entries, k = 40, R = "
        f"{args.radius}, {args.slots} slot(s); {params.n_records:,} records built in "
        f"{build_s:.1f} s wall): voucher {client.voucher_bytes:,} B, challenge "
        f"{challenge_bytes(params):,} B down, answer {answer_bytes(params):,} B up"
    )
    for kind, (make, begin, answer_t, finish) in rows.items():
        c = med(make) + med(answer_t)
        srv = med(begin) + med(finish)
        print(
            f"  {kind:<10} client {c * 1e3:6.2f} ms (make_voucher {med(make) * 1e3:.2f} + "
            f"answer {med(answer_t) * 1e3:.2f}) = {c / vmake:4.2f} x format-3 make_voucher; "
            f"server {srv * 1e3:6.2f} ms (begin {med(begin) * 1e3:.2f} + finish "
            f"{med(finish) * 1e3:.2f}) = {srv / vopen:4.2f} x format-3 open = "
            f"{srv / smul:.0f} mults"
        )


if __name__ == "__main__":
    main()
