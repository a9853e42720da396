"""Companion hashes end to end through the CLI, as hotlines and a platform use them.

Two pretend hotlines ``lists add`` the same benign generated picture; ``table build``
gives the table the companion's lookup keys; a voucher made from a MIRRORED copy of the
picture opens. The same table built from lists of bare PDQs (the same entries imported
from a file without companions) has no companion keys, and the mirrored copy's voucher
does not open there.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.files import image_pixels
from blindmatch.hashing.canonical import companion_pdq
from tests.conftest import run_cli
from tests.integration.private_cli import build_and_probe, ok

# A fixed public lookup-key seed, so every run probes the same keys. With it the
# mirrored copy's own probes miss the bare PDQ (without companions a mirror opens for
# about 0.4 of seeds: docs/protocol.md §11; this picture's mirror opened for none of
# the four seeds tried), while its companion probe finds the listed companion.
SEED = "42" * 32


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.listed = root / "listed.jpg"
        synthetic_photo(20).save(self.listed, quality=92)
        self.entry_id = f"sha256:{hashlib.sha256(self.listed.read_bytes()).hexdigest()}"
        self.mirrored = root / "mirrored.jpg"
        ImageOps.mirror(Image.open(self.listed)).save(self.mirrored, quality=90)
        self.summary: dict[str, dict] = {}
        self.human: dict[str, str] = {}
        self.export = ""
        self.opened: dict[str, dict[str, dict]] = {}


def _build_and_probe(w: World, mode: str) -> None:
    got = build_and_probe(w.root, mode, ["--list", "a", "--list", "b"], SEED,
                          [w.listed, w.mirrored])  # fmt: skip
    w.summary[mode], w.human[mode], w.opened[mode] = got.summary, got.human, got.opened


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("companions-cli")
    w = World(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BLINDMATCH_ENV", "dev")
        mp.delenv("BLINDMATCH_DATABASE_URL", raising=False)
        # The platform's store, lists added from the picture by both hotlines.
        mp.setenv("BLINDMATCH_HOME", str(root / "home-with"))
        for name, hotline in (("a", "hotline-a"), ("b", "hotline-b")):
            ok("lists", "add", name, w.listed, "--source", hotline, "--no-keypoints",
                "--workers", 1, "--json")  # fmt: skip
        res = run_cli("lists", "export", "a", "--format", "csv")
        assert res.code == 0, res.err
        w.export = res.out
        _build_and_probe(w, "with")
        # Another store: the same entries, imported from a file without companions.
        rows = list(csv.DictReader(io.StringIO(w.export)))
        bare = root / "bare.csv"
        with bare.open("w", newline="") as f:
            out = csv.DictWriter(f, ["id", "pdq", "md5", "sha256"], extrasaction="ignore")
            out.writeheader()
            out.writerows(rows)
        mp.setenv("BLINDMATCH_HOME", str(root / "home-without"))
        for name, hotline in (("a", "hotline-a"), ("b", "hotline-b")):
            ok("lists", "import", name, bare, "--source", hotline, "--json")
        _build_and_probe(w, "without")
    yield w


def test_lists_add_stores_the_pictures_companion(world: World) -> None:
    (row,) = csv.DictReader(io.StringIO(world.export))
    assert row["id"] == world.entry_id
    # what a client computes from the same file (voucher make's pixels)
    assert row["pdq_companion"] == companion_pdq(image_pixels(str(world.listed))).hex
    assert row["pdq_companion"] != row["pdq"]


def test_table_build_counts_companions_and_their_keys(world: World) -> None:
    w, b = world.summary["with"], world.summary["without"]
    assert (w["entries"], w["listed_companions"], w["entries_with_companions"]) == (1, 2, 1)
    assert (b["entries"], b["listed_companions"], b["entries_with_companions"]) == (1, 0, 0)
    # one lookup key per hash of an entry: the PDQ's, and the companion's
    assert (w["keys"], b["keys"]) == (2, 1)
    assert (w["manifest"]["n_keys"], b["manifest"]["n_keys"]) == (2, 1)
    assert w["manifest"]["n_entries"] == b["manifest"]["n_entries"] == 1
    assert "(1 with companion hashes; 2 listed with one)" in world.human["with"]
    assert "(0 with companion hashes; 0 listed with one)" in world.human["without"]


def test_a_mirrored_copy_opens_only_with_companions(world: World) -> None:
    for mode in ("with", "without"):  # the picture itself opens either way
        listed = world.opened[mode]["listed.jpg"]
        assert listed["matched"] is True
        assert {m["entry_id"] for m in listed["matches"]} == {world.entry_id}
    mirrored = world.opened["with"]["mirrored.jpg"]
    assert mirrored["matched"] is True
    assert {(m["hotline"], m["entry_id"]) for m in mirrored["matches"]} == {
        ("hotline-a", world.entry_id),
        ("hotline-b", world.entry_id),
    }
    assert all(0 <= m["distance"] <= 31 for m in mirrored["matches"])
    assert world.opened["without"]["mirrored.jpg"]["matched"] is False
    assert world.opened["without"]["mirrored.jpg"]["matches"] == []
