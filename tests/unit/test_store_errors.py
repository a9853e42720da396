"""A database driver's lock errors become ``database_busy``; other database errors
``database_error``; anything else is not a database error."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import exc as sa_exc

from blindmatch.errors import DatabaseBusy, DatabaseError
from blindmatch.store.errors import database_error


class _PgError(Exception):
    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _wrapped(orig: Exception) -> sa_exc.OperationalError:
    return sa_exc.OperationalError("INSERT INTO entries ...", {}, orig)


@pytest.mark.parametrize("state", ["55P03", "57014", "40P01", "40001"])
def test_postgres_lock_and_timeout_states_are_busy(state: str) -> None:
    e = database_error(_wrapped(_PgError("canceling statement due to lock timeout", state)))
    assert isinstance(e, DatabaseBusy) and e.code == "database_busy"
    assert "lock timeout" in e.message


def test_sqlite_locked_is_busy_and_other_errors_are_database_errors() -> None:
    e = database_error(_wrapped(sqlite3.OperationalError("database is locked")))
    assert isinstance(e, DatabaseBusy) and "database is locked" in e.message
    e = database_error(_wrapped(sqlite3.OperationalError("unable to open database file")))
    assert type(e) is DatabaseError and e.code == "database_error"
    assert "unable to open database file" in e.message
    assert database_error(_wrapped(_PgError("connection refused", "08006"))).code == (
        "database_error"
    )
    assert database_error(RuntimeError("database is locked")) is None  # not from a driver
