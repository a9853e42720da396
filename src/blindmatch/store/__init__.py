"""Storage: hash lists, entries, imports and API keys in SQL (SQLite or PostgreSQL)."""

from blindmatch.store.db import (
    EntryInfo,
    ImportSummary,
    ListInfo,
    PdqChanges,
    Store,
    open_store,
)

__all__ = ["EntryInfo", "ImportSummary", "ListInfo", "PdqChanges", "Store", "open_store"]
