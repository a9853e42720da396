"""Study: which rule over the five aligned windows' PDQ distances should decide
a keypoint match?  Records, for a sample of listed photos edited by every eval
transform, the robust-PDQ distance to the original and each keypoint
candidate's five window distances; then prints recall per transform for a few
rules side by side (the current rule, the smallest window distance, is the
baseline). Distractors: run the full eval for those (they are 20,000 images).

    .venv/bin/python bench/study_keypoint_windows.py --sample 200 --out /tmp/windows.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from blindmatch.eval.harness import apply_transform, load_rgb
from blindmatch.eval.run import EvalOptions, corpus_images
from blindmatch.eval.schemes import RobustPDQ
from blindmatch.eval.transforms import TRANSFORMS
from blindmatch.hashing.keypoints import listed_features
from blindmatch.index.keypoints import KeypointIndex

_STATE: dict[str, Any] = {}


def _features(path: Any) -> bytes | None:
    try:
        return listed_features(load_rgb(path)).to_bytes()
    except Exception:  # noqa: BLE001
        return None


def _query(args: tuple[int, Any]) -> list[dict[str, Any]]:
    idx, path = args
    index: KeypointIndex = _STATE["index"]
    robust: RobustPDQ = _STATE["robust"]
    base = Image.fromarray(load_rgb(path))
    rows = []
    for t in TRANSFORMS:
        edited = np.asarray(apply_transform(t, base, _seed(idx, t)).convert("RGB"))
        d, _ = robust.distances(edited)
        h, w = edited.shape[:2]
        found = index.search(edited)
        rows.append({
            "item": idx, "transform": t, "size": [w, h], "robust": int(d[idx]),
            "kp": [{"id": m.id, "windows": list(m.windows), "visible": list(m.visible),
                    "inliers": m.inliers} for m in found],
        })  # fmt: skip
    return rows


def _distractor(args: tuple[int, Any]) -> dict[str, Any]:
    idx, path = args
    try:
        rgb = load_rgb(path)
    except Exception:  # noqa: BLE001
        return {"item": idx, "kp": []}
    found = _STATE["index"].search(rgb)
    return {"item": idx, "path": str(path), "kp": [
        {"id": m.id, "windows": list(m.windows), "visible": list(m.visible),
         "inliers": m.inliers} for m in found]}  # fmt: skip


def _seed(index: int, transform: str) -> int:
    from blindmatch.eval.harness import _seed as harness_seed

    return harness_seed(0, index, transform)


RULES = {
    "min": lambda w: sorted(w)[0],
    "2nd": lambda w: sorted(w)[1],
    "3rd": lambda w: sorted(w)[2],
    "centre": lambda w: w[0],
}


def summarise(rows: list[dict[str, Any]], radius: int = 31) -> None:
    hit: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    n: dict[str, int] = defaultdict(int)
    for r in rows:
        n[r["transform"]] += 1
        own = [m for m in r["kp"] if m["id"] == r["item"]]
        for name, rule in RULES.items():
            score = min((rule(m["windows"]) for m in own), default=10_000)
            if r["robust"] <= radius or score <= radius:
                hit[r["transform"]][name] += 1
    names = list(RULES)
    print(f"{'transform':<24}" + "".join(f"{k:>9}" for k in names))
    tot = defaultdict(int)
    for t in TRANSFORMS:
        if not n[t]:
            continue
        print(f"{t:<24}" + "".join(f"{100 * hit[t][k] / n[t]:>8.1f}%" for k in names))
        for k in names:
            tot[k] += hit[t][k]
    total = sum(n.values())
    print(f"{'overall':<24}" + "".join(f"{100 * tot[k] / total:>8.1f}%" for k in names))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("/tmp/keypoint-windows.json"))
    ap.add_argument("--distractors", action="store_true")
    ap.add_argument("--summarise", action="store_true", help="only summarise --out")
    a = ap.parse_args()
    if a.summarise:
        summarise(json.loads(a.out.read_text()))
        return
    cache = Path.home() / ".local/share/blindmatch/eval-cache"
    listed, distractors = corpus_images(EvalOptions(cache_dir=cache, workers=a.workers))
    start = time.monotonic()
    with mp.get_context("fork").Pool(a.workers) as pool:
        feats = pool.map(_features, listed, chunksize=8)
    from blindmatch.hashing.keypoints import ListedFeatures

    ok = [i for i, f in enumerate(feats) if f is not None]
    index = KeypointIndex(mirror_below=31)
    index.add(ok, [ListedFeatures.from_bytes(feats[i]) for i in ok])  # type: ignore[arg-type]
    robust = RobustPDQ()
    robust.prepare([robust.list_item(load_rgb(p)) for p in listed])
    _STATE.update(index=index, robust=robust)
    print(f"listed {len(listed)} in {time.monotonic() - start:.0f} s", flush=True)
    sample = sorted(random.Random(0).sample(ok, min(a.sample, len(ok))))
    rows: list[dict[str, Any]] = []
    with mp.get_context("fork").Pool(a.workers) as pool:
        for got in pool.imap_unordered(_query, [(i, listed[i]) for i in sample]):
            rows += got
    a.out.write_text(json.dumps(rows))
    if a.distractors:
        with mp.get_context("fork").Pool(a.workers) as pool:
            drows = pool.map(_distractor, list(enumerate(distractors)), chunksize=16)
        a.out.with_suffix(".distractors.json").write_text(json.dumps(drows))
    print(f"queried {len(sample)} photos in {time.monotonic() - start:.0f} s", flush=True)
    summarise(rows)


if __name__ == "__main__":
    main()
