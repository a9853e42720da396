"""Hashing speed: images per second per core, end to end from JPEG files.

Compares, in the same run and on the same files:
  blindmatch   hash_file: read, MD5 + SHA-256, DCT-draft decode, EXIF, PDQ
               (and again with the robust query variants and keypoints that ``scan`` adds)
  threatexchange  python-threatexchange's pdq_from_file (full-size decode)
  pdqhash      plain Pillow full-size decode + pdqhash.compute
and reports each one's worst distance from the reference answer: pdqhash on the
full-size image turned upright by its EXIF orientation (the conformance rule
allows 10 bits for quality >= 80). python-threatexchange ignores EXIF
orientation, so rotated phone photos show it far off.

The corpus is benign: synthetic abstract pictures at common camera sizes and
the PDQ reference photos.

    .venv/bin/python bench/bench_hashing.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image, ImageOps

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.files import hash_file
from blindmatch.hashing import pdq_distance

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "vectors" / "pdq-reference"
SIZES = {"1024x768": (1024, 768), "1600x1200": (1600, 1200), "4032x3024": (4032, 3024)}


def make_corpus(folder: Path, per_size: int) -> dict[str, list[Path]]:
    corpus: dict[str, list[Path]] = {}
    for label, size in SIZES.items():
        paths = []
        for i in range(per_size):
            p = folder / f"{label}-{i}.jpg"
            synthetic_photo(1000 + i, size).save(p, quality=90)
            paths.append(p)
        corpus[f"synthetic {label}"] = paths
    corpus["PDQ reference photos"] = sorted(p for p in REF.rglob("*.jpg") if "modes" not in p.parts)
    return corpus


def plain_pdqhash(path: Path) -> str:
    with Image.open(path) as im:
        bits, _ = pdqhash.compute(np.asarray(im.convert("RGB")))
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def upright_reference(path: Path) -> str:
    with Image.open(path) as im:
        rgb = ImageOps.exif_transpose(im).convert("RGB")
    bits, _ = pdqhash.compute(np.asarray(rgb))
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def blindmatch_pdq(path: Path) -> str:
    return hash_file(str(path)).pdq or ""


def blindmatch_scan_pdq(path: Path) -> str:
    return hash_file(str(path), variants=True).pdq or ""


def threatexchange_pdq(path: Path) -> str:
    from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_file

    return pdq_from_file(path)[0]


def timed(fn: Callable[[Path], str], paths: list[Path], repeat: int) -> tuple[float, list[str]]:
    best = float("inf")
    out: list[str] = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = [fn(p) for p in paths]
        best = min(best, time.perf_counter() - t)
    return len(paths) / best, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-size", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    methods = {
        "blindmatch": blindmatch_pdq,
        "blindmatch + robust variants + keypoints (scan)": blindmatch_scan_pdq,
        "python-threatexchange": threatexchange_pdq,
        "pdqhash full decode": plain_pdqhash,
    }
    with tempfile.TemporaryDirectory() as tmp:
        corpus = make_corpus(Path(tmp), args.per_size)
        total: dict[str, tuple[int, float]] = {}
        print(
            "| corpus | files | method | images/s/core | ms/image | vs threatexchange "
            "| max bits from upright full-size PDQ |"
        )
        print("|---|---|---|---|---|---|---|")
        for name, paths in corpus.items():
            rates, hashes = {}, {}
            for m, fn in methods.items():
                rates[m], hashes[m] = timed(fn, paths, args.repeat)
                n, secs = total.get(m, (0, 0.0))
                total[m] = (n + len(paths), secs + len(paths) / rates[m])
            ref = [upright_reference(p) for p in paths]
            for m in methods:
                worst = max(pdq_distance(a, b) for a, b in zip(hashes[m], ref, strict=True))
                print(
                    f"| {name} | {len(paths)} | {m} | {rates[m]:.1f} | {1000 / rates[m]:.1f} "
                    f"| {rates[m] / rates['python-threatexchange']:.2f}x | {worst} |"
                )
            sys.stdout.flush()
        print()
        te = total["python-threatexchange"][0] / total["python-threatexchange"][1]
        for m in methods:
            rate = total[m][0] / total[m][1]
            print(f"all files, {m}: {rate:.1f} images/s/core ({rate / te:.2f}x threatexchange)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
