"""``blindmatch statements`` and ``blindmatch appeals``: enforcement records for the operator.

``statements list [--account A] [--since DATE] [--until DATE] [--limit N] [--json]``
prints the statements of reasons (EU DSA Art. 17) with their actions;
``statements export --format dsa-json [--since DATE] [--until DATE] [--output FILE]``
writes ``{"statements": [...]}``, the body of the DSA Transparency Database's batch
endpoint (no personal data). ``appeals list [--status S] [--account A] [--json]`` and
``appeals show ID [--json]``. All read blindmatch's database (``--database-url``, default
``BLINDMATCH_DATABASE_URL``). Exit 0, or 2 when the command failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from blindmatch.cli._operator_io import engine_for, json_line, print_rows

EXIT_CLEAN = 0


def _engine(args: argparse.Namespace) -> Any:
    return engine_for(args)


def _date(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date or time (YYYY-MM-DD[THH:MM]), got {text!r}"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _line(obj: dict[str, Any]) -> None:
    json_line(obj)


def cmd_statements_list(args: argparse.Namespace) -> int:
    from blindmatch.review.enforcement import list_statements

    rows = list_statements(_engine(args), account=args.account, since=args.since,
                           until=args.until, limit=args.limit)  # fmt: skip

    def line(a: Any) -> str:
        state = (f"lifted({a.lift_outcome})" if a.lifted_at else
                 "applied" if a.applied_at else "PENDING")  # fmt: skip
        return (
            f"{a.puid}  {a.decided_at.isoformat(timespec='seconds')}  {a.action:10}  "
            f"#{a.offence}  {a.account}  case={a.case_id}  {state}  "
            f"notified={'yes' if a.notified else 'NO: ' + (a.notice_error or 'pending')}"
        )

    print_rows(rows, as_json=args.json, to_json=lambda a: a.to_json(), to_line=line,
               noun="statement(s)")  # fmt: skip
    return EXIT_CLEAN


def cmd_statements_export(args: argparse.Namespace) -> int:
    from blindmatch.review.enforcement import dsa_export, list_statements

    rows = list_statements(_engine(args), since=args.since, until=args.until)
    text = json.dumps(dsa_export(rows), indent=1, ensure_ascii=False) + "\n"
    if args.output:
        Path(args.output).write_text(text)
        sys.stderr.write(f"{len(rows)} statement(s) written to {args.output}\n")
    else:
        sys.stdout.write(text)
    return EXIT_CLEAN


def cmd_appeals_list(args: argparse.Namespace) -> int:
    from blindmatch.review.appeals import Appeals

    rows = Appeals(_engine(args)).list(status=args.status, account=args.account, limit=args.limit)

    def line(a: Any) -> str:
        return (
            f"{a.id}  {a.opened_at.isoformat(timespec='seconds')}  {a.status:10}  "
            f"case={a.case_id}  {a.account}  assigned={a.assigned_to or '-'}  "
            f"decided_by={a.decided_by or '-'}"
        )

    print_rows(rows, as_json=args.json, to_json=lambda a: a.to_json(), to_line=line,
               noun="appeal(s)")  # fmt: skip
    return EXIT_CLEAN


def cmd_appeals_show(args: argparse.Namespace) -> int:
    from blindmatch.review.appeals import Appeals

    a = Appeals(_engine(args)).get(args.appeal_id)  # AppealRefused("unknown_appeal"): exit 2
    if args.json:
        _line(a.to_json())
        return EXIT_CLEAN
    for k, v in a.to_json().items():
        sys.stdout.write(f"{k:16} {v if v is not None else '-'}\n")
    return EXIT_CLEAN


def _db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database-url",
        default=None,
        help="SQLAlchemy URL (default: BLINDMATCH_DATABASE_URL, or SQLite in BLINDMATCH_HOME)",
    )


def register(sub: Any) -> None:
    """Add ``statements`` and ``appeals`` to the ``blindmatch`` subcommands."""
    sp = sub.add_parser("statements", help="statements of reasons (EU DSA Art. 17)")
    ss = sp.add_subparsers(dest="statements_command", required=True)
    ls = ss.add_parser("list", help="list statements and their actions, oldest first")  # fmt: skip
    ls.add_argument(
        "--account", default=None, help="only this account, e.g. @alice:example.org (default: all)"
    )
    ls.add_argument(
        "--since",
        type=_date,
        default=None,
        help="made at or after this ISO date/time, UTC unless given (default: no bound)",
    )
    ls.add_argument(
        "--until",
        type=_date,
        default=None,
        help="made before this ISO date/time, UTC unless given (default: no bound)",
    )
    ls.add_argument("--limit", type=int, default=None, help="at most this many (default: all)")
    ls.add_argument(
        "--json", action="store_true", help="one JSON object per statement per line (default: text)"
    )
    _db(ls)
    ls.set_defaults(func=cmd_statements_list)
    ex = ss.add_parser("export", help="export for the EU DSA Transparency Database")  # fmt: skip
    ex.add_argument("--format", choices=("dsa-json",), default="dsa-json",
                    help='dsa-json: {"statements": [...]}, the body of the DSA Transparency '
                    "Database's POST /api/v1/statements (default: dsa-json)")  # fmt: skip
    ex.add_argument(
        "--since",
        type=_date,
        default=None,
        help="made at or after this ISO date/time, UTC unless given (default: no bound)",
    )
    ex.add_argument(
        "--until",
        type=_date,
        default=None,
        help="made before this ISO date/time, UTC unless given (default: no bound)",
    )
    ex.add_argument("--output", default=None, help="write to this file (default: stdout)")
    _db(ex)
    ex.set_defaults(func=cmd_statements_export)

    ap = sub.add_parser("appeals", help="appeals of cases (EU DSA Art. 20)")
    aps = ap.add_subparsers(dest="appeals_command", required=True)
    al = aps.add_parser("list", help="list appeals, oldest first")
    al.add_argument("--status", choices=("open", "upheld", "overturned"), default=None,
                    help="only appeals in this state (default: all)")  # fmt: skip
    al.add_argument(
        "--account",
        default=None,
        help="only this account's, e.g. @alice:example.org (default: all)",
    )
    al.add_argument("--limit", type=int, default=None, help="at most this many (default: all)")
    al.add_argument(
        "--json", action="store_true", help="one JSON object per appeal per line (default: text)"
    )
    _db(al)
    al.set_defaults(func=cmd_appeals_list)
    sh = aps.add_parser("show", help="show one appeal")
    sh.add_argument("appeal_id", help="the appeal id (AP-...)")
    sh.add_argument("--json", action="store_true", help="as one JSON object (default: text)")
    _db(sh)
    sh.set_defaults(func=cmd_appeals_show)
