"""Reviewer accounts and console sessions.

Passwords are hashed with argon2id (``argon2-cffi``'s defaults, rehashed on login when
they change). Roles are ordered: ``reviewer`` < ``senior`` (decides escalated cases and
appeals) < ``admin`` (manages reviewers). A reviewer is disabled, never deleted: the audit
log names reviewers. A session is a random token (the cookie) stored as its SHA-256, with
the CSRF token its forms must carry and an expiry; logout and disabling delete it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import sessionmaker

from blindmatch.errors import InvalidArgument, ReviewerExists, ReviewerNotFound
from blindmatch.store.db import write_transaction
from blindmatch.store.models import Reviewer as ReviewerRow
from blindmatch.store.models import ReviewerSession

ROLES = ("reviewer", "senior", "admin")
MIN_PASSWORD_LENGTH = 12
SESSION_HOURS = 8
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_hasher = PasswordHasher()
# Verified when the name is unknown, so a wrong name costs what a wrong password costs.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def role_at_least(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


@dataclass(frozen=True)
class Reviewer:
    id: int
    name: str
    role: str
    disabled: bool
    created_at: datetime

    def can(self, needed: str) -> bool:
        return not self.disabled and role_at_least(self.role, needed)


@dataclass(frozen=True)
class Session:
    reviewer: Reviewer
    csrf: str
    expires_at: datetime


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _reviewer(r: ReviewerRow) -> Reviewer:
    return Reviewer(r.id, r.name, r.role, bool(r.disabled), _aware(r.created_at))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(
            "a reviewer name is 1-64 characters: lowercase letters, digits, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return name


class Reviewers:
    """Reviewer accounts and sessions in the store's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)

    # -- accounts --------------------------------------------------------------------------
    def add(self, name: str, password: str, role: str = "reviewer") -> Reviewer:
        check_name(name)
        if role not in ROLES:
            raise InvalidArgument(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
            raise InvalidArgument(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
        row = ReviewerRow(name=name, password_hash=_hasher.hash(password), role=role,
                          disabled=False, created_at=datetime.now(UTC))  # fmt: skip
        with write_transaction(self.engine) as s:
            if s.scalar(select(ReviewerRow.id).where(ReviewerRow.name == name)) is not None:
                raise ReviewerExists(f"reviewer {name!r} exists already")
            s.add(row)
            s.flush()
            return _reviewer(row)

    def get(self, name: str) -> Reviewer:
        with self._session() as s:
            row = s.scalar(select(ReviewerRow).where(ReviewerRow.name == name))
            if row is None:
                raise ReviewerNotFound(f"no reviewer named {name!r}")
            return _reviewer(row)

    def all(self) -> list[Reviewer]:
        with self._session() as s:
            return [_reviewer(r) for r in s.scalars(select(ReviewerRow).order_by(ReviewerRow.name))]

    def set_disabled(self, name: str, disabled: bool = True) -> Reviewer:
        """Disable (or re-enable) a reviewer; disabling ends their sessions at once."""
        with write_transaction(self.engine) as s:
            row = s.scalar(select(ReviewerRow).where(ReviewerRow.name == name))
            if row is None:
                raise ReviewerNotFound(f"no reviewer named {name!r}")
            row.disabled = disabled
            if disabled:
                s.execute(delete(ReviewerSession).where(ReviewerSession.reviewer_id == row.id))
            return _reviewer(row)

    def set_password(self, name: str, password: str) -> None:
        if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
            raise InvalidArgument(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
        with write_transaction(self.engine) as s:
            row = s.scalar(select(ReviewerRow).where(ReviewerRow.name == name))
            if row is None:
                raise ReviewerNotFound(f"no reviewer named {name!r}")
            row.password_hash = _hasher.hash(password)
            s.execute(delete(ReviewerSession).where(ReviewerSession.reviewer_id == row.id))

    def authenticate(self, name: str, password: str) -> Reviewer | None:
        """The reviewer if ``password`` is theirs and they are not disabled; else None
        (the same answer, and about the same work, for an unknown name)."""
        with self._session() as s:
            row = s.scalar(select(ReviewerRow).where(ReviewerRow.name == name))
            stored = row.password_hash if row is not None else _DUMMY_HASH
        try:
            _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or row.disabled:
            return None
        if _hasher.check_needs_rehash(stored):
            with write_transaction(self.engine) as s:
                fresh = s.get(ReviewerRow, row.id)
                if fresh is not None:
                    fresh.password_hash = _hasher.hash(password)
        return _reviewer(row)

    # -- sessions --------------------------------------------------------------------------
    def start_session(self, reviewer: Reviewer, hours: float = SESSION_HOURS) -> tuple[str, str]:
        """A new session: ``(token, csrf)``; the token goes in an HttpOnly cookie."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with write_transaction(self.engine) as s:
            s.add(ReviewerSession(token_hash=_token_hash(token), reviewer_id=reviewer.id,
                                  csrf=csrf, created_at=now,
                                  expires_at=now + timedelta(hours=hours)))  # fmt: skip
        return token, csrf

    def session(self, token: str | None) -> Session | None:
        """The live session of ``token`` (None: unknown, expired, or its reviewer disabled)."""
        if not token:
            return None
        with self._session() as s:
            row = s.get(ReviewerSession, _token_hash(token))
            if row is None or _aware(row.expires_at) <= datetime.now(UTC):
                return None
            who = s.get(ReviewerRow, row.reviewer_id)
            if who is None or who.disabled:
                return None
            return Session(_reviewer(who), row.csrf, _aware(row.expires_at))

    def end_session(self, token: str | None) -> None:
        if not token:
            return
        with write_transaction(self.engine) as s:
            s.execute(
                delete(ReviewerSession).where(ReviewerSession.token_hash == _token_hash(token))
            )


def same_token(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two tokens (a CSRF field against the session's)."""
    return bool(a) and bool(b) and secrets.compare_digest(str(a), str(b))


__all__ = ["MIN_PASSWORD_LENGTH", "ROLES", "Reviewer", "Reviewers", "Session", "check_name",
           "role_at_least", "same_token"]  # fmt: skip
