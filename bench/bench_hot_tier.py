"""Hot tier feasibility: do grid hashes of a listed picture open crops and rotations privately?

  PYTHONPATH=src .venv/bin/python bench/bench_hot_tier.py [--n 80] [--distractors 500]
      [--seeds 2] [--workers 2] [--cache PATH]
  PYTHONPATH=src .venv/bin/python bench/bench_hot_tier.py --sensitivity 24   # grid-step study

Issue 12 item 4. ``--n`` evaluation-corpus photos (kind "photo", every k-th) are loaded as the
eval loads a listed picture (:func:`blindmatch.eval.harness.load_rgb`: fitted inside 1024 px).
List side: the picture's PDQ and companion (today's entry) plus, per design, the hashes of the
picture edited by a generic grid (:func:`blindmatch.hashing.hot.hot_edits`: corner and centred
crops, rotations ±d° with the inscribed crop; none of the grids has any of the eval's values),
each hashed as a companion (canonical pose, 64 px) or as a plain PDQ at 512 px. Grids: "G3"
(crops 0.03-0.21 step 0.03, rotations 1-11° step 2), "dense" (``hot_edits()``'s default: crops
0.015-0.225 step 0.015, rotations 0.75-11.25° step 1.5) and "fine" (corner crops step 0.005,
centred 0.01, rotations 0.5°, offset so the eval's values fall midway between two points: ~240
hashes, over the ~120-hash budget; added to an existing cache on first use). Client side:
unchanged (``blindmatch.private.query_hashes(companions=True)``: the table carries companions,
so companions and no other orientations), probed with ``VariantProbeLSH.probe_variants``
exactly as production, ``--seeds`` public
lookup-key seeds averaged; the "hot keys k=…" rows give the hot table its own shorter keys
(the client probes it with its own 37 probes).

A listed photo's edited copy OPENS when one of its real probe keys equals one of that photo's
list keys and the hash that made the probe is within 31 bits of the listed hash with that key
(the server's confirmation). The blinding does not change which probes open
(tests/protocol), so it is left out here.

Edits: the eval's crops / rotations / combos and sanity edits (none, jpeg70, flip-h), and
*off-grid* edits the eval does not have (corner crops of 8% and 14%, a centred crop of 17%,
an asymmetric corner crop of 12% of the width and 4% of the height, rotations of 6° and 8°,
a 3° rotation followed by an 8% corner crop, a 6° rotation + JPEG 70). Innocent risk:
``--distractors`` images (kind != "photo", plus unlisted photos) probed against a table
holding every listed photo's keys: probe keys that equal any list key, and the distance of
the hash behind the probe to the listed hash with that key.
"""

from __future__ import annotations

import argparse
import math
import pickle
import statistics
import time
import zlib
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

EVAL_EDITS = (
    "none", "jpeg70", "flip-h",
    "crop5-edge", "crop10-edge", "crop20-edge", "crop5-centre", "crop10-centre", "crop20-centre",
    "rot2", "rot4", "rot10", "crop5-edge+jpeg70", "rot4+jpeg70", "flip-h+crop10-edge",
)  # fmt: skip
OFF_GRID = (
    "crop8-edge", "crop14-edge", "crop17-centre", "crop12x4-edge",
    "rot6", "rot8", "rot3+crop8-edge", "rot6+jpeg70",
)  # fmt: skip
EDITS = EVAL_EDITS + OFF_GRID
# the edits the target is about (crops <= 20%, rotations <= 10 degrees, their combos)
TARGET = tuple(e for e in EDITS if e not in ("none", "jpeg70", "flip-h"))


def _edit(name: str, image: Image.Image, seed: int) -> Image.Image:
    from blindmatch.eval import transforms as tr

    if name in tr.TRANSFORMS or "+" in name and all(p in tr.TRANSFORMS for p in name.split("+")):
        return tr.apply(name, image, seed)
    rng = np.random.default_rng(seed)
    out = image
    for part in name.split("+"):
        if part == "jpeg70":
            out = tr.TRANSFORMS["jpeg70"](out, rng)
        elif part.startswith("rot"):
            out = tr._rotate_small(float(part[3:]))(out, rng)
        elif part == "crop12x4-edge":  # 12% of the columns, 4% of the rows, random corner
            w, h = out.size
            cw, ch = round(0.12 * w), round(0.04 * h)
            left = cw if rng.integers(2) else 0
            top = ch if rng.integers(2) else 0
            out = out.crop((left, top, left + w - cw, top + h - ch))
        elif part.startswith("crop"):
            amount, where = part[4:].split("-")
            out = tr._crop(float(amount) / 100, where)(out, rng)
        else:
            raise KeyError(part)
    return out.convert("RGB")


# "G3": a coarse generic grid (crops step 0.03, rotations odd degrees); "dense" is
# blindmatch.hashing.hot's default grid (step 0.015 and 1.5 degrees). Neither has any of
# the eval's values.
G3_CROPS = (0.03, 0.06, 0.09, 0.12, 0.15, 0.18, 0.21)
G3_ROTATIONS = (1.0, 3.0, 5.0, 7.0, 9.0, 11.0)


# A fine grid (corner crops step 0.005, centred 0.01, rotations 0.5 degrees), offset so that
# the eval's values (0.05, 0.10, 0.20; 2, 4, 10 degrees) fall midway between two points:
# how large a list would have to be for the eval's one-parameter crops.
FINE_CORNER = tuple(round(0.0025 + 0.005 * i, 4) for i in range(45))
FINE_CENTRE = tuple(round(0.005 + 0.01 * i, 3) for i in range(22))
FINE_ROTATIONS = tuple(0.25 + 0.5 * i for i in range(22))


def fine_edits() -> tuple[Any, ...]:
    from blindmatch.hashing.hot import HotEdit

    out = [HotEdit("corner", f, c) for f in FINE_CORNER for c in range(4)]
    out += [HotEdit("centre", f) for f in FINE_CENTRE]
    out += [HotEdit("rotate", sign * d) for d in FINE_ROTATIONS for sign in (1, -1)]
    return tuple(out)


def _extend_one(args: tuple[str, tuple[Any, ...]]) -> list[tuple[str, bytes]]:
    """Companions of more grid edits for one listed photo (added to a cache)."""
    from blindmatch.eval.harness import load_rgb
    from blindmatch.hashing import pdq_from_rgb
    from blindmatch.hashing.canonical import companion_pdq, companion_trusted
    from blindmatch.hashing.hot import apply_edit, fitted

    path, edits = args
    small = fitted(load_rgb(path))
    out = []
    for edit in edits:
        edited = np.asarray(apply_edit(small, edit))
        comp = companion_pdq(edited)
        if companion_trusted(comp, pdq_from_rgb(edited)):
            out.append((edit.label, bytes.fromhex(comp.hex)))
    return out


def extend(data: dict[str, Any], workers: int) -> bool:
    """Add the fine grid's companions to a cache that lacks them; whether it changed."""
    from blindmatch.hashing.hot import hot_edits

    old = {e.label for e in hot_edits(G3_CROPS, G3_ROTATIONS) + hot_edits()}
    jobs = []
    for it in data["listed"]:
        done = it.setdefault("done", old)
        jobs.append(tuple(e for e in fine_edits() if e.label not in done))
    if not any(jobs):
        return False
    with ProcessPoolExecutor(workers) as pool:
        found = pool.map(
            _extend_one, [(it["path"], j) for it, j in zip(data["listed"], jobs, strict=True)]
        )
        for it, j, hashes in zip(data["listed"], jobs, found, strict=True):
            it["grid"]["companion"] += hashes
            it["done"] = it["done"] | {e.label for e in j}
    print(f"# added {sum(map(len, jobs)) // len(jobs)} fine-grid companions per photo")
    return True


def _hash_listed(args: tuple[int, str]) -> dict[str, Any]:
    from blindmatch.eval.harness import load_rgb
    from blindmatch.hashing import pdq_from_rgb
    from blindmatch.hashing.canonical import companion_pdq, companion_trusted
    from blindmatch.hashing.hot import apply_edit, fitted, hot_edits
    from blindmatch.hashing.image import MIN_QUALITY
    from blindmatch.private import query_hashes

    index, path = args
    rgb = load_rgb(path)
    base = Image.fromarray(rgb)
    start = time.perf_counter()
    small = fitted(rgb)
    grid: dict[str, list[tuple[str, bytes]]] = {"companion": [], "pdq512": []}
    edits = dict.fromkeys(hot_edits(G3_CROPS, G3_ROTATIONS) + hot_edits())
    for edit in edits:
        edited = np.asarray(apply_edit(small, edit))
        plain = pdq_from_rgb(edited)
        comp = companion_pdq(edited)
        if plain.quality >= MIN_QUALITY:
            grid["pdq512"].append((edit.label, bytes.fromhex(plain.hex)))
        if companion_trusted(comp, plain):
            grid["companion"].append((edit.label, bytes.fromhex(comp.hex)))
    grid_secs = time.perf_counter() - start
    queries = {}
    for e in EDITS:
        edited = _edit(e, base, zlib.crc32(f"0:{index}:{e}".encode()))
        queries[e] = query_hashes(np.asarray(edited), companions=True)
    return {
        "path": path,
        "pdq": bytes.fromhex(pdq_from_rgb(rgb).hex),
        "companion": bytes.fromhex(companion_pdq(rgb).hex),
        "grid": grid,
        "grid_secs": grid_secs,
        "queries": queries,
    }


def _hash_distractor(path: str) -> Any:
    from blindmatch.eval.harness import load_rgb
    from blindmatch.private import query_hashes

    try:
        return query_hashes(load_rgb(path), companions=True)
    except Exception:  # noqa: BLE001 - a bad corpus file is skipped
        return None


def build(args: argparse.Namespace) -> dict[str, Any]:
    from blindmatch.eval import corpus

    images = corpus.discover()
    photos = [str(i.path) for i in images if i.kind == "photo"]
    others = [str(i.path) for i in images if i.kind != "photo"]
    step = max(1, len(photos) // args.n)
    listed = photos[::step][: args.n]
    unlisted = [p for p in photos[step // 2 :: step] if p not in set(listed)]
    n_photo_d = min(len(unlisted), args.distractors // 5)
    d_paths = unlisted[:n_photo_d]
    n_other = args.distractors - n_photo_d
    d_paths += others[:: max(1, len(others) // n_other)][:n_other]
    with ProcessPoolExecutor(args.workers) as pool:
        data = list(pool.map(_hash_listed, enumerate(listed)))
        print(f"# hashed {len(data)} listed photos x {len(EDITS)} edits", flush=True)
        dis = [d for d in pool.map(_hash_distractor, d_paths, chunksize=8) if d is not None]
        print(f"# hashed {len(dis)} distractors", flush=True)
    return {"listed": data, "distractors": dis}


# -- evaluation ---------------------------------------------------------------------------


def _labels(grid: str, part: str = "") -> frozenset[str]:
    from blindmatch.hashing.hot import hot_edits

    if grid == "fine":
        return frozenset(e.label for e in fine_edits() if e.label.startswith(part))
    edits = hot_edits(G3_CROPS, G3_ROTATIONS) if grid == "G3" else hot_edits()
    return frozenset(e.label for e in edits if e.label.startswith(part))


# name -> (label, hash kinds, grid, edit kind prefix, key bits of the hot table)
DESIGNS = (
    ("today", "today (PDQ + companion)", (), "G3", "", 72),
    ("c-corner", "+ companion G3, corner crops only", ("companion",), "G3", "corner", 72),
    ("c-centre", "+ companion G3, centred crops only", ("companion",), "G3", "centre", 72),
    ("c-rot", "+ companion G3, rotations only", ("companion",), "G3", "rot", 72),
    ("c-G3", "+ companion G3 (all)", ("companion",), "G3", "", 72),
    ("p-G3", "+ PDQ-512 G3 (all)", ("pdq512",), "G3", "", 72),
    ("cp-G3", "+ companion and PDQ-512 G3", ("companion", "pdq512"), "G3", "", 72),
    ("c-dense", "+ companion dense (all)", ("companion",), "dense", "", 72),
    ("c-dense-k48", "+ companion dense, hot keys k=48", ("companion",), "dense", "", 48),
    ("c-dense-k40", "+ companion dense, hot keys k=40", ("companion",), "dense", "", 40),
    ("c-fine", "+ companion fine (over budget)", ("companion",), "fine", "", 72),
    ("c-fine-k48", "+ companion fine, hot keys k=48", ("companion",), "fine", "", 48),
)
_BY_NAME = {d[0]: d for d in DESIGNS}


def _hashes(item: dict[str, Any], design: str) -> list[bytes]:
    _name, _label, kinds, grid, part, _k = _BY_NAME[design]
    labels = _labels(grid, part)
    hashes = [item["pdq"], item["companion"]]
    for kind in kinds:
        hashes += [h for label, h in item["grid"][kind] if label in labels]
    return list(dict.fromkeys(hashes))


def _ham(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def _client_hashes(query: Any) -> list[bytes]:
    own, _conf, variants = query
    return [own] + [v.pdq for v in variants]


def evaluate(data: dict[str, Any], seeds: int) -> None:
    from blindmatch.protocol import QueryHash, VariantProbeLSH

    listed = data["listed"]
    ks = sorted({d[5] for d in DESIGNS})
    by_k = {k: [VariantProbeLSH(k=k, seed=bytes([s]) * 32) for s in range(seeds)] for k in ks}
    n = len(listed)
    print(f"# {n} listed photos, {len(data['distractors'])} distractors, {seeds} key seeds")
    counts = {d: statistics.mean(len(_hashes(it, d)) for it in listed) for d, *_ in DESIGNS}
    grid_secs = statistics.mean(it["grid_secs"] for it in listed)
    print(f"# list side: grid of both kinds hashed in {grid_secs:.2f} s per picture (one core)")

    # probe sets per (photo, edit, seed): computed once, shared by the designs
    probes: dict[tuple[int, int, str, int], list[tuple[bytes, bytes]]] = {}
    for kb, schemes in by_k.items():
        for i, it in enumerate(listed):
            for e, (own, conf, variants) in it["queries"].items():
                for s, scheme in enumerate(schemes):
                    ps = scheme.probe_variants([QueryHash(own, conf), *variants])
                    probes[kb, i, e, s] = scheme.probe_hashes(own, ps.hint)

    opened: dict[str, dict[str, float]] = {}
    cross: dict[str, int] = {}
    for design, *_, kb in DESIGNS:
        table: dict[bytes, list[tuple[int, bytes]]] = defaultdict(list)
        for s, scheme in enumerate(by_k[kb]):
            for i, it in enumerate(listed):
                for h in _hashes(it, design):
                    for k in scheme.list_keys(h):
                        table[bytes([s]) + k].append((i, h))
        rates: dict[str, float] = {}
        other_hits = 0
        for e in EDITS:
            hits = 0
            for i in range(n):
                for s in range(seeds):
                    found = [
                        (j, _ham(h, lh))
                        for k, h in probes[kb, i, e, s]
                        for j, lh in table.get(bytes([s]) + k, ())
                    ]
                    hits += any(j == i and d <= 31 for j, d in found)
                    other_hits += sum(j != i and d <= 31 for j, d in found)
            rates[e] = hits / (n * seeds)
        opened[design] = rates
        cross[design] = other_hits

    print("\n## Fraction of listed photos whose edited copy opens (client unchanged)\n")
    cols = ["design", "hashes/pic", "KB/pic"] + list(EDITS) + ["target mean", "target min"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for design, name, *_ in DESIGNS:
        r = opened[design]
        t = [r[e] for e in TARGET]
        row = [name, f"{counts[design]:.1f}", f"{counts[design] * 40 / 1000:.1f}"]
        row += [f"{r[e]:.2f}" for e in EDITS] + [f"{statistics.mean(t):.2f}", f"{min(t):.2f}"]
        print("| " + " | ".join(row) + " |")
    print("\n(off-grid edits, not in the eval: " + ", ".join(OFF_GRID) + ")")

    print("\n## Distance from the client's hashes to the nearest listed hash of the photo\n")
    print("min over the client's query hashes (own + variants) x the design's hashes; "
          "median / p90 / share <= 6 / share <= 12 bits\n")  # fmt: skip
    for design in ("today", "c-G3", "c-dense", "c-fine"):
        print(f"### {design}\n")
        print("| edit | median | p90 | <=6 | <=12 |")
        print("|---|---|---|---|---|")
        for e in EDITS:
            ds = [
                min(
                    _ham(q, h)
                    for q in _client_hashes(it["queries"][e])
                    for h in _hashes(it, design)
                )
                for it in listed
            ]
            ds.sort()
            p90 = ds[min(len(ds) - 1, math.ceil(0.9 * len(ds)) - 1)]
            print(
                f"| {e} | {statistics.median(ds):.0f} | {p90} | "
                f"{sum(d <= 6 for d in ds) / len(ds):.2f} | "
                f"{sum(d <= 12 for d in ds) / len(ds):.2f} |"
            )
        print()

    print("## Innocent risk\n")
    print(
        "| design | hot keys in table | listed edits: hits on another photo's keys (d<=31) "
        "| distractor probe keys equal to a list key | of those d<=31 | closest d of a hit |"
    )
    print("|---|---|---|---|---|---|")
    dis = data["distractors"]
    for design, name, *_, kb in DESIGNS:
        keys = 0
        hit_keys, confirmed, closest = 0, 0, None
        for scheme in by_k[kb]:
            table2: dict[bytes, list[bytes]] = defaultdict(list)
            for it in listed:
                for h in _hashes(it, design):
                    for k in scheme.list_keys(h):
                        table2[k].append(h)
            keys += len(table2)
            for own, conf, variants in dis:
                ps = scheme.probe_variants([QueryHash(own, conf), *variants])
                for k, h in scheme.probe_hashes(own, ps.hint):
                    for lh in table2.get(k, ()):
                        d = _ham(h, lh)
                        hit_keys += 1
                        confirmed += d <= 31
                        closest = d if closest is None else min(closest, d)
        print(
            f"| {name} | {keys // seeds} | {cross[design]} | {hit_keys} | {confirmed} | "
            f"{'-' if closest is None else closest} |"
        )
    every = [h for it in listed for d in ("c-dense", "c-fine", "p-G3") for h in _hashes(it, d)]
    lst = np.frombuffer(b"".join(every), dtype=np.uint8).reshape(-1, 32)
    ds = []
    for x in dis:
        q = np.frombuffer(b"".join(_client_hashes(x)), dtype=np.uint8).reshape(-1, 32)
        ds.append(int(np.bitwise_count(q[:, None, :] ^ lst[None, :, :]).sum(axis=2).min()))
    ds.sort()
    print(
        f"\nclosest distance of any distractor hash to any listed hash (all grids): "
        f"min {ds[0]}, p1 {ds[len(ds) // 100]}, median {statistics.median(ds):.0f}"
    )


def _sensitivity_one(path: str) -> dict[str, list[int]]:
    from blindmatch.eval.harness import load_rgb
    from blindmatch.hashing.canonical import companion_pdq
    from blindmatch.hashing.hot import HotEdit, apply_edit, fitted

    base = Image.fromarray(load_rgb(path))
    small = fitted(base)

    def comp(image: Image.Image, edit: HotEdit) -> str:
        return companion_pdq(np.asarray(apply_edit(image, edit))).hex

    out: dict[str, list[int]] = defaultdict(list)
    for f in (0.05, 0.10):
        for kind in ("corner", "centre"):
            a = comp(base, HotEdit(kind, f, 3))
            out[f"{kind}, 512-px grid path vs full size (same edit)"].append(
                _ham(bytes.fromhex(a), bytes.fromhex(comp(small, HotEdit(kind, f, 3))))
            )
            for delta in (0.0025, 0.005, 0.01, 0.015):
                b = comp(base, HotEdit(kind, f + delta, 3))
                out[f"{kind} crop {f:g} vs {f + delta:g}"].append(
                    _ham(bytes.fromhex(a), bytes.fromhex(b))
                )
    for d in (2.0, 5.0):
        a = comp(base, HotEdit("rotate", d))
        for delta in (0.25, 0.5, 1.0):
            b = comp(base, HotEdit("rotate", d + delta))
            out[f"rotate {d:g} vs {d + delta:g} deg"].append(
                _ham(bytes.fromhex(a), bytes.fromhex(b))
            )
    return out


def sensitivity(n: int, workers: int) -> None:
    """How far a companion moves between neighbouring crops / rotations: the grid step
    a list-side grid would need for the client's companion to land within a few bits."""
    from blindmatch.eval import corpus

    photos = [str(i.path) for i in corpus.discover() if i.kind == "photo"]
    step = max(1, len(photos) // n)
    paths = photos[step // 3 :: step][:n]
    agg: dict[str, list[int]] = defaultdict(list)
    with ProcessPoolExecutor(workers) as pool:
        for res in pool.map(_sensitivity_one, paths):
            for k, v in res.items():
                agg[k] += v
    print(f"\n## Companion distance between neighbouring edits ({len(paths)} photos)\n")
    print("| pair | median | p10 | share <= 6 |")
    print("|---|---|---|---|")
    for k, v in agg.items():
        v.sort()
        print(f"| {k} | {statistics.median(v):.0f} | {v[len(v) // 10]} | "
              f"{sum(x <= 6 for x in v) / len(v):.2f} |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=80)
    ap.add_argument("--distractors", type=int, default=500)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--sensitivity", type=int, default=0, help="photos for the step study")
    args = ap.parse_args()
    if args.sensitivity:
        sensitivity(args.sensitivity, args.workers)
        return
    # v2: the client's queries as production makes them for a table with companions (no
    # other orientations); caches from before held every orientation as well
    cache = args.cache or Path(f"/tmp/hot-tier-v2-{args.n}-{args.distractors}.pkl")
    if cache.exists():
        data = pickle.loads(cache.read_bytes())  # noqa: S301 - our own cache file
    else:
        data = build(args)
        cache.write_bytes(pickle.dumps(data))
    if extend(data, args.workers):
        cache.write_bytes(pickle.dumps(data))
    evaluate(data, args.seeds)


if __name__ == "__main__":
    main()
