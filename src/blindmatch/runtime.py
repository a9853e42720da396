"""Wiring: settings → store → matcher, shared by the CLI and the service."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from blindmatch.config import Settings, load_settings
from blindmatch.errors import BlindmatchError
from blindmatch.matching import Matcher
from blindmatch.store import Store, open_store


@dataclass
class Runtime:
    settings: Settings
    store: Store
    _matcher: Matcher | None = None
    _save_warned: bool = False

    @property
    def matcher(self) -> Matcher:
        """The matcher, loaded on first use and caught up with the store."""
        if self._matcher is None:
            self._matcher = Matcher(self.store, self.settings.index_dir)
            if self._matcher.unsaved_changes:
                self.save_index()
        else:
            self._matcher.refresh()
        return self._matcher

    def save_index(self) -> bool:
        """Save the matcher's index for the next process; False if that failed.

        The saved index only makes the next start faster, so a failure (a full
        disk, a read-only folder) never fails the work at hand: it is reported
        once on stderr per runtime and the index is rebuilt from the store next time."""
        if self._matcher is None:
            return False
        try:
            self._matcher.save()
            return True
        except (BlindmatchError, OSError) as e:
            if not self._save_warned:
                self._save_warned = True
                sys.stderr.write(
                    f"blindmatch: warning: {e} (going on; the next start rebuilds the index)\n"
                )
            return False


def open_runtime(settings: Settings | None = None) -> Runtime:
    settings = settings or load_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    return Runtime(settings, open_store(settings.database_url))
