"""The SQL store behind lists, matching and the service.

A file is parsed whole before anything is written: a file with a bad row changes
nothing. Entries are append-only but for tombstones (see ``models.Entry``), and
every change bumps a sequence number, so an index can catch up incrementally.

Writers take the store's write lock when their transaction *starts*, before they
read anything they decide on (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a
transaction-scoped advisory lock). So two imports never both see an id as absent
and add it twice (a unique index on live ``(list, source id)`` backs this up), and
sequence numbers are handed out in commit order: a reader that sees sequence
number ``n`` sees every change numbered ``n`` or less. A large import commits in
chunks of :data:`IMPORT_CHUNK` entries, one transaction (and one sequence number)
each, so no writer holds the lock for long; a writer that still waits longer than
the lock timeout gets :class:`~blindmatch.errors.DatabaseBusy`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from blindmatch.errors import DatabaseBusy, ListExists, ListNotFound
from blindmatch.lists import ListEntry, VpdqFrame, validate_list_name, validate_list_text
from blindmatch.lists.model import MAX_DESCRIPTION_LENGTH, MAX_SOURCE_LENGTH, MAX_VERSION_LENGTH
from blindmatch.store.errors import database_error
from blindmatch.store.models import ApiKey, Entry, HashList, ImportRecord, KeypointRecord, Meta

_MIGRATIONS = Path(__file__).parent / "migrations"
_SEQ_KEY = "change_seq"
_REBUILD_KEY = "rebuild_seq"
DEFAULT_PDQ_THRESHOLD = 31  # the PDQ authors' and python-threatexchange's match radius
_SMALL_BATCH = 20_000  # below this, look up only the batch's ids instead of the whole list

# How long a writer waits for another writer's lock before DatabaseBusy (SQLite's
# busy_timeout, PostgreSQL's lock_timeout for the store's writes). It must outlast the
# longest lock a writer holds: one chunk of an import (see docs/architecture.md).
LOCK_TIMEOUT_SECONDS = 30.0
# Entries per import transaction: each chunk holds the write lock for about a second
# at most on a small machine (200k entries: 10 chunks; measured in the notes).
IMPORT_CHUNK = 20_000
# SQLite has no queue for its lock: a waiting writer polls (every 100 ms once it has
# waited a while). Between two chunks an import steps aside this long, so a waiting
# writer gets in rather than starving behind a long import. PostgreSQL queues waiters.
_SQLITE_CHUNK_PAUSE = 0.05
# The key of the PostgreSQL advisory lock every store write takes ("bmstore\0").
_PG_WRITE_LOCK = 0x626D73746F726500
_TX_MODE = "blindmatch_tx"  # execution option: "write" (takes the lock) or "read"


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


def _hot_text(hot: tuple[str, ...]) -> str | None:
    """Hot companion hashes as stored: hex separated by spaces, in order (None: not hot)."""
    return " ".join(hot) if hot else None


def _hot_hashes(text: str | None) -> tuple[str, ...]:
    return tuple(text.split()) if text else ()


def _fields(e: ListEntry) -> tuple[Any, ...]:
    """The stored fields of an entry, in ``_live_rows`` order after the id. An entry that
    gains, loses or changes its companion hash or its hot companion hashes has changed, as
    for any other hash."""
    return (e.pdq, e.md5, e.sha256, _vpdq_json(e.vpdq), e.category, e.pdq_companion,
            _hot_text(e.pdq_hot))  # fmt: skip


def _to_entry(row: Entry) -> ListEntry:
    return ListEntry(
        source_id=row.source_id,
        pdq=row.pdq,
        md5=row.md5,
        sha256=row.sha256,
        vpdq=_vpdq_frames(row.vpdq),
        category=row.category,
        pdq_companion=row.pdq_companion,
        pdq_hot=_hot_hashes(row.pdq_hot),
    )


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@contextmanager
def _busy_as_error() -> Iterator[None]:
    """A lock wait that timed out surfaces as DatabaseBusy (a coded error); any
    other database error passes through unchanged."""
    try:
        yield
    except SQLAlchemyError as e:
        err = database_error(e)
        if isinstance(err, DatabaseBusy):
            raise err from e
        raise


def _take_write_lock(conn: Connection, lock_timeout: float) -> None:
    """Hold the store's write lock from the start of ``conn``'s transaction.

    SQLite: the ``begin`` hook of :func:`open_store` ran ``BEGIN IMMEDIATE`` when the
    transaction began (waiting up to the busy timeout). PostgreSQL: a transaction-scoped
    advisory lock, waited for at most ``lock_timeout``; under READ COMMITTED every
    statement after it sees what the previous holder committed."""
    if conn.dialect.name == "postgresql":
        ms = f"{max(1, round(lock_timeout * 1000))}ms"
        conn.execute(select(func.set_config("lock_timeout", ms, True)))
        conn.execute(select(func.pg_advisory_xact_lock(_PG_WRITE_LOCK)))


@contextmanager
def write_transaction(engine: Engine, lock_timeout: float | None = None) -> Iterator[Session]:
    """A session whose transaction holds the store's write lock from its start (SQLite
    ``BEGIN IMMEDIATE`` on an engine from :func:`open_store`, a PostgreSQL advisory lock):
    for writers outside :class:`Store` that read before they write and must not interleave
    (the audit log hands out dense sequence numbers). Commits on success."""
    timeout = LOCK_TIMEOUT_SECONDS if lock_timeout is None else lock_timeout
    maker = sessionmaker(engine.execution_options(**{_TX_MODE: "write"}), expire_on_commit=False)
    with _busy_as_error(), maker.begin() as s:
        _take_write_lock(s.connection(), timeout)
        yield s


class Store:
    def __init__(self, engine: Engine, *, lock_timeout: float | None = None) -> None:
        self.engine = engine
        self.lock_timeout = LOCK_TIMEOUT_SECONDS if lock_timeout is None else lock_timeout
        self._sqlite = engine.dialect.name == "sqlite"
        read = engine.execution_options(**{_TX_MODE: "read"})
        write = engine.execution_options(**{_TX_MODE: "write"})
        self._read_session = sessionmaker(read, expire_on_commit=False)
        self._write_session = sessionmaker(write, expire_on_commit=False)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """A read-only session: one consistent snapshot."""
        with _busy_as_error(), self._read_session() as s:
            yield s

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        """A write transaction holding the store's write lock from its start."""
        with _busy_as_error(), self._write_session.begin() as s:
            _take_write_lock(s.connection(), self.lock_timeout)
            yield s

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
        with self._writing() as s:
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
        with self._writing() as s:
            hl = _list_row(s, name)
            # Its entries go with it, so indexes cannot catch up row by row:
            # record that everything before this point must be rebuilt.
            seq = self._next_seq(s)
            _set_meta(s, _REBUILD_KEY, str(seq))
            s.delete(hl)

    def set_threshold(self, name: str, pdq_threshold: int) -> ListInfo:
        if not 0 <= pdq_threshold <= 128:
            raise ValueError("pdq_threshold must be between 0 and 128")
        with self._writing() as s:
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
        """Apply entries (adds, changes, tombstones) to a list.

        ``entries`` is read whole before anything is written. Up to
        :data:`IMPORT_CHUNK` entries go in one transaction, which takes the write
        lock first and only then reads the list's live rows and the sequence number;
        a larger import is several such transactions (each atomic, with its own
        sequence number), the import record and the list's source and version going
        with the last. If one fails, the chunks before it stay applied: importing the
        same entries again completes the import, as re-applying entries changes
        nothing and reports them unchanged. ``keypoints`` maps source ids to keypoint
        records (``lists add`` from images); they are stored with the rows this call
        adds.
        """
        _check_text(source, version, None)
        batch: dict[str, ListEntry] = {}
        for e in entries:  # within one batch the last word on an id wins
            batch.pop(e.source_id, None)
            batch[e.source_id] = e
        items = list(batch.values())
        chunks = [items[i : i + IMPORT_CHUNK] for i in range(0, len(items), IMPORT_CHUNK)]
        totals = [0, 0, 0, 0]  # added, changed, removed, unchanged
        for n, chunk in enumerate(chunks or [[]]):
            last = n == max(len(chunks), 1) - 1
            if n and self._sqlite:
                time.sleep(_SQLITE_CHUNK_PAUSE)  # let a waiting writer in
            with self._writing() as s:
                now = _now()
                hl = s.scalar(select(HashList).where(HashList.name == name))
                if hl is None:
                    if n:
                        raise ListNotFound(f"list {name!r} was removed during the import")
                    if not create:
                        raise ListNotFound(f"no list named {name!r}")
                    _check_name(name)
                    # source and version are set with the last chunk, as for a known list
                    hl = _add_list(s, name, "", "", "", DEFAULT_PDQ_THRESHOLD)
                counts = self._apply(s, hl, chunk, now, keypoints)
                totals = [t + c for t, c in zip(totals, counts, strict=True)]
                if not last:
                    continue
                if source is not None:
                    hl.source = source
                if version is not None:
                    hl.version = version
                if source is not None or version is not None:
                    hl.updated_at = now
                if file_sha256 is not None:
                    added, changed, removed, unchanged = totals
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
        return ImportSummary(name, *totals)

    def _apply(
        self,
        s: Session,
        hl: HashList,
        chunk: list[ListEntry],
        now: datetime,
        keypoints: Mapping[str, bytes] | None,
    ) -> tuple[int, int, int, int]:
        """One chunk of an import, inside a transaction that holds the write lock."""
        added = changed = removed = unchanged = 0
        live = self._live_rows(s, hl.id, [e.source_id for e in chunk])
        tombstone: list[int] = []
        new_rows: list[dict[str, Any]] = []
        for e in chunk:
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
            pdq, md5, sha256, vpdq, category, pdq_companion, pdq_hot = _fields(e)
            new_rows.append(
                {
                    "list_id": hl.id,
                    "source_id": e.source_id,
                    "pdq": pdq,
                    "pdq_companion": pdq_companion,
                    "pdq_hot": pdq_hot,
                    "md5": md5,
                    "sha256": sha256,
                    "vpdq": vpdq,
                    "category": category,
                    "added_at": now,
                }
            )
        if tombstone or new_rows:
            seq = self._next_seq(s)
            # Tombstones first: the unique index on live (list, source id) checks each row.
            for ids in _chunks(tombstone, 500):
                s.execute(
                    update(Entry).where(Entry.id.in_(ids)).values(removed_seq=seq, removed_at=now)
                )
            for r in new_rows:
                r["added_seq"] = seq
            for i in range(0, len(new_rows), 50_000):
                s.execute(insert(Entry), new_rows[i : i + 50_000])
            if keypoints:
                mine = {e.source_id: keypoints[e.source_id] for e in chunk
                        if e.source_id in keypoints}  # fmt: skip
                if mine:
                    self._add_keypoints(s, hl.id, seq, mine)
            hl.updated_at = now
        return added, changed, removed, unchanged

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
        """Live rows of a list as ``source_id -> (id, pdq, md5, sha256, vpdq, category,
        pdq_companion, pdq_hot)``; only those named in ``source_ids`` when the batch is
        small."""
        cols = (Entry.source_id, Entry.id, Entry.pdq, Entry.md5, Entry.sha256, Entry.vpdq,
                Entry.category, Entry.pdq_companion, Entry.pdq_hot)  # fmt: skip
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
        with self._writing() as s:
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
        with self._writing() as s:
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


def open_store(url: str, *, lock_timeout: float | None = None) -> Store:
    """Open (and create or migrate) the database at ``url``.

    ``lock_timeout`` (default :data:`LOCK_TIMEOUT_SECONDS`) bounds how long a write
    waits for another writer's lock before it fails with DatabaseBusy."""
    timeout = LOCK_TIMEOUT_SECONDS if lock_timeout is None else lock_timeout
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        busy_ms = max(1, round(timeout * 1000))

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.close()

        # SQLAlchemy's recipe for pysqlite, which otherwise runs SELECTs outside any
        # transaction and sends BEGIN only before the first INSERT/UPDATE/DELETE: the
        # store's own transactions begin explicitly, a writer's with BEGIN IMMEDIATE (the
        # write lock before its first read), a reader's with BEGIN (one snapshot). Other
        # users of the engine (the Matrix state, the threshold store) keep pysqlite's
        # default: a deferred BEGIN that reads first could not upgrade to a write while
        # another writer commits (SQLite refuses at once, without waiting).
        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get(_TX_MODE)
            if mode == "write":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif mode == "read":
                conn.exec_driver_sql("BEGIN")

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    # Migrations run under the write lock: two processes starting at once migrate once.
    with _busy_as_error(), engine.execution_options(**{_TX_MODE: "write"}).begin() as conn:
        _take_write_lock(conn, timeout)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return Store(engine, lock_timeout=timeout)
