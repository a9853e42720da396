"""Companion hashes on the list side: hashed from pictures only when asked (``lists add``),
kept by the store as part of an entry, and carried by list files.

Benign generated pictures only (blindmatch.demo.synthetic)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from alembic.config import Config
from PIL import Image, ImageOps
from sqlalchemy import inspect

from blindmatch.batch import Hashed, _isolated, hash_many
from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.files import DEFAULT_LIMITS
from blindmatch.hashing import MIN_QUALITY, hash_bytes, open_image, pdq_distance
from blindmatch.hashing.canonical import companion_pdq
from blindmatch.lists import ListEntry, dump_list, parse_list
from blindmatch.store import open_store
from blindmatch.store.db import _MIGRATIONS


def _jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture
def store(tmp_path: Path):
    return open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")


def test_companion_is_hashed_only_when_asked_from_the_decoded_pixels() -> None:
    data = _jpeg(synthetic_photo(5))
    # scan's and hash's paths (plain, and with the robust variants) do not compute it
    assert hash_bytes(data).pdq_companion is None
    assert hash_bytes(data, variants=True, keypoints=False).pdq_companion is None
    h = hash_bytes(data, companion=True)
    # the same pixels a client's query hashes are made of (files.image_pixels)
    expected = companion_pdq(np.asarray(open_image(data)))
    assert expected.quality >= MIN_QUALITY
    assert h.pdq_companion == expected.hex
    assert (
        hash_bytes(data, variants=True, keypoints=False, companion=True).pdq_companion
        == h.pdq_companion
    )
    assert "pdq_companion" not in h.to_json()  # hash/scan output is unchanged

    # A mirrored copy: its PDQ is far from the picture's, its companion is not.
    mirror = hash_bytes(_jpeg(ImageOps.mirror(Image.open(io.BytesIO(data)))), companion=True)
    assert mirror.pdq is not None and h.pdq is not None and mirror.pdq_companion is not None
    assert pdq_distance(mirror.pdq, h.pdq) > 64
    assert pdq_distance(mirror.pdq_companion, h.pdq_companion) <= 8


def test_a_flat_pictures_companion_is_left_out() -> None:
    # Its companion would be a lookup key for every flat picture (a client leaves out its own).
    data = _jpeg(Image.new("RGB", (200, 150), (120, 130, 140)))
    assert companion_pdq(np.asarray(open_image(data))).quality < MIN_QUALITY
    h = hash_bytes(data, companion=True)
    assert h.pdq is not None and h.pdq_companion is None


@pytest.mark.parametrize("workers", [1, 2])
def test_hash_many_passes_the_flag_to_its_workers(tmp_path: Path, workers: int) -> None:
    paths = []
    for s in (1, 2):
        paths.append(tmp_path / f"p{s}.jpg")
        synthetic_photo(s).save(paths[-1], quality=90)
    plain = list(hash_many([str(tmp_path)], workers=workers))
    listed = list(hash_many([str(tmp_path)], workers=workers, companion=True))
    assert all(isinstance(o, Hashed) for o in plain + listed)
    assert [o.hashes.pdq_companion for o in plain] == [None, None]  # type: ignore[union-attr]
    assert [o.hashes.pdq_companion for o in listed] == [  # type: ignore[union-attr]
        companion_pdq(np.asarray(open_image(p.read_bytes()))).hex for p in paths
    ]
    if workers == 2:  # the one-file pool a crashed batch retries its files in
        retried = _isolated(str(paths[0]), DEFAULT_LIMITS, False, True)
        assert isinstance(retried, Hashed)
        assert retried.hashes.pdq_companion == listed[0].hashes.pdq_companion  # type: ignore[union-attr]


def test_store_keeps_the_companion_and_counts_it_as_part_of_the_entry(store) -> None:
    pdq, comp, other = "ab" * 32, "cd" * 32, "ef" * 32
    bare = ListEntry("e1", pdq=pdq, md5="01" * 16)
    with_comp = ListEntry("e1", pdq=pdq, md5="01" * 16, pdq_companion=comp)
    assert store.import_entries("hl", [bare]).added == 1
    # gaining a companion is a change, as for any other hash...
    s = store.import_entries("hl", [with_comp])
    assert (s.added, s.changed, s.unchanged) == (0, 1, 0)
    assert list(store.live_entries("hl")) == [with_comp]
    # ...the same again is not...
    s = store.import_entries("hl", [with_comp])
    assert (s.changed, s.unchanged) == (0, 1)
    # ...a different one is, and so is losing it.
    changed = ListEntry("e1", pdq=pdq, md5="01" * 16, pdq_companion=other)
    assert store.import_entries("hl", [changed]).changed == 1
    assert list(store.live_entries("hl")) == [changed]
    assert store.import_entries("hl", [bare]).changed == 1
    assert list(store.live_entries("hl")) == [bare]
    assert store.get_list("hl").live_entries == 1


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_and_import_keep_the_companion(store, fmt: str) -> None:
    entries = [
        ListEntry("a", pdq="ab" * 32, pdq_companion="cd" * 32, category="A1"),
        ListEntry("b", pdq="12" * 32),
    ]
    store.import_entries("src", entries)
    exported = dump_list(list(store.live_entries("src")), fmt)
    assert parse_list(exported, fmt).entries == tuple(entries)
    s = store.import_entries("src", parse_list(exported, fmt).entries)
    assert (s.added, s.changed, s.unchanged) == (0, 0, 2)  # a round trip changes nothing
    store.import_entries("copy", parse_list(exported, fmt).entries)
    assert list(store.live_entries("copy")) == entries


def check_companion_migration(url: str) -> None:
    """Migration 0010 on ``url`` (also run on PostgreSQL: tests/integration/postgres):
    a downgrade drops the column and keeps the rows, an upgrade brings it back empty."""
    store = open_store(url)
    store.import_entries("hl", [ListEntry("a", pdq="ab" * 32, pdq_companion="cd" * 32)])
    assert [e.pdq_companion for e in store.live_entries("hl")] == ["cd" * 32]
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0009")
    cols = {c["name"] for c in inspect(store.engine).get_columns("entries")}
    assert "pdq_companion" not in cols and {"pdq", "source_id"} <= cols
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    assert list(store.live_entries("hl")) == [ListEntry("a", pdq="ab" * 32)]
    # lists add of the same picture again would fill it in: a change
    s = store.import_entries("hl", [ListEntry("a", pdq="ab" * 32, pdq_companion="cd" * 32)])
    assert (s.changed, s.unchanged) == (1, 0)
    store.engine.dispose()


def test_companion_migration_on_sqlite(tmp_path: Path) -> None:
    check_companion_migration(f"sqlite:///{tmp_path / 'm.sqlite'}")
