"""``blindmatch reports``: the NCMEC CyberTipline outbox (docs/ncmec.md).

``reports list [--state S] [--json]``  the reports, oldest first
``reports show ID [--json]``           one report with its files and NCMEC's ids
``reports send [--json]``              run the outbox once (exit 2 if a report failed or
                                       the run stopped, naming it)
``reports retract ID``                 withdraw an unfinished report

Reads blindmatch's database (``BLINDMATCH_DATABASE_URL``, or ``--database-url``).
``send`` and ``retract`` talk to NCMEC: ``BLINDMATCH_NCMEC_URL`` (default NCMEC's test
environment), ``BLINDMATCH_NCMEC_USER``, ``BLINDMATCH_NCMEC_PASSWORD_FILE`` and the
reporter (``BLINDMATCH_NCMEC_REPORTER_EMAIL`` …). JSON: one object per line (a report:
``ReportInfo.to_json()``; a step: ``{"report", "action", "outcome", "detail",
"ncmec_code"}``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

STATES = ("pending", "submitted", "finished", "failed", "retracted")  # = ncmec.outbox.STATES

EXIT_CLEAN = 0
EXIT_FAILED = 2


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(", ", ": ")) + "\n")


def _outbox(args: argparse.Namespace, *, sending: bool = False) -> Any:
    from blindmatch.config import load_settings
    from blindmatch.ncmec.config import load_ncmec_config
    from blindmatch.ncmec.outbox import Outbox
    from blindmatch.store.db import open_store

    url = args.database_url or load_settings().database_url
    return Outbox(open_store(url).engine, load_ncmec_config() if sending else None)


def _line(r: Any) -> str:
    uploaded = sum(1 for f in r.files if f.file_id)
    described = sum(1 for f in r.files if f.details_at)
    err = f"  error={r.error_code or ''} {r.error}" if r.error else ""
    return (
        f"{r.id}  {r.state:9}  case={r.case_id}  {r.account}  {r.category}  "
        f"ncmec={r.ncmec_report_id or '-'}  files={uploaded}/{described}/{len(r.files)}"
        f"{'  orphans=' + str(r.possible_orphans) if r.possible_orphans else ''}{err}"
    )


def cmd_list(args: argparse.Namespace) -> int:
    reports = _outbox(args).reports(args.state)
    for r in reports:
        if args.json:
            _emit(r.to_json())
        else:
            sys.stdout.write(_line(r) + "\n")
    if not args.json:
        sys.stderr.write(f"{len(reports)} report(s) (files: uploaded/described/total)\n")
    return EXIT_CLEAN


def cmd_show(args: argparse.Namespace) -> int:
    r = _outbox(args).report(args.id)
    if args.json:
        _emit(r.to_json())
        return EXIT_CLEAN
    out = [_line(r)]
    for k in ("endpoint", "inflight", "attempts", "next_attempt_at", "reopened", "reviewer",
              "created_at", "submitted_at", "finished_at", "retracted_at"):  # fmt: skip
        out.append(f"  {k}: {getattr(r, k) if getattr(r, k) is not None else '-'}")
    for f in r.files:
        out.append(
            f"  file {f.seq}: {f.filename}  sha256={f.sha256[:16]}…  viewed={f.viewed_by_esp}  "
            f"fileId={f.file_id or '-'}  details={'sent' if f.details_at else '-'}"
        )
    if r.ncmec_files is not None:
        out.append(f"  NCMEC holds files: {', '.join(r.ncmec_files) or '-'}")
    sys.stdout.write("\n".join(out) + "\n")
    return EXIT_CLEAN


def cmd_send(args: argparse.Namespace) -> int:
    box = _outbox(args, sending=True)
    sys.stderr.write(f"sending to {box.config.base_url} ({box.config.environment})\n")
    from blindmatch.errors import DatabaseBusy
    from blindmatch.ncmec.worker import holder_id, release_lease, take_lease

    holder = holder_id()
    if not take_lease(box.engine, holder, 600.0):  # `serve`'s worker is sending right now
        raise DatabaseBusy("another process is sending the NCMEC outbox now; try again later")
    try:
        steps = box.run_once()
    finally:
        release_lease(box.engine, holder)
    bad = [s for s in steps if s.outcome in ("failed", "error")]
    for s in steps:
        if args.json:
            _emit(s.to_json())
        else:
            code = f" [{s.ncmec_code}]" if s.ncmec_code is not None else ""
            sys.stdout.write(f"{s.report}  {s.action:8}  {s.outcome:6}{code}  {s.detail}\n")
    for s in bad:
        sys.stderr.write(
            f"blindmatch: report {s.report} {s.outcome} at /{s.action}: {s.detail}"
            + (f" (NCMEC code {s.ncmec_code})" if s.ncmec_code is not None else "")
            + "\n"
        )
    if not args.json:
        sys.stderr.write(f"{len(steps)} step(s), {len(bad)} failed\n")
    return EXIT_FAILED if bad else EXIT_CLEAN


def cmd_retract(args: argparse.Namespace) -> int:
    step = _outbox(args, sending=True).retract(args.id, actor="operator:cli")
    if args.json:
        _emit(step.to_json())
    else:
        sys.stdout.write(f"{step.report}  retracted  {step.detail}\n")
    return EXIT_CLEAN


def cmd_purge(args: argparse.Namespace) -> int:
    """Erase the evidence whose retention ended (``serve``'s outbox worker does it too)."""
    gone = _outbox(args).evidence.purge()
    if args.json:
        _emit({"purged": gone})
    else:
        for evidence_id in gone:
            sys.stdout.write(f"{evidence_id}  purged\n")
        sys.stderr.write(f"{len(gone)} evidence file(s) past retention erased\n")
    return EXIT_CLEAN


def register(sub: Any) -> None:
    """Add ``reports`` to the ``blindmatch`` subcommands."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    rp = sub.add_parser("reports", help="NCMEC CyberTipline reports (the outbox)")
    rs = rp.add_subparsers(dest="reports_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--database-url", default=None,
            help="SQLAlchemy URL of blindmatch's database; None means BLINDMATCH_DATABASE_URL, "
            "else SQLite in BLINDMATCH_HOME",
        )  # fmt: skip
        p.add_argument("--json", action="store_true", help="one JSON object per line")

    ls = rs.add_parser("list", help="list the reports, oldest first", formatter_class=fmt)
    ls.add_argument("--state", choices=STATES, default=None,
                    help="only reports in this state; None lists all")  # fmt: skip
    common(ls)
    ls.set_defaults(func=cmd_list)
    sh = rs.add_parser("show", help="one report, its files and NCMEC's ids", formatter_class=fmt)
    sh.add_argument("id", help="the report id (NR-…)")
    common(sh)
    sh.set_defaults(func=cmd_show)
    se = rs.add_parser(
        "send", formatter_class=fmt,
        help="run the outbox once: advance every due report (exit 2 if one failed)",
    )  # fmt: skip
    common(se)
    se.set_defaults(func=cmd_send)
    rt = rs.add_parser("retract", help="withdraw an unfinished report", formatter_class=fmt)
    rt.add_argument("id", help="the report id (NR-…)")
    common(rt)
    rt.set_defaults(func=cmd_retract)
    pu = rs.add_parser(
        "purge", formatter_class=fmt,
        help="erase evidence past its retention (BLINDMATCH_EVIDENCE_RETENTION_DAYS, 90), "
        "except files of a report still in the outbox",
    )  # fmt: skip
    common(pu)
    pu.set_defaults(func=cmd_purge)
