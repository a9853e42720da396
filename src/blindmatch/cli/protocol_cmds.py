"""``blindmatch table`` and ``blindmatch voucher``: operating the private-matching protocol.

Thin commands over :mod:`blindmatch.protocol` (which is pure): this module does
the files, keys and output. A table directory holds::

    table.bin      the blinded table (public: ships to every client)
    manifest.json  the signed manifest (public: ships with the table)
    trust.json     the public keys the table was signed with (what a client may trust)
    server.key     the server's secret (mode 0600; never leaves the matching server)
    records.bin    a distance-checked table's committed records (server side; recomputed
                   from server.key when absent, ~12 ms a record)

Signing keys are Ed25519 private keys in PEM (PKCS#8), e.g. from
``blindmatch table keygen FILE`` or ``openssl genpkey -algorithm ed25519``. In
dev mode (``BLINDMATCH_ENV=dev``, the default) missing keys are generated once
and reused under ``$BLINDMATCH_HOME/signing/`` and a hotline without
``--jurisdiction`` is given the pretend jurisdiction ``dev-<hotline>``; with
``BLINDMATCH_ENV=prod`` every key and jurisdiction must be given, and
``voucher make`` needs ``--trust FILE``.

A trust file (``trust.json``) may also carry ``max_age_seconds`` (default 30 days;
null: ``issued`` is not checked) and ``floors`` (fields of
:class:`blindmatch.protocol.Floors`, for test tables below the default floors).
``voucher make`` and ``voucher check`` keep the newest table sequence they accepted
per platform key in ``$BLINDMATCH_HOME/client/table-history.json``
(``--table-history FILE``) and refuse older tables and other tables under a seen
sequence (docs/protocol.md §4).

``voucher make`` commits each voucher to the SHA-256 of its image file (the
voucher's 32-byte ``commitment``) and, with ``--openings DIR``, writes the
voucher's opening seed to ``DIR/IMAGE.opening`` (mode 0600; format ``BMOP``,
version 1, then the 32-byte seed). ``voucher check`` is the recipient's side of
property 6: it recomputes each voucher from its image and opening and says
whether the voucher was made for that very file.

A table built with ``--distance-radius R`` is *distance-checked* (docs/protocol.md §11,
the second private distance check; block policy, 40-bit lookup keys): its vouchers open in
two rounds. The server writes each voucher's challenge (``voucher challenge``:
``IMAGE.challenge`` beside ``IMAGE.voucher``, or in ``--out``; a function of the voucher,
so asking again gives the same bytes), the sender answers it from the image and its opening
(``voucher answer``: ``IMAGE.answer``) and ``voucher open`` reads ``IMAGE.answer`` beside
each voucher (or in ``--answers DIR``); without one a voucher fails, named, and the batch
goes on. ``voucher check`` then also recomputes the answer to the challenge
(``--challenges``, ``--answers``; default: ``--vouchers``).

Exit codes: ``table`` and ``voucher make``, ``challenge`` and ``answer`` exit 0 on success
and 2 when the command or any input failed; ``voucher open`` exits 1 when any voucher
matched, was blocked or failed, else 0 (2 when the command itself failed: bad key, table, options);
``voucher check`` exits 0 when every voucher verified, 1 when any did not, and
2 when only other inputs failed (unreadable image, missing voucher or opening).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blindmatch.batch import hash_many
from blindmatch.config import Settings, load_settings
from blindmatch.errors import (
    BlindmatchError,
    ConfigError,
    GovernanceRefused,
    InternalError,
    InvalidKey,
    IoFailed,
    LowQuality,
    NotAnImage,
    OutputExists,
    ProtocolError,
)
from blindmatch.files import Failure, Limits, image_pixels, iter_files, read_file
from blindmatch.fsutil import write_atomic
from blindmatch.hashing.image import MIN_QUALITY
from blindmatch.private.query import query_hashes
from blindmatch.private.trust import (
    MANIFEST_FILE,
    RECORDS_FILE,
    SERVER_KEY_FILE,
    TABLE_FILE,
    TRUST_FILE,
    load_trust_file,
    write_table_dir,
)
from blindmatch.table_history import FileTableHistory

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from blindmatch.lists import ListEntry
    from blindmatch.protocol import (
        OpenResult,
        ServerSession,
        Table,
        TableHistory,
        VerifiedTable,
    )

EXIT_CLEAN, EXIT_MATCH, EXIT_FAILED = 0, 1, 2
TABLE_HISTORY_FILE = "table-history.json"
MAX_TABLE_BYTES = 1 << 31  # 2 GiB: ~50M lookup keys
MAX_SMALL_FILE_BYTES = 1 << 20  # manifests, trust files, keys, vouchers
MAX_SERVER_KEY_BYTES = 1 << 31
OPENING_MAGIC, OPENING_VERSION = b"BMOP", 1
# One entry of a HotlineList: (id, PDQ), (id, PDQ, companions) or (id, PDQ, companions, hot).
TableEntry = (
    tuple[str, bytes]
    | tuple[str, bytes, tuple[bytes, ...]]
    | tuple[str, bytes, tuple[bytes, ...], tuple[bytes, ...]]
)


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn a stray ``OSError`` into a coded error: never a traceback."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except BlindmatchError:
            raise
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            raise IoFailed(f"{where}{e.strerror or e}") from None

    return run


# -- output -----------------------------------------------------------------
def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(", ", ": ")) + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _warn(text: str) -> None:
    _err(f"blindmatch: warning: {text}")


def _fail_line(path: str, e: BlindmatchError, as_json: bool) -> None:
    if as_json:
        _emit({"path": path, "error": e.as_dict()})
    else:
        _err(f"{path}: error [{e.code}] {e.message}")


# -- files ------------------------------------------------------------------
def _write_file(path: Path, data: bytes, *, private: bool, replace: bool) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename (0600 if ``private``)."""
    if path.exists() and not replace:
        raise OutputExists(f"{path} exists; pass --force to replace it")
    write_atomic(path, data, private=private)


def _key_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


# -- signing keys -----------------------------------------------------------
def _load_signing_key(path: str) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = read_file(path, MAX_SMALL_FILE_BYTES)
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise InvalidKey(f"{path}: not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidKey(f"{path}: not an Ed25519 key")
    return key


def _pem(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_hex(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def _dev_key(settings: Settings, name: str) -> tuple[Ed25519PrivateKey, Path]:
    """A dev signing key under ``$BLINDMATCH_HOME/signing/``: made once, then reused."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = settings.home / "signing"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    slug = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    if slug != name:
        slug += "-" + name.encode().hex()[:16]
    path = folder / f"{slug}.pem"
    if path.exists():
        return _load_signing_key(str(path)), path
    key = Ed25519PrivateKey.generate()
    _write_file(path, _pem(key), private=True, replace=False)
    return key, path


# -- trust ------------------------------------------------------------------
# -- table build --------------------------------------------------------------
@dataclass
class _Signers:
    platform: Ed25519PrivateKey
    hotlines: dict[str, tuple[Ed25519PrivateKey, str]]  # name -> (key, jurisdiction)


def _signers(args: argparse.Namespace, settings: Settings, sources: list[str]) -> _Signers:
    hotline_keys = dict(args.hotline_key or [])
    places = dict(args.jurisdiction or [])
    unknown = sorted((set(hotline_keys) | set(places)) - set(sources))
    if unknown:
        raise ConfigError(f"no list in this table comes from hotline {unknown[0]!r}")
    missing_keys = [s for s in sources if s not in hotline_keys]
    missing_places = [s for s in sources if s not in places]
    if not settings.dev:
        if not args.platform_key:
            raise ConfigError("--platform-key FILE is required with BLINDMATCH_ENV=prod")
        if missing_keys:
            raise ConfigError(
                f"--hotline-key {missing_keys[0]}=FILE is required with BLINDMATCH_ENV=prod"
            )
        if missing_places:
            raise ConfigError(
                f"--jurisdiction {missing_places[0]}=CODE is required with BLINDMATCH_ENV=prod"
            )
    generated: list[str] = []
    if args.platform_key:
        platform = _load_signing_key(args.platform_key)
    else:
        platform, path = _dev_key(settings, "platform")
        generated.append(str(path))
    hotlines: dict[str, tuple[Ed25519PrivateKey, str]] = {}
    for s in sources:
        if s in hotline_keys:
            key = _load_signing_key(hotline_keys[s])
        else:
            key, path = _dev_key(settings, f"hotline-{s}")
            generated.append(str(path))
        hotlines[s] = (key, places.get(s, f"dev-{s}"))
    if generated or missing_places:
        _warn(
            "dev mode: signing with dev keys "
            + (f"({', '.join(generated)}) " if generated else "")
            + (
                f"and pretend jurisdictions dev-<hotline> for {', '.join(missing_places)} "
                if missing_places
                else ""
            )
            + "— not for production (BLINDMATCH_ENV=prod needs --platform-key, "
            "--hotline-key and --jurisdiction)"
        )
    return _Signers(platform, hotlines)


def _table_entry(e: ListEntry, pdq_hex: str) -> TableEntry:
    """A stored entry (with its PDQ ``pdq_hex``) as a :class:`~blindmatch.protocol.HotlineList`
    entry: ``(id, pdq)``, ``(id, pdq, (companion,))``, or for a hot entry
    ``(id, pdq, (companion,) or (), hot)``."""
    pdq = bytes.fromhex(pdq_hex)
    companions = (bytes.fromhex(e.pdq_companion),) if e.pdq_companion is not None else ()
    if e.pdq_hot:
        return (e.source_id, pdq, companions, tuple(bytes.fromhex(h) for h in e.pdq_hot))
    if companions:
        return (e.source_id, pdq, companions)
    return (e.source_id, pdq)


def _empty_table(min_hotlines: int) -> GovernanceRefused:
    return GovernanceRefused(
        f"no entry is in lists of at least {min_hotlines} hotlines "
        "(in as many jurisdictions): the table would be empty"
    )


def cmd_table_build(args: argparse.Namespace) -> int:
    from blindmatch.batch import parallel_records
    from blindmatch.protocol import (
        MATCH_DISTANCE,
        HotlineList,
        Policy,
        VariantProbeLSH,
        checked_key_bits,
        format_issued,
        prepare_table,
        select_entries,
    )
    from blindmatch.protocol.table import MAX_DISTANCE_SLOTS
    from blindmatch.runtime import open_runtime

    settings = load_settings()
    if args.min_hotlines < 1:
        raise ValueError("--min-hotlines must be at least 1")
    if args.min_hotlines < 2:
        if not settings.dev:
            raise ConfigError("--min-hotlines below 2 is refused with BLINDMATCH_ENV=prod")
        _warn("--min-hotlines 1: no second hotline vouches for the entries (testing only)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise OutputExists(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise OutputExists(f"{out} is not empty; pass --force to replace the table in it")

    rt = open_runtime(settings)
    lists: list[HotlineList] = []
    sources: list[str] = []
    listed_companions = 0  # list entries that carry a companion hash
    listed_hot = 0  # list entries that carry hot companion hashes
    for name in dict.fromkeys(args.list):
        info = rt.store.get_list(name)
        if not info.source:
            raise ConfigError(
                f"list {name!r} has no source: the source names its hotline "
                f"(set it with `blindmatch lists create {name} --source HOTLINE` "
                "or `lists add/import --source`)"
            )
        # An entry listed from a picture carries its companion hash (``lists add``), a hot
        # one its hot companion hashes too (``lists add --hot``): lookup keys for each are
        # added when enough hotlines carry it with the PDQ (select_entries).
        entries = tuple(
            _table_entry(e, e.pdq) for e in rt.store.live_entries(name) if e.pdq is not None
        )
        listed_companions += sum(len(e) >= 3 and bool(e[2]) for e in entries)
        listed_hot += sum(len(e) == 4 for e in entries)
        lists.append(
            HotlineList(
                hotline=info.source,
                jurisdiction="?",  # filled in below, once the signers are known
                name=name,
                version=info.version or info.updated_at.isoformat(timespec="seconds"),
                entries=entries,
            )
        )
        sources.append(info.source)
    sources = list(dict.fromkeys(sources))
    if len(sources) < args.min_hotlines:
        raise GovernanceRefused(
            f"a table needs lists from at least {args.min_hotlines} hotlines; "
            f"these lists come from {len(sources)} ({', '.join(sources)})"
        )
    signers = _signers(args, settings, sources)
    lists = [
        HotlineList(li.hotline, signers.hotlines[li.hotline][1], li.name, li.version, li.entries)
        for li in lists
    ]
    if len({j for _, j in signers.hotlines.values()}) < args.min_hotlines:
        raise GovernanceRefused(
            f"a table needs hotlines in at least {args.min_hotlines} distinct jurisdictions"
        )

    seed = bytes.fromhex(args.lsh_seed) if args.lsh_seed else os.urandom(32)
    if len(seed) != 32:
        raise ValueError("--lsh-seed must be 64 hex digits")
    if args.sequence is not None and args.sequence < 0:
        raise ValueError("--sequence must be at least 0")
    policy = Policy(args.policy)
    checked = args.distance_radius is not None
    if checked:
        if policy is not Policy.BLOCK:
            raise ConfigError("--distance-radius: the distance check is for the block policy only")
        if not 0 <= args.distance_radius <= MATCH_DISTANCE:
            raise ValueError(f"--distance-radius must be in [0, {MATCH_DISTANCE}]")
        if args.distance_slots is not None and not 1 <= args.distance_slots <= MAX_DISTANCE_SLOTS:
            raise ValueError(f"--distance-slots must be in [1, {MAX_DISTANCE_SLOTS}]")
    elif args.distance_slots is not None:
        raise ConfigError("--distance-slots needs --distance-radius")
    # A distance-checked table takes short lookup keys (40 bits up to ~3M keys, then 48:
    # checked_key_bits): an innocent candidate tells the server that many bits of the
    # picture's hash, and the check decides the rest (docs/protocol.md §11).
    key_bits: dict[str, int] = {}
    if checked:
        selected = select_entries(lists, min_hotlines=args.min_hotlines)
        if not selected:
            raise _empty_table(args.min_hotlines)
        n_keys = sum(len(e.hashes) for e in selected)
        key_bits = {"k": checked_key_bits(n_keys, VariantProbeLSH().n_probes)}
    now = datetime.now(UTC).replace(microsecond=0)
    prep = prepare_table(
        lists,
        scheme=VariantProbeLSH(seed=seed, **key_bits),
        policy=policy,
        threshold=args.threshold,
        synthetic_ppm=args.synthetic_ppm,
        min_hotlines=args.min_hotlines,
        # Clients refuse a lower sequence than one they saw, and another table under the
        # same one: by default the build time, so every later build supersedes this one.
        sequence=args.sequence if args.sequence is not None else int(now.timestamp()),
        issued=format_issued(now),
        distance_radius=args.distance_radius,
        distance_slots=args.distance_slots or 1,
        records=parallel_records(),
    )
    if prep.manifest.n_entries == 0:
        raise _empty_table(args.min_hotlines)
    write_table_dir(out, prep, signers.platform, signers.hotlines, args.min_hotlines)

    m = prep.manifest
    # Entries of the table whose companion hashes passed governance too (lookup keys).
    with_companions = sum(1 for e in prep.server_secret.entries if e.companions)
    # Hot entries of the table: those with hot companion hashes two hotlines agreed on.
    entries_hot = sum(1 for e in prep.server_secret.entries if e.hot)
    hot_keys = sum(len(e.hot) for e in prep.server_secret.entries)
    summary: dict[str, Any] = {
        "out": str(out),
        "policy": policy.value,
        "entries": m.n_entries,
        "entries_with_companions": with_companions,
        "listed_companions": listed_companions,
        "entries_hot": entries_hot,
        "hot_keys": hot_keys,
        "listed_hot": listed_hot,
        "keys": m.n_keys,
        "slots": m.n_slots,
        "table_bytes": m.table_bytes,
        "table_digest": m.table_digest.hex(),
        "sequence": m.sequence,
        "issued": m.issued,
        "lists": [
            {"name": li.name, "hotline": li.hotline, "jurisdiction": li.jurisdiction}
            for li in m.lists
        ],
        # the second private distance check (docs/protocol.md §11): null for a table without
        "distance": None,
    }
    check = prep.table.distance
    if check is not None:
        summary["distance"] = {
            "radius": check.radius,
            "slots": check.slots,
            "records": check.n_records,
            "records_file": str(out / RECORDS_FILE),
            "key_bits": key_bits["k"],
        }
    if args.json:
        _emit(summary)
    else:
        sys.stdout.write(
            f"{out}: {m.n_entries} {'entry' if m.n_entries == 1 else 'entries'} "
            f"({with_companions} with companion hashes; {listed_companions} listed with one) "
            f"({entries_hot} hot, {hot_keys} hot companion keys; {listed_hot} listed hot) "
            f"from {len(sources)} hotlines "
            f"({', '.join(sources)}), policy {policy.value}, {m.table_bytes:,} B table; "
            f"server key {out / SERVER_KEY_FILE} (keep it on the server)\n"
        )
        if check is not None:
            sys.stdout.write(
                f"{out}: distance-checked: radius {check.radius}, {check.slots} "
                f"slot{'' if check.slots == 1 else 's'}, {check.n_records} committed "
                f"record{'' if check.n_records == 1 else 's'} in {out / RECORDS_FILE} "
                f"({key_bits['k']}-bit lookup keys); open its vouchers with "
                "`voucher challenge`, `voucher answer` and `voucher open`\n"
            )
    return EXIT_CLEAN


def cmd_table_keygen(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    Path(args.path).parent.mkdir(parents=True, exist_ok=True)
    _write_file(Path(args.path), _pem(key), private=True, replace=args.force)
    sys.stdout.write(_public_hex(key) + "\n")
    _err(f"wrote Ed25519 signing key {args.path} (mode 0600); its public key is printed above")
    return EXIT_CLEAN


# -- voucher make -------------------------------------------------------------
def _verified_table(
    table_dir: Path, trust_path: str, history: TableHistory | None = None
) -> VerifiedTable:
    from blindmatch.protocol import verify_table

    trust = load_trust_file(trust_path)
    table = read_file(str(table_dir / TABLE_FILE), MAX_TABLE_BYTES)
    manifest = read_file(str(table_dir / MANIFEST_FILE), MAX_SMALL_FILE_BYTES)
    try:
        return verify_table(table, manifest.rstrip(b"\n"), trust, history=history)
    except ProtocolError as e:
        e.message = f"{table_dir}: {e.message}; refusing this table"
        raise


def _account_secret(settings: Settings, path: str | None) -> Any:
    from blindmatch.protocol import AccountSecret

    p = Path(path) if path else settings.home / "client" / "account.key"
    if p.exists():
        data = read_file(str(p), MAX_SMALL_FILE_BYTES)
        if len(data) != 32:
            raise InvalidKey(f"{p}: an account key is 32 bytes")
        return AccountSecret(data)
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = AccountSecret.generate()
    _write_file(p, secret.to_bytes(), private=True, replace=False)
    return secret


def _encode_opening(seed: bytes) -> bytes:
    return OPENING_MAGIC + bytes([OPENING_VERSION]) + seed


def _read_opening(path: Path) -> bytes:
    from blindmatch.protocol.voucher import OPENING_SEED_BYTES

    data = read_file(str(path), MAX_SMALL_FILE_BYTES)
    if (
        len(data) != 5 + OPENING_SEED_BYTES
        or data[:4] != OPENING_MAGIC
        or data[4] != OPENING_VERSION
    ):
        raise ProtocolError(f"{path}: not an opening file (BMOP, version 1, 32-byte seed)")
    return data[5:]


def _client_table(settings: Settings, args: argparse.Namespace) -> VerifiedTable:
    """The table a client may use: verified against --trust (dev: the table's own trust file)."""
    table_dir = Path(args.table)
    trust_path = args.trust
    if not trust_path:
        if not settings.dev:
            raise ConfigError(
                "--trust FILE is required with BLINDMATCH_ENV=prod "
                "(a client must not trust the keys that came with the table)"
            )
        trust_path = str(table_dir / TRUST_FILE)
        _warn(f"dev mode: trusting the keys in {trust_path}, which came with the table")
    history = Path(args.table_history) if args.table_history else (
        settings.home / "client" / TABLE_HISTORY_FILE
    )  # fmt: skip
    return _verified_table(table_dir, trust_path, FileTableHistory(history))


def _out_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputExists(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


def cmd_voucher_make(args: argparse.Namespace) -> int:
    from blindmatch.protocol import ClientSession, new_opening_seed

    settings = load_settings()
    session = ClientSession(
        _client_table(settings, args), _account_secret(settings, args.account_key)
    )
    out = _out_dir(args.out)
    openings = _out_dir(args.openings) if args.openings else None

    limits = Limits(max_file_bytes=args.max_file_bytes, max_pixels=args.max_pixels)
    written: set[str] = set()
    made = failed = 0
    for o in hash_many(args.images, limits, args.workers):
        try:
            if isinstance(o, Failure):
                raise o.error
            h = o.hashes
            if h.kind != "image" or h.pdq is None:
                raise NotAnImage("vouchers are made for images only")
            if h.pdq_quality is None or h.pdq_quality < args.min_quality:
                raise LowQuality(
                    f"PDQ quality {h.pdq_quality} is below {args.min_quality}: "
                    "too flat or featureless to match"
                )
            name = Path(o.path).name + ".voucher"
            if name in written:
                raise OutputExists(f"another input in this run is also named {Path(o.path).name}")
            opening_name = Path(o.path).name + ".opening"
            if openings is not None and (openings / opening_name).exists() and not args.force:
                raise OutputExists(f"{openings / opening_name} exists; pass --force to replace it")
            pdq, confidence, variants = query_hashes(
                image_pixels(o.path, limits), companions=session.verified.has_companions
            )
            seed = new_opening_seed()
            voucher = session.make_voucher(
                pdq,
                confidence=confidence,
                variants=variants,
                commitment=bytes.fromhex(h.sha256),
                opening_seed=seed,
            )
            _write_file(out / name, voucher, private=False, replace=args.force)
            written.add(name)
            if openings is not None:
                opening = _encode_opening(seed)
                _write_file(openings / opening_name, opening, private=True, replace=True)
        except BlindmatchError as e:
            path = o.path
            failed += 1
            _fail_line(path, e, args.json)
            continue
        made += 1
        if args.json:
            line: dict[str, Any] = {
                "path": o.path,
                "voucher": str(out / name),
                "bytes": len(voucher),
            }
            if openings is not None:
                line["opening"] = str(openings / opening_name)
            _emit(line)
        else:
            sys.stdout.write(f"{o.path} -> {out / name}\n")
    _err(f"made {made} voucher(s) in {out}, {failed} failed")
    return EXIT_FAILED if failed else EXIT_CLEAN


# -- voucher answer -----------------------------------------------------------
def _image_query(o: Any, limits: Limits, verified: VerifiedTable) -> tuple[Any, ...]:
    """What ``voucher make`` computed from a hashed image ``o``: ``(pdq, confidence,
    variants, commitment)`` (the commitment: the SHA-256 of the file)."""
    if isinstance(o, Failure):
        raise o.error
    h = o.hashes
    if h.kind != "image" or h.pdq is None:
        raise NotAnImage("vouchers are made for images only")
    pdq, confidence, variants = query_hashes(
        image_pixels(o.path, limits), companions=verified.has_companions
    )
    return pdq, confidence, variants, bytes.fromhex(h.sha256)


def cmd_voucher_answer(args: argparse.Namespace) -> int:
    from blindmatch.protocol import answer_for_image

    settings = load_settings()
    verified = _client_table(settings, args)
    if verified.table.distance is None:
        raise ConfigError(
            f"the table in {args.table} has no distance check: its vouchers need no answer"
        )
    challenges = Path(args.challenges)
    openings = Path(args.openings) if args.openings else challenges
    out = _out_dir(args.out) if args.out else challenges
    limits = Limits(max_file_bytes=args.max_file_bytes, max_pixels=args.max_pixels)
    written: set[str] = set()
    made = failed = 0
    for o in hash_many(args.images, limits, args.workers):
        name = Path(o.path).name
        target = out / f"{name}.answer"
        try:
            if name in written:
                raise OutputExists(f"another input in this run is also named {name}")
            if target.exists() and not args.force:
                raise OutputExists(f"{target} exists; pass --force to replace it")
            challenge = read_file(str(challenges / f"{name}.challenge"), MAX_SMALL_FILE_BYTES)
            seed = _read_opening(openings / f"{name}.opening")
            pdq, confidence, variants, commitment = _image_query(o, limits, verified)
            answer = answer_for_image(
                verified, challenge, seed, pdq,
                confidence=confidence, variants=variants, commitment=commitment,
            )  # fmt: skip
            _write_file(target, answer, private=False, replace=True)
            written.add(name)
        except BlindmatchError as e:
            failed += 1
            _fail_line(o.path, e, args.json)
            continue
        made += 1
        if args.json:
            _emit({"path": o.path, "answer": str(target), "bytes": len(answer)})
        else:
            sys.stdout.write(f"{o.path} -> {target}\n")
    _err(f"answered {made} challenge(s) in {out}, {failed} failed")
    return EXIT_FAILED if failed else EXIT_CLEAN


# -- voucher check ------------------------------------------------------------
def cmd_voucher_check(args: argparse.Namespace) -> int:
    from blindmatch.errors import InvalidVoucher
    from blindmatch.protocol import verify_voucher_for_image

    settings = load_settings()
    verified = _client_table(settings, args)
    vouchers = Path(args.vouchers)
    openings = Path(args.openings) if args.openings else vouchers
    checked = verified.table.distance is not None
    if (args.challenges or args.answers) and not checked:
        raise ConfigError(
            f"--challenges/--answers: the table in {args.table} has no distance check; "
            "its vouchers have no challenge or answer"
        )
    challenges = Path(args.challenges) if args.challenges else vouchers
    answers = Path(args.answers) if args.answers else challenges
    limits = Limits(max_file_bytes=args.max_file_bytes, max_pixels=args.max_pixels)
    good = bad = failed = 0
    for o in hash_many(args.images, limits, args.workers):
        voucher_path = vouchers / (Path(o.path).name + ".voucher")
        try:
            if isinstance(o, Failure):
                raise o.error
            h = o.hashes
            if h.kind != "image" or h.pdq is None:
                raise NotAnImage("vouchers are made for images only")
            voucher = read_file(str(voucher_path), MAX_SMALL_FILE_BYTES)
            seed = _read_opening(openings / (Path(o.path).name + ".opening"))
            challenge = answer = None
            if checked:  # the server's challenge and the sender's answer are checked too
                name = Path(o.path).name
                challenge = read_file(str(challenges / f"{name}.challenge"), MAX_SMALL_FILE_BYTES)
                answer = read_file(str(answers / f"{name}.answer"), MAX_SMALL_FILE_BYTES)
            pdq, confidence, variants, commitment = _image_query(o, limits, verified)
            verify_voucher_for_image(
                verified,
                voucher,
                seed,
                pdq,
                confidence=confidence,
                variants=variants,
                commitment=commitment,
                challenge=challenge,
                answer=answer,
            )
        except InvalidVoucher as e:
            bad += 1
            e.message = f"{voucher_path}: {e.message}"
            _fail_line(o.path, e, args.json)
            continue
        except BlindmatchError as e:
            failed += 1
            _fail_line(o.path, e, args.json)
            continue
        good += 1
        if args.json:
            _emit({"path": o.path, "voucher": str(voucher_path), "verified": True})
        else:
            sys.stdout.write(f"{o.path}: voucher {voucher_path} verified\n")
    _err(
        f"checked {good + bad + failed} voucher(s): {good} verified, "
        f"{bad} did not verify, {failed} failed"
    )
    if bad:
        return EXIT_MATCH
    return EXIT_FAILED if failed else EXIT_CLEAN


# -- voucher open -------------------------------------------------------------
def _match_json(result: OpenResult) -> list[dict[str, object]]:
    return [
        {
            "hotline": ref.hotline,
            "list": ref.list_name,
            "entry_id": ref.entry_id,
            "distance": m.distance,
        }
        for m in result.matches
        for ref in m.refs
    ]


def _open_all(
    opener: Callable[[str, bytes], OpenResult], paths: list[str]
) -> Iterator[tuple[str, OpenResult | BlindmatchError]]:
    for item in iter_files(paths):
        if isinstance(item, Failure):
            yield item.path, item.error
            continue
        try:
            yield item, opener(item, read_file(item, MAX_SMALL_FILE_BYTES))
        except BlindmatchError as e:
            yield item, e
        except Exception as e:  # noqa: BLE001 - one voucher must never stop a batch
            yield item, InternalError(f"opening failed: {type(e).__name__}")


def _voucher_stem(path: str) -> str:
    """``IMAGE`` for ``…/IMAGE.voucher`` (the name its challenge and answer files take)."""
    return Path(path).name.removesuffix(".voucher")


def _server(args: argparse.Namespace) -> tuple[ServerSession, Table, Path]:
    """The server session of ``--key`` (and ``--table``, default the key's directory), with
    a distance-checked table's records from its ``records.bin`` (recomputed if absent)."""
    from blindmatch.private import load_records
    from blindmatch.protocol import ServerSecret, ServerSession, Table

    key_path = Path(args.key)
    table_dir = Path(args.table) if args.table else key_path.parent
    secret = ServerSecret.from_bytes(read_file(str(key_path), MAX_SERVER_KEY_BYTES))
    if key_path.stat().st_mode & 0o077:
        _warn(f"{key_path} is readable by other users; chmod 600 it")
    table = Table.from_bytes(read_file(str(table_dir / TABLE_FILE), MAX_TABLE_BYTES))
    records = load_records(table_dir / RECORDS_FILE, table)
    if table.distance is not None and records is None:
        _warn(
            f"{table_dir / RECORDS_FILE} is missing: recomputing "
            f"{table.distance.n_records} record(s) from the key (~12 ms each)"
        )
    try:
        return ServerSession(secret, table, records=records), table, table_dir
    except InvalidKey as e:
        e.message = f"{key_path} does not belong to the table in {table_dir}: {e.message}"
        raise


def cmd_voucher_challenge(args: argparse.Namespace) -> int:
    server, table, table_dir = _server(args)
    if table.distance is None:
        raise ConfigError(
            f"the table in {table_dir} has no distance check: its vouchers need no challenge "
            "(open them with `voucher open`)"
        )
    out = _out_dir(args.out) if args.out else None
    written: set[Path] = set()
    made = failed = 0
    for item in iter_files(args.vouchers):
        try:
            if isinstance(item, Failure):
                raise item.error
            path = item
            target = (out or Path(path).parent) / f"{_voucher_stem(path)}.challenge"
            if target in written:
                raise OutputExists(f"another voucher in this run also writes {target}")
            if target.exists() and not args.force:
                raise OutputExists(f"{target} exists; pass --force to replace it")
            challenge = server.begin(read_file(path, MAX_SMALL_FILE_BYTES)).challenge
            _write_file(target, challenge, private=False, replace=True)
            written.add(target)
        except BlindmatchError as e:
            failed += 1
            _fail_line(item.path if isinstance(item, Failure) else item, e, args.json)
            continue
        made += 1
        if args.json:
            _emit({"path": path, "challenge": str(target), "bytes": len(challenge)})
        else:
            sys.stdout.write(f"{path} -> {target}\n")
    _err(f"wrote {made} challenge(s), {failed} failed")
    return EXIT_FAILED if failed else EXIT_CLEAN


def cmd_voucher_open(args: argparse.Namespace) -> int:
    from blindmatch.protocol import Policy

    server, table, table_dir = _server(args)
    checked = table.distance is not None
    if args.answers and not checked:
        raise ConfigError(
            f"--answers: the table in {table_dir} has no distance check; its vouchers "
            "open without an answer"
        )

    def open_one(path: str, voucher: bytes) -> OpenResult:
        if not checked:
            return server.open(voucher, account=args.account)
        answers = Path(args.answers) if args.answers else Path(path).parent
        answer_path = answers / f"{_voucher_stem(path)}.answer"
        if not answer_path.is_file():
            raise ProtocolError(
                f"no answer {answer_path}: the table is distance-checked, so a voucher opens "
                "only with the sender's answer to its challenge (server: `voucher challenge`; "
                "sender: `voucher answer`; then `voucher open --answers DIR`)"
            )
        answer = read_file(str(answer_path), MAX_SMALL_FILE_BYTES)
        return server.finish_voucher(voucher, answer, account=args.account)

    threshold = table.policy is Policy.THRESHOLD

    results: list[tuple[str, OpenResult | BlindmatchError]] = []
    index: dict[bytes, int] = {}  # voucher id -> position in results
    seen = matched = failed = 0

    def show(path: str, r: OpenResult | BlindmatchError) -> None:
        nonlocal seen, matched, failed
        seen += 1
        if isinstance(r, BlindmatchError):
            failed += 1
            _fail_line(path, r, args.json)
            return
        matched += r.matched or r.block
        if args.json:
            line: dict[str, object] = {"path": path, "matched": r.matched, "blocked": r.block,
                                       "matches": _match_json(r)}  # fmt: skip
            if r.tampered:
                line["tampered"] = r.tampered
            if r.replayed:
                line["replayed"] = True
            if checked:  # a pair opened (what the server learns of a near miss too)
                line["candidate"] = r.candidate
            _emit(line)
        elif r.replayed:
            sys.stdout.write(f"{path}: REPLAYED (already counted for this account)\n")
        elif r.tampered:
            what = "BLOCKED" if r.block else "RECORDED"
            sys.stdout.write(f"{path}: {what} forged voucher whose pair opened: {r.tampered}\n")
        elif r.matched:
            for m in _match_json(r):
                sys.stdout.write(
                    f"{path}: MATCH hotline={m['hotline']} list={m['list']} "
                    f"entry={m['entry_id']} distance={m['distance']}\n"
                )
        elif args.verbose:
            near = " (a candidate: a pair opened, the distance check failed)" * r.candidate
            sys.stdout.write(f"{path}: no match{near}\n")

    for path, r in _open_all(open_one, args.vouchers):
        if not threshold:
            show(path, r)
            continue
        # Under the threshold policy reaching t releases earlier vouchers too, so
        # lines are printed once the batch is done, each with its final outcome.
        results.append((path, r))
        if isinstance(r, BlindmatchError):
            continue
        index[r.voucher_id] = len(results) - 1
        for rel in r.released:
            i = index.get(rel.voucher_id)
            if i is not None:
                p, old = results[i]
                if not isinstance(old, BlindmatchError):
                    results[i] = (p, replace(old, matched=True, matches=rel.matches))
    for path, r in results:
        show(path, r)
    summary = (
        f"opened {seen} voucher(s): {matched} matched, "
        f"{seen - matched - failed} not matched, {failed} failed"
    )
    if threshold:
        shares, known = server.account_state(args.account)
        summary += (
            f"; threshold policy: account {args.account!r} holds {shares} share(s), "
            f"t={table.threshold}, evidence key {'recovered' if known else 'not recovered'}"
        )
    _err(summary)
    if matched:  # a match or a block outranks failures, as in `scan`
        return EXIT_MATCH
    return EXIT_FAILED if failed else EXIT_CLEAN


# -- parser -----------------------------------------------------------------
def register(sub: Any, hash_opts: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``table`` and ``voucher`` to the ``blindmatch`` subcommands."""
    tp = sub.add_parser("table", help="build a private-matching table from hash lists")
    ts = tp.add_subparsers(dest="table_command", required=True)
    b = ts.add_parser(
        "build",
        help="blind the hashes listed by ≥ 2 hotlines into a signed table",
        description="Write table.bin, manifest.json, trust.json and server.key (0600) into OUT.",
    )
    b.add_argument("--list", action="append", required=True, help="list name (repeatable)")
    b.add_argument("--out", required=True, help="directory for the table files")
    b.add_argument("--force", action="store_true", help="replace a table already in OUT")
    b.add_argument("--platform-key", default=None, help="platform signing key (PEM Ed25519)")
    b.add_argument(
        "--hotline-key",
        action="append",
        type=_key_value,
        metavar="HOTLINE=FILE",
        help="a hotline's signing key; HOTLINE is the lists' source (repeatable)",
    )
    b.add_argument(
        "--jurisdiction",
        action="append",
        type=_key_value,
        metavar="HOTLINE=CODE",
        help="a hotline's jurisdiction, e.g. HL-A=GB (repeatable)",
    )
    b.add_argument("--min-hotlines", type=int, default=2)
    b.add_argument("--policy", choices=("block", "threshold"), default="block")
    b.add_argument("--threshold", type=int, default=30, help="t, for the threshold policy")
    b.add_argument(
        "--synthetic-ppm",
        type=int,
        default=0,
        help="synthetic vouchers per million (threshold policy only)",
    )
    b.add_argument(
        "--sequence",
        type=int,
        default=None,
        help="table sequence number: must grow with every table signed by one platform "
        "key (default: the build time, seconds since 1970)",
    )
    b.add_argument("--lsh-seed", default=None, help="public lookup-key seed, 64 hex (random)")
    b.add_argument(
        "--distance-radius",
        type=int,
        default=None,
        metavar="R",
        help="make the table distance-checked (docs/protocol.md §11): a voucher's layers open "
        "only if its hash is within R bits of a listed one, checked privately in a second "
        "round (`voucher challenge`/`answer`); block policy, 40-bit lookup keys (48 above "
        "~3M listed hashes), writes records.bin (~12 ms a listed hash)",
    )
    b.add_argument(
        "--distance-slots",
        type=int,
        default=None,
        metavar="M",
        help="candidate records the server may check per voucher (default 1)",
    )
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_guarded(cmd_table_build))

    kg = ts.add_parser("keygen", help="write a new Ed25519 signing key (PEM, mode 0600)")
    kg.add_argument("path")
    kg.add_argument("--force", action="store_true")
    kg.set_defaults(func=_guarded(cmd_table_keygen))

    vp = sub.add_parser("voucher", help="make vouchers (client) or open them (server)")
    vs = vp.add_subparsers(dest="voucher_command", required=True)
    mk = vs.add_parser("make", help="one voucher per image, against a verified table")
    mk.add_argument("images", nargs="+")
    mk.add_argument("--table", required=True, help="table directory")
    mk.add_argument("--out", required=True, help="directory for IMAGE.voucher files")
    mk.add_argument(
        "--trust", default=None, help="trust file (required in prod; dev: TABLE/trust.json)"
    )
    mk.add_argument(
        "--table-history",
        default=None,
        metavar="FILE",
        help="the newest table sequence seen per platform key; older tables are refused "
        f"(default $BLINDMATCH_HOME/client/{TABLE_HISTORY_FILE})",
    )
    mk.add_argument(
        "--account-key",
        default=None,
        help="32-byte account secret, created if missing "
        "(default $BLINDMATCH_HOME/client/account.key)",
    )
    mk.add_argument("--min-quality", type=int, default=MIN_QUALITY)
    mk.add_argument(
        "--openings",
        default=None,
        metavar="DIR",
        help="also write each voucher's opening seed to DIR/IMAGE.opening (0600), "
        "for `voucher check`; a messenger sends it inside the encrypted message",
    )
    mk.add_argument("--force", action="store_true", help="replace existing voucher files")
    mk.add_argument("--json", action="store_true")
    hash_opts(mk)
    mk.set_defaults(func=_guarded(cmd_voucher_make))

    ch = vs.add_parser(
        "challenge",
        help="server, distance-checked table: write each voucher's challenge (round one)",
        description="For each VOUCHER (…/IMAGE.voucher) write IMAGE.challenge beside it (or "
        "into --out): the server's distance-check challenge, sent back to the sender, who "
        "answers it with `voucher answer`. A challenge is a function of the voucher: asking "
        "again gives the same bytes.",
    )
    ch.add_argument("vouchers", nargs="+", help="voucher files or directories")
    ch.add_argument("--key", required=True, help="the table's server.key")
    ch.add_argument("--table", default=None, help="table directory (default: the key's)")
    ch.add_argument(
        "--out", default=None, help="directory for IMAGE.challenge files (default: the voucher's)"
    )
    ch.add_argument("--force", action="store_true", help="replace existing challenge files")
    ch.add_argument("--json", action="store_true")
    ch.set_defaults(func=_guarded(cmd_voucher_challenge))

    an = vs.add_parser(
        "answer",
        help="sender, distance-checked table: answer each image's challenge (round two)",
        description="For each IMAGE, answer CHALLENGES/IMAGE.challenge from the image and "
        "OPENINGS/IMAGE.opening (written by `voucher make --openings`) and write "
        "OUT/IMAGE.answer, which the server needs to open the voucher (`voucher open`).",
    )
    an.add_argument("images", nargs="+")
    an.add_argument("--table", required=True, help="table directory")
    an.add_argument("--challenges", required=True, help="directory of IMAGE.challenge files")
    an.add_argument(
        "--openings", default=None, help="directory of IMAGE.opening files (default: --challenges)"
    )
    an.add_argument(
        "--out", default=None, help="directory for IMAGE.answer files (default: --challenges)"
    )
    an.add_argument(
        "--trust", default=None, help="trust file (required in prod; dev: TABLE/trust.json)"
    )
    an.add_argument(
        "--table-history",
        default=None,
        metavar="FILE",
        help="the newest table sequence seen per platform key; older tables are refused "
        f"(default $BLINDMATCH_HOME/client/{TABLE_HISTORY_FILE})",
    )
    an.add_argument("--force", action="store_true", help="replace existing answer files")
    an.add_argument("--json", action="store_true")
    hash_opts(an)
    an.set_defaults(func=_guarded(cmd_voucher_answer))

    ck = vs.add_parser(
        "check",
        help="recipient: check that each voucher was made for its image (property 6)",
        description="For each IMAGE, recompute VOUCHERS/IMAGE.voucher from the image and "
        "OPENINGS/IMAGE.opening and compare: exit 0 if all verified, 1 if any did not.",
    )
    ck.add_argument("images", nargs="+")
    ck.add_argument("--table", required=True, help="table directory")
    ck.add_argument("--vouchers", required=True, help="directory of IMAGE.voucher files")
    ck.add_argument(
        "--openings", default=None, help="directory of IMAGE.opening files (default: --vouchers)"
    )
    ck.add_argument(
        "--challenges",
        default=None,
        help="distance-checked table: directory of IMAGE.challenge files (default: --vouchers)",
    )
    ck.add_argument(
        "--answers",
        default=None,
        help="distance-checked table: directory of IMAGE.answer files (default: --challenges)",
    )
    ck.add_argument(
        "--trust", default=None, help="trust file (required in prod; dev: TABLE/trust.json)"
    )
    ck.add_argument(
        "--table-history",
        default=None,
        metavar="FILE",
        help="the newest table sequence seen per platform key; older tables are refused "
        f"(default $BLINDMATCH_HOME/client/{TABLE_HISTORY_FILE})",
    )
    ck.add_argument("--json", action="store_true")
    hash_opts(ck)
    ck.set_defaults(func=_guarded(cmd_voucher_check))

    op = vs.add_parser("open", help="open vouchers with the server key")
    op.add_argument("vouchers", nargs="+", help="voucher files or directories")
    op.add_argument("--key", required=True, help="the table's server.key")
    op.add_argument("--table", default=None, help="table directory (default: the key's)")
    op.add_argument(
        "--account",
        default="cli",
        help="account the vouchers came from (threshold state lives for one run)",
    )
    op.add_argument(
        "--answers",
        default=None,
        metavar="DIR",
        help="distance-checked table: the senders' answers, DIR/IMAGE.answer for "
        "…/IMAGE.voucher (default: beside each voucher)",
    )
    op.add_argument("--json", action="store_true")
    op.add_argument("-v", "--verbose", action="store_true", help="also print unmatched vouchers")
    op.set_defaults(func=_guarded(cmd_voucher_open))
