"""``blindmatch cases``, ``reviewers`` and ``audit``: the operator's side on the command
line (the review console, ``blindmatch serve``, does the same in a browser).

Every command reads blindmatch's database: ``--database-url``, else
``BLINDMATCH_DATABASE_URL``, else ``$BLINDMATCH_HOME``'s SQLite file — the Matrix module's
``database_url`` must be the same one, so each command names the database it read on
standard error.

``cases list [--kind K] [--account A] [--status S] [--limit N] [--json]``: one line (or JSON
object) per case, oldest first; JSON: ``{"id", "kind", "account", "room", "event_id",
"voucher_ids", "blobs", "entries": [{"distance", "refs": [{"hotline", "list",
"entry_id"}]}], "evidence": bool, "status", "created_at", "tampered"}``.
``cases queue``: open and escalated cases, gravest category first, then oldest.
``cases show ID``: every field, the entries' categories, the account's history, a report's
content, notes (the view is audited). ``cases assign/note/decide/close`` change a case as
the reviewer ``--reviewer NAME`` (audited under that name).

``reviewers add NAME [--role R]`` (password from ``--password-file`` or a prompt),
``reviewers list``, ``reviewers disable NAME`` / ``enable NAME``.
``audit verify [--expect SEQ:HASH]``, ``audit head``, ``audit list [--subject S]``.

Exit 0, or 2 when the command failed (an audit chain that does not verify: 1).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from blindmatch.cli._operator_io import engine_for, json_line, print_rows
from blindmatch.errors import InvalidArgument

EXIT_CLEAN = 0
EXIT_BROKEN = 1


def _engine(args: argparse.Namespace) -> Any:
    return engine_for(args)


def _out(obj: Any) -> None:
    json_line(obj)


def _review(engine: Any, *, changing: bool = False) -> Any:
    """The workflow wired as the console wires it (``Operator.from_settings``): a
    confirmation enforces and queues an NCMEC report when those are configured; a false
    positive banks its hash. ``changing``: say on stderr what a decision will set off."""
    from blindmatch.config import load_settings
    from blindmatch.review.operator import Operator

    say = None if changing else (lambda _text: None)
    return Operator.from_settings(load_settings(), engine=engine, say=say).review


def _reviewer(engine: Any, name: str) -> Any:
    from blindmatch.errors import NotAllowed
    from blindmatch.review import Reviewers

    who = Reviewers(engine).get(name)
    if who.disabled:
        raise NotAllowed(f"reviewer {name!r} is disabled")
    return who


# -- cases ------------------------------------------------------------------------------------
def cmd_cases_list(args: argparse.Namespace) -> int:
    from blindmatch.integrations.matrix.state import MatrixState

    state = MatrixState(_engine(args))
    cases = state.cases(kind=args.kind, account=args.account, limit=args.limit)
    if args.status:
        cases = [c for c in cases if c.status == args.status]

    def line(c: Any) -> str:
        entries = ", ".join(
            f"{r['hotline']}/{r['list']}/{r['entry_id']} d={m['distance']}"
            for m in c.entry_refs
            for r in m["refs"]
        )
        return (
            f"{c.id}  {c.created_at.isoformat(timespec='seconds')}  {c.kind:9}  {c.status:9}  "
            f"{c.account}  room={c.room or '-'}  event={c.event_id or '-'}  "
            f"entries=[{entries}]{'  evidence' if c.has_evidence else ''}"
        )

    print_rows(cases, as_json=args.json, to_json=lambda c: c.to_json(), to_line=line,
               noun="case(s)")  # fmt: skip
    return EXIT_CLEAN


def cmd_cases_queue(args: argparse.Namespace) -> int:
    queue = _review(_engine(args)).queue(kind=args.kind, limit=args.limit)

    def line(c: Any) -> str:
        return (
            f"{c.id}  {c.created_at.isoformat(timespec='seconds')}  {c.kind:9}  "
            f"{c.status:9}  category={','.join(c.categories) or '-':6}  {c.account}  "
            f"assignee={c.assignee or '-'}"
        )

    print_rows(queue, as_json=args.json, to_json=lambda c: c.to_json(), to_line=line,
               noun="case(s) to review")  # fmt: skip
    return EXIT_CLEAN


def cmd_cases_show(args: argparse.Namespace) -> int:
    engine = _engine(args)
    detail = _review(engine).case(args.case_id, f"operator:{args.reviewer or 'cli'}")
    d = detail.to_json()
    if args.json:
        _out(d)
        return EXIT_CLEAN
    for key in ("id", "kind", "status", "decision", "category", "account", "room", "event_id",
                "assignee", "created_at", "decided_by", "decided_at", "closed_at",
                "close_reason", "evidence"):  # fmt: skip
        sys.stdout.write(f"{key:13} {d[key] if d[key] is not None else '-'}\n")
    sys.stdout.write(f"{'categories':13} {', '.join(d['categories']) or '-'}\n")
    for m in d["entries"]:
        for r in m["refs"]:
            sys.stdout.write(
                f"{'entry':13} {r['hotline']}/{r['list']}/{r['entry_id']}  d={m['distance']}  "
                f"category={r.get('category') or '-'}  matched by {m.get('variant') or '-'}\n"
            )
    for v in d["voucher_ids"]:
        sys.stdout.write(f"{'voucher':13} {v}\n")
    for b in d["blobs"]:
        sys.stdout.write(f"{'blob':13} {b}\n")
    h = d["history"]
    sys.stdout.write(
        f"{'history':13} {len(h['cases'])} earlier case(s) {' '.join(h['cases'])}; "
        f"{h['confirmed']} confirmed; {h['blocked_sends']} blocked send(s); "
        f"{h['refusals']} refused event(s)\n"
    )
    if d["report"] is not None:
        r = d["report"]
        sys.stdout.write(f"{'reported by':13} {r.get('reporter', '-')}\n")
        sys.stdout.write(f"{'reason':13} {r.get('reason') or '-'}\n")
        sys.stdout.write(f"{'payload':13} {json.dumps(r.get('payload'), ensure_ascii=False)}\n")
        for c in r.get("context", []):
            ok = "verified" if c.get("verified") else "NOT verified"
            sys.stdout.write(f"{'context':13} {c.get('event_id')} ({ok})\n")
    for n in d["notes"]:
        sys.stdout.write(f"{'note':13} {n['created_at']} {n['author']}: {n['text']}\n")
    return EXIT_CLEAN


def cmd_cases_assign(args: argparse.Namespace) -> int:
    engine = _engine(args)
    by = _reviewer(engine, args.reviewer)
    to = _reviewer(engine, args.to) if args.to else None
    _review(engine).assign(args.case_id, by, to)
    sys.stderr.write(f"case {args.case_id} assigned to {(to or by).name}\n")
    return EXIT_CLEAN


def cmd_cases_note(args: argparse.Namespace) -> int:
    engine = _engine(args)
    _review(engine).note(args.case_id, _reviewer(engine, args.reviewer), args.text)
    return EXIT_CLEAN


def cmd_cases_decide(args: argparse.Namespace) -> int:
    engine = _engine(args)
    out = _review(engine, changing=True).decide(
        args.case_id, _reviewer(engine, args.reviewer), args.decision,
        category=args.category, reason=args.reason or "",
    )  # fmt: skip
    sys.stderr.write(f"case {out.id}: {out.status} ({out.decision or 'escalated'})\n")
    return EXIT_CLEAN


def cmd_cases_close(args: argparse.Namespace) -> int:
    engine = _engine(args)
    _review(engine).close(args.case_id, _reviewer(engine, args.reviewer), args.reason)
    sys.stderr.write(f"case {args.case_id} closed\n")
    return EXIT_CLEAN


# -- reviewers --------------------------------------------------------------------------------
def _password(args: argparse.Namespace) -> str:
    if args.password_file:
        text = Path(args.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        return text
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise InvalidArgument("the two passwords differ")
    return first


def cmd_reviewers_add(args: argparse.Namespace) -> int:
    from blindmatch.review import AuditLog, Reviewers

    engine = _engine(args)
    who = Reviewers(engine).add(args.name, _password(args), args.role)
    AuditLog(engine).append("operator:cli", "reviewer.add", f"reviewer:{who.name}",
                            {"role": who.role})  # fmt: skip
    sys.stderr.write(f"reviewer {who.name} added ({who.role})\n")
    return EXIT_CLEAN


def cmd_reviewers_list(args: argparse.Namespace) -> int:
    from blindmatch.review import Reviewers

    for r in Reviewers(_engine(args)).all():
        if args.json:
            _out({"name": r.name, "role": r.role, "disabled": r.disabled,
                  "created_at": r.created_at.isoformat()})  # fmt: skip
        else:
            state = "disabled" if r.disabled else "active"
            sys.stdout.write(f"{r.name:24} {r.role:9} {state:9} {r.created_at.date()}\n")
    return EXIT_CLEAN


def cmd_reviewers_disable(args: argparse.Namespace) -> int:
    from blindmatch.review import AuditLog, Reviewers

    engine = _engine(args)
    disable = args.reviewers_command == "disable"
    who = Reviewers(engine).set_disabled(args.name, disable)
    AuditLog(engine).append("operator:cli", f"reviewer.{args.reviewers_command}",
                            f"reviewer:{who.name}")  # fmt: skip
    sys.stderr.write(f"reviewer {who.name} {'disabled' if disable else 'enabled'}\n")
    return EXIT_CLEAN


# -- audit ------------------------------------------------------------------------------------
def cmd_audit_verify(args: argparse.Namespace) -> int:
    from blindmatch.review import AuditLog

    expect = None
    if args.expect:
        seq, _, h = args.expect.partition(":")
        if not seq.isdigit() or len(h) != 64:
            raise InvalidArgument("--expect is SEQ:HASH as `blindmatch audit head` prints it")
        expect = (int(seq), h.lower())
    check = AuditLog(_engine(args)).verify(expect)
    if check.ok:
        sys.stdout.write(f"ok: {check.lines} line(s); head {check.head_seq}:{check.head_hash}\n")
        return EXIT_CLEAN
    sys.stdout.write(
        f"BROKEN at line {check.bad_seq}: {check.problem}; {check.lines} line(s) before it "
        f"verify (last good {check.head_seq}:{check.head_hash})\n"
    )
    return EXIT_BROKEN


def cmd_audit_head(args: argparse.Namespace) -> int:
    from blindmatch.review import AuditLog

    seq, h = AuditLog(_engine(args)).head()
    sys.stdout.write(f"{seq}:{h}\n")
    return EXIT_CLEAN


def cmd_audit_list(args: argparse.Namespace) -> int:
    from blindmatch.review import AuditLog

    rows = AuditLog(_engine(args)).entries(subject=args.subject, actor=args.actor,
                                           limit=args.limit, newest_first=True)  # fmt: skip
    for e in reversed(rows):
        if args.json:
            _out(e.to_json())
        else:
            detail = json.dumps(e.detail, ensure_ascii=False) if e.detail else ""
            sys.stdout.write(
                f"{e.seq:6}  {e.at.isoformat(timespec='seconds')}  {e.actor:24} "
                f"{e.action:16} {e.subject}  {detail}\n"
            )
    return EXIT_CLEAN


# -- false-positive defences --------------------------------------------------------------
def cmd_disputes_export(args: argparse.Namespace) -> int:
    from blindmatch.review.defences import Defences

    d = Defences(_engine(args))
    rows = d.disputes(include_exported=args.all)
    lines = [json.dumps({k: v for k, v in r.items() if k != "_row"}, sort_keys=True,
                        ensure_ascii=False) for r in rows]  # fmt: skip
    text = "".join(line + "\n" for line in lines)
    if args.output:
        from blindmatch.fsutil import write_atomic

        write_atomic(Path(args.output), text.encode())
    else:
        sys.stdout.write(text)
    if not args.dry_run:
        d.mark_disputed(sorted({r["_row"] for r in rows}))
    sys.stderr.write(f"{len(rows)} disputed entr{'y' if len(rows) == 1 else 'ies'}\n")
    return EXIT_CLEAN


def cmd_floods_list(args: argparse.Namespace) -> int:
    from blindmatch.review.defences import Defences

    for q in Defences(_engine(args)).quarantined():
        if args.json:
            _out(q)
        else:
            r = q["ref"]
            sys.stdout.write(
                f"{q['entry_key'][:16]}  {r['hotline']}/{r['list']}/{r['entry_id']}  "
                f"{q['accounts']} accounts  since {q['since']}  case {q['case']}\n"
            )
    return EXIT_CLEAN


def cmd_floods_lift(args: argparse.Namespace) -> int:
    from blindmatch.review.defences import Defences

    engine = _engine(args)
    who = _reviewer(engine, args.reviewer)
    Defences(engine).lift(args.key, who)
    from blindmatch.review import AuditLog

    AuditLog(engine).append(f"reviewer:{who.name}", "flood.lift", f"flood:{args.key}")
    sys.stderr.write("quarantine lifted: the entry blocks again\n")
    return EXIT_CLEAN


def _db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database-url",
        default=None,
        help="SQLAlchemy URL of blindmatch's database, the Matrix module's database_url "
        "(default: BLINDMATCH_DATABASE_URL, else $BLINDMATCH_HOME/blindmatch.db)",
    )


def register(sub: Any) -> None:
    """Add ``cases``, ``reviewers`` and ``audit`` to the ``blindmatch`` subcommands."""
    from blindmatch.review.cases import DECISIONS, KINDS, STATUSES
    from blindmatch.review.reviewers import ROLES
    from blindmatch.review.types import CONFIRM_CATEGORIES

    fmt = argparse.ArgumentDefaultsHelpFormatter
    cp = sub.add_parser("cases", help="review cases (Matrix module: blocked matches, reports)")
    cs = cp.add_subparsers(dest="cases_command", required=True)
    ls = cs.add_parser("list", help="list review cases, oldest first", formatter_class=fmt)
    ls.add_argument("--kind", choices=KINDS, default=None, help="only cases of this kind")
    ls.add_argument("--status", choices=STATUSES, default=None, help="only cases in this state")
    ls.add_argument("--account", default=None, help="only this account (e.g. @alice:example.org)")
    ls.add_argument("--limit", type=int, default=None, help="at most this many (default: all)")
    ls.add_argument("--json", action="store_true", help="one JSON object per case per line")
    _db(ls)
    ls.set_defaults(func=cmd_cases_list)

    qu = cs.add_parser("queue", help="open and escalated cases, gravest category first",
                       formatter_class=fmt)  # fmt: skip
    qu.add_argument("--kind", choices=KINDS, default=None, help="only cases of this kind")
    qu.add_argument("--limit", type=int, default=500, help="at most this many")
    qu.add_argument("--json", action="store_true", help="one JSON object per case per line")
    _db(qu)
    qu.set_defaults(func=cmd_cases_queue)

    sh = cs.add_parser("show", help="everything about one case (audited)", formatter_class=fmt)
    sh.add_argument("case_id", help="the case id (cases list, or a refusal's case field)")
    sh.add_argument("--reviewer", default=None, help="who is looking, for the audit log")
    sh.add_argument("--json", action="store_true", help="one JSON object")
    _db(sh)
    sh.set_defaults(func=cmd_cases_show)

    def acting(p: argparse.ArgumentParser) -> None:
        p.add_argument("case_id", help="the case id")
        p.add_argument("--reviewer", required=True,
                       help="the reviewer acting (blindmatch reviewers list); audited")  # fmt: skip
        _db(p)

    asg = cs.add_parser("assign", help="take a case, or hand it to another reviewer",
                        formatter_class=fmt)  # fmt: skip
    acting(asg)
    asg.add_argument("--to", default=None, help="hand it to this reviewer (senior/admin only)")
    asg.set_defaults(func=cmd_cases_assign)

    nt = cs.add_parser("note", help="add a note to a case", formatter_class=fmt)
    acting(nt)
    nt.add_argument("text", help="the note")
    nt.set_defaults(func=cmd_cases_note)

    dc = cs.add_parser("decide", help="confirm, mark false positive, or escalate a case",
                       formatter_class=fmt)  # fmt: skip
    acting(dc)
    dc.add_argument("decision", choices=DECISIONS, help="the decision")
    dc.add_argument("--category", choices=CONFIRM_CATEGORIES, default=None,
                    help="the confirmed category (required with 'confirmed')")  # fmt: skip
    dc.add_argument("--reason", default=None, help="why (kept as a note)")
    dc.set_defaults(func=cmd_cases_decide)

    cl = cs.add_parser("close", help="close a case with a reason", formatter_class=fmt)
    acting(cl)
    cl.add_argument("--reason", required=True, help="why it is closed (e.g. duplicate of …)")
    cl.set_defaults(func=cmd_cases_close)

    rp = sub.add_parser("reviewers", help="review console accounts")
    rs = rp.add_subparsers(dest="reviewers_command", required=True)
    ra = rs.add_parser("add", help="add a reviewer", formatter_class=fmt)
    ra.add_argument("name", help="login name: lowercase letters, digits, '.', '_', '-'")
    ra.add_argument("--role", choices=ROLES, default="reviewer",
                    help="reviewer; senior (escalations, appeals); admin")  # fmt: skip
    ra.add_argument(
        "--password-file", default=None, help="read the password from this file (default: prompt)"
    )
    _db(ra)
    ra.set_defaults(func=cmd_reviewers_add)
    rl = rs.add_parser("list", help="list reviewers", formatter_class=fmt)
    rl.add_argument("--json", action="store_true", help="one JSON object per reviewer per line")
    _db(rl)
    rl.set_defaults(func=cmd_reviewers_list)
    for verb, text in (("disable", "disable a reviewer (ends their sessions)"),
                       ("enable", "enable a disabled reviewer")):  # fmt: skip
        rd = rs.add_parser(verb, help=text, formatter_class=fmt)
        rd.add_argument("name", help="the reviewer")
        _db(rd)
        rd.set_defaults(func=cmd_reviewers_disable)

    dp = sub.add_parser("disputes", help="list entries review found false positives")
    dps = dp.add_subparsers(dest="disputes_command", required=True)
    de = dps.add_parser("export", help="write disputed entries as JSON lines for their sources",
                        formatter_class=fmt)  # fmt: skip
    de.add_argument("-o", "--output", default=None, help="write to this file (default: stdout)")
    de.add_argument("--all", action="store_true", help="also entries exported before")
    de.add_argument("--dry-run", action="store_true", help="do not mark them exported")
    _db(de)
    de.set_defaults(func=cmd_disputes_export)
    fp = sub.add_parser("floods", help="list entries in flood quarantine, lift a quarantine")
    fps = fp.add_subparsers(dest="floods_command", required=True)
    fl = fps.add_parser("list", help="entries in flood quarantine", formatter_class=fmt)
    fl.add_argument("--json", action="store_true", help="one JSON object per entry per line")
    _db(fl)
    fl.set_defaults(func=cmd_floods_list)
    ft = fps.add_parser("lift", help="end a quarantine: the entry blocks again",
                        formatter_class=fmt)  # fmt: skip
    ft.add_argument("key", help="the entry key (floods list) or its flood case id")
    ft.add_argument("--reviewer", required=True, help="the reviewer lifting it; audited")
    _db(ft)
    ft.set_defaults(func=cmd_floods_lift)

    ap = sub.add_parser("audit", help="the hash-chained audit log of reviews and decisions")
    aus = ap.add_subparsers(dest="audit_command", required=True)
    av = aus.add_parser("verify", help="recompute the hash chain (exit 1 if broken)",
                        formatter_class=fmt)  # fmt: skip
    av.add_argument(
        "--expect", default=None, help="SEQ:HASH recorded earlier by `audit head`: still there"
    )
    _db(av)
    av.set_defaults(func=cmd_audit_verify)
    ah = aus.add_parser("head", help="print the last line's SEQ:HASH (keep it elsewhere)",
                        formatter_class=fmt)  # fmt: skip
    _db(ah)
    ah.set_defaults(func=cmd_audit_head)
    al = aus.add_parser("list", help="print audit lines, oldest first", formatter_class=fmt)
    al.add_argument("--subject", default=None, help="only this subject (e.g. case:ID)")
    al.add_argument("--actor", default=None, help="only this actor (e.g. reviewer:ann)")
    al.add_argument("--limit", type=int, default=200, help="the newest this many lines")
    al.add_argument("--json", action="store_true", help="one JSON object per line")
    _db(al)
    al.set_defaults(func=cmd_audit_list)
