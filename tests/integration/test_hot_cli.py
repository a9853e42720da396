"""Hot entries end to end through the CLI, as hotlines and a platform use them.

Two pretend hotlines in two (dev) jurisdictions ``lists add --hot`` the same benign
generated picture; a third lists it without ``--hot``. ``table build`` from the two hot
lists gives the entry its hot companion hashes (their lookup keys) and a voucher of a
CROPPED copy opens; built from one hot list and the plain one, governance keeps none
(only one hotline vouches for them) and the cropped copy's voucher does not open. A
video added with ``--hot`` is listed with a warning and without hot hashes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.files import image_pixels
from blindmatch.hashing.canonical import companion_pdq
from blindmatch.hashing.hot import hot_companions
from blindmatch.protocol import VariantProbeLSH
from tests.conftest import run_cli
from tests.integration.private_cli import build_and_probe, ok
from tests.unit.test_hashing import _make_video

# A fixed public lookup-key seed, so every run probes the same keys.
SEED = "42" * 32
SIZE = (320, 240)  # small: a picture's hot companions are 91 hashed edits
# A corner crop on a point of the grid (hashing.hot.HOT_CROPS, the picture is not
# resized first at this size): 6% off the right side and 6% off the bottom, re-encoded.
# It opened with hot hashes for each of 5 seeds tried (42, 11, 77, a5, 3c repeated); a
# 5% crop, between two grid points, for 1 of them.
CROP = 0.06


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.listed = root / "listed.jpg"
        synthetic_photo(20, SIZE).save(self.listed, quality=92)
        self.entry_id = f"sha256:{hashlib.sha256(self.listed.read_bytes()).hexdigest()}"
        self.cropped = root / "cropped.jpg"
        w, h = SIZE
        Image.open(self.listed).crop((0, 0, round(w * (1 - CROP)), round(h * (1 - CROP)))).save(
            self.cropped, quality=90
        )
        self.video = _make_video(root / "clip.mp4", seconds=1)
        self.added: dict[str, dict] = {}
        self.video_add = None
        self.export: dict[str, str] = {}
        self.summary: dict[str, dict] = {}
        self.human: dict[str, str] = {}
        self.opened: dict[str, dict[str, dict]] = {}


def _build_and_probe(w: World, mode: str, lists: tuple[str, str], sequence: int) -> None:
    # the client remembers the sequence it saw: each table of this store gets a later one
    names: list[object] = [x for n in lists for x in ("--list", n)] + ["--sequence", sequence]
    got = build_and_probe(w.root, mode, names, SEED, [w.listed, w.cropped])
    w.summary[mode], w.human[mode], w.opened[mode] = got.summary, got.human, got.opened


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("hot-cli")
    w = World(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BLINDMATCH_ENV", "dev")
        mp.delenv("BLINDMATCH_DATABASE_URL", raising=False)
        mp.setenv("BLINDMATCH_HOME", str(root / "home"))
        for name, hotline, hot in (("a", "hotline-a", True), ("b", "hotline-b", True),
                                   ("c", "hotline-c", False)):  # fmt: skip
            (w.added[name],) = ok("lists", "add", name, w.listed, "--source", hotline,
                                   "--no-keypoints", "--workers", 1, "--json",
                                   *(["--hot"] if hot else []))  # fmt: skip
        w.video_add = run_cli("lists", "add", "v", w.video, "--source", "hotline-v", "--hot",
                              "--no-keypoints", "--workers", 1, "--json")  # fmt: skip
        for fmt in ("csv", "jsonl"):
            res = run_cli("lists", "export", "a", "--format", fmt)
            assert res.code == 0, res.err
            w.export[fmt] = res.out
        _build_and_probe(w, "agreed", ("a", "b"), 1)  # two hotlines list it hot
        _build_and_probe(w, "alone", ("a", "c"), 2)  # only one does
    yield w


def _expected_hot(w: World) -> list[str]:
    # what the hot tier makes of the pixels a client decodes from the same file
    return [h.hex for h in hot_companions(image_pixels(str(w.listed)))]


def test_lists_add_hot_stores_the_pictures_hot_companions(world: World) -> None:
    assert [world.added[n]["hot"] for n in "ab"] == [1, 1]
    assert "hot" not in world.added["c"]  # a plain lists add reports as before
    (row,) = csv.DictReader(io.StringIO(world.export["csv"]))
    assert row["id"] == world.entry_id
    expected = _expected_hot(world)
    assert 1 < len(expected) <= 96
    assert row["pdq_hot"].split(" ") == expected
    # a hot entry gets its companion too
    assert row["pdq_companion"] == companion_pdq(image_pixels(str(world.listed))).hex
    (obj,) = [json.loads(x) for x in world.export["jsonl"].splitlines()]
    assert obj["pdq_hot"] == expected


def test_a_video_added_hot_is_listed_with_a_warning_and_no_hot_hashes(world: World) -> None:
    res = world.video_add
    assert res is not None and res.code == 0, res.err
    (summary,) = res.json_lines
    assert (summary["added"], summary["failed"], summary["hot"]) == (1, 0, 0)
    assert "clip.mp4: listed without hot companion hashes: videos have none" in res.err


def test_table_build_keeps_hot_hashes_two_hotlines_agree_on(world: World) -> None:
    agreed, alone = world.summary["agreed"], world.summary["alone"]
    n_hot = len(_expected_hot(world))
    assert (agreed["entries"], agreed["entries_hot"], agreed["hot_keys"]) == (1, 1, n_hot)
    assert agreed["listed_hot"] == 2 and agreed["entries_with_companions"] == 1
    # the lookup keys of the entry's hashes: its PDQ, its companion and each hot hash (two
    # near hashes may share a key)
    (row,) = csv.DictReader(io.StringIO(world.export["csv"]))
    scheme = VariantProbeLSH(seed=bytes.fromhex(SEED))
    hashes = [row["pdq"], row["pdq_companion"], *row["pdq_hot"].split()]
    keys = {k for h in hashes for k in scheme.list_keys(bytes.fromhex(h))}
    assert agreed["keys"] == agreed["manifest"]["n_keys"] == len(keys) > n_hot
    # only one hotline lists it hot: the entry and its companion are in, no hot hash is
    assert (alone["entries"], alone["entries_hot"], alone["hot_keys"]) == (1, 0, 0)
    assert alone["listed_hot"] == 1 and alone["entries_with_companions"] == 1
    assert alone["keys"] == alone["manifest"]["n_keys"] == 2
    assert f"(1 hot, {n_hot} hot companion keys; 2 listed hot)" in world.human["agreed"]
    assert "(0 hot, 0 hot companion keys; 1 listed hot)" in world.human["alone"]


def test_a_cropped_copy_opens_only_where_the_entry_is_hot(world: World) -> None:
    for mode in ("agreed", "alone"):  # the picture itself opens either way
        listed = world.opened[mode]["listed.jpg"]
        assert listed["matched"] is True
        assert {m["entry_id"] for m in listed["matches"]} == {world.entry_id}
    cropped = world.opened["agreed"]["cropped.jpg"]
    assert cropped["matched"] is True
    assert {(m["hotline"], m["entry_id"]) for m in cropped["matches"]} == {
        ("hotline-a", world.entry_id),
        ("hotline-b", world.entry_id),
    }
    assert world.opened["alone"]["cropped.jpg"]["matched"] is False
    assert world.opened["alone"]["cropped.jpg"]["matches"] == []
