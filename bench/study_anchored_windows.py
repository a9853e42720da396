"""Study: would content-anchored windows survive crops that a list-side grid cannot enumerate?

  PYTHONPATH=src .venv/bin/python bench/study_anchored_windows.py [--n 30] [--client 6] [--list 30]

A crop of two parameters (12% of the width and 4% of the height, or a rotation followed by a
corner crop) opens nothing under any grid measured by bench_hot_tier.py: the companion moves
~19 bits per 1% of shift. A window placed and sized by the picture's content (a coarse-scale
SIFT keypoint: centre at the point, side = ``SCALE`` x its size, upright) is the same part of
the scene in a crop that keeps the point, whatever the crop's parameters. This measures, on
``--n`` corpus photos, how close the client's anchored-window companions (its ``--client``
strongest coarse keypoints) come to the listed picture's (its ``--list`` strongest), per edit,
and how close distractor photos' windows come (innocent risk). Not a design: a feasibility
number for the lead (issue 12 item 4).
"""

from __future__ import annotations

import argparse
import statistics
import time
import zlib

import numpy as np
from PIL import Image

SCALE = 6.0  # window side / keypoint size
MIN_SIZE = 0.04  # keypoint size as a fraction of the short side (coarse scales only)
EDITS = (
    "none", "jpeg70", "crop10-edge", "crop20-edge", "crop12x4-edge", "crop10-centre",
    "rot4", "rot10", "rot3+crop8-edge",
)  # fmt: skip


def anchored(rgb: np.ndarray, count: int, min_size: float = MIN_SIZE) -> list[bytes]:
    import cv2

    from blindmatch.hashing.canonical import companion_pdq, companion_trusted
    from blindmatch.hashing.image import pdq_from_rgb

    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    sift = cv2.SIFT_create()  # type: ignore[attr-defined]
    points = [k for k in sift.detect(grey, None) if k.size >= min_size * min(h, w)]
    points.sort(key=lambda k: -k.response)
    out: list[bytes] = []
    for k in points:
        half = SCALE * k.size / 2
        x, y = k.pt
        box = (round(x - half), round(y - half), round(x + half), round(y + half))
        if box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h:
            continue
        window = np.ascontiguousarray(rgb[box[1] : box[3], box[0] : box[2]])
        comp = companion_pdq(window)
        if companion_trusted(comp, pdq_from_rgb(window)):
            out.append(bytes.fromhex(comp.hex))
        if len(out) == count:
            break
    return out


def _ham(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def main() -> None:
    import sys

    sys.path.insert(0, "bench")
    from bench_hot_tier import _edit
    from blindmatch.eval import corpus
    from blindmatch.eval.harness import load_rgb

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--client", type=int, default=6)
    ap.add_argument("--list", type=int, default=30)
    ap.add_argument("--rotated", type=int, default=0, help="windows per rotated grid copy")
    ap.add_argument("--min-size", type=float, default=MIN_SIZE)
    args = ap.parse_args()
    size = args.min_size
    photos = [str(i.path) for i in corpus.discover() if i.kind == "photo"]
    step = max(1, len(photos) // (2 * args.n))
    paths = photos[::step]
    listed, others = paths[0 : 2 * args.n : 2], paths[1 : 2 * args.n : 2]
    dist: dict[str, list[int]] = {e: [] for e in EDITS}
    lists, counts, secs = [], [], []
    for index, path in enumerate(listed):
        rgb = load_rgb(path)
        mine = anchored(rgb, args.list, size)
        if args.rotated:
            from blindmatch.hashing.hot import HOT_ROTATIONS, HotEdit, apply_edit

            for a in HOT_ROTATIONS:
                for sign in (1, -1):
                    turned = apply_edit(Image.fromarray(rgb), HotEdit("rotate", sign * a))
                    mine += anchored(np.asarray(turned), args.rotated, size)
        lists.append(mine)
        counts.append(len(mine))
        base = Image.fromarray(rgb)
        for e in EDITS:
            edited = np.asarray(_edit(e, base, zlib.crc32(f"0:{index}:{e}".encode())))
            start = time.perf_counter()
            client = anchored(edited, args.client, size)
            secs.append(time.perf_counter() - start)
            d = min((_ham(q, h) for q in client for h in mine), default=256)
            dist[e].append(d)
    innocent = []
    for path in others:
        client = anchored(load_rgb(path), args.client, size)
        innocent.append(min((_ham(q, h) for q in client for h in sum(lists, [])), default=256))
    print(f"# {len(listed)} listed photos, {statistics.mean(counts):.1f} anchored windows each "
          f"({args.rotated} per rotated grid copy); client {args.client} windows; "
          f"window = {SCALE} x keypoint size >= {size} of the short side")  # fmt: skip
    print("| edit | median | share <= 6 | share <= 12 |")
    print("|---|---|---|---|")
    for e, ds in dist.items():
        print(f"| {e} | {statistics.median(ds):.0f} | {sum(d <= 6 for d in ds) / len(ds):.2f} | "
              f"{sum(d <= 12 for d in ds) / len(ds):.2f} |")  # fmt: skip
    print(f"client: {1000 * statistics.median(secs):.0f} ms median for its windows (one core)")
    innocent.sort()
    print(f"innocent: {len(innocent)} other photos' windows vs all listed windows: "
          f"min {innocent[0]}, median {statistics.median(innocent):.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
