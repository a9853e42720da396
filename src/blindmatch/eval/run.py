"""``blindmatch eval``: pick a corpus, run the harness, write the report."""

from __future__ import annotations

import glob
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.eval.corpus import REFERENCE_PHOTOS, CorpusImage, dedupe, discover, split
from blindmatch.eval.harness import EvalResult, ImageSource, evaluate
from blindmatch.eval.report import write_report
from blindmatch.eval.transforms import TRANSFORMS
from blindmatch.hashing import MIN_QUALITY

DERIVED_SOURCES = frozenset({"opencv-doc"})  # packages whose other images edit their photos
# Single files seen to contain another corpus photo (found as distractor "matches" and
# checked by eye): derived file -> the photo it shows. With that photo listed, such a
# file is a true match, so it is not used as a distractor.
_SDDM = "/usr/share/sddm/themes/maldives/"
DERIVED_FILES = {
    # the SDDM theme's preview: a login-screen screenshot over the theme's background
    _SDDM + "maldives.jpg": _SDDM + "background.jpg",
}


@dataclass(frozen=True)
class EvalOptions:
    corpus: str = "auto"  # "auto" (installed packages), "small" (built in), or a folder
    listed: int = 700
    distractors: int | None = 20_000
    schemes: tuple[str, ...] = ("pdq", "robust", "robust+orb", "phash", "dhash")
    transforms: tuple[str, ...] = tuple(TRANSFORMS)
    seed: int = 0
    workers: int = 1
    out: Path | None = None
    cache_dir: Path | None = None  # corpus hashes, reused between runs


def small_corpus(listed: int, distractors: int) -> tuple[list[ImageSource], list[ImageSource]]:
    """A corpus that needs no packages: the PDQ reference photos (when the source
    tree is at hand) and synthetic pictures; listed and distractors disjoint."""
    photos: list[ImageSource] = []
    if REFERENCE_PHOTOS.is_dir():
        for p in sorted(glob.glob(str(REFERENCE_PHOTOS / "**" / "*.jpg"), recursive=True)):
            if not any(part in p for part in ("/modes/", "/dih/", "/bridge-mods/")):
                photos.append(Path(p))
    photos += [synthetic_photo(s, (640, 480)) for s in range(max(0, listed - len(photos)))]
    extra: list[ImageSource] = [synthetic_photo(10_000 + s, (640, 480)) for s in range(distractors)]
    return photos[:listed], extra


def corpus_images(opts: EvalOptions) -> tuple[list[ImageSource], list[ImageSource]]:
    if opts.corpus == "small":
        return small_corpus(opts.listed, opts.distractors or 0)
    roots = None if opts.corpus == "auto" else {"folder": [Path(opts.corpus)]}
    # Exact copies go. Near-duplicates stay: dropping distractors within 31 bits
    # of a photo would drop exactly the false matches this run must count; the
    # report lists every distractor match so a reader can see what it was.
    # Photos whose PDQ is not listable (quality < 50) serve as distractors.
    images = dedupe(
        discover(roots),
        near=False,
        photo_min_quality=MIN_QUALITY,
        cache_dir=opts.cache_dir,
        workers=opts.workers,
    )
    # opencv-doc's documentation figures are edits of its own sample photos
    # (keypoints drawn, regions pasted): with a sample listed they would be true
    # matches counted as false ones, so its samples are never listed.
    images = [
        CorpusImage(i.path, i.source, "other", i.category)
        if i.source in DERIVED_SOURCES and i.kind == "photo"
        else i
        for i in images
    ]
    listed, distractors = split(
        images, listed=opts.listed, distractors=opts.distractors, seed=opts.seed
    )
    listed_paths = {str(i.path) for i in listed}
    kept = [i for i in distractors if DERIVED_FILES.get(str(i.path)) not in listed_paths]
    return [i.path for i in listed], [i.path for i in kept]


def run_eval(
    opts: EvalOptions,
    progress: Callable[[str, int, int], None] | None = None,
    command: str | None = None,
) -> EvalResult:
    listed, distractors = corpus_images(opts)
    result = evaluate(
        listed,
        distractors,
        schemes=opts.schemes,
        transforms=opts.transforms,
        seed=opts.seed,
        workers=opts.workers,
        progress=progress,
    )
    if opts.out is not None:
        write_report(result, opts.out, command)
    return result
