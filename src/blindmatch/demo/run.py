"""``blindmatch demo``: the main job end to end on the embedded default.

A "hotline" lists three benign synthetic pictures; an "incoming" folder holds
edited copies of them (re-compressed, resized, greyscale, exact), unrelated
pictures and a corrupt file. The demo builds the list in the SQLite database
under BLINDMATCH_HOME, scans the folder and reports what matched.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from functools import partial
from pathlib import Path

from PIL import Image

from blindmatch.batch import Hashed, hash_many
from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.errors import ListNotFound
from blindmatch.files import Failure, image_pixels
from blindmatch.hashing.keypoints import listed_features
from blindmatch.lists import ListEntry
from blindmatch.runtime import open_runtime

LIST_NAME = "demo-hotline"


def _say(text: str, quiet: bool) -> None:
    if not quiet:
        sys.stdout.write(text + "\n")


def run_demo(json_output: bool = False) -> int:
    rt = open_runtime()
    root = rt.settings.home / "demo"
    shutil.rmtree(root, ignore_errors=True)
    listed_dir, incoming = root / "hotline-images", root / "incoming"
    listed_dir.mkdir(parents=True)
    incoming.mkdir()
    q = json_output
    _say(f"blindmatch demo — data in {rt.settings.home} (SQLite)", q)
    _say("Every picture here is a benign synthetic stand-in; no real list is used.\n", q)

    listed = []
    for seed in (101, 102, 103):
        p = listed_dir / f"listed-{seed}.jpg"
        synthetic_photo(seed, (800, 600)).save(p, quality=92)
        listed.append(p)
    with contextlib.suppress(ListNotFound):
        rt.store.remove_list(LIST_NAME)
    entries = []
    keypoints = {}
    for o in hash_many([str(p) for p in listed], workers=1):
        assert isinstance(o, Hashed)
        h = o.hashes
        entries.append(
            ListEntry(source_id=Path(o.path).stem, pdq=h.pdq, md5=h.md5, sha256=h.sha256,
                      category="A1")
        )  # fmt: skip
        keypoints[Path(o.path).stem] = listed_features(image_pixels(o.path)).to_bytes()
    summary = rt.store.import_entries(
        LIST_NAME, entries, source="demo hotline", version="1", keypoints=keypoints
    )
    _say(f"1. Hotline list '{LIST_NAME}': {summary.added} pictures hashed and listed "
         "(PDQ, MD5, SHA-256, keypoints).", q)  # fmt: skip

    expected: dict[str, bool] = {}
    im = Image.open(listed[0])
    im.save(incoming / "resent-recompressed.jpg", quality=40)
    expected["resent-recompressed.jpg"] = True
    im.resize((400, 300)).save(incoming / "resent-half-size.png")
    expected["resent-half-size.png"] = True
    Image.open(listed[1]).convert("L").save(incoming / "resent-greyscale.webp")
    expected["resent-greyscale.webp"] = True
    shutil.copy(listed[2], incoming / "resent-exact-copy.jpg")
    expected["resent-exact-copy.jpg"] = True
    Image.open(listed[1]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        incoming / "resent-mirrored.jpg", quality=85
    )
    expected["resent-mirrored.jpg"] = True
    tilted = Image.open(listed[2]).rotate(6, resample=Image.Resampling.BICUBIC)
    tilted.crop((110, 60, 760, 560)).save(incoming / "resent-cropped-tilted.jpg", quality=85)
    expected["resent-cropped-tilted.jpg"] = True
    for seed in (201, 202, 203):
        synthetic_photo(seed, (800, 600)).save(incoming / f"holiday-{seed}.jpg", quality=85)
        expected[f"holiday-{seed}.jpg"] = False
    (incoming / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    _say(f"2. Incoming folder: {len(expected) + 1} files (edited copies, others, one corrupt).", q)

    matcher = rt.matcher
    results = []
    ok = True
    _say("3. Scan:", q)
    for o in hash_many([str(incoming)], variants=True):  # as `scan` does
        name = Path(o.path).name
        if isinstance(o, Failure):
            results.append(o.to_json())
            _say(f"   {name:28} FAILED  [{o.error.code}] {o.error.message}", q)
            ok = ok and name == "broken.jpg"
            continue
        found = matcher.match(o.hashes, lists=[LIST_NAME], image=partial(image_pixels, o.path))
        results.append({"path": o.path, "matches": [m.to_json() for m in found]})
        ok = ok and bool(found) == expected.get(name, False)
        if found:
            best = found[0]
            how = f" ({best.variant})" if best.variant not in (None, best.hash_type) else ""
            _say(f"   {name:28} MATCH   {best.entry_id} by {best.hash_type}{how}, "
                 f"distance {best.distance}", q)  # fmt: skip
        else:
            _say(f"   {name:28} clean", q)
    if json_output:
        for r in results:
            sys.stdout.write(json.dumps(r) + "\n")
    _say(
        "\nEdited copies were caught, other pictures passed, the corrupt file was reported "
        "and the scan went on."
        if ok
        else "\nUNEXPECTED RESULT: see above.",
        q,
    )
    _say("Next: `blindmatch scan PATH --list demo-hotline`, or `blindmatch serve` for HTTP.", q)
    return 0 if ok else 1
