"""What the operator's commands (``cases``, ``reviewers``, ``audit``, ``statements``,
``appeals``, ``disputes``, ``floods``) share: the database they read, named on standard
error, and the way they print rows (one JSON object per line, or one text line each and a
count on standard error)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

_T = TypeVar("_T")


def engine_for(args: argparse.Namespace) -> Any:
    """The store's engine for ``--database-url``, else ``BLINDMATCH_DATABASE_URL``, else
    ``$BLINDMATCH_HOME``'s SQLite file (created or migrated); the URL goes to stderr
    (password hidden), so an operator sees which database a command read."""
    from blindmatch.config import load_settings
    from blindmatch.store.db import open_store

    store = open_store(args.database_url or load_settings().database_url)
    sys.stderr.write(f"database: {store.engine.url.render_as_string(hide_password=True)}\n")
    return store.engine


def json_line(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, separators=(", ", ": "), ensure_ascii=False) + "\n")


def print_rows(
    rows: Iterable[_T],
    *,
    as_json: bool,
    to_json: Callable[[_T], Any],
    to_line: Callable[[_T], str],
    noun: str,
) -> int:
    """Print ``rows``: JSON lines, or text lines and ``N noun`` on stderr; how many."""
    n = 0
    for r in rows:
        n += 1
        if as_json:
            json_line(to_json(r))
        else:
            sys.stdout.write(to_line(r) + "\n")
    if not as_json:
        sys.stderr.write(f"{n} {noun}\n")
    return n
