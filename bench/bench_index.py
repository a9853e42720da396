"""PDQ matching speed: blindmatch's MultiIndexHash vs FAISS flat vs a numpy scan.

For each size and kind of data (uniformly random hashes, or clustered ones:
centres plus copies with a few bit flips, cluster sizes very uneven) it
builds the indexes and runs the same queries through each, one at a time,
single-threaded, at radius 31 (distance <= 31):

  MultiIndexHash       blindmatch.index, chunk layout chosen for the size
  MultiIndexHash 16x16 the same, forced to 16 chunks of 16 bits (shown when
                       the chosen layout differs)
  FAISS flat           faiss.IndexBinaryFlat(256).range_search, whose radius is
                       strict (distance < radius): it is asked for radius + 1
  numpy scan           blindmatch.index.BruteForceIndex, on a subset of queries

Half the queries are stored hashes with 0..31 random bits flipped, half are
random. Recall is measured against the numpy scan (the ground truth); the
results of every method are also compared query by query with FAISS's.
It also times how long a newly added hash takes to become matchable.

    .venv/bin/python bench/bench_index.py --sizes 1000000 10000000 --queries 1000 --kind both
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from blindmatch.index import BruteForceIndex, MultiIndexHash
from blindmatch.index.mih import DEFAULT_TAIL_FRACTION, even_widths

RADIUS = 31
Result = tuple[np.ndarray, np.ndarray]


# ------------------------------------------------------------------- data


def random_hashes(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 32), dtype=np.uint8)


def flip_random_bits(rng: np.random.Generator, h: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Flip ``k[i]`` distinct random bits of row ``i`` (rows of uint8, shape (n, 32))."""
    out = h.copy()
    kmax = int(k.max()) if k.size else 0
    if kmax == 0:
        return out
    # distinct positions per row: the first k of a random permutation of 256 bits
    keys = rng.random((h.shape[0], 256), dtype=np.float32) if h.shape[0] <= 100_000 else None
    if keys is not None:
        pos = np.argsort(keys, axis=1)[:, :kmax]
    else:  # large inputs: random positions, re-drawn where they collide
        pos = rng.integers(0, 256, size=(h.shape[0], kmax))
        for _ in range(8):
            s = np.sort(pos, axis=1)
            dup = (s[:, 1:] == s[:, :-1]).any(axis=1)
            if not dup.any():
                break
            pos[dup] = rng.integers(0, 256, size=(int(dup.sum()), kmax))
    rows = np.arange(h.shape[0])
    for j in range(kmax):
        sel = rows[k > j]
        p = pos[sel, j]
        out[sel, p // 8] ^= (1 << (p % 8)).astype(np.uint8)
    return out


def clustered_hashes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Centres plus copies with 0..10 random bit flips; cluster sizes Zipf-distributed (1..5000)."""
    sizes = np.minimum(rng.zipf(1.8, size=n), 5000)
    sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), n)) + 1]
    sizes[-1] -= int(sizes.sum()) - n
    centres = random_hashes(rng, sizes.shape[0])
    copies = np.repeat(centres, sizes, axis=0)
    out = flip_random_bits(rng, copies, rng.integers(0, 11, size=n))
    return out[rng.permutation(n)]


def make_queries(rng: np.random.Generator, db: np.ndarray, count: int) -> np.ndarray:
    near = db[rng.integers(0, db.shape[0], size=count - count // 2)]
    near = flip_random_bits(rng, near, rng.integers(0, RADIUS + 1, size=near.shape[0]))
    qs = np.concatenate([near, random_hashes(rng, count // 2)])
    kind = np.array([1] * near.shape[0] + [0] * (count // 2))
    order = rng.permutation(count)
    return qs[order], kind[order]


# ---------------------------------------------------------------- methods


@dataclass
class Timed:
    name: str
    results: list[Result | None] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    queried: list[int] = field(default_factory=list)
    build_s: float = 0.0
    bytes_per_hash: str = ""


def run_queries(
    name: str, search: Callable[[np.ndarray], Result], qs: np.ndarray, which: np.ndarray
) -> Timed:
    t = Timed(name)
    for q in qs[:20]:  # warm up
        search(q)
    gc.collect()
    gc.disable()
    try:
        for i in which.tolist():
            t0 = time.perf_counter()
            res = search(qs[i])
            t.seconds.append(time.perf_counter() - t0)
            t.results.append(res)
            t.queried.append(i)
    finally:
        gc.enable()
    return t


def faiss_search_fn(faiss_index, ids: np.ndarray) -> Callable[[np.ndarray], Result]:
    def search(q: np.ndarray) -> Result:
        lims, dist, labels = faiss_index.range_search(q[None, :], RADIUS + 1)  # strict <
        got_ids = ids[labels]
        d = dist.astype(np.int32)
        order = np.lexsort((got_ids, d))
        return got_ids[order], d[order]

    return search


def check_faiss_radius_semantics(faiss) -> str:
    index = faiss.IndexBinaryFlat(256)
    a = np.zeros((1, 32), np.uint8)
    b = a.copy()
    b[0, :4] = 0xFF  # distance 32
    index.add(a)
    at = len(index.range_search(b, 32)[2])
    above = len(index.range_search(b, 33)[2])
    if (at, above) == (0, 1):
        return "strict (<): queried with radius 32 for <= 31"
    if (at, above) == (1, 1):
        raise SystemExit("FAISS range_search radius is inclusive here; adjust the benchmark")
    raise SystemExit(f"unexpected FAISS range_search behaviour {at, above}")


# ---------------------------------------------------------------- report


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.array(xs), p)) * 1e3 if xs else float("nan")


def same(a: Result, b: Result) -> bool:
    return np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def recall(method: Timed, truth: dict[int, Result]) -> tuple[float, int, int]:
    found = total = exact = checked = 0
    for i, res in zip(method.queried, method.results, strict=True):
        if i not in truth or res is None:
            continue
        want = truth[i]
        total += want[0].shape[0]
        found += np.intersect1d(res[0], want[0]).shape[0]
        exact += same(res, want)
        checked += 1
    return (found / total if total else 1.0), exact, checked


def time_to_matchable(index: MultiIndexHash, rng: np.random.Generator) -> dict[str, float]:
    """Seconds from add() of one new hash until search() returns it."""
    next_id = 2**40

    def one() -> float:
        nonlocal next_id
        h = random_hashes(rng, 1)
        next_id += 1
        t0 = time.perf_counter()
        index.add(h, np.array([next_id]))
        ids, _ = index.search(h[0], RADIUS)
        elapsed = time.perf_counter() - t0
        assert next_id in ids
        return elapsed

    def bulk(count: int) -> None:
        nonlocal next_id
        if count > 0:
            index.add(random_hashes(rng, count), np.arange(next_id + 1, next_id + 1 + count))
            next_id += count

    def fill_delta() -> None:
        bulk(index.describe()["delta_max"] - index.describe()["delta"])

    typical = [one() for _ in range(20)]
    # the add that overflows the delta into a small tail
    fill_delta()
    fold = one()
    # grow the tail to one delta below its limit (tail_fraction of main), then
    # time the add that folds the delta into that big tail
    d = index.describe()
    dm = d["delta_max"]
    limit = int(DEFAULT_TAIL_FRACTION * d["segments"]["main"]["rows"])
    tail_rows = d["segments"].get("tail", {}).get("rows", 0)
    fill_delta()
    bulk(max(1, limit - 2 * dm - 1 - tail_rows))  # overflows the full delta: a tail rebuild
    fill_delta()
    t = one()
    fold_big, tail_big = float("nan"), 0
    if not index.describe()["rebuilding"]:
        fold_big, tail_big = t, index.describe()["segments"].get("tail", {}).get("rows", 0)
        # the add that overflows the tail starts a full rebuild
        fill_delta()
        t = one()
    # the full rebuild then runs one step per add: time every add until it is done
    assert index.describe()["rebuilding"]
    during = [t]
    while index.describe()["rebuilding"]:
        during.append(one())
    return {
        "typical_median": float(np.median(typical)),
        "typical_max": max(typical),
        "fold": fold,
        "fold_big": fold_big,
        "tail_big": tail_big,
        "rebuild_first": during[0],
        "rebuild_max": max(during),
        "rebuild_adds": len(during),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--brute-queries", type=int, default=100, help="numpy-scan subset per run")
    ap.add_argument("--kind", choices=["random", "clustered", "both"], default="both")
    ap.add_argument("--skip-faiss", action="store_true")
    ap.add_argument("--no-16x16", action="store_true", help="skip the forced 16x16 layout row")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    faiss = None
    if not args.skip_faiss:
        import faiss

        faiss.omp_set_num_threads(1)
    kinds = ["random", "clustered"] if args.kind == "both" else [args.kind]
    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    print(f"date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, ", end="")
    print(f"numpy {np.__version__}" + (f", faiss {faiss.__version__}" if faiss else ""))
    if faiss:
        print(f"FAISS range_search radius: {check_faiss_radius_semantics(faiss)}")
    print(f"radius {RADIUS}; {args.queries} queries (half near-duplicates at 0..31 bits, half")
    print(f"random), numpy scan on the first {args.brute_queries}; one query at a time, 1 thread")

    for n in args.sizes:
        for kind in kinds:
            rng = np.random.default_rng(args.seed)
            db = random_hashes(rng, n) if kind == "random" else clustered_hashes(rng, n)
            ids = rng.permutation(n).astype(np.int64) + 1_000_000
            qs, qkind = make_queries(rng, db, args.queries)
            everything = np.arange(args.queries)
            subset = everything[: args.brute_queries]
            methods: list[Timed] = []

            t0 = time.perf_counter()
            mih = MultiIndexHash(db, ids)
            build = time.perf_counter() - t0
            nb = mih.nbytes()
            widths = mih.describe()["segments"]["main"]["widths"]
            label = f"MultiIndexHash {len(widths)}x{widths[0]}" + (
                f"/{widths[-1]}" if widths[-1] != widths[0] else ""
            )
            m = run_queries(label, lambda q, ix=mih: ix.search(q, RADIUS), qs, everything)
            m.build_s, m.bytes_per_hash = build, f"{nb['tables'] / n:.1f} (+8 id)"
            methods.append(m)
            t0 = time.perf_counter()
            batch = mih.search_many(qs, RADIUS)
            batch_s = time.perf_counter() - t0
            batch_ok = all(same(a, b) for a, b in zip(batch, m.results, strict=True))

            if tuple(widths) != even_widths(16) and not args.no_16x16:
                t0 = time.perf_counter()
                mih16 = MultiIndexHash(db, ids, widths=even_widths(16))
                build16 = time.perf_counter() - t0
                m16 = run_queries(
                    "MultiIndexHash 16x16 (forced)",
                    lambda q, ix=mih16: ix.search(q, RADIUS),
                    qs,
                    everything,
                )
                m16.build_s = build16
                m16.bytes_per_hash = f"{mih16.nbytes()['tables'] / n:.1f} (+8 id)"
                methods.append(m16)
                del mih16
                gc.collect()

            faiss_m = None
            if faiss:
                fi = faiss.IndexBinaryFlat(256)
                t0 = time.perf_counter()
                fi.add(db)
                faiss_build = time.perf_counter() - t0
                faiss_m = run_queries(
                    "FAISS IndexBinaryFlat", faiss_search_fn(fi, ids), qs, everything
                )
                faiss_m.build_s, faiss_m.bytes_per_hash = faiss_build, "0 (+8 id map)"
                methods.append(faiss_m)
                del fi
                gc.collect()

            t0 = time.perf_counter()
            brute = BruteForceIndex(db, ids)
            brute_build = time.perf_counter() - t0
            b = run_queries("numpy scan", lambda q, ix=brute: ix.search(q, RADIUS), qs, subset)
            b.build_s, b.bytes_per_hash = brute_build, "0 (+8 id)"
            methods.append(b)
            truth = dict(zip(b.queried, b.results, strict=True))
            del brute
            gc.collect()

            n_results = [r[0].shape[0] for r in b.results if r is not None]
            print()
            print(f"### {n:,} {kind} hashes")
            print()
            print(
                f"results per query (scan subset): mean {np.mean(n_results):.1f}, "
                f"max {max(n_results)}; near-duplicate queries: {int(qkind.sum())}"
            )
            print()
            print(
                "| method | build s | index B/hash beyond the hashes | median ms | p99 ms "
                "| median near / random ms | vs FAISS (median) | recall vs scan | same as FAISS |"
            )
            print("|---|---|---|---|---|---|---|---|---|")
            f_med = np.median(faiss_m.seconds) if faiss_m else float("nan")
            for t in methods:
                rec, exact, checked = recall(t, truth)
                near = [s for s, i in zip(t.seconds, t.queried, strict=True) if qkind[i]]
                rand = [s for s, i in zip(t.seconds, t.queried, strict=True) if not qkind[i]]
                speed = f_med / np.median(t.seconds) if faiss_m else float("nan")
                if faiss_m and t is not faiss_m:
                    agree = sum(
                        same(r, faiss_m.results[i])
                        for r, i in zip(t.results, t.queried, strict=True)
                        if r is not None
                    )
                    agree_s = f"{agree}/{len(t.results)}"
                else:
                    agree_s = "-"
                print(
                    f"| {t.name} | {t.build_s:.1f} | {t.bytes_per_hash} | {pct(t.seconds, 50):.3f} "
                    f"| {pct(t.seconds, 99):.3f} | {pct(near, 50):.3f} / {pct(rand, 50):.3f} "
                    f"| {speed:.1f}x | {rec:.3f} ({exact}/{checked} exact) | {agree_s} |"
                )
            print()
            print(
                f"search_many({args.queries} queries): "
                f"{batch_s / args.queries * 1e3:.3f} ms/query, "
                f"results identical to search(): {batch_ok}"
            )
            ttm = time_to_matchable(mih, rng)
            print(
                f"time from add() of one new hash until search() finds it: median "
                f"{ttm['typical_median'] * 1e3:.1f} ms, max {ttm['typical_max'] * 1e3:.1f} ms "
                f"over 20 adds; the add that overflows the delta "
                f"({mih.describe()['delta_max']}) into a small tail: {ttm['fold'] * 1e3:.0f} ms, "
                f"into a {ttm['tail_big']:,}-row tail: {ttm['fold_big'] * 1e3:.0f} ms; "
                f"the add that overflows the tail: {ttm['rebuild_first'] * 1e3:.0f} ms, then "
                f"the full rebuild runs over the next {ttm['rebuild_adds'] - 1} adds, "
                f"slowest {ttm['rebuild_max'] * 1e3:.0f} ms"
            )
            del mih, db, methods, m, b, truth
            gc.collect()


if __name__ == "__main__":
    main()
