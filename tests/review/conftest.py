"""A store with two listed entries (categories A1 and B2) and cases the Matrix module
would open against them; every hash is a made-up stand-in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from blindmatch.integrations.matrix.state import MatrixState
from blindmatch.lists import ListEntry
from blindmatch.review import AuditLog, Review, Reviewers
from blindmatch.store.db import Store, open_store

PASSWORD = "correct horse battery"


@dataclass
class World:
    store: Store
    state: MatrixState
    audit: AuditLog
    review: Review
    reviewers: Reviewers

    def match_case(self, account: str, entry_id: str, **kw: object) -> str:
        refs = [
            {"distance": 3, "refs": [{"hotline": "HL-A", "list": "hl-a", "entry_id": entry_id}]}
        ]
        return self.state.add_case(kind="match", account=account, room="!r:x", event_id="$e",
                                   entry_refs=refs, **kw)  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> World:
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.import_entries(
        "hl-a",
        [ListEntry("e-a1", pdq="f" * 64, category="A1"), ListEntry("e-b2", pdq="0f" * 32,
                                                                    category="B2")],
        source="HL-A",
    )  # fmt: skip
    state = MatrixState(store.engine)
    audit = AuditLog(store.engine)
    return World(store, state, audit, Review(store.engine, audit), Reviewers(store.engine))
