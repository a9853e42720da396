"""List import and freshness, end to end through the SQL store and the matcher.

Measures, on a SQLite store holding N random PDQ entries:
  * import throughput (rows/s) for a fresh import and for an idempotent re-import;
  * time for a newly added entry to become matchable (store write + index
    catch-up + a query that finds it), median and max over repeated adds;
  * beside it, the baseline HMA uses: rebuilding the whole index from the store.

    .venv/bin/python bench/bench_store.py --entries 1000000 --adds 20
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from blindmatch.lists import ListEntry
from blindmatch.matching import Matcher
from blindmatch.store import open_store


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--adds", type=int, default=20)
    args = ap.parse_args()
    rng = random.Random(7)

    def pdq() -> str:
        return rng.getrandbits(256).to_bytes(32, "big").hex()

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        entries = [
            ListEntry(source_id=f"e{i}", pdq=pdq(), category="A1") for i in range(args.entries)
        ]
        t = time.perf_counter()
        store.import_entries("bench", entries)
        t_import = time.perf_counter() - t
        t = time.perf_counter()
        again = store.import_entries("bench", entries)
        t_reimport = time.perf_counter() - t
        assert again.unchanged == args.entries

        t = time.perf_counter()
        matcher = Matcher(store, None)
        t_rebuild = time.perf_counter() - t

        fresh = []
        for i in range(args.adds):
            new = pdq()
            t = time.perf_counter()
            store.import_entries("bench", [ListEntry(source_id=f"new{i}", pdq=new)])
            matcher.refresh()
            found = matcher.match_pdq(new)
            fresh.append(time.perf_counter() - t)
            assert [m.entry_id for m in found] == [f"new{i}"]

        print(f"entries: {args.entries:,} (SQLite, random PDQ)")
        print(f"import:    {t_import:.1f} s  ({args.entries / t_import:,.0f} rows/s)")
        print(
            f"re-import: {t_reimport:.1f} s  ({args.entries / t_reimport:,.0f} rows/s, unchanged)"
        )
        print(
            f"new entry matchable (write + catch-up + query): median "
            f"{statistics.median(fresh) * 1000:.1f} ms, max {max(fresh) * 1000:.1f} ms "
            f"over {args.adds} adds"
        )
        print(
            f"baseline, full index rebuild from the store: {t_rebuild:.1f} s "
            f"({t_rebuild / statistics.median(fresh):,.0f}x slower)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
