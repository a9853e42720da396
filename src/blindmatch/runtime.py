"""Wiring: settings → store → matcher, shared by the CLI and the service."""

from __future__ import annotations

from dataclasses import dataclass

from blindmatch.config import Settings, load_settings
from blindmatch.matching import Matcher
from blindmatch.store import Store, open_store


@dataclass
class Runtime:
    settings: Settings
    store: Store
    _matcher: Matcher | None = None

    @property
    def matcher(self) -> Matcher:
        """The matcher, loaded on first use and caught up with the store."""
        if self._matcher is None:
            self._matcher = Matcher(self.store, self.settings.index_dir)
            if self._matcher.unsaved_changes:
                self._matcher.save()
        else:
            self._matcher.refresh()
        return self._matcher


def open_runtime(settings: Settings | None = None) -> Runtime:
    settings = settings or load_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    return Runtime(settings, open_store(settings.database_url))
