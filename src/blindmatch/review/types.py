"""What the review workflow hands to what acts on a decision (enforcement, NCMEC reports,
the negative bank): plain values, no database rows."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: Industry classification of confirmed material (NCMEC's A1/A2/B1/B2: A prepubescent, B
#: pubescent; 1 a sex act, 2 lascivious exhibition), the categories a reviewer confirms.
CONFIRM_CATEGORIES = ("A1", "A2", "B1", "B2")


_ID_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read over the phone


def readable_id(prefix: str) -> str:
    """``PREFIX-XXXX-XXXX-XXXX``: 60 random bits in unambiguous letters and digits (case
    ids ``BM-…``, appeal ids ``AP-…``: what a user quotes to support)."""
    s = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
    return f"{prefix}-{s[:4]}-{s[4:8]}-{s[8:]}"


@dataclass(frozen=True)
class EvidenceFile:
    filename: str
    data: bytes = field(repr=False)  # the plaintext picture (a decrypted attachment)
    viewed_by_reviewer: bool


@dataclass(frozen=True)
class ConfirmedCase:
    case_id: str
    kind: str  # match | report | threshold
    account: str  # Matrix user id, e.g. @alice:example.org
    room: str | None
    event_id: str | None
    category: str  # A1 | A2 | B1 | B2
    entries: list[dict[str, Any]]  # the case's entry refs (hotline, list, entry id, distance)
    reviewer: str
    decided_at: datetime
    media: list[EvidenceFile] = field(default_factory=list)


__all__ = ["CONFIRM_CATEGORIES", "ConfirmedCase", "EvidenceFile", "readable_id"]
