"""Hot companion hashes on the list side: hashed from pictures only when asked
(``lists add --hot``), kept by the store as part of an entry, and carried by list files.

Benign generated pictures only (blindmatch.demo.synthetic); small ones, since a picture's
hot companions are 91 hashed edits."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from alembic.config import Config
from PIL import Image
from sqlalchemy import inspect

from blindmatch.batch import Hashed, _isolated, hash_many
from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.files import DEFAULT_LIMITS
from blindmatch.hashing import hash_bytes, open_image
from blindmatch.hashing.hot import MIN_HOT_SIDE, hot_companions
from blindmatch.lists import MAX_PDQ_HOT, ListEntry, dump_list, parse_list
from blindmatch.protocol.table import MAX_HOT_COMPANIONS
from blindmatch.store import open_store
from blindmatch.store.db import _MIGRATIONS

SMALL = (160, 120)


def _jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _hot_of(data: bytes) -> tuple[str, ...]:
    """What the hot tier makes of the pixels a client decodes from ``data``."""
    return tuple(h.hex for h in hot_companions(np.asarray(open_image(data))))


@pytest.fixture
def store(tmp_path: Path):
    return open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")


def test_the_lists_limit_is_the_tables() -> None:
    assert MAX_PDQ_HOT == MAX_HOT_COMPANIONS


def test_hot_companions_are_hashed_only_when_asked_from_the_decoded_pixels() -> None:
    data = _jpeg(synthetic_photo(5, SMALL))
    # scan's, hash's and a plain lists add's paths do not compute them
    assert hash_bytes(data).pdq_hot == ()
    assert hash_bytes(data, companion=True).pdq_hot == ()
    assert hash_bytes(data, variants=True, keypoints=False).pdq_hot == ()
    h = hash_bytes(data, companion=True, hot=True)
    expected = _hot_of(data)
    assert 1 < len(expected) <= MAX_PDQ_HOT
    assert h.pdq_hot == expected
    assert h.pdq_companion == hash_bytes(data, companion=True).pdq_companion is not None
    assert h.pdq is not None and h.pdq not in h.pdq_hot
    assert hash_bytes(data, variants=True, keypoints=False, hot=True).pdq_hot == expected
    assert "pdq_hot" not in h.to_json()  # hash/scan output is unchanged
    # every hashing of the same file gives the same hashes (two hotlines agree)
    assert hash_bytes(data, hot=True).pdq_hot == expected
    # the list entry takes them as they are
    assert ListEntry("x", pdq=h.pdq, pdq_hot=h.pdq_hot).pdq_hot == expected


def test_a_picture_too_small_for_hot_companions_has_none_and_no_error() -> None:
    data = _jpeg(synthetic_photo(5, (MIN_HOT_SIDE * 2, MIN_HOT_SIDE - 1)))
    h = hash_bytes(data, companion=True, hot=True)
    assert h.pdq is not None and h.pdq_hot == ()


@pytest.mark.parametrize("workers", [1, 2])
def test_hash_many_passes_the_hot_flag_to_its_workers(tmp_path: Path, workers: int) -> None:
    paths = []
    for s in (1, 2):
        paths.append(tmp_path / f"p{s}.jpg")
        synthetic_photo(s, SMALL).save(paths[-1], quality=90)
    listed = list(hash_many([str(tmp_path)], workers=workers, companion=True, hot=True))
    assert all(isinstance(o, Hashed) for o in listed)
    assert [o.hashes.pdq_hot for o in listed] == [  # type: ignore[union-attr]
        _hot_of(p.read_bytes()) for p in paths
    ]
    plain = list(hash_many([str(paths[0])], workers=workers, companion=True))
    assert plain[0].hashes.pdq_hot == ()  # type: ignore[union-attr]
    if workers == 2:  # the one-file pool a crashed batch retries its files in
        retried = _isolated(str(paths[0]), DEFAULT_LIMITS, False, True, True)
        assert isinstance(retried, Hashed)
        assert retried.hashes.pdq_hot == listed[0].hashes.pdq_hot  # type: ignore[union-attr]


def test_store_keeps_hot_hashes_and_counts_them_as_part_of_the_entry(store) -> None:
    pdq, comp = "ab" * 32, "cd" * 32
    hot = ("01" * 32, "02" * 32, "03" * 32)
    bare = ListEntry("e1", pdq=pdq, pdq_companion=comp)
    is_hot = ListEntry("e1", pdq=pdq, pdq_companion=comp, pdq_hot=hot)
    assert store.import_entries("hl", [bare]).added == 1
    # becoming hot is a change, as for any other hash...
    s = store.import_entries("hl", [is_hot])
    assert (s.added, s.changed, s.unchanged) == (0, 1, 0)
    assert list(store.live_entries("hl")) == [is_hot]
    # ...the same again is not...
    s = store.import_entries("hl", [is_hot])
    assert (s.changed, s.unchanged) == (0, 1)
    # ...other hot hashes are, and so is no longer being hot.
    other = ListEntry("e1", pdq=pdq, pdq_companion=comp, pdq_hot=hot[:2])
    assert store.import_entries("hl", [other]).changed == 1
    assert list(store.live_entries("hl")) == [other]
    assert store.import_entries("hl", [bare]).changed == 1
    assert list(store.live_entries("hl")) == [bare]
    assert store.get_list("hl").live_entries == 1


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_and_import_keep_hot_hashes(store, fmt: str) -> None:
    entries = [
        ListEntry("a", pdq="ab" * 32, pdq_companion="cd" * 32, pdq_hot=("ef" * 32, "01" * 32)),
        ListEntry("b", pdq="12" * 32, pdq_hot=tuple(f"{i:064x}" for i in range(MAX_PDQ_HOT))),
        ListEntry("c", pdq="34" * 32),
    ]
    store.import_entries("src", entries)
    exported = dump_list(list(store.live_entries("src")), fmt)
    assert parse_list(exported, fmt).entries == tuple(entries)
    s = store.import_entries("src", parse_list(exported, fmt).entries)
    assert (s.added, s.changed, s.unchanged) == (0, 0, 3)  # a round trip changes nothing
    store.import_entries("copy", parse_list(exported, fmt).entries)
    assert list(store.live_entries("copy")) == entries


def check_hot_migration(url: str) -> None:
    """Migration 0011 on ``url`` (also run on PostgreSQL: tests/integration/postgres):
    a downgrade drops the column and keeps the rows (and their companions), an upgrade
    brings it back empty."""
    store = open_store(url)
    hot = ListEntry("a", pdq="ab" * 32, pdq_companion="cd" * 32, pdq_hot=("ef" * 32,))
    store.import_entries("hl", [hot])
    assert [e.pdq_hot for e in store.live_entries("hl")] == [("ef" * 32,)]
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0010")
    cols = {c["name"] for c in inspect(store.engine).get_columns("entries")}
    assert "pdq_hot" not in cols and {"pdq", "pdq_companion", "source_id"} <= cols
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    assert list(store.live_entries("hl")) == [
        ListEntry("a", pdq="ab" * 32, pdq_companion="cd" * 32)
    ]
    # lists add --hot of the same picture again would fill them in: a change
    s = store.import_entries("hl", [hot])
    assert (s.changed, s.unchanged) == (1, 0)
    store.engine.dispose()


def test_hot_migration_on_sqlite(tmp_path: Path) -> None:
    check_hot_migration(f"sqlite:///{tmp_path / 'm.sqlite'}")


def test_the_test_table_builder_takes_hot_entries(tmp_path: Path) -> None:
    """``build_table_dir`` (Matrix tests and demos): an entry may be a PDQ, (PDQ,
    companions) or (PDQ, companions, hot); every hotline lists them all, so all pass."""
    from blindmatch.integrations.matrix.homeserver import build_table_dir
    from blindmatch.private.trust import SERVER_KEY_FILE
    from blindmatch.protocol.table import ServerSecret

    hot = (b"\x11" * 32, b"\x12" * 32, b"\x13" * 32)
    out = build_table_dir(
        tmp_path / "t",
        {"bare": b"\x01" * 32, "comp": (b"\x02" * 32, (b"\x03" * 32,)),
         "hot": (b"\x04" * 32, (b"\x05" * 32,), hot), "hot-only": (b"\x06" * 32, (), hot[:1])},
    )  # fmt: skip
    secret = ServerSecret.from_bytes((out / SERVER_KEY_FILE).read_bytes())
    got = {e.pdq[:1]: (e.companions, e.hot) for e in secret.entries}
    assert got == {
        b"\x01": ((), ()),
        b"\x02": ((b"\x03" * 32,), ()),
        b"\x04": ((b"\x05" * 32,), hot),
        b"\x06": ((), hot[:1]),
    }
