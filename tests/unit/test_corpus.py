"""Corpus discovery, dedupe and split on generated images (no packages needed)."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.eval import corpus
from blindmatch.eval.corpus import (
    SOURCES,
    CorpusImage,
    Source,
    dedupe,
    discover,
    looks_like_photo,
    near_pairs,
    small_subset,
    split,
)
from blindmatch.hashing import pdq_distance


def _drawing(seed: int, size: tuple[int, int] = (300, 200)) -> Image.Image:
    """Flat-coloured shapes on white: clip art, not a photo."""
    rng = random.Random(seed)
    im = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(im)
    for _ in range(5):
        x, y = rng.randrange(size[0] - 60), rng.randrange(size[1] - 60)
        colour = tuple(rng.randrange(256) for _ in range(3))
        d.rectangle((x, y, x + rng.randrange(20, 60), y + rng.randrange(20, 60)), fill=colour)
    return im


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "photos" / "sub").mkdir(parents=True)
    (root / "art").mkdir()
    for s in range(4):
        synthetic_photo(s, (320, 240)).save(root / "photos" / f"p{s}.jpg", quality=92)
    synthetic_photo(9, (240, 320)).save(root / "photos" / "sub" / "p9.png")
    for s in range(3):
        _drawing(s).save(root / "art" / f"d{s}.png")
    # Not in the corpus: too small, wrong magic, wrong extension, a symlink.
    synthetic_photo(20, (200, 100)).save(root / "photos" / "small.jpg")
    (root / "photos" / "fake.jpg").write_bytes(b"not an image at all" * 10)
    synthetic_photo(21, (320, 240)).save(root / "photos" / "notes.txt", format="PNG")
    os.symlink(root / "photos" / "p0.jpg", root / "photos" / "link.jpg")
    return root


def test_discover_filters_by_extension_magic_size_and_skips_symlinks(tree: Path) -> None:
    found = discover({"mine": [tree]})
    names = [i.path.name for i in found]
    assert names == sorted(names, key=lambda n: str(next(tree.rglob(n))))
    assert set(names) == {"d0.png", "d1.png", "d2.png", "p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg",
                          "p9.png"}  # fmt: skip
    assert all(i.source == "mine" for i in found)
    assert [i.path for i in found] == sorted(i.path for i in found)


def test_discover_min_side_and_unknown_kinds(tree: Path) -> None:
    smaller = discover({"mine": [tree]}, min_side=100)
    assert "small.jpg" in {i.path.name for i in smaller}
    measured = {i.path.name: i.kind for i in discover({"mine": [tree]})}
    assert measured["p0.jpg"] == "photo" and measured["p9.png"] == "photo"
    assert measured["d0.png"] == "other"
    assert {i.kind for i in discover({"mine": [tree]}, unknown="other")} == {"other"}
    assert {i.kind for i in discover({"mine": [tree]}, unknown="photo")} == {"photo"}


def test_discover_overlapping_roots_list_a_file_once(tree: Path) -> None:
    found = discover({"a": [tree / "photos"], "b": [tree, tree / "photos"]}, unknown="photo")
    paths = [i.path for i in found]
    assert len(paths) == len(set(paths)) == 8
    assert {i.source for i in found if i.path.parent.name in ("photos", "sub")} == {"a"}


def test_discover_missing_root_and_pixel_limit(tree: Path, tmp_path: Path) -> None:
    assert discover({"x": [tmp_path / "nowhere"]}) == []
    assert discover({"mine": [tree]}, max_pixels=50_000) == []


def test_source_rules_classify_by_path() -> None:
    s = Source("pkg", ("pkg",), ("/data",), "texture", photos=("/data/photos/*",),
               photo_category="landscape", exclude=("*/thumbs/*",))  # fmt: skip
    assert s.classify("/data/photos/a/b.jpg") == ("photo", "landscape")
    assert s.classify("/data/tex/b.jpg") == ("other", "texture")
    assert s.excluded("/data/photos/thumbs/b.jpg")
    names = [src.name for src in SOURCES]
    assert len(names) == len(set(names))
    assert any(src.photos for src in SOURCES)


def test_looks_like_photo(tmp_path: Path) -> None:
    synthetic_photo(1, (640, 480)).save(tmp_path / "p.jpg")
    _drawing(1).save(tmp_path / "d.png")
    rgba = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    ImageDraw.Draw(rgba).ellipse((20, 20, 180, 180), fill=(200, 30, 30, 255))
    rgba.save(tmp_path / "icon.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    assert looks_like_photo(tmp_path / "p.jpg")
    assert not looks_like_photo(tmp_path / "d.png")
    assert not looks_like_photo(tmp_path / "icon.png")
    assert not looks_like_photo(tmp_path / "bad.png")


def test_near_pairs_matches_brute_force() -> None:
    rng = random.Random(3)
    base = [rng.getrandbits(256) for _ in range(5)]
    values = []
    for _ in range(300):  # clusters around a few centres, so there are near pairs
        v = rng.choice(base)
        for _ in range(rng.randrange(0, 40)):
            v ^= 1 << rng.randrange(256)
        values.append(v)
    hexes = [f"{v:064x}" for v in values]
    expected = [(i, j) for i in range(300) for j in range(i + 1, 300)
                if pdq_distance(hexes[i], hexes[j]) <= 31]  # fmt: skip
    assert sorted(near_pairs(hexes, 31)) == expected
    assert near_pairs(hexes[:1], 31) == []


def _corpus_with_duplicates(tmp_path: Path) -> list[CorpusImage]:
    d = tmp_path / "dup"
    d.mkdir()
    synthetic_photo(1, (400, 300)).save(d / "a.png")
    (d / "a-copy.png").write_bytes((d / "a.png").read_bytes())  # exact duplicate
    synthetic_photo(1, (400, 300)).resize((300, 225)).save(d / "a-small.jpg", quality=90)
    synthetic_photo(2, (400, 300)).save(d / "b.png")
    synthetic_photo(2, (400, 300)).save(d / "b-other.jpg", quality=95)  # near duplicate of b
    synthetic_photo(3, (400, 300)).save(d / "c.png")
    good = (d / "c.png").read_bytes()
    (d / "broken.png").write_bytes(good[: len(good) // 3])  # decodes to nothing
    return [
        CorpusImage(d / "a-copy.png", "s", "photo"),
        CorpusImage(d / "a-small.jpg", "s", "photo"),
        CorpusImage(d / "a.png", "s", "photo"),
        CorpusImage(d / "b-other.jpg", "s", "photo"),
        CorpusImage(d / "b.png", "s", "other"),
        CorpusImage(d / "broken.png", "s", "photo"),
        CorpusImage(d / "c.png", "s", "other"),
    ]


def test_dedupe_exact_near_and_undecodable(tmp_path: Path) -> None:
    images = _corpus_with_duplicates(tmp_path)
    exact = dedupe(images, near=False)
    assert [i.path.name for i in exact] == ["a-copy.png", "a-small.jpg", "b-other.jpg", "b.png",
                                            "c.png"]  # fmt: skip
    near = dedupe(images)
    # The photo b-other.jpg wins over the "other" b.png; a-copy.png (first by path) over a.png.
    assert [i.path.name for i in near] == ["a-copy.png", "b-other.jpg", "c.png"]
    strict = dedupe(images, max_distance=0)
    assert len(strict) >= len(near)


def test_dedupe_photo_min_quality_demotes(tmp_path: Path) -> None:
    Image.new("RGB", (300, 300), (90, 90, 90)).save(tmp_path / "flat.png")
    synthetic_photo(5, (300, 300)).save(tmp_path / "p.png")
    images = [CorpusImage(tmp_path / "flat.png", "s", "photo"),
              CorpusImage(tmp_path / "p.png", "s", "photo")]  # fmt: skip
    kinds = {i.path.name: i.kind for i in dedupe(images, photo_min_quality=50)}
    assert kinds == {"flat.png": "other", "p.png": "photo"}


def test_dedupe_cache_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = _corpus_with_duplicates(tmp_path)
    cache = tmp_path / "cache"
    first = dedupe(images, cache_dir=cache)
    assert any(cache.iterdir())

    def boom(path: str) -> corpus.FileHashes:
        raise AssertionError(f"hashed {path} again")

    monkeypatch.setattr(corpus, "_hash_file", boom)
    assert dedupe(images, cache_dir=cache) == first


def test_dedupe_workers_agree(tmp_path: Path) -> None:
    images = _corpus_with_duplicates(tmp_path)
    assert dedupe(images, workers=2) == dedupe(images)


def _fake(n_photo: int, n_other: int) -> list[CorpusImage]:
    return [CorpusImage(Path(f"/x/p{k:03d}.jpg"), "s", "photo") for k in range(n_photo)] + [
        CorpusImage(Path(f"/x/o{k:03d}.png"), "s", "other") for k in range(n_other)
    ]


def test_split_draws_listed_from_photos_disjoint_and_deterministic() -> None:
    images = _fake(30, 50)
    listed, distractors = split(images, listed=10, distractors=40, seed=7)
    assert len(listed) == 10 and len(distractors) == 40
    assert all(i.kind == "photo" for i in listed)
    assert not {i.path for i in listed} & {i.path for i in distractors}
    again = split(list(reversed(images)), listed=10, distractors=40, seed=7)
    assert again == (listed, distractors)
    other_seed = split(images, listed=10, distractors=40, seed=8)
    assert other_seed != (listed, distractors)


def test_split_all_remaining_and_errors() -> None:
    images = _fake(5, 7)
    listed, rest = split(images, listed=5, distractors=None, seed=0)
    assert len(listed) == 5 and len(rest) == 7
    assert {i.kind for i in rest} == {"other"}
    with pytest.raises(ValueError):
        split(images, listed=6, distractors=None, seed=0)
    with pytest.raises(ValueError):
        split(images, listed=2, distractors=11, seed=0)
    assert split(images, listed=0, distractors=0, seed=0) == ([], [])


def test_small_subset_needs_no_packages(tmp_path: Path) -> None:
    images = small_subset(tmp_path / "small", synthetic=6)
    assert all(i.path.is_file() for i in images)
    photos = [i for i in images if i.kind == "photo"]
    assert len(photos) >= 3 and any(i.kind == "other" for i in images)
    assert len(dedupe(images)) == len(images)  # all distinct
    listed, distractors = split(images, listed=3, distractors=None, seed=1)
    assert len(listed) == 3 and len(distractors) == len(images) - 3
    assert small_subset(tmp_path / "small", synthetic=6) == images  # reuses the files


def test_install_script_installs_exactly_the_corpus_sources() -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "install-corpus"
    out = subprocess.run([str(script), "--list"], capture_output=True, text=True, check=True)
    listed = set(out.stdout.split())
    wanted = {p for s in SOURCES if s.install for p in s.packages}
    assert listed - {"w3m"} == wanted
    assert not {p for s in SOURCES if not s.install for p in s.packages} & listed
