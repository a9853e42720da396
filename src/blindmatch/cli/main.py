"""``blindmatch`` — hash, keep hash lists, scan, serve.

Exit codes follow virus scanners such as clamscan: 0 clean, 1 a match was
found, 2 some inputs failed (or the command itself failed). A match outranks a
failure: when both happen the exit code is 1 and the summary counts failures,
because a found match is the fact a pipeline must not miss.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

from blindmatch._version import __version__
from blindmatch.batch import Hashed, Outcome, default_workers, hash_many
from blindmatch.errors import (
    BlindmatchError,
    InputError,
    InternalError,
    InvalidArgument,
    IoFailed,
    NotAFile,
    NotFound,
    PermissionDenied,
)
from blindmatch.files import DEFAULT_MAX_FILE_BYTES, Failure, Limits, image_pixels, read_file
from blindmatch.hashing import DEFAULT_MAX_PIXELS
from blindmatch.hashing.keypoints import listed_features
from blindmatch.lists import ListEntry, dump_list, parse_list
from blindmatch.matching import DEFAULT_MIN_QUALITY
from blindmatch.runtime import open_runtime

EXIT_CLEAN, EXIT_MATCH, EXIT_FAILED = 0, 1, 2
LIST_FORMATS = ("csv", "jsonl", "te", "ncmec")


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(", ", ": ")) + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(max_file_bytes=args.max_file_bytes, max_pixels=args.max_pixels)


def _progress(enabled: bool) -> Any:
    if not enabled or not sys.stderr.isatty():
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        console=Console(stderr=True),
        transient=True,
    )


def _tracked(outcomes: Iterator[Outcome], progress: Any, label: str) -> Iterator[Outcome]:
    if progress is None:
        yield from outcomes
        return
    task = progress.add_task(label, total=None, rate="")
    start = time.monotonic()
    for n, o in enumerate(outcomes, 1):
        rate = n / max(time.monotonic() - start, 1e-9)
        progress.update(task, advance=1, rate=f"{rate:.0f} files/s")
        yield o


def _print_failure(f: Failure, as_json: bool) -> None:
    if as_json:
        _emit(f.to_json())
    else:
        _err(f"{f.path}: error [{f.error.code}] {f.error.message}")


# -- hash -------------------------------------------------------------------
def cmd_hash(args: argparse.Namespace) -> int:
    failed = 0
    with _progress(not args.no_progress) as progress:
        for o in _tracked(hash_many(args.paths, _limits(args), args.workers), progress, "hashing"):
            if isinstance(o, Failure):
                failed += 1
                _print_failure(o, args.json)
            elif args.json:
                _emit(o.to_json())
            else:
                h = o.hashes
                if h.kind == "image":
                    line = f"{o.path}\timage\tpdq={h.pdq} q={h.pdq_quality}\tmd5={h.md5}"
                else:
                    line = f"{o.path}\tvideo\tvpdq={len(h.vpdq)} frames\tmd5={h.md5}"
                sys.stdout.write(line + "\n")
    return EXIT_FAILED if failed else EXIT_CLEAN


# -- scan -------------------------------------------------------------------
def cmd_scan(args: argparse.Namespace) -> int:
    rt = open_runtime()
    matcher = rt.matcher
    lists = args.list or None
    matcher.match_values(lists=lists, threshold=args.threshold)  # check list names up front
    files = matched = failed = 0
    start = time.monotonic()
    with _progress(not args.no_progress) as progress:
        limits = _limits(args)
        hashed = hash_many(args.paths, limits, args.workers, variants=not args.plain)
        outcomes = _tracked(hashed, progress, "scanning")
        for o in outcomes:
            files += 1
            if isinstance(o, Failure):
                failed += 1
                _print_failure(o, args.json)
                continue
            found = matcher.match(
                o.hashes,
                lists=lists,
                threshold=args.threshold,
                min_quality=args.min_quality,
                image=partial(image_pixels, o.path, limits),
            )
            matched += bool(found)
            if args.json:
                _emit({"path": o.path, "matches": [m.to_json() for m in found]})
            elif found:
                for m in found:
                    sys.stdout.write(
                        f"{o.path}: MATCH list={m.list} entry={m.entry_id} "
                        f"{m.hash_type} distance={m.distance} category={m.category or '-'}\n"
                    )
            elif args.verbose:
                sys.stdout.write(f"{o.path}: no match\n")
    secs = time.monotonic() - start
    _err(
        f"scanned {files} file(s) in {secs:.1f} s: {matched} matched, "
        f"{files - matched - failed} clean, {failed} failed"
    )
    if matched:
        return EXIT_MATCH
    return EXIT_FAILED if failed else EXIT_CLEAN


# -- lists ------------------------------------------------------------------
def cmd_lists_import(args: argparse.Namespace) -> int:
    rt = open_runtime()
    data = read_file(args.file, DEFAULT_MAX_FILE_BYTES * 4, allow_empty=True)
    parsed = parse_list(data, args.format, filename=Path(args.file).name)
    summary = rt.store.import_entries(
        args.name,
        parsed.entries,
        source=args.source,
        version=args.version,
        file_sha256=hashlib.sha256(data).hexdigest(),
        format=parsed.format,
    )
    _report_import(summary.to_json() | {"format": parsed.format}, args.json)
    return EXIT_CLEAN


def _report_import(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _emit(summary)
    else:
        fmt = f" ({summary['format']})" if "format" in summary else ""
        hot = f"; {summary['hot']} hot" if "hot" in summary else ""
        sys.stdout.write(
            f"{summary['list']}{fmt}: {summary['added']} added, {summary['changed']} changed, "
            f"{summary['removed']} removed, {summary['unchanged']} unchanged{hot}\n"
        )


def cmd_lists_add(args: argparse.Namespace) -> int:
    rt = open_runtime()
    entries: list[ListEntry] = []
    keypoints: dict[str, bytes] = {}
    failed = 0
    limits = _limits(args)
    hot = 0  # entries with hot companion hashes (--hot)
    # Pictures get their companion hash too (private matching's lookup keys for mirrored,
    # rotated and shrunk copies: blindmatch.hashing.canonical); videos have none. With
    # --hot, also their hot companion hashes (cropped and turned copies: hashing.hot).
    for o in hash_many(args.images, limits, args.workers, companion=True, hot=args.hot):
        if isinstance(o, Failure):
            failed += 1
            _print_failure(o, args.json)
            continue
        entry = _entry_for(o, args.category)
        if args.hot and not entry.pdq_hot:
            # Listed all the same, but not hot: say why.
            why = (
                "videos have none"
                if o.hashes.kind == "video"
                else "the picture is too small or too flat for any (see hashing.hot)"
            )
            _err(f"blindmatch: warning: {o.path}: listed without hot companion hashes: {why}")
        hot += bool(entry.pdq_hot)
        if o.hashes.kind == "image" and not args.no_keypoints:
            try:
                rgb = image_pixels(o.path, limits)
            except InputError as e:  # changed or gone since it was hashed
                failed += 1
                _print_failure(Failure(o.path, e), args.json)
                continue
            keypoints[entry.source_id] = listed_features(rgb).to_bytes()
        entries.append(entry)
    summary = rt.store.import_entries(
        args.name, entries, source=args.source, version=args.version, keypoints=keypoints
    )
    report = summary.to_json() | {"failed": failed}
    _report_import(report | ({"hot": hot} if args.hot else {}), args.json)
    return EXIT_FAILED if failed else EXIT_CLEAN


def _entry_for(o: Hashed, category: str | None) -> ListEntry:
    h = o.hashes
    return ListEntry(
        source_id=f"sha256:{h.sha256}",
        pdq=h.pdq,
        md5=h.md5,
        sha256=h.sha256,
        vpdq=h.vpdq or None,
        category=category,
        pdq_companion=h.pdq_companion,
        pdq_hot=h.pdq_hot,
    )


def cmd_lists_create(args: argparse.Namespace) -> int:
    rt = open_runtime()
    info = rt.store.create_list(
        args.name,
        source=args.source or "",
        version=args.version or "",
        description=args.description or "",
        pdq_threshold=args.threshold,
    )
    _show(info.to_json(), args.json)
    return EXIT_CLEAN


def cmd_lists_show(args: argparse.Namespace) -> int:
    rt = open_runtime()
    infos = [rt.store.get_list(args.name)] if args.name else rt.store.lists()
    if not infos and not args.json:
        sys.stdout.write("no lists yet: try `blindmatch lists import NAME FILE`\n")
    for info in infos:
        _show(info.to_json(), args.json)
    return EXIT_CLEAN


def _show(d: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _emit(d)
    else:
        sys.stdout.write(
            f"{d['name']}: {d['entries']} entries ({d['removed']} removed), "
            f"source={d['source'] or '-'} version={d['version'] or '-'} "
            f"pdq_threshold={d['pdq_threshold']} updated={d['updated_at']}\n"
        )


def cmd_lists_export(args: argparse.Namespace) -> int:
    rt = open_runtime()
    data = dump_list(list(rt.store.live_entries(args.name)), args.format)
    if args.output and args.output != "-":
        _write_output(Path(args.output), data)
    elif hasattr(sys.stdout, "buffer"):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        sys.stdout.write(data.decode())
    return EXIT_CLEAN


def _write_output(path: Path, data: bytes) -> None:
    """Write an output file the user named; every way it can fail is a coded error."""
    if path.is_dir():
        raise NotAFile(f"cannot write {path}: it is a folder (give a file name)")
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise NotFound(f"cannot write {path}: the folder {folder} {what}")
    try:
        path.write_bytes(data)
    except PermissionError as e:
        raise PermissionDenied(f"cannot write {path}: permission denied") from e
    except OSError as e:
        raise IoFailed(f"cannot write {path}: {e.strerror or e}") from e


def cmd_lists_remove(args: argparse.Namespace) -> int:
    rt = open_runtime()
    rt.store.remove_list(args.name)
    sys.stdout.write(f"removed list {args.name}\n")
    return EXIT_CLEAN


def cmd_lists_threshold(args: argparse.Namespace) -> int:
    rt = open_runtime()
    _show(rt.store.set_threshold(args.name, args.threshold).to_json(), args.json)
    return EXIT_CLEAN


# -- keys, serve, demo -------------------------------------------------------
def cmd_keys_create(args: argparse.Namespace) -> int:
    rt = open_runtime()
    key = rt.store.create_api_key(args.name, args.scope)
    sys.stdout.write(key + "\n")
    _err(f"created {args.scope} key {args.name!r}; it is shown only once")
    return EXIT_CLEAN


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    rt = open_runtime()
    n = rt.store.revoke_api_key(args.name)
    sys.stdout.write(f"revoked {n} key(s) named {args.name!r}\n")
    return EXIT_CLEAN if n else EXIT_FAILED


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from blindmatch.service import create_app
    from blindmatch.service.limits import (
        HEADER_TIMEOUT_ENV,
        MAX_CONNECTIONS_ENV,
        log_config,
        raise_open_file_limit,
    )

    # Options travel as environment variables, so every worker process reads the same.
    if args.max_pixels is not None:
        os.environ["BLINDMATCH_MAX_PIXELS"] = str(args.max_pixels)
    if args.decode_budget is not None:
        os.environ["BLINDMATCH_DECODE_BUDGET"] = str(args.decode_budget)
    if not args.header_timeout > 0:
        raise ValueError("--header-timeout must be a positive number of seconds")
    soft, _hard = raise_open_file_limit()
    limit = args.limit_concurrency
    # Past twice the concurrency limit a connection is closed as it is accepted; keep
    # that below the open-file limit, with room for the database, index and logs.
    max_connections = 2 * limit if soft < 0 else max(1, min(2 * limit, soft - 64))
    os.environ[HEADER_TIMEOUT_ENV] = str(args.header_timeout)
    os.environ[MAX_CONNECTIONS_ENV] = str(max_connections)
    rt = open_runtime()  # settings are checked here (bad values exit 2)
    common: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "http": "blindmatch.service.limits:GuardedH11Protocol",
        "limit_concurrency": limit,
        "backlog": args.backlog,
        "timeout_keep_alive": args.timeout_keep_alive,
        "h11_max_incomplete_event_size": 16 * 1024,  # request line and headers
        "timeout_graceful_shutdown": 10,
        "log_config": log_config(access_log=not args.no_access_log),
        "access_log": not args.no_access_log,
    }
    if args.workers == 1:
        uvicorn.run(create_app(rt), **common)
        return EXIT_CLEAN
    rt.settings.check_service_secrets()
    rt.matcher  # noqa: B018 - build and save the index once, before the workers load it
    del rt
    uvicorn.run("blindmatch.service.app:app_from_env", factory=True, workers=args.workers, **common)
    return EXIT_CLEAN


def cmd_eval(args: argparse.Namespace) -> int:
    from blindmatch.batch import default_workers
    from blindmatch.config import load_settings
    from blindmatch.eval.report import to_json
    from blindmatch.eval.run import EvalOptions, run_eval
    from blindmatch.eval.schemes import make_scheme
    from blindmatch.eval.transforms import TRANSFORMS

    schemes = tuple(args.schemes.split(","))
    for name in schemes:
        make_scheme(name)  # unknown names fail before any work
    transforms = (
        tuple(TRANSFORMS) if args.transforms == "all" else tuple(args.transforms.split(","))
    )
    unknown = [t for t in transforms if t not in TRANSFORMS and "+" not in t]
    if unknown:
        raise ValueError(f"unknown transform {unknown[0]!r}; known: {', '.join(TRANSFORMS)}")
    opts = EvalOptions(
        corpus=args.corpus,
        listed=args.listed,
        distractors=args.distractors,
        schemes=schemes,
        transforms=transforms,
        seed=args.seed,
        workers=args.workers or default_workers(),
        out=Path(args.out) if args.out else None,
        cache_dir=load_settings().home / "eval-cache",
    )
    with _progress(not args.no_progress) as progress:
        tasks: dict[str, Any] = {}

        def tick(stage: str, done: int, total: int) -> None:
            if progress is None:
                return
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total, rate="")
            progress.update(tasks[stage], completed=done)

        command = "blindmatch eval " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else None
        result = run_eval(opts, tick, command)
    if args.json:
        _emit(to_json(result))
    else:
        for s in result.schemes:
            sys.stdout.write(
                f"{s.scheme:8} recall {100 * s.overall_recall:5.1f}% over {len(result.transforms)} "
                f"transforms; {s.false_matches}/{result.distractors} distractors matched\n"
            )
        if opts.out:
            sys.stdout.write(f"report: {opts.out / 'README.md'}\n")
    return EXIT_CLEAN


def cmd_demo(args: argparse.Namespace) -> int:
    from blindmatch.demo.run import run_demo

    rc = EXIT_CLEAN
    if args.part in ("all", "matrix"):
        from blindmatch.config import load_settings
        from blindmatch.demo.matrix import run_matrix_demo

        seed = bytes.fromhex(args.table_seed) if args.table_seed else None
        rc = run_matrix_demo(load_settings().home, json_output=args.json, table_seed=seed)
        if args.part == "all" and not args.json:
            sys.stdout.write("\n" + "-" * 78 + "\n\n")
    if args.part in ("all", "scan"):
        rc = max(rc, run_demo(json_output=args.json))
    return rc


def _seed_hex(text: str) -> str:
    try:
        if len(bytes.fromhex(text)) == 32:
            return text
    except ValueError:
        pass
    raise argparse.ArgumentTypeError("expected 64 hex digits (32 bytes)")


# -- parser -----------------------------------------------------------------
def _workers(text: str) -> int:
    """``--workers``: 1 up to the cores this process may use (more only costs memory)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes, got {text!r}") from None
    cores = default_workers()
    if not 1 <= n <= cores:
        raise argparse.ArgumentTypeError(
            f"{n} is not between 1 and the {cores} cores this process may use"
        )
    return n


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def _hash_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=_workers, default=None, help="processes (default: all cores)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS)
    p.add_argument("--max-file-bytes", type=int, default=DEFAULT_MAX_FILE_BYTES)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="blindmatch", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"blindmatch {__version__}")
    p.add_argument(
        "--debug",
        action="store_true",
        help="on an error, also print its traceback (or set BLINDMATCH_DEBUG=1)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    h = sub.add_parser("hash", help="hash images and videos (directories recurse)")
    h.add_argument("paths", nargs="+")
    h.add_argument("--json", action="store_true", help="one JSON object per file per line")
    _hash_opts(h)
    h.set_defaults(func=cmd_hash)

    s = sub.add_parser("scan", help="hash files and match them against lists")
    s.add_argument("paths", nargs="+")
    s.add_argument("--list", action="append", help="list to match (repeatable; default all)")
    s.add_argument("--threshold", type=int, default=None, help="PDQ radius for every list")
    s.add_argument("--min-quality", type=int, default=DEFAULT_MIN_QUALITY)
    s.add_argument(
        "--plain",
        action="store_true",
        help="look up only the image as is (no flipped, rotated or trimmed variants)",
    )
    s.add_argument("--json", action="store_true")
    s.add_argument("-v", "--verbose", action="store_true", help="also print files with no match")
    _hash_opts(s)
    s.set_defaults(func=cmd_scan)

    lp = sub.add_parser("lists", help="manage hash lists")
    ls = lp.add_subparsers(dest="lists_command", required=True)
    imp = ls.add_parser("import", help="import a list file (csv, jsonl, te, ncmec xml)")
    imp.add_argument("name")
    imp.add_argument("file")
    imp.add_argument("--format", choices=LIST_FORMATS, default=None)
    imp.add_argument("--source", default=None)
    imp.add_argument("--version", dest="version", default=None)
    imp.add_argument("--json", action="store_true")
    imp.set_defaults(func=cmd_lists_import)

    add = ls.add_parser("add", help="add images or videos to a list (what a hotline does)")
    add.add_argument("name")
    add.add_argument("images", nargs="+")
    add.add_argument("--category", default=None)
    add.add_argument("--source", default=None)
    add.add_argument("--version", dest="version", default=None)
    add.add_argument(
        "--no-keypoints",
        action="store_true",
        help="store hashes only: no keypoint features (crops and small rotations go unmatched)",
    )
    add.add_argument(
        "--hot",
        action="store_true",
        help="hot pictures (re-shared a lot): also store up to 91 hot companion hashes of each "
        "picture cropped and turned, so private matching finds such copies (~1 s and up to "
        "~3.6 KB of table a picture; a table keeps those two hotlines agree on)",
    )
    add.add_argument("--json", action="store_true")
    _hash_opts(add)
    add.set_defaults(func=cmd_lists_add)

    cr = ls.add_parser("create", help="create an empty list")
    cr.add_argument("name")
    cr.add_argument("--source", default=None)
    cr.add_argument("--version", dest="version", default=None)
    cr.add_argument("--description", default=None)
    cr.add_argument("--threshold", type=int, default=31, help="PDQ match radius for this list")
    cr.add_argument("--json", action="store_true")
    cr.set_defaults(func=cmd_lists_create)

    sh = ls.add_parser("show", help="show one list or all")
    sh.add_argument("name", nargs="?")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_lists_show)

    ex = ls.add_parser("export", help="write a list's live entries")
    ex.add_argument("name")
    ex.add_argument("--format", choices=("csv", "jsonl", "te"), default="csv")
    ex.add_argument("-o", "--output", default=None)
    ex.set_defaults(func=cmd_lists_export)

    rm = ls.add_parser("remove", help="delete a list and its entries")
    rm.add_argument("name")
    rm.set_defaults(func=cmd_lists_remove)

    th = ls.add_parser("threshold", help="set a list's PDQ match radius")
    th.add_argument("name")
    th.add_argument("threshold", type=int)
    th.add_argument("--json", action="store_true")
    th.set_defaults(func=cmd_lists_threshold)

    kp = sub.add_parser("keys", help="API keys for the HTTP service")
    ks = kp.add_subparsers(dest="keys_command", required=True)
    kc = ks.add_parser("create")
    kc.add_argument("name")
    kc.add_argument("--scope", choices=("read", "write"), default="read")
    kc.set_defaults(func=cmd_keys_create)
    kr = ks.add_parser("revoke")
    kr.add_argument("name")
    kr.set_defaults(func=cmd_keys_revoke)

    sv = sub.add_parser("serve", help="run the HTTP service (127.0.0.1 by default)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument(
        "--workers", type=_workers, default=1,
        help="uvicorn worker processes, at most the number of cores (default 1); each "
        "loads its own copy of the match index",
    )  # fmt: skip
    sv.add_argument(
        "--max-pixels", type=_positive_int, default=None,
        help="refuse uploads over this many pixels (default and ceiling 64000000; "
        "env BLINDMATCH_MAX_PIXELS)",
    )  # fmt: skip
    sv.add_argument(
        "--decode-budget", type=_positive_int, default=None,
        help="pixels decoded at once over all uploads; past it a request waits up to 5 s, "
        "then gets 503 busy (default twice the pixel limit; env BLINDMATCH_DECODE_BUDGET)",
    )  # fmt: skip
    sv.add_argument(
        "--limit-concurrency", type=_positive_int, default=256,
        help="past this many connections or requests, answer 503; past twice as many "
        "connections, close new ones at once (default 256)",
    )  # fmt: skip
    sv.add_argument(
        "--header-timeout", type=float, default=10.0,
        help="seconds a connection may take to send a request head (default 10)",
    )  # fmt: skip
    sv.add_argument("--timeout-keep-alive", type=_positive_int, default=5, help="seconds (5)")
    sv.add_argument("--backlog", type=_positive_int, default=512, help="listen backlog (512)")
    sv.add_argument("--no-access-log", action="store_true", help="no line per request")
    sv.set_defaults(func=cmd_serve)

    ev = sub.add_parser("eval", help="measure recall under edits and false matches")
    ev.add_argument("--corpus", default="auto", help="auto (installed packages), small, or DIR")
    ev.add_argument("--listed", type=int, default=700)
    ev.add_argument("--distractors", type=int, default=20_000)
    ev.add_argument(
        "--schemes",
        default="pdq,robust,robust+orb,phash,dhash",
        help="comma-separated: pdq, robust, robust+listtrim, orb, robust+orb (what scan and "
        "the service run), private (what the messenger blocks: the Matrix client's vouchers "
        "opened by the server, block policy), phash, dhash, broken, robust-nodihedral, "
        "robust-notrim",
    )
    ev.add_argument("--transforms", default="all", help="comma-separated names, or all")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--workers", type=_workers, default=None)
    ev.add_argument("--out", default=None, help="folder for the markdown report and plots")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=cmd_eval)

    dm = sub.add_parser(
        "demo",
        help="an E2EE messenger (Synapse + the module, two users) refusing a listed picture, "
        "then a hotline list and a scan of edited copies; benign pictures only",
    )
    dm.add_argument(
        "part", nargs="?", choices=("all", "matrix", "scan"), default="all",
        help="matrix: the messenger; scan: the list and scan (default: both)",
    )  # fmt: skip
    dm.add_argument("--json", action="store_true")
    dm.add_argument(
        "--table-seed", type=_seed_hex, default=None, metavar="HEX",
        help="the messenger demo's lookup-key seed (64 hex digits; printed by each run)",
    )  # fmt: skip
    dm.set_defaults(func=cmd_demo)

    from blindmatch.cli.protocol_cmds import register  # table, voucher: private matching

    register(sub, _hash_opts)
    from blindmatch.cli.cases_cmds import register as register_cases  # review cases

    register_cases(sub)
    from blindmatch.cli.enforcement_cmds import register as register_enforcement

    register_enforcement(sub)  # statements, appeals (enforcement)
    from blindmatch.cli.reports_cmds import register as register_reports  # NCMEC reports

    register_reports(sub)
    return p


def _debug(args: argparse.Namespace) -> bool:
    if getattr(args, "debug", False):
        return True
    return os.environ.get("BLINDMATCH_DEBUG", "") not in ("", "0")


def _coded(exc: Exception) -> BlindmatchError:
    """Any exception as a coded error: the CLI never ends in a traceback, and never
    with exit 1 (the "match found" code) because something broke."""
    if isinstance(exc, BlindmatchError):
        return exc
    from blindmatch.store.errors import database_error

    db = database_error(exc)
    if db is not None:
        return db
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return IoFailed(f"{exc.strerror or exc}{where}")
    if isinstance(exc, ValueError):  # a bad argument found past the parser
        return InvalidArgument(str(exc))
    return InternalError(f"internal error (a bug, please report it): {type(exc).__name__}: {exc}")


def main(argv: Sequence[str] | None = None) -> int:
    """The ``blindmatch`` command. Exit 0 clean, 1 a match, 2 a failure: every
    exception ends here as a coded error with exit 2 (``--debug`` or
    ``BLINDMATCH_DEBUG=1`` also prints its traceback)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        _err("blindmatch: interrupted")
        return 130
    except BrokenPipeError:  # the reader went away: nothing left to tell it
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - the one place every error ends
        e = _coded(exc)
        try:
            if getattr(args, "json", False):
                _emit({"error": e.as_dict()})
            else:
                _err(f"blindmatch: error [{e.code}] {e.message}")
            if _debug(args):
                traceback.print_exception(exc, file=sys.stderr)
        except (OSError, ValueError):
            pass  # stdout or stderr itself is gone; the exit code still says it
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
