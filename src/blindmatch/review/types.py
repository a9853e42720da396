"""The confirmed case handed to the consumers of a reviewer's decision (issue 13).

LOCAL COPY (helper "ncmec"): the lead defines these in ``blindmatch/review/types.py``;
this branch carries the same frozen dataclasses, field for field, until that lands (the
merge keeps the lead's file)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class EvidenceFile:
    filename: str
    data: bytes  # plaintext picture bytes (decrypted attachment)
    viewed_by_reviewer: bool


@dataclass(frozen=True)
class ConfirmedCase:
    case_id: str
    kind: str  # match | report | threshold
    account: str  # Matrix user id, e.g. @alice:example.org
    room: str | None
    event_id: str | None
    category: str  # A1 | A2 | B1 | B2 (industry classification)
    entries: list[dict]  # the case's entry_refs (list, hotline, entry id, distance)
    reviewer: str  # who confirmed
    decided_at: datetime
    media: list[EvidenceFile]  # the pictures the platform holds (may be empty)
