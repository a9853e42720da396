"""Evidence files, encrypted at rest, kept for a retention period and then purged.

A confirmed case's pictures (the decrypted attachments the platform holds) are evidence:
the CyberTipline outbox uploads them from here, and the law asks that reported content be
preserved. Each file is one ``evidence`` row, encrypted with AES-256-GCM:

- the key is 32 random bytes in ``$BLINDMATCH_HOME/evidence.key``, created with mode 0600
  on first use (a key file readable by group or others is refused); it never enters the
  database. ``key_id`` (16 hex digits derived from the key) is stored with each row, so a
  row encrypted under another key is refused by name rather than by a failed tag;
- the nonce is 12 random bytes per file; the associated data binds the ciphertext to its
  row id and key id (a ciphertext moved to another row does not decrypt);
- the row keeps the plaintext's SHA-256 and size (what the report states), never the bytes.

Retention: ``expires_at`` = creation + ``BLINDMATCH_EVIDENCE_RETENTION_DAYS`` (default 90;
the US REPORT Act asks one year for reported content: set 365 where it applies). A report
that is finished extends its files' retention from the day it was finished
(:meth:`EvidenceStore.extend`). :meth:`EvidenceStore.purge` erases the ciphertext of expired
rows (the row stays, with ``purged_at``), except files of a report still in the outbox.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from blindmatch.errors import ConfigError, EvidenceError, EvidenceKeyMismatch
from blindmatch.store.models import EvidenceRecord, NcmecReport, NcmecReportFile

DEFAULT_RETENTION_DAYS = 90
KEY_FILE = "evidence.key"
_AAD = b"blindmatch evidence v1|"
OPEN_REPORT_STATES = ("pending", "submitted")


def now() -> datetime:
    return datetime.now(UTC)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)  # SQLite returns naive datetimes


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"blindmatch evidence key id|" + key).hexdigest()[:16]


def load_or_create_key(path: Path) -> bytes:
    """The 32-byte evidence key at ``path``, created (mode 0600) if absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
            f.flush()
            os.fsync(f.fileno())
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise EvidenceError(
            f"the evidence key {path} is readable by others (mode {mode:o}): chmod 600 it"
        )
    key = path.read_bytes()
    if len(key) != 32:
        raise EvidenceError(f"the evidence key {path} is not 32 bytes")
    return key


def retention_days_from_env(environ: dict[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    text = env.get("BLINDMATCH_EVIDENCE_RETENTION_DAYS", "").strip()
    if not text:
        return DEFAULT_RETENTION_DAYS
    try:
        days = int(text)
    except ValueError:
        raise ConfigError(
            f"BLINDMATCH_EVIDENCE_RETENTION_DAYS must be a whole number, not {text!r}"
        ) from None
    if days < 1:
        raise ConfigError(f"BLINDMATCH_EVIDENCE_RETENTION_DAYS must be positive, not {days}")
    return days


@dataclass(frozen=True)
class Evidence:
    id: str
    case_id: str
    filename: str
    size: int
    sha256: str
    viewed_by_reviewer: bool
    key_id: str
    created_at: datetime
    expires_at: datetime
    purged_at: datetime | None


def _evidence(r: EvidenceRecord) -> Evidence:
    return Evidence(
        r.id, r.case_id, r.filename, r.size, r.sha256, r.viewed_by_reviewer, r.key_id,
        _aware(r.created_at), _aware(r.expires_at),
        _aware(r.purged_at) if r.purged_at else None,
    )  # fmt: skip


class EvidenceStore:
    """Encrypted evidence on the store's database. The key is read on first use."""

    def __init__(
        self,
        engine: Engine,
        key_path: Path | None = None,
        *,
        retention_days: int | None = None,
        clock: Callable[[], datetime] = now,
    ) -> None:
        if key_path is None:
            from blindmatch.config import load_settings

            key_path = load_settings().home / KEY_FILE
        self.engine = engine
        self.key_path = key_path
        self.retention = timedelta(
            days=retention_days if retention_days is not None else retention_days_from_env()
        )
        self.clock = clock
        self._session = sessionmaker(engine, expire_on_commit=False)
        self._key: bytes | None = None

    def _aead(self) -> tuple[AESGCM, str]:
        if self._key is None:
            self._key = load_or_create_key(self.key_path)
        return AESGCM(self._key), key_id(self._key)

    # -- write ------------------------------------------------------------------------
    def add(
        self, s: Session, case_id: str, filename: str, data: bytes, viewed_by_reviewer: bool
    ) -> str:
        """Encrypt ``data`` into a new row in the caller's transaction; its id."""
        if not data:
            raise EvidenceError(f"evidence file {filename!r} is empty")
        aead, kid = self._aead()
        eid = secrets.token_hex(16)
        nonce = secrets.token_bytes(12)
        t = self.clock()
        s.add(
            EvidenceRecord(
                id=eid, case_id=case_id, filename=filename[:255], size=len(data),
                sha256=hashlib.sha256(data).hexdigest(), viewed_by_reviewer=viewed_by_reviewer,
                key_id=kid, nonce=nonce,
                ciphertext=aead.encrypt(nonce, data, _aad(eid, kid)),
                created_at=t, expires_at=t + self.retention,
            )
        )  # fmt: skip
        return eid

    def put(self, case_id: str, filename: str, data: bytes, viewed_by_reviewer: bool) -> str:
        with self._session.begin() as s:
            return self.add(s, case_id, filename, data, viewed_by_reviewer)

    def extend(self, s: Session, evidence_ids: Sequence[str], since: datetime) -> None:
        """Keep these files at least a retention period from ``since`` (a finished report)."""
        until = since + self.retention
        for r in s.scalars(select(EvidenceRecord).where(EvidenceRecord.id.in_(evidence_ids))):
            if _aware(r.expires_at) < until:
                r.expires_at = until

    # -- read -------------------------------------------------------------------------
    def read(self, evidence_id: str) -> bytes:
        """The plaintext of one file; EvidenceKeyMismatch if this key cannot open it."""
        with self._session() as s:
            r = s.get(EvidenceRecord, evidence_id)
        if r is None:
            raise EvidenceError(f"no evidence file {evidence_id}")
        if r.ciphertext is None or r.nonce is None:
            when = _aware(r.purged_at or r.expires_at)
            raise EvidenceError(f"evidence file {evidence_id} was purged on {when:%Y-%m-%d}")
        aead, kid = self._aead()
        if r.key_id != kid:
            raise EvidenceKeyMismatch(
                f"evidence file {evidence_id} was encrypted with key {r.key_id}; "
                f"{self.key_path} is key {kid}"
            )
        try:
            return aead.decrypt(r.nonce, r.ciphertext, _aad(r.id, r.key_id))
        except InvalidTag:
            raise EvidenceKeyMismatch(
                f"evidence file {evidence_id} does not decrypt: tampered, or another key"
            ) from None

    def records(self, case_id: str | None = None) -> list[Evidence]:
        with self._session() as s:
            q = select(EvidenceRecord).order_by(EvidenceRecord.created_at, EvidenceRecord.id)
            if case_id is not None:
                q = q.where(EvidenceRecord.case_id == case_id)
            return [_evidence(r) for r in s.scalars(q)]

    # -- retention --------------------------------------------------------------------
    def purge(self, at: datetime | None = None) -> list[str]:
        """Erase the ciphertext of every file whose retention ended by ``at`` (default
        now), except files of a report still in the outbox; the ids purged."""
        t = at or self.clock()
        with self._session.begin() as s:
            held = (
                select(NcmecReportFile.evidence_id)
                .join(NcmecReport, NcmecReport.id == NcmecReportFile.report_id)
                .where(NcmecReport.state.in_(OPEN_REPORT_STATES))
            )
            ids = list(
                s.scalars(
                    select(EvidenceRecord.id).where(
                        EvidenceRecord.expires_at <= t,
                        EvidenceRecord.ciphertext.is_not(None),
                        EvidenceRecord.id.not_in(held),
                    )
                )
            )
            if ids:
                s.execute(
                    update(EvidenceRecord)
                    .where(EvidenceRecord.id.in_(ids))
                    .values(ciphertext=None, nonce=None, purged_at=t)
                )
        return ids


def _aad(evidence_id: str, kid: str) -> bytes:
    return _AAD + evidence_id.encode() + b"|" + kid.encode()
