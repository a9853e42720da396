"""Storage: hash lists, entries, imports and API keys in SQL (SQLite or PostgreSQL)."""

from blindmatch.store.db import (
    EntryInfo,
    ImportSummary,
    KeypointChanges,
    ListInfo,
    PdqChanges,
    Store,
    open_store,
)

__all__ = [
    "EntryInfo",
    "ImportSummary",
    "KeypointChanges",
    "ListInfo",
    "PdqChanges",
    "Store",
    "open_store",
]
