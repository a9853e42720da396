"""The concurrency checks of tests/unit/test_store_concurrency.py on a real PostgreSQL
server: the same functions, with a probe that asks the server who waits for a lock."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from blindmatch.store import Store
from tests.unit.test_store_concurrency import (
    check_a_writer_that_waits_too_long_gets_a_coded_error,
    check_concurrent_imports_get_distinct_sequence_numbers,
    check_migration_tombstones_existing_duplicates,
    check_no_duplicate_live_ids,
    check_unique_index_refuses_a_second_live_row,
)


def postgres_waits(store: Store) -> Callable[[], bool]:
    """PostgreSQL: true once some session of this database waits for a lock (a row
    lock, an advisory lock...). Only the race's writers are connected to it."""
    probe = create_engine(store.engine.url, poolclass=NullPool)
    query = text("SELECT count(*) FROM pg_stat_activity "
                 "WHERE datname = current_database() AND wait_event_type = 'Lock'")  # fmt: skip

    def waits() -> bool:
        with probe.connect() as conn:
            return bool(conn.execute(query).scalar())

    return waits


def test_no_duplicate_live_ids(pg_url: str) -> None:
    check_no_duplicate_live_ids(pg_url, postgres_waits)


def test_concurrent_imports_get_distinct_sequence_numbers(pg_url: str) -> None:
    check_concurrent_imports_get_distinct_sequence_numbers(pg_url, postgres_waits)


def test_unique_index_refuses_a_second_live_row(pg_url: str) -> None:
    check_unique_index_refuses_a_second_live_row(pg_url)


def test_migration_tombstones_existing_duplicates(pg_url: str) -> None:
    check_migration_tombstones_existing_duplicates(pg_url)


def test_a_writer_that_waits_too_long_gets_a_coded_error(pg_url: str) -> None:
    check_a_writer_that_waits_too_long_gets_a_coded_error(pg_url)
