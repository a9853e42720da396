"""``blindmatch cases``: the review cases the Matrix module opened (matches, threshold
releases; user reports later).

``cases list [--kind K] [--account A] [--limit N] [--json]`` reads blindmatch's
database (``BLINDMATCH_DATABASE_URL``, or ``--database-url``: the module's
``database_url``). JSON: one object per case per line, ``{"id", "kind",
"account", "room", "event_id", "voucher_ids", "blobs", "entries": [{"distance",
"refs": [{"hotline", "list", "entry_id"}]}], "evidence": bool, "status",
"created_at"}``. Exit 0, or 2 when the command failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_CLEAN = 0


def cmd_cases_list(args: argparse.Namespace) -> int:
    from blindmatch.config import load_settings
    from blindmatch.integrations.matrix.state import MatrixState

    url = args.database_url or load_settings().database_url
    state = MatrixState.open(url)
    cases = state.cases(kind=args.kind, account=args.account, limit=args.limit)
    for c in cases:
        if args.json:
            sys.stdout.write(json.dumps(c.to_json(), separators=(", ", ": ")) + "\n")
            continue
        entries = ", ".join(
            f"{r['hotline']}/{r['list']}/{r['entry_id']} d={m['distance']}"
            for m in c.entry_refs
            for r in m["refs"]
        )
        sys.stdout.write(
            f"{c.id}  {c.created_at.isoformat(timespec='seconds')}  {c.kind:9}  {c.status:6}  "
            f"{c.account}  room={c.room or '-'}  event={c.event_id or '-'}  "
            f"entries=[{entries}]{'  evidence' if c.has_evidence else ''}\n"
        )
    if not args.json:
        sys.stderr.write(f"{len(cases)} case(s)\n")
    return EXIT_CLEAN


def register(sub: Any) -> None:
    """Add ``cases`` to the ``blindmatch`` subcommands."""
    cp = sub.add_parser("cases", help="review cases (Matrix module: blocked matches, releases)")
    cs = cp.add_subparsers(dest="cases_command", required=True)
    ls = cs.add_parser("list", help="list review cases, oldest first")
    ls.add_argument("--kind", choices=("match", "report", "threshold", "tampered"), default=None)
    ls.add_argument("--account", default=None, help="only this account (e.g. @alice:example.org)")
    ls.add_argument("--limit", type=int, default=None)
    ls.add_argument(
        "--database-url", default=None, help="SQLAlchemy URL (default BLINDMATCH_DATABASE_URL)"
    )
    ls.add_argument("--json", action="store_true", help="one JSON object per case per line")
    ls.set_defaults(func=cmd_cases_list)
