"""Keypoint matching cost: the HNSW index against brute force, as the list grows.

For N listed pictures (the corpus's photographs when installed, topped up with
synthetic benign pictures), builds the keypoint index twice — FAISS
``IndexBinaryHNSW`` (what blindmatch uses) and ``IndexBinaryFlat`` (brute
force, the baseline) — and times, per query image, the candidate search and the
window verification, for crops of listed pictures and for unrelated pictures.
Also reports whether both indexes reach the same verdict, the bytes per listed
picture, and the memory the descriptors take.

    .venv/bin/python bench/bench_keypoints.py [--listed 2000] [--queries 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from PIL import Image

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.eval.harness import load_rgb
from blindmatch.eval.transforms import apply
from blindmatch.hashing.keypoints import ListedFeatures, keypoints_from_rgb, listed_features
from blindmatch.index.keypoints import KeypointIndex


def corpus_photos(limit: int) -> list[np.ndarray]:
    try:
        from blindmatch.config import load_settings
        from blindmatch.eval.run import EvalOptions, corpus_images

        cache = load_settings().home / "eval-cache"  # shared with `blindmatch eval`
        listed, _ = corpus_images(EvalOptions(cache_dir=cache))
    except Exception:  # noqa: BLE001 - no corpus installed: synthetic only
        return []
    out = []
    for p in listed[:limit]:
        try:
            out.append(load_rgb(p))
        except Exception:  # noqa: BLE001, S112
            continue
    return out


def timed(fn, *args):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - start) * 1000


def query(index: KeypointIndex, rgb: np.ndarray) -> tuple[int | None, float, float]:
    """(matched id or None, search ms, verify ms) as the matcher runs it."""
    kp = keypoints_from_rgb(rgb)  # timed apart: the client does this whatever the list
    cands, ms_search = timed(index.candidates, kp)
    verified, ms_verify = timed(index.verify, rgb, cands)
    best = min(verified, key=lambda m: m.distance, default=None)
    hit = best.id if best is not None and best.distance <= 31 else None
    return hit, ms_search, ms_verify


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listed", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()

    t0 = time.perf_counter()
    real = corpus_photos(min(args.listed, 700))
    photos = real + [
        np.asarray(synthetic_photo(50_000 + i, (640, 480))) for i in range(args.listed - len(real))
    ]
    feats: list[ListedFeatures] = [listed_features(p) for p in photos]
    print(f"{len(photos)} listed pictures ({len(real)} corpus photographs, the rest synthetic); "
          f"features in {time.perf_counter() - t0:.0f} s")  # fmt: skip
    n_kp = sum(len(f.keypoints) for f in feats)
    rec = statistics.mean(len(f.to_bytes()) for f in feats)
    print(
        f"keypoints: {n_kp} ({n_kp / len(feats):.0f} per picture); record {rec:.0f} B per picture"
    )

    indexes = {}
    for name, exact in (("hnsw", False), ("flat", True)):
        idx = KeypointIndex(exact=exact)
        _, ms = timed(idx.add, list(range(len(feats))), feats)
        indexes[name] = idx
        print(f"build {name}: {ms / 1000:.1f} s")

    rng = np.random.default_rng(0)
    picks = rng.choice(len(photos), size=min(args.queries, len(photos)), replace=False)
    edited = [
        (int(i), np.asarray(apply("crop10-edge", Image.fromarray(photos[i]), int(i))))
        for i in picks
    ]
    unrelated = [np.asarray(synthetic_photo(900_000 + k, (640, 480))) for k in range(args.queries)]
    kp_ms = [timed(keypoints_from_rgb, q)[1] for _, q in edited[:50]]
    print(f"keypoint extraction: {statistics.median(kp_ms):.1f} ms median per picture "
          "(twice per image in scan: the image and its mirror)")  # fmt: skip
    verdicts: dict[str, list[int | None]] = {}
    print()
    print("| index | queries | hits on crops | search ms median / p95 (crops) | "
          "search ms median (unrelated) | verify ms median (crops) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, idx in indexes.items():
        crops = [query(idx, q) for _, q in edited]
        other = [query(idx, q) for q in unrelated]
        verdicts[name] = [c[0] for c in crops] + [o[0] for o in other]
        hits = sum(c[0] == i for (i, _), c in zip(edited, crops, strict=True))
        s = sorted(c[1] for c in crops)
        print(f"| {name} | {len(crops)} + {len(other)} | {hits}/{len(crops)} | "
              f"{statistics.median(s):.2f} / {s[int(0.95 * (len(s) - 1))]:.2f} | "
              f"{statistics.median(o[1] for o in other):.2f} | "
              f"{statistics.median(c[2] for c in crops):.2f} |")  # fmt: skip
    same = sum(a == b for a, b in zip(verdicts["hnsw"], verdicts["flat"], strict=True))
    false = sum(v is not None for v in verdicts["hnsw"][len(edited) :])
    print()
    print(f"same verdict hnsw vs flat: {same}/{len(verdicts['hnsw'])}; "
          f"unrelated pictures matched: {false}/{len(unrelated)}")  # fmt: skip
    h = statistics.median(query(indexes["hnsw"], q)[1] for _, q in edited[:50])
    f = statistics.median(query(indexes["flat"], q)[1] for _, q in edited[:50])
    print(f"search speed-up hnsw vs flat (crops, median): {f / h:.1f}x")


if __name__ == "__main__":
    main()
