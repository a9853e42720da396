"""How often does a real match open more than one pair? (docs/protocol.md §8, issue 10 finding 8)

A synthetic voucher opens exactly one pair. A real voucher opens one pair per *distinct listed
probe key*: usually one, but more when the list holds near-duplicates of the picture (several
entries whose keys the picture's probes reach) or when several of the picture's variants reach
keys of different entries. A curious server that counts opened pairs therefore tells those real
vouchers from synthetic ones. This study counts, without any cryptography, the distinct listed
probe keys of each query (exactly the pairs that would open), for two lists built from the PDQ
reference images shipped in tests/vectors/pdq-reference:

* ``distinct``: one entry per photograph (the 7 labelme photos, the bridge, the pen and coaster);
* ``near-duplicates``: the same plus every bridge edit and orientation as entries of their own
  (what a hotline list that keeps each re-encoded copy looks like).

Queries: every reference image. Run::

    .venv/bin/python bench/study_multi_open.py
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from blindmatch.hashing.image import open_image
from blindmatch.private import query_hashes
from blindmatch.protocol import QueryHash, VariantProbeLSH
from blindmatch.protocol.hazmat.rng import SeededRng

REF = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "pdq-reference"


def main() -> None:
    scheme = VariantProbeLSH(seed=bytes(32))
    files = sorted(
        p
        for p in REF.rglob("*")
        if p.suffix.lower() in (".jpg", ".png") and "modes" not in p.parts and "misc" not in str(p)
    )
    hashes = {}
    for p in files:
        # both lists are bare PDQs: as the client hashes for them (no companions)
        pdq, conf, variants = query_hashes(np.asarray(open_image(p.read_bytes())), companions=False)
        hashes[p] = (pdq, conf, variants)
    distinct = [p for p in files if "bridge-mods" not in p.parts and "dih" not in p.parts]
    distinct.append(REF / "reg-test-input" / "dih" / "bridge-1-original.jpg")
    lists = {"distinct": distinct, "near-duplicates": files}
    print(
        f"# {len(files)} reference images; scheme {scheme.describe()['scheme']} "
        f"k={scheme.k} probes={scheme.n_probes}"
    )
    for name, entries in lists.items():
        listed = {k for p in entries for k in scheme.list_keys(hashes[p][0])}
        counts: Counter[int] = Counter()
        for p in files:
            pdq, conf, variants = hashes[p]
            probes = scheme.probe_variants([QueryHash(pdq, conf), *variants], SeededRng(b"pad"))
            counts[len(set(probes.keys) & listed)] += 1
        opened = sum(v for k, v in counts.items() if k >= 1)
        multi = sum(v for k, v in counts.items() if k >= 2)
        print(
            f"{name:16s} entries={len(entries):3d} queries={len(files)} opened={opened} "
            f"opened>=2 pairs={multi} ({multi / max(opened, 1):.0%} of opened) "
            f"histogram={dict(sorted(counts.items()))}"
        )


if __name__ == "__main__":
    main()
