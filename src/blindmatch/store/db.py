"""The SQL store behind lists, matching and the service.

Every import runs in one transaction: a file with a bad row changes nothing.
Entries are append-only but for tombstones (see ``models.Entry``), and every
change bumps a sequence number, so an index can catch up incrementally.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from blindmatch.errors import ListExists, ListNotFound
from blindmatch.lists import ListEntry, VpdqFrame, validate_list_name, validate_list_text
from blindmatch.lists.model import MAX_DESCRIPTION_LENGTH, MAX_SOURCE_LENGTH, MAX_VERSION_LENGTH
from blindmatch.store.models import ApiKey, Entry, HashList, ImportRecord, KeypointRecord, Meta

_MIGRATIONS = Path(__file__).parent / "migrations"
_SEQ_KEY = "change_seq"
_REBUILD_KEY = "rebuild_seq"
DEFAULT_PDQ_THRESHOLD = 31  # the PDQ authors' and python-threatexchange's match radius
_SMALL_BATCH = 20_000  # below this, look up only the batch's ids instead of the whole list


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ListInfo:
    id: int
    name: str
    source: str
    version: str
    description: str
    pdq_threshold: int
    live_entries: int
    removed_entries: int
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "source": self.source,
            "version": self.version,
            "description": self.description,
            "pdq_threshold": self.pdq_threshold,
            "entries": self.live_entries,
            "removed": self.removed_entries,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class EntryInfo:
    id: int
    list_id: int
    list_name: str
    source_id: str
    category: str | None
    pdq: str | None
    md5: str | None
    sha256: str | None


@dataclass(frozen=True, slots=True)
class ImportSummary:
    list_name: str
    added: int
    changed: int
    removed: int
    unchanged: int

    def to_json(self) -> dict[str, object]:
        return {
            "list": self.list_name,
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "unchanged": self.unchanged,
        }


@dataclass(frozen=True, slots=True)
class PdqChanges:
    """PDQ rows added and ids removed after a sequence number, up to ``seq``.

    ``full`` means the caller's index must be rebuilt from ``added_*`` alone
    (a list was deleted since), and then ``added_*`` holds every live PDQ entry.
    """

    seq: int
    full: bool
    added_ids: list[int]
    added_pdq: list[str]
    removed_ids: list[int]


@dataclass(frozen=True, slots=True)
class KeypointChanges:
    """Keypoint records added and entry ids removed after a sequence number, up
    to ``seq``; ``full`` as in :class:`PdqChanges`."""

    seq: int
    full: bool
    added_ids: list[int]
    added_features: list[bytes]
    removed_ids: list[int]


def _vpdq_json(frames: Sequence[VpdqFrame] | None) -> str | None:
    if not frames:
        return None
    return json.dumps([[f.pdq, f.quality, f.timestamp] for f in frames], separators=(",", ":"))


def _vpdq_frames(text: str | None) -> tuple[VpdqFrame, ...] | None:
    if not text:
        return None
    return tuple(VpdqFrame(p, int(q), float(t)) for p, q, t in json.loads(text))


def _fields(e: ListEntry) -> tuple[Any, ...]:
    """The stored fields of an entry, in ``_live_rows`` order after the id."""
    return (e.pdq, e.md5, e.sha256, _vpdq_json(e.vpdq), e.category)


def _to_entry(row: Entry) -> ListEntry:
    return ListEntry(
        source_id=row.source_id,
        pdq=row.pdq,
        md5=row.md5,
        sha256=row.sha256,
        vpdq=_vpdq_frames(row.vpdq),
        category=row.category,
    )


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)

    # -- lists -------------------------------------------------------------
    def create_list(
        self,
        name: str,
        *,
        source: str = "",
        version: str = "",
        description: str = "",
        pdq_threshold: int = DEFAULT_PDQ_THRESHOLD,
    ) -> ListInfo:
        _check_name(name)
        _check_text(source, version, description)
        if not 0 <= pdq_threshold <= 128:
            raise ValueError("pdq_threshold must be between 0 and 128")
        with self._session.begin() as s:
            if s.scalar(select(HashList.id).where(HashList.name == name)) is not None:
                raise ListExists(f"list {name!r} already exists")
            _add_list(s, name, source, version, description, pdq_threshold)
        return self.get_list(name)

    def get_list(self, name: str) -> ListInfo:
        with self._session() as s:
            return self._info(s, _list_row(s, name))

    def lists(self) -> list[ListInfo]:
        with self._session() as s:
            return [self._info(s, hl) for hl in s.scalars(select(HashList).order_by(HashList.name))]

    def thresholds(self) -> dict[str, int]:
        """Every list's PDQ radius, by name (cheap: no entry counts)."""
        with self._session() as s:
            rows = s.execute(select(HashList.name, HashList.pdq_threshold)).all()
            return {name: int(t) for name, t in rows}

    def _info(self, s: Session, hl: HashList) -> ListInfo:
        live = s.scalar(
            select(func.count()).where(Entry.list_id == hl.id, Entry.removed_seq.is_(None))
        )
        gone = s.scalar(
            select(func.count()).where(Entry.list_id == hl.id, Entry.removed_seq.is_not(None))
        )
        return ListInfo(
            hl.id,
            hl.name,
            hl.source,
            hl.version,
            hl.description,
            hl.pdq_threshold,
            int(live or 0),
            int(gone or 0),
            hl.created_at,
            hl.updated_at,
        )

    def remove_list(self, name: str) -> None:
        with self._session.begin() as s:
            hl = _list_row(s, name)
            # Its entries go with it, so indexes cannot catch up row by row:
            # record that everything before this point must be rebuilt.
            seq = self._next_seq(s)
            _set_meta(s, _REBUILD_KEY, str(seq))
            s.delete(hl)

    def set_threshold(self, name: str, pdq_threshold: int) -> ListInfo:
        if not 0 <= pdq_threshold <= 128:
            raise ValueError("pdq_threshold must be between 0 and 128")
        with self._session.begin() as s:
            hl = _list_row(s, name)
            hl.pdq_threshold = pdq_threshold
            hl.updated_at = _now()
        return self.get_list(name)

    # -- entries -----------------------------------------------------------
    def import_entries(
        self,
        name: str,
        entries: Iterable[ListEntry],
        *,
        create: bool = True,
        source: str | None = None,
        version: str | None = None,
        file_sha256: str | None = None,
        format: str = "",
        keypoints: Mapping[str, bytes] | None = None,
    ) -> ImportSummary:
        """Apply entries (adds, changes, tombstones) to a list in one transaction.

        Re-applying the same entries changes nothing and reports them unchanged.
        ``keypoints`` maps source ids to keypoint records (``lists add`` from
        images); they are stored with the rows this call adds.
        """
        added = changed = removed = unchanged = 0
        _check_text(source, version, None)
        with self._session.begin() as s:
            hl = s.scalar(select(HashList).where(HashList.name == name))
            now = _now()
            if hl is None:
                if not create:
                    raise ListNotFound(f"no list named {name!r}")
                _check_name(name)
                hl = _add_list(s, name, source or "", version or "", "", DEFAULT_PDQ_THRESHOLD)
            batch: dict[str, ListEntry] = {}
            for e in entries:  # within one batch the last word on an id wins
                batch.pop(e.source_id, None)
                batch[e.source_id] = e
            live = self._live_rows(s, hl.id, list(batch))
            seq: int | None = None
            tombstone: list[int] = []
            new_rows: list[dict[str, Any]] = []
            for e in batch.values():
                row = live.get(e.source_id)
                if e.removed or (row is not None and row[1:] != _fields(e)):
                    if row is None:
                        unchanged += 1
                        continue
                    tombstone.append(row[0])
                    if e.removed:
                        removed += 1
                        continue
                    changed += 1
                elif row is not None:
                    unchanged += 1
                    continue
                else:
                    added += 1
                pdq, md5, sha256, vpdq, category = _fields(e)
                new_rows.append(
                    {
                        "list_id": hl.id,
                        "source_id": e.source_id,
                        "pdq": pdq,
                        "md5": md5,
                        "sha256": sha256,
                        "vpdq": vpdq,
                        "category": category,
                        "added_at": now,
                    }
                )
            if tombstone or new_rows:
                seq = self._next_seq(s)
                for chunk in _chunks(tombstone, 500):
                    s.execute(
                        update(Entry)
                        .where(Entry.id.in_(chunk))
                        .values(removed_seq=seq, removed_at=now)
                    )
                for i in range(0, len(new_rows), 50_000):
                    rows = new_rows[i : i + 50_000]
                    for r in rows:
                        r["added_seq"] = seq
                    s.execute(insert(Entry), rows)
                if keypoints:
                    self._add_keypoints(s, hl.id, seq, keypoints)
            if source is not None:
                hl.source = source
            if version is not None:
                hl.version = version
            if seq is not None or source is not None or version is not None:
                hl.updated_at = now
            if file_sha256 is not None:
                s.add(
                    ImportRecord(
                        list_id=hl.id,
                        file_sha256=file_sha256,
                        format=format,
                        added=added,
                        changed=changed,
                        removed=removed,
                        unchanged=unchanged,
                        imported_at=now,
                    )
                )
        return ImportSummary(name, added, changed, removed, unchanged)

    def _add_keypoints(
        self, s: Session, list_id: int, seq: int, keypoints: Mapping[str, bytes]
    ) -> None:
        wanted = list(keypoints)
        for i in range(0, len(wanted), 500):
            q = select(Entry.id, Entry.source_id).where(
                Entry.list_id == list_id,
                Entry.added_seq == seq,
                Entry.source_id.in_(wanted[i : i + 500]),
            )
            rows = [{"entry_id": eid, "data": keypoints[sid]} for eid, sid in s.execute(q)]
            if rows:
                s.execute(insert(KeypointRecord), rows)

    def _live_rows(
        self, s: Session, list_id: int, source_ids: list[str]
    ) -> dict[str, tuple[Any, ...]]:
        """Live rows of a list as ``source_id -> (id, pdq, md5, sha256, vpdq, category)``;
        only those named in ``source_ids`` when the batch is small."""
        cols = (Entry.source_id, Entry.id, Entry.pdq, Entry.md5, Entry.sha256, Entry.vpdq,
                Entry.category)  # fmt: skip
        base = select(*cols).where(Entry.list_id == list_id, Entry.removed_seq.is_(None))
        if len(source_ids) > _SMALL_BATCH:
            return {r[0]: tuple(r[1:]) for r in s.execute(base)}
        out: dict[str, tuple[Any, ...]] = {}
        for i in range(0, len(source_ids), 500):
            q = base.where(Entry.source_id.in_(source_ids[i : i + 500]))
            out.update({r[0]: tuple(r[1:]) for r in s.execute(q)})
        return out

    def live_entries(self, name: str) -> Iterator[ListEntry]:
        info = self.get_list(name)
        with self._session() as s:
            q = (
                select(Entry)
                .where(Entry.list_id == info.id, Entry.removed_seq.is_(None))
                .order_by(Entry.id)
                .execution_options(yield_per=10_000)
            )
            for row in s.scalars(q):
                yield _to_entry(row)

    def entries_by_ids(self, ids: Iterable[int]) -> dict[int, EntryInfo]:
        wanted = sorted(set(int(i) for i in ids))
        out: dict[int, EntryInfo] = {}
        with self._session() as s:
            for chunk in _chunks(wanted, 500):
                q = (
                    select(Entry, HashList.name)
                    .join(HashList, HashList.id == Entry.list_id)
                    .where(Entry.id.in_(chunk), Entry.removed_seq.is_(None))
                )
                for row, list_name in s.execute(q):
                    out[row.id] = _entry_info(row, list_name)
        return out

    def lookup_exact(self, md5: str | None, sha256: str | None) -> list[tuple[str, EntryInfo]]:
        """Live entries whose MD5 or SHA-256 equals the given one, with the hash type."""
        out: list[tuple[str, EntryInfo]] = []
        with self._session() as s:
            for kind, col, value in (("md5", Entry.md5, md5), ("sha256", Entry.sha256, sha256)):
                if not value:
                    continue
                q = (
                    select(Entry, HashList.name)
                    .join(HashList, HashList.id == Entry.list_id)
                    .where(col == value, Entry.removed_seq.is_(None))
                )
                out.extend((kind, _entry_info(row, ln)) for row, ln in s.execute(q))
        return out

    def vpdq_entries(self) -> list[tuple[EntryInfo, tuple[VpdqFrame, ...]]]:
        with self._session() as s:
            q = (
                select(Entry, HashList.name)
                .join(HashList, HashList.id == Entry.list_id)
                .where(Entry.vpdq.is_not(None), Entry.removed_seq.is_(None))
            )
            return [(_entry_info(r, ln), _vpdq_frames(r.vpdq) or ()) for r, ln in s.execute(q)]

    def current_seq(self) -> int:
        with self._session() as s:
            v = s.get(Meta, _SEQ_KEY)
            return int(v.value) if v else 0

    def pdq_changes(self, since: int) -> PdqChanges:
        """PDQ entries added (and still live) and removed after sequence ``since``."""
        seq, full, ids, values, removed = self._changes(since, keypoints=False)
        return PdqChanges(seq, full, ids, values, removed)

    def keypoint_changes(self, since: int) -> KeypointChanges:
        """Keypoint records of entries added (and still live) and removed after ``since``."""
        seq, full, ids, values, removed = self._changes(since, keypoints=True)
        return KeypointChanges(seq, full, ids, values, removed)

    def _changes(
        self, since: int, *, keypoints: bool
    ) -> tuple[int, bool, list[int], list[Any], list[int]]:
        with self._session() as s:
            v = s.get(Meta, _SEQ_KEY)
            seq = int(v.value) if v else 0
            rb = s.get(Meta, _REBUILD_KEY)
            full = since < 0 or (rb is not None and int(rb.value) > since)
            if full:
                since = -1
            value: Any = KeypointRecord.data if keypoints else Entry.pdq
            added_ids: list[int] = []
            added: list[Any] = []
            # Only the sequence range goes to SQL, so the planner uses that
            # index; "still live" and "has a PDQ" would tempt it into a scan.
            q = select(Entry.id, value, Entry.removed_seq)
            if keypoints:
                q = q.join(KeypointRecord, KeypointRecord.entry_id == Entry.id)
            q = (
                q.where(Entry.added_seq > since, Entry.added_seq <= seq)
                .order_by(Entry.id)
                .execution_options(yield_per=50_000)
            )
            for i, p, gone in s.execute(q):
                if p is not None and gone is None:
                    added_ids.append(int(i))
                    added.append(p)
            gone_q = select(Entry.id, Entry.added_seq, value)
            if keypoints:
                gone_q = gone_q.join(KeypointRecord, KeypointRecord.entry_id == Entry.id)
            gone_q = gone_q.where(Entry.removed_seq > since, Entry.removed_seq <= seq)
            removed = [int(i) for i, a, p in s.execute(gone_q) if a <= since and p is not None]
        return seq, full, added_ids, added, [] if full else removed

    def _next_seq(self, s: Session) -> int:
        v = s.get(Meta, _SEQ_KEY, with_for_update=True)
        if v is None:
            v = Meta(key=_SEQ_KEY, value="0")
            s.add(v)
        nxt = int(v.value) + 1
        v.value = str(nxt)
        s.flush()
        return nxt

    # -- API keys ----------------------------------------------------------
    def create_api_key(self, name: str, scope: str) -> str:
        if scope not in ("read", "write"):
            raise ValueError("scope must be 'read' or 'write'")
        key = "bm_" + secrets.token_urlsafe(32)
        with self._session.begin() as s:
            s.add(ApiKey(name=name, key_hash=hash_api_key(key), scope=scope, created_at=_now()))
        return key

    def api_key_scope(self, key: str) -> str | None:
        with self._session() as s:
            row = s.scalar(
                select(ApiKey).where(
                    ApiKey.key_hash == hash_api_key(key), ApiKey.revoked_at.is_(None)
                )
            )
            return row.scope if row else None

    def revoke_api_key(self, name: str) -> int:
        with self._session.begin() as s:
            res = s.execute(
                update(ApiKey)
                .where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
            return int(getattr(res, "rowcount", 0) or 0)


def _list_row(s: Session, name: str) -> HashList:
    hl = s.scalar(select(HashList).where(HashList.name == name))
    if hl is None:
        raise ListNotFound(f"no list named {name!r}")
    return hl


def _add_list(
    s: Session, name: str, source: str, version: str, description: str, pdq_threshold: int
) -> HashList:
    now = _now()
    hl = HashList(
        name=name,
        source=source,
        version=version,
        description=description,
        pdq_threshold=pdq_threshold,
        created_at=now,
        updated_at=now,
    )
    s.add(hl)
    s.flush()
    return hl


def _set_meta(s: Session, key: str, value: str) -> None:
    row = s.get(Meta, key)
    if row is None:
        s.add(Meta(key=key, value=value))
    else:
        row.value = value


def _entry_info(row: Entry, list_name: str) -> EntryInfo:
    return EntryInfo(
        row.id, row.list_id, list_name, row.source_id, row.category, row.pdq, row.md5, row.sha256
    )


def _chunks(xs: list[int], n: int) -> Iterator[list[int]]:
    for i in range(0, len(xs), n):
        yield xs[i : i + n]


def _check_name(name: str) -> None:
    validate_list_name(name)  # raises InvalidField (a ValueError) naming the field


def _check_text(source: str | None, version: str | None, description: str | None) -> None:
    """Refuse over-long or hiding text in a list's fields before any write."""
    for field, value, limit in (
        ("source", source, MAX_SOURCE_LENGTH),
        ("version", version, MAX_VERSION_LENGTH),
        ("description", description, MAX_DESCRIPTION_LENGTH),
    ):
        if value is not None:
            validate_list_text(field, value, limit, multiline=field == "description")


def open_store(url: str) -> Store:
    """Open (and create or migrate) the database at ``url``."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.close()

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return Store(engine)
