"""A benign evaluation corpus found on disk: images that Debian packages install.

The evaluation harness needs photographs to stand in for "listed" images and a
much larger set of other images to look up as distractors. Nothing here
downloads anything: ``scripts/install-corpus`` installs the Debian packages
named in ``SOURCES`` and :func:`discover` walks the folders they install
(only those that exist). Every image is benign: astronomy photographs,
landscape photographs, desktop wallpapers, game textures and art, clip art,
icons, documentation screenshots and plots. ``docs/corpus.md`` gives the
counts, licences and caveats.

* :func:`discover` lists image files (by extension *and* magic bytes) at least
  ``min_side`` pixels on the short side, each labelled with its source and
  ``kind`` ("photo" or "other") and a rough ``category``.
* :func:`dedupe` drops exact (SHA-256) duplicates, undecodable files and,
  optionally, PDQ near-duplicates (distance <= 31), caching hashes on disk.
* :func:`split` draws the listed images from photographs only and the
  distractors from everything else, disjoint and deterministic for a seed.
* :func:`small_subset` writes a tiny corpus that needs no packages (tests).

Photos in the package sources are picked by path (``Source.photos``); images
from any other folder are classified by :func:`looks_like_photo`, a rough
statistic (photographs have few runs of identical neighbouring pixels).
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import os
import random
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from blindmatch.batch import worker_pool
from blindmatch.hashing import DEFAULT_MAX_PIXELS, pdq_from_image_bytes, sniff

Kind = Literal["photo", "other"]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)
NEAR_DUPLICATE_DISTANCE = 31
PHOTO_FLAT_FRACTION = 0.35  # looks_like_photo: at most this share of identical neighbours


@dataclass(frozen=True, order=True)
class CorpusImage:
    """One image file of the corpus."""

    path: Path
    source: str  # a Debian package name, a group of packages, or the caller's root name
    kind: Kind
    category: str = ""  # rough content: astronomy, landscape, clipart, texture, plot, ...


@dataclass(frozen=True)
class Source:
    """Where one Debian package (or a group of them) installs images.

    ``roots`` are absolute folders and may hold glob characters; ``photos`` and
    ``exclude`` are ``fnmatch`` patterns on the absolute path. An image that
    matches ``photos`` is a photograph of ``photo_category``; every other image
    is "other" of ``category``.
    """

    name: str
    packages: tuple[str, ...]
    roots: tuple[str, ...]
    category: str
    photos: tuple[str, ...] = ()
    photo_category: str = "photo"
    exclude: tuple[str, ...] = ()
    install: bool = True  # False: measured, not installed by scripts/install-corpus

    def classify(self, path: str) -> tuple[Kind, str]:
        if any(fnmatch.fnmatchcase(path, p) for p in self.photos):
            return "photo", self.photo_category
        return "other", self.category

    def excluded(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, p) for p in self.exclude)


def _kde_docs(app: str) -> str:
    return f"/usr/share/doc/HTML/*/{app}"


def _src(
    name: str,
    roots: tuple[str, ...],
    category: str,
    *,
    packages: tuple[str, ...] | None = None,
    photos: tuple[str, ...] = (),
    photo_category: str = "photo",
    exclude: tuple[str, ...] = (),
    install: bool = True,
) -> Source:
    return Source(
        name, packages or (name,), roots, category, photos, photo_category, exclude, install
    )


_BG = "/usr/share/backgrounds/"
_WP = "/usr/share/wallpapers/"
# Wallpapers that are photographs (the rest are renders and drawings); picked by eye.
_WALLPAPER_PHOTOS = (
    _BG + "mate/nature/*",
    *(
        _BG + p
        for p in ("Bridge_by_*", "Dragonfly_by_*", "Kleiber_by_*", "Picture_0B_by_*",
                  "Picture_1A_by_*", "Wine_by_*", "aitzgorri_by_*", "free_by_*", "friends_by_*",
                  "life_by_*", "picosdeeuropa_by_*", "seeding_by_*", "sunset_by_*")
    ),
    *(
        f"{_WP}{n}/contents/images/*"
        for n in ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow",
                  "FallenLeaf", "Grey", "Kite", "OneStandsOut", "Path", "summer_1am")
    ),
)  # fmt: skip
# OpenCV's sample data that are photographs of scenes (not charts, logos or drawings).
_OPENCV_PHOTOS = tuple(
    "/usr/share/doc/opencv-doc/examples/data/" + n
    for n in ("aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "basketball1.png",
              "box_in_scene.png", "building.jpg", "butterfly.jpg", "fruits.jpg", "graf1.png",
              "home.jpg", "lena.jpg", "leuvenA.jpg", "licenseplate_motion.jpg", "messi5.jpg",
              "orange.jpg")
)  # fmt: skip
# Normal, specular, gloss and mask maps of game textures: not pictures anyone sees.
_MATERIAL_MAPS = (
    "*_n.png", "*_n.jpg", "*_s.png", "*_s.jpg", "*_g.png", "*_g.jpg", "*_nm.*", "*_normal.*",
    "*_Normal.*", "*_gloss.*", "*_mask.*", "*[Cc]olormask.*",
)  # fmt: skip

# Every package (or group of packages) the corpus knows, photographs first.
# scripts/install-corpus installs them; discover() walks whichever are installed.
SOURCES: tuple[Source, ...] = (
    _src("stellarium-data", ("/usr/share/stellarium",), "astronomy-art",
         photos=("/usr/share/stellarium/nebulae/*",), photo_category="astronomy"),
    _src("endless-sky-data", ("/usr/share/games/endless-sky",), "game-art",
         photos=("/usr/share/games/endless-sky/images/land/*",), photo_category="landscape"),
    _src("wallpapers", (_BG, _WP), "wallpaper-art",
         packages=("mate-backgrounds", "plasma-workspace-wallpapers", "lomiri-wallpapers",
                   "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "ukui-wallpapers",
                   "xfdesktop4-data"),
         photos=_WALLPAPER_PHOTOS, photo_category="wallpaper",
         exclude=(_WP + "*/contents/screenshot.*",)),
    _src("tuxpaint-data", ("/usr/share/tuxpaint/starters", "/usr/share/tuxpaint/templates",
                           "/usr/share/doc/tuxpaint-data"), "clipart",
         photos=("/usr/share/tuxpaint/templates/*.jpg",), photo_category="scene"),
    _src("palapeli-data", ("/usr/share/palapeli", _kde_docs("palapeli")), "texture",
         photos=("/usr/share/palapeli/collection/*.jpg",), photo_category="scene"),
    _src("sddm-theme-maldives", ("/usr/share/sddm/themes/maldives",), "screenshot",
         photos=("*/maldives/background.jpg",), photo_category="landscape"),
    _src("opencv-doc", ("/usr/share/doc/opencv-doc",), "diagram",
         photos=_OPENCV_PHOTOS, photo_category="scene"),
    # Other images: the distractors.
    _src("openclipart-png", ("/usr/share/openclipart",), "clipart"),
    _src("tuxpaint-stamps-default", ("/usr/share/tuxpaint/stamps",), "clipart"),  # for tuxpaint
    _src("supertuxkart-data", ("/usr/share/games/supertuxkart",), "texture",
         exclude=_MATERIAL_MAPS),
    _src("wesnoth-data", ("/usr/share/games/wesnoth",), "game-art",
         packages=("wesnoth-1.16-data",)),
    _src("freeorion-data", ("/usr/share/games/freeorion",), "game-art"),
    _src("extremetuxracer-data", ("/usr/share/games/etr",), "texture"),
    _src("neverball-data", ("/usr/share/games/neverball",), "screenshot"),
    _src("brainparty-data", ("/usr/share/games/brainparty",), "game-art"),
    _src("pingus-data", ("/usr/share/games/pingus",), "game-art"),
    _src("freeciv-data", ("/usr/share/games/freeciv",), "game-art"),
    _src("kodi-data", ("/usr/share/kodi",), "ui-art"),
    _src("icon-themes", ("/usr/share/icons/oxygen", "/usr/share/icons/mate",
                         "/usr/share/icons/gnome", "/usr/share/icons/elementary-xfce*",
                         "/usr/share/icons/Moka", "/usr/share/icons/Paper"), "icon",
         packages=("oxygen-icon-theme", "mate-icon-theme", "gnome-icon-theme",
                   "elementary-xfce-icon-theme", "moka-icon-theme", "paper-icon-theme")),
    _src("mypaint-data-extras", ("/usr/share/mypaint",), "texture"),
    _src("fotoxx-common", ("/usr/share/fotoxx",), "screenshot"),
    _src("gimp-help-en", ("/usr/share/gimp/2.0/help/en",), "screenshot"),
    _src("kstars-data", ("/usr/share/kstars", _kde_docs("kstars")), "screenshot"),
    _src("kalzium-data", ("/usr/share/kalzium", _kde_docs("kalzium")), "screenshot"),
    _src("marble-data", ("/usr/share/marble", _kde_docs("marble")), "screenshot"),
    _src("grass-doc", ("/usr/share/doc/grass-doc",), "screenshot"),
    _src("kicad-doc-en", ("/usr/share/doc/kicad/help/en",), "screenshot"),
    _src("octave-doc", ("/usr/share/doc/octave",), "plot"),
    _src("freedombox-doc-en", ("/usr/share/freedombox/manual/en",), "screenshot"),
    _src("open3d-doc", ("/usr/share/doc/open3d-doc",), "plot"),
    _src("sasview-doc", ("/usr/share/doc/sasview",), "plot"),
    _src("python-docs", ("/usr/share/doc/python-*-doc",), "plot",
         packages=("python-scipy-doc", "python-sklearn-doc", "python-skimage-doc",
                   "python-astropy-doc", "python-statsmodels-doc", "python-pandas-doc",
                   "python-xarray-doc", "python-vispy-doc", "python-dask-doc",
                   "python-sympy-doc", "python-astroquery-doc", "python-pyresample-doc",
                   "python-qutip-doc")),
    _src("qt5-docs", ("/usr/share/qt5/doc",), "screenshot",
         packages=("qtbase5-doc-html", "qtdeclarative5-doc-html", "qtcharts5-doc-html",
                   "qtquickcontrols2-5-doc-html", "qtdatavisualization5-doc-html",
                   "qttools5-doc-html", "qtgraphicaleffects5-doc-html",
                   "qtquickcontrols5-doc-html", "qtmultimedia5-doc-html",
                   "qtlocation5-doc-html", "qt3d5-doc-html", "qtwebengine5-doc-html")),
    # Measured, but large for what they add: not installed by scripts/install-corpus
    # (keeping the download under 3 GB); discover() uses them when they are installed.
    _src("redeclipse-data", ("/usr/share/games/redeclipse",), "texture", exclude=_MATERIAL_MAPS,
         install=False),
    _src("naev-data", ("/usr/share/naev",), "game-art", install=False),
    _src("hedgewars-data", ("/usr/share/games/hedgewars",), "game-art", install=False),
    _src("torcs-data", ("/usr/share/games/torcs",), "texture", exclude=_MATERIAL_MAPS,
         install=False),
    _src("krita-data", ("/usr/share/krita",), "texture", install=False),
    _src("lugaru-data", ("/usr/share/games/lugaru",), "texture", exclude=_MATERIAL_MAPS,
         install=False),
    _src("minexpert2-doc", ("/usr/share/doc/minexpert2",), "screenshot", install=False),
    _src("lincity-ng-data", ("/usr/share/games/lincity-ng",), "game-art", install=False),
    _src("foobillardplus-data", ("/usr/share/games/foobillardplus",), "texture", install=False),
)  # fmt: skip

_SOURCES_BY_NAME = {s.name: s for s in SOURCES}


def default_roots() -> dict[str, list[Path]]:
    """The folders of ``SOURCES`` that exist on this machine, by source name."""
    out: dict[str, list[Path]] = {}
    for s in SOURCES:
        found: list[Path] = []
        for pattern in s.roots:
            found += [Path(p) for p in sorted(glob.glob(pattern)) if os.path.isdir(p)]
        if found:
            out[s.name] = found
    return out


def _is_image_file(path: str) -> bool:
    if os.path.splitext(path)[1].lower() not in IMAGE_EXTENSIONS:
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    found = sniff(head)
    return found is not None and found[0] == "image"


def _size(path: str) -> tuple[int, int] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.size
    except Exception:  # noqa: BLE001 - any unreadable header means "not in the corpus"
        return None


def looks_like_photo(path: Path | str, *, flat_fraction: float = PHOTO_FLAT_FRACTION) -> bool:
    """A rough guess whether an image is a photograph (or a photo-like render).

    Scales the image (nearest neighbour, so flat areas stay flat) to 256 pixels
    on the long side and counts horizontally adjacent pixels that are exactly
    equal. Measured on samples of 40 per package: scene photos have a median of
    0.04-0.14 (90th percentile <= 0.33); clip art, plots, screenshots and icons
    0.53-0.90 (10th percentile >= 0.38). Star fields with clipped black skies
    and flat-shaded renders are misjudged, so package images are classified by
    path instead; this is for folders the corpus knows nothing about.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.draft("RGB", (512, 512))
                if im.mode in ("RGBA", "LA", "P", "PA"):
                    rgba = im.convert("RGBA")
                    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    rgb = Image.alpha_composite(white, rgba).convert("RGB")
                else:
                    rgb = im.convert("RGB")
    except Exception:  # noqa: BLE001
        return False
    w, h = rgb.size
    scale = 256 / max(w, h)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = rgb.resize(size, Image.Resampling.NEAREST)
    a = np.asarray(rgb, dtype=np.int16)
    if a.shape[1] < 2:
        return False
    flat = float((np.abs(np.diff(a, axis=1)).max(axis=2) == 0).mean())
    return flat <= flat_fraction


def discover(
    roots: Mapping[str, Sequence[Path]] | None = None,
    *,
    min_side: int = 128,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    unknown: Literal["measure", "photo", "other"] = "measure",
) -> list[CorpusImage]:
    """Walk ``roots`` (source name -> folders; default: :func:`default_roots`).

    Keeps regular files (not symlinks) whose extension is an image's and whose
    first bytes are an image signature, whose header declares at least
    ``min_side`` pixels on the short side and at most ``max_pixels`` in all
    (blindmatch refuses larger ones). A file reached from two roots is listed
    once, under the first source. Images of a source in ``SOURCES`` are
    classified by path; for other source names ``unknown`` says what they are:
    "measure" uses :func:`looks_like_photo`. Sorted by path.
    """
    if roots is None:
        roots = default_roots()
    seen: set[str] = set()
    out: list[CorpusImage] = []
    for name, folders in roots.items():
        source = _SOURCES_BY_NAME.get(name)
        for folder in folders:
            for dirpath, dirnames, filenames in os.walk(folder):
                dirnames.sort()
                for fn in sorted(filenames):
                    path = os.path.join(dirpath, fn)
                    if path in seen or os.path.islink(path) or not os.path.isfile(path):
                        continue
                    if source is not None and source.excluded(path):
                        continue
                    if not _is_image_file(path):
                        continue
                    size = _size(path)
                    if size is None or min(size) < min_side or size[0] * size[1] > max_pixels:
                        continue
                    seen.add(path)
                    kind: Kind
                    if source is not None:
                        kind, category = source.classify(path)
                    elif unknown == "measure":
                        kind = "photo" if looks_like_photo(path) else "other"
                        category = ""
                    else:
                        kind, category = unknown, ""
                    out.append(CorpusImage(Path(path), name, kind, category))
    out.sort(key=lambda i: (str(i.path), i.source))
    return out


@dataclass(frozen=True)
class FileHashes:
    """The hashes :func:`dedupe` compares; ``pdq`` is None if the file does not decode."""

    sha256: str
    pdq: str | None
    quality: int


def _hash_file(path: str) -> FileHashes:
    data = Path(path).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    try:
        pdq = pdq_from_image_bytes(data)
    except Exception:  # noqa: BLE001 - undecodable files are dropped by dedupe
        return FileHashes(sha, None, 0)
    return FileHashes(sha, pdq.hex, pdq.quality)


_CACHE_NAME = "corpus-hashes-v1.json"


def hash_files(
    paths: Iterable[Path], *, cache_dir: Path | None = None, workers: int = 1
) -> dict[Path, FileHashes]:
    """SHA-256 and PDQ of each file; with ``cache_dir``, reuse and store results
    keyed by path, size and modification time."""
    paths = list(dict.fromkeys(paths))
    cache: dict[str, list[Any]] = {}
    cache_file = cache_dir / _CACHE_NAME if cache_dir is not None else None
    if cache_file is not None and cache_file.is_file():
        try:
            cache = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            cache = {}
    out: dict[Path, FileHashes] = {}
    todo: list[Path] = []
    keys: dict[Path, list[object]] = {}
    for p in paths:
        st = p.stat()
        keys[p] = [st.st_size, st.st_mtime_ns]
        hit = cache.get(str(p))
        if isinstance(hit, list) and len(hit) == 5 and hit[:2] == keys[p]:
            sha, pdq, quality = hit[2:]
            out[p] = FileHashes(str(sha), None if pdq is None else str(pdq), int(quality))
        else:
            todo.append(p)
    if todo:
        if workers > 1:
            with worker_pool(workers) as pool:
                results = list(pool.map(_hash_file, map(str, todo), chunksize=16))
        else:
            results = [_hash_file(str(p)) for p in todo]
        for p, h in zip(todo, results, strict=True):
            out[p] = h
            cache[str(p)] = [*keys[p], h.sha256, h.pdq, h.quality]
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(cache, separators=(",", ":")))
            tmp.replace(cache_file)
    return out


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.asarray(np.bitwise_count(x))
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return np.asarray(table[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1))


def near_pairs(hashes: Sequence[str], max_distance: int) -> list[tuple[int, int]]:
    """All index pairs ``(i, j)``, ``i < j``, of PDQ hex hashes within ``max_distance``."""
    n = len(hashes)
    if n < 2:
        return []
    words = np.frombuffer(b"".join(bytes.fromhex(h) for h in hashes), dtype=">u8")
    bits = words.astype(np.uint64).reshape(n, 4)
    pairs: list[tuple[int, int]] = []
    step = 256
    for start in range(0, n, step):
        block = bits[start : start + step]
        rest = bits[start:]
        dist = _popcount(block[:, None, :] ^ rest[None, :, :]).sum(axis=2)
        ii, jj = np.nonzero(dist <= max_distance)
        for i, j in zip(ii.tolist(), jj.tolist(), strict=True):
            if j > i:
                pairs.append((start + i, start + j))
    return pairs


def dedupe(
    images: Sequence[CorpusImage],
    *,
    near: bool = True,
    max_distance: int = NEAR_DUPLICATE_DISTANCE,
    photo_min_quality: int = 0,
    cache_dir: Path | None = None,
    workers: int = 1,
) -> list[CorpusImage]:
    """Drop files that do not decode, exact duplicates (same SHA-256) and, with
    ``near``, images within ``max_distance`` PDQ bits of one already kept.

    Photographs are kept in preference to other images, then the first by
    path. A photo whose PDQ quality is below ``photo_min_quality`` becomes
    "other" (it can still be a distractor, not a listed image). The result
    keeps the input order.
    """
    hashes = hash_files((i.path for i in images), cache_dir=cache_dir, workers=workers)
    order = sorted(range(len(images)), key=lambda k: (images[k].kind != "photo", images[k].path))
    kept: list[int] = []
    shas: set[str] = set()
    for k in order:
        h = hashes[images[k].path]
        if h.pdq is None or h.sha256 in shas:
            continue
        shas.add(h.sha256)
        kept.append(k)
    if near:
        pdqs = [hashes[images[k].path].pdq or "" for k in kept]
        earlier: dict[int, list[int]] = {}
        for a, b in near_pairs(pdqs, max_distance):
            earlier.setdefault(b, []).append(a)
        alive = [True] * len(kept)
        for b in range(len(kept)):
            if any(alive[a] for a in earlier.get(b, ())):
                alive[b] = False
        kept = [k for k, ok in zip(kept, alive, strict=True) if ok]
    out: list[CorpusImage] = []
    for k in sorted(kept):
        img = images[k]
        if img.kind == "photo" and hashes[img.path].quality < photo_min_quality:
            img = CorpusImage(img.path, img.source, "other", img.category)
        out.append(img)
    return out


def split(
    images: Sequence[CorpusImage],
    *,
    listed: int,
    distractors: int | None,
    seed: int,
) -> tuple[list[CorpusImage], list[CorpusImage]]:
    """Draw ``listed`` photographs and ``distractors`` of the remaining images.

    The draw depends only on the set of images and ``seed`` (not on their
    order); both lists are in draw order, so any prefix is itself a random
    sample. ``distractors=None`` takes every remaining image. Raises
    ``ValueError`` when there are too few photos or images.
    """
    pool = sorted(set(images), key=lambda i: (str(i.path), i.source))
    photos = [i for i in pool if i.kind == "photo"]
    if listed < 0 or listed > len(photos):
        raise ValueError(f"asked for {listed} listed photos, the corpus has {len(photos)}")
    rng = random.Random(seed)
    chosen = rng.sample(photos, listed)
    taken = {i.path for i in chosen}
    rest = [i for i in pool if i.path not in taken]
    if distractors is None:
        distractors = len(rest)
    if distractors < 0 or distractors > len(rest):
        raise ValueError(f"asked for {distractors} distractors, {len(rest)} images remain")
    return chosen, rng.sample(rest, distractors)


REFERENCE_PHOTOS = Path(__file__).resolve().parents[3] / "tests" / "vectors" / "pdq-reference"


def small_subset(directory: Path, *, synthetic: int = 24, seed: int = 0) -> list[CorpusImage]:
    """A tiny corpus that needs no packages, written into ``directory``.

    The PDQ reference photographs from the source tree (``tests/vectors/
    pdq-reference``: the distinct originals, not their edited or rotated
    copies) when it is at hand, plus ``synthetic`` pictures from
    :func:`blindmatch.demo.synthetic.synthetic_photo` saved as PNG: half
    labelled "photo", half "other". Deterministic for ``seed``.
    """
    from blindmatch.demo.synthetic import synthetic_photo

    directory.mkdir(parents=True, exist_ok=True)
    out: list[CorpusImage] = []
    if REFERENCE_PHOTOS.is_dir():
        for p in sorted(REFERENCE_PHOTOS.rglob("*")):
            rel = p.relative_to(REFERENCE_PHOTOS).as_posix()
            if rel.startswith(("reg-test-input/labelme-subset/", "bridge-mods/aaa-orig")) or (
                rel == "reg-test-input/pen-and-coaster.png"
            ):
                out.append(CorpusImage(p, "pdq-reference", "photo", "scene"))
    for s in range(synthetic):
        path = directory / f"synthetic-{seed}-{s:03d}.png"
        if not path.exists():
            synthetic_photo(seed * 100_003 + s, (320, 240)).save(path)
        kind: Kind = "photo" if s % 2 == 0 else "other"
        out.append(CorpusImage(path, "synthetic", kind, "synthetic"))
    return sorted(out)


def summarize(images: Iterable[CorpusImage]) -> dict[str, dict[str, int]]:
    """Counts by source and kind: ``{source: {"photo": n, "other": m}}``."""
    out: dict[str, dict[str, int]] = {}
    for i in images:
        row = out.setdefault(i.source, {"photo": 0, "other": 0})
        row[i.kind] += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m blindmatch.eval.corpus [--cache DIR] [--workers N] [--no-near]``:
    print what the installed packages give, before and after dedupe."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m blindmatch.eval.corpus")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "blindmatch" / "corpus")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-near", action="store_true", help="exact duplicates only")
    ap.add_argument("--min-side", type=int, default=128)
    args = ap.parse_args(argv)
    found = discover(min_side=args.min_side)
    kept = dedupe(found, near=not args.no_near, cache_dir=args.cache, workers=args.workers)
    before, after = summarize(found), summarize(kept)
    print(f"{'source':26s} {'found':>7s} {'photo':>7s} {'other':>7s}")
    for name in sorted(before):
        b, a = before[name], after.get(name, {"photo": 0, "other": 0})
        print(f"{name:26s} {b['photo'] + b['other']:7d} {a['photo']:7d} {a['other']:7d}")
    photos = sum(r["photo"] for r in after.values())
    others = sum(r["other"] for r in after.values())
    print(f"{'total':26s} {len(found):7d} {photos:7d} {others:7d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
