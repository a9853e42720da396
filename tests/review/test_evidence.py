"""Evidence files are encrypted at rest, refuse another key, and are purged after their
retention period (but never while their report is still in the outbox)."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from blindmatch.errors import EvidenceError, EvidenceKeyMismatch
from blindmatch.review.evidence import EvidenceStore, key_id, load_or_create_key
from blindmatch.store.db import open_store
from blindmatch.store.models import EvidenceRecord
from tests.ncmec.helpers import DECIDED, jpeg


class Clock:
    def __init__(self) -> None:
        self.t = DECIDED

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.t


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    return open_store(f"sqlite:///{tmp_path / 'db.sqlite'}").engine


def test_encrypted_at_rest_and_key_file_is_0600(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = jpeg(7)
    store = EvidenceStore(engine, tmp_path / "home" / "evidence.key", retention_days=90)
    eid = store.put("BM-CASE", "a.jpg", data, True)
    assert stat.S_IMODE((tmp_path / "home" / "evidence.key").stat().st_mode) == 0o600
    with engine.connect() as c:
        row = c.execute(select(EvidenceRecord).where(EvidenceRecord.id == eid)).one()
    assert row.ciphertext is not None and data not in row.ciphertext
    assert data[:64] not in row.ciphertext  # not even the JPEG header
    raw = Path(str(engine.url.database)).read_bytes()
    assert data[16:80] not in raw  # nor anywhere in the database file
    assert store.read(eid) == data
    [rec] = store.records("BM-CASE")
    assert (
        rec.size == len(data)
        and rec.viewed_by_reviewer
        and rec.expires_at - rec.created_at == timedelta(days=90)
    )


def test_wrong_key_is_refused(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    eid = EvidenceStore(engine, tmp_path / "k1", retention_days=90).put(
        "C", "a.jpg", jpeg(1), False
    )
    other = EvidenceStore(engine, tmp_path / "k2", retention_days=90)
    with pytest.raises(EvidenceKeyMismatch, match="was encrypted with key"):
        other.read(eid)
    # a row relabelled with the other key's id still does not decrypt under it
    with engine.begin() as c:
        c.execute(
            EvidenceRecord.__table__.update()
            .where(EvidenceRecord.id == eid)
            .values(key_id=key_id(load_or_create_key(tmp_path / "k2")))
        )
    with pytest.raises(EvidenceKeyMismatch, match="does not decrypt"):
        other.read(eid)


def test_tampered_row_is_refused(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = EvidenceStore(engine, tmp_path / "k", retention_days=90)
    a = store.put("C", "a.jpg", jpeg(1), False)
    b = store.put("C", "b.jpg", jpeg(2), False)
    with engine.begin() as c:  # move b's ciphertext into a's row
        row = c.execute(
            select(EvidenceRecord.nonce, EvidenceRecord.ciphertext).where(EvidenceRecord.id == b)
        ).one()
        c.execute(
            EvidenceRecord.__table__.update()
            .where(EvidenceRecord.id == a)
            .values(nonce=row.nonce, ciphertext=row.ciphertext)
        )
    with pytest.raises(EvidenceKeyMismatch):
        store.read(a)


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "k"
    load_or_create_key(p)
    p.chmod(0o644)
    with pytest.raises(EvidenceError):
        load_or_create_key(p)


def test_purge_after_retention(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    store = EvidenceStore(engine, tmp_path / "k", retention_days=30, clock=clock)
    old = store.put("C1", "a.jpg", jpeg(1), False)
    clock.t += timedelta(days=20)
    young = store.put("C2", "b.jpg", jpeg(2), False)
    clock.t += timedelta(days=11)  # old is 31 days old, young 11
    assert store.purge() == [old]
    with pytest.raises(EvidenceError, match="purged"):
        store.read(old)
    assert store.read(young) == jpeg(2)
    assert store.purge() == []  # nothing left to purge
    [rec] = store.records("C1")
    assert rec.purged_at == clock.t
