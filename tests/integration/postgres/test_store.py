"""The store on a real PostgreSQL server: migrations against the models, imports,
tombstones, keypoints, change sequence numbers and matching through the store."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.hashing import hash_bytes, open_image
from blindmatch.hashing.keypoints import listed_features
from blindmatch.lists import ListEntry, parse_list
from blindmatch.matching import Matcher
from blindmatch.store import open_store
from blindmatch.store.db import _MIGRATIONS
from blindmatch.store.models import Base, Entry, KeypointRecord
from tests.unit.test_companion_store import check_companion_migration
from tests.unit.test_hot_store import check_hot_migration
from tests.unit.test_store_matching import _flip, _hex


def _alembic(conn) -> Config:  # type: ignore[no-untyped-def]
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def test_migrations_build_exactly_the_models_and_downgrade_to_nothing(pg_url: str) -> None:
    engine = open_store(pg_url).engine
    assert engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    with engine.begin() as conn:
        command.downgrade(_alembic(conn), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    with engine.begin() as conn:  # and back up again, from empty
        command.upgrade(_alembic(conn), "head")
    assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)
    engine.dispose()


def test_companion_column_migrates_both_ways_with_rows(pg_url: str) -> None:
    check_companion_migration(pg_url)


def test_hot_column_migrates_both_ways_with_rows(pg_url: str) -> None:
    check_hot_migration(pg_url)


def test_csv_and_json_imports_are_atomic_idempotent_and_tombstoned(
    pg_url: str, tmp_path: Path
) -> None:
    store = open_store(pg_url)
    rng = random.Random(11)
    pdqs = [_hex(rng) for _ in range(30)]
    csv = tmp_path / "l.csv"
    csv.write_text("id,pdq,md5,sha256,category,removed\n"
                   + "".join(f"e{i},{p},,,A1,\n" for i, p in enumerate(pdqs)))  # fmt: skip
    parsed = parse_list(csv.read_bytes(), filename=csv.name)
    first = store.import_entries("hl", parsed.entries, file_sha256="a" * 64, format=parsed.format)
    again = store.import_entries("hl", parse_list(csv.read_bytes(), filename=csv.name).entries)
    assert (first.added, again.added, again.unchanged) == (30, 0, 30)
    assert store.current_seq() == 1
    info = store.get_list("hl")
    assert info.live_entries == 30
    assert info.created_at.tzinfo is not None
    assert abs(datetime.now(UTC) - info.updated_at) < timedelta(minutes=1)

    jl = tmp_path / "l.jsonl"
    jl.write_text('{"id": "e0", "removed": true}\n'
                  f'{{"id": "e1", "pdq": "{pdqs[2]}", "category": "A1"}}\n'
                  '{"id": "new", "md5": "' + "ab" * 16 + '"}\n')  # fmt: skip
    s = store.import_entries("hl", parse_list(jl.read_bytes(), filename=jl.name).entries)
    assert (s.added, s.changed, s.removed) == (1, 1, 1)
    assert store.current_seq() == 2
    assert store.get_list("hl").live_entries == 30 and store.get_list("hl").removed_entries == 2
    ch = store.pdq_changes(1)
    assert (ch.seq, ch.full, len(ch.added_ids), len(ch.removed_ids)) == (2, False, 1, 2)
    assert ch.added_pdq == [pdqs[2]]
    assert store.pdq_changes(2).added_ids == [] and store.pdq_changes(2).removed_ids == []
    full = store.pdq_changes(-1)
    assert full.full and len(full.added_ids) == 29  # e0 gone, "new" has no PDQ
    [(kind, hit)] = store.lookup_exact("ab" * 16, None)
    assert (kind, hit.source_id, hit.list_name) == ("md5", "new", "hl")

    # A write that fails after the entries went in (a keypoint record the driver cannot
    # send) rolls back the whole import: entries, sequence number and all.
    with pytest.raises(TypeError):
        store.import_entries("hl", [ListEntry(source_id="x1", pdq=pdqs[0])],
                             keypoints={"x1": object()})  # type: ignore[dict-item]  # fmt: skip
    assert store.current_seq() == 2 and store.get_list("hl").live_entries == 30
    assert "x1" not in {e.source_id for e in store.entries_by_ids(range(1, 1000)).values()}

    store.remove_list("hl")  # cascades to its entries; indexes must rebuild
    assert store.pdq_changes(2).full and store.pdq_changes(2).added_ids == []
    with store.engine.connect() as conn:
        assert conn.execute(select(Entry.id)).first() is None
    store.engine.dispose()


def test_ids_and_sequence_numbers_count_up_across_transactions(pg_url: str) -> None:
    store = open_store(pg_url)
    rng = random.Random(12)
    seen: list[int] = []
    for n in range(1, 4):
        store.import_entries("hl", [ListEntry(source_id=f"s{n}-{i}", pdq=_hex(rng))
                                    for i in range(5)])  # fmt: skip
        assert store.current_seq() == n
        ch = store.pdq_changes(n - 1)
        assert ch.seq == n and len(ch.added_ids) == 5
        assert not set(ch.added_ids) & set(seen)
        seen += ch.added_ids
    assert seen == sorted(seen)
    store.engine.dispose()


def test_a_matcher_finds_a_benign_synthetic_picture_through_the_store(
    pg_url: str, tmp_path: Path
) -> None:
    store = open_store(pg_url)
    photo = synthetic_photo(61, (640, 480))
    listed = io.BytesIO()
    photo.save(listed, "JPEG", quality=92)
    h = hash_bytes(listed.getvalue())
    rng = random.Random(13)
    others = [ListEntry(source_id=f"o{i}", pdq=_hex(rng)) for i in range(200)]
    pic = ListEntry(source_id="pic", pdq=h.pdq, md5=h.md5, category="A1")
    store.import_entries("hl", [pic, *others])
    m = Matcher(store, tmp_path / "idx")
    edited = io.BytesIO()
    photo.resize((480, 360)).save(edited, "JPEG", quality=60)  # resized and re-compressed
    got = m.match(hash_bytes(edited.getvalue(), variants=True))
    assert [(x.list, x.entry_id, x.hash_type) for x in got] == [("hl", "pic", "pdq")]
    assert {x.hash_type for x in m.match(h)} == {"pdq", "md5"}
    store.import_entries("hl", [ListEntry(source_id="pic", removed=True)])
    assert m.refresh() > 0
    assert m.match(h) == []
    store.engine.dispose()


def test_keypoint_records_round_trip_and_match_a_crop(pg_url: str, tmp_path: Path) -> None:
    store = open_store(pg_url)
    photo = synthetic_photo(62, (640, 480))
    buf = io.BytesIO()
    photo.crop((64, 0, 640, 480)).save(buf, "PNG")
    query = hash_bytes(buf.getvalue(), variants=True)
    pixels = np.asarray(open_image(buf.getvalue()))
    feats = listed_features(np.asarray(photo)).to_bytes()
    assert len(feats) > 2000  # stored out of line (TOAST) by PostgreSQL
    decoy = _flip(hash_bytes(buf.getvalue()).pdq, 120, random.Random(0))
    store.import_entries("hl", [ListEntry(source_id="k1", pdq=decoy)], keypoints={"k1": feats})
    with store.engine.connect() as conn:
        [(data,)] = conn.execute(select(KeypointRecord.data)).all()
    assert bytes(data) == feats
    ch = store.keypoint_changes(0)
    assert ch.seq == 1 and [bytes(f) for f in ch.added_features] == [feats]
    matcher = Matcher(store, tmp_path / "index")
    (m,) = matcher.match(query, image=lambda: pixels)
    assert (m.entry_id, m.hash_type) == ("k1", "keypoints")
    store.import_entries("hl", [ListEntry(source_id="k1", removed=True)])
    assert store.keypoint_changes(1).removed_ids == ch.added_ids
    matcher.refresh()
    assert matcher.match(query, image=lambda: pixels) == []
    store.engine.dispose()


def test_api_keys(pg_url: str) -> None:
    store = open_store(pg_url)
    key = store.create_api_key("m", "read")
    assert store.api_key_scope(key) == "read"
    assert store.revoke_api_key("m") == 1 and store.api_key_scope(key) is None
    store.engine.dispose()


def test_open_store_twice_is_a_no_op_migration(pg_url: str) -> None:
    open_store(pg_url).engine.dispose()
    engine = create_engine(pg_url)
    before = inspect(engine).get_table_names()
    open_store(pg_url).engine.dispose()
    assert inspect(engine).get_table_names() == before
    engine.dispose()
