"""Database driver exceptions as blindmatch's coded errors.

SQLAlchemy wraps the driver's error (``sqlite3.OperationalError: database is
locked``, psycopg's ``LockNotAvailable``...) in its own classes; callers at the
edge (the CLI, the service) turn them into a ``DatabaseError`` with a code, so
a busy database reads as "try again", never as a crash.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

from blindmatch.errors import DatabaseBusy, DatabaseError

# SQLSTATEs of PostgreSQL that mean "another transaction was in the way"
_PG_BUSY = {
    "55P03": "a lock was not available",  # lock_not_available (lock_timeout)
    "57014": "a statement timed out",  # query_canceled (statement_timeout)
    "40P01": "a deadlock was broken",  # deadlock_detected
    "40001": "a concurrent change conflicted",  # serialization_failure
}
_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")


def database_error(exc: BaseException) -> DatabaseError | None:
    """The coded error for a database driver's exception, or None if ``exc`` is not one."""
    if not isinstance(exc, sa_exc.SQLAlchemyError):
        return None
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state in _PG_BUSY:
        return DatabaseBusy(f"the database is busy ({_PG_BUSY[state]}: {first}); try again")
    if any(s in first.lower() for s in _SQLITE_BUSY):
        return DatabaseBusy(
            "the database is busy: another process held its lock past the wait "
            f"({first}); try again"
        )
    return DatabaseError(f"database error: {type(orig or exc).__name__}: {first}")
