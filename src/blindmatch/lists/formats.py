"""Parsers and writers for hash-list files.

Pure functions: bytes in, values out; no file, database or logging.

Formats
-------
``csv``
    UTF-8 (a BOM is allowed). The first non-blank line is a header naming
    columns, in any order, from :data:`CSV_COLUMNS` (case-insensitive). Cells
    are stripped; blank lines are skipped. Without an ``id`` column each
    entry's id is derived from its hashes (:meth:`ListEntry.derive_id`); with
    one, an empty id is an error. ``removed`` takes true/false/1/0/yes/no or
    empty (false). CSV cannot hold vPDQ. An optional ``pdq_companion`` column holds
    the picture's companion hash (:attr:`ListEntry.pdq_companion`), written only
    when an entry has one; an optional ``pdq_hot`` column a hot entry's hot companion
    hashes (:attr:`ListEntry.pdq_hot`), separated by spaces, written only when an entry
    has some.
``jsonl``
    One JSON object per line with keys ``id``, ``pdq``, ``pdq_companion``, ``pdq_hot``
    (a list of hex hashes), ``md5``, ``sha256``, ``vpdq``, ``category``, ``removed``.
    Unknown keys are ignored; known keys are validated strictly (``null`` means
    absent; an absent or ``null`` id is derived from the hashes). ``vpdq`` is a
    non-empty list of frames, each ``{"pdq": hex, "quality": 0..100, "timestamp": seconds}`` or
    python-threatexchange's compact string ``"hex,quality,timestamp"``.
    Duplicate keys, NaN and Infinity are errors.
``te``
    python-threatexchange's line format, as printed by
    ``threatexchange hash`` and ``threatexchange dataset -P``:
    ``<signal type> <hash> [anything else]``. The signal type is one of
    :data:`TE_SIGNAL_TYPES` (``pdq``, ``md5``, ``video_md5``, ``photo_md5``,
    ``sha256``, ``video_sha256``, ``vpdq``); whatever follows the hash (the
    collaboration name, opinion, tags) is ignored. A ``vpdq`` hash is
    python-threatexchange's JSON list of ``"hex,quality,timestamp"`` strings.
    ``#`` comment lines and blank lines are skipped. When the file name is
    python-threatexchange's on-disk ``simple.<signal type>.te``, lines may
    also be its CSV rows whose first field is the hash. Ids are derived from
    the hash; identical lines are collapsed.
``ncmec``
    A response of NCMEC's hash-sharing API (``<queryResult>``; see
    :func:`parse_list` for what is read).

Every parser validates every row and raises :class:`ListFormatError` with the
1-based line number at the first bad one, so a caller can refuse a whole file.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from xml.parsers import expat

from blindmatch.errors import ListFormatError
from blindmatch.lists.model import (
    ListEntry,
    VpdqFrame,
    normalise_category,
    normalise_md5,
    normalise_pdq,
    normalise_pdq_companion,
    normalise_pdq_hot,
    normalise_sha256,
)

__all__ = [
    "CSV_COLUMNS",
    "FORMATS",
    "MAX_XML_BYTES",
    "MAX_XML_DEPTH",
    "TE_SIGNAL_TYPES",
    "WRITABLE_FORMATS",
    "ParsedList",
    "detect_format",
    "dump_list",
    "parse_list",
]

#: Every format :func:`parse_list` reads.
FORMATS: tuple[str, ...] = ("csv", "jsonl", "te", "ncmec")
#: Every format :func:`dump_list` writes.
WRITABLE_FORMATS: tuple[str, ...] = ("csv", "jsonl", "te")
#: The columns a CSV header may name (and the order :func:`dump_list` writes; it writes
#: ``pdq_companion`` only when an entry has one and ``pdq_hot`` only when an entry is hot,
#: so lists without them export as before).
CSV_COLUMNS: tuple[str, ...] = (
    "id",
    "pdq",
    "md5",
    "sha256",
    "category",
    "removed",
    "pdq_companion",
    "pdq_hot",
)
#: TE signal-type words, mapped to the :class:`ListEntry` field they fill.
TE_SIGNAL_TYPES: dict[str, str] = {
    "pdq": "pdq",
    "md5": "md5",
    "video_md5": "md5",
    "photo_md5": "md5",
    "sha256": "sha256",
    "video_sha256": "sha256",
    "vpdq": "vpdq",
}
#: NCMEC XML larger than this is refused.
MAX_XML_BYTES = 1 << 30
#: NCMEC XML nested deeper than this is refused (real responses nest about 8 deep).
MAX_XML_DEPTH = 32

_BOM = b"\xef\xbb\xbf"
_EXTENSIONS: tuple[tuple[str, str], ...] = (
    (".csv", "csv"),
    (".jsonl", "jsonl"),
    (".ndjson", "jsonl"),
    (".json", "jsonl"),
    (".te", "te"),
    (".xml", "ncmec"),
)
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no", ""})
_TE_SIMPLE_FILE = re.compile(r"(?:^|[\\/])simple\.([A-Za-z0-9_]+)\.te$")
_XML_DTD = re.compile(rb"<!\s*(?:doctype|entity)", re.IGNORECASE)
_MEMBER_ID = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True, slots=True)
class ParsedList:
    """What :func:`parse_list` found in a file."""

    entries: tuple[ListEntry, ...]
    format: str
    #: NCMEC entries left out because they carry no hash blindmatch can match
    #: (e.g. only SHA-1 or PhotoDNA). Always 0 for the other formats.
    skipped: int = 0


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #


def detect_format(data: bytes, filename: str | None = None) -> str:
    """Guess a list's format: from ``filename``'s extension if it has a known one
    (``.csv``; ``.jsonl``/``.ndjson``/``.json``; ``.te``; ``.xml`` for ncmec),
    else by sniffing the first non-blank line: ``<`` is ncmec, ``{`` is jsonl,
    ``#`` or ``<signal type> <hash>`` is te, anything else (or nothing) is csv.
    """
    if filename:
        name = filename.lower()
        for ext, fmt in _EXTENSIONS:
            if name.endswith(ext):
                return fmt
    head = bytes(data[: 64 * 1024])
    if head.startswith(_BOM):
        head = head[len(_BOM) :]
    for raw in head.decode("utf-8", errors="replace").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("<"):
            return "ncmec"
        if line.startswith("{"):
            return "jsonl"
        if line.startswith("#"):
            return "te"
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0].lower() in TE_SIGNAL_TYPES:
            return "te"
        return "csv"
    return "csv"


def parse_list(data: bytes, format: str | None = None, filename: str | None = None) -> ParsedList:
    """Parse a hash-list file.

    ``format`` is one of :data:`FORMATS`; when ``None`` it is detected with
    :func:`detect_format` (``filename`` is used only for that, and to
    recognise python-threatexchange's ``simple.<type>.te`` files).

    All-or-nothing: the first malformed row raises :class:`ListFormatError`
    with its 1-based line number. An empty file is a valid empty list. Two
    entries with the same id are an error naming both lines, except that a
    tombstone after its entry wins, and identical entries whose ids were
    derived from their hashes are collapsed.

    NCMEC hash-sharing XML (``<queryResult>`` as the v2 API returns it,
    namespaced or not): ``<image>``/``<deletedImage>`` under ``<images>`` and
    ``<video>``/``<deletedVideo>`` under ``<videos>``. The id is
    ``"<member id>-<entry id>"`` (as python-threatexchange keys NCMEC
    entries); ``<classification>`` becomes the category; the ``<md5>``,
    ``<pdq>`` and ``<sha256>`` fingerprints are kept, all others (SHA-1,
    PhotoDNA, TMK, ...) are ignored, and an entry with none of ours is left
    out and counted in :attr:`ParsedList.skipped`. Deleted entries become
    tombstones. ``<feedback>``, ``<paging>`` and timestamps are ignored.
    DTDs and entity declarations are refused, as is XML larger than
    :data:`MAX_XML_BYTES` or deeper than :data:`MAX_XML_DEPTH`.

    Raises :class:`ValueError` for an unknown ``format`` name.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if format is None:
        fmt = detect_format(data, filename)
    else:
        fmt = format.lower()
        if fmt not in FORMATS:
            raise ValueError(
                f"unknown list format {format!r}; expected one of {', '.join(FORMATS)}"
            )
    collector = _Collector()
    skipped = 0
    if fmt == "ncmec":
        skipped = _parse_ncmec(data, collector)
    else:
        text = _decode(data)
        if fmt == "csv":
            _parse_csv(text, collector)
        elif fmt == "jsonl":
            _parse_jsonl(text, collector)
        else:
            _parse_te(text, collector, _te_type_from_filename(filename))
    return ParsedList(entries=collector.entries(), format=fmt, skipped=skipped)


def dump_list(entries: Iterable[ListEntry], format: str) -> bytes:
    """Write entries as UTF-8 ``csv``, ``jsonl`` or ``te``.

    ``csv`` and ``jsonl`` round-trip: ``parse_list(dump_list(x, f), f).entries
    == tuple(x)``. CSV writes every column of :data:`CSV_COLUMNS` (``pdq_companion``
    only when an entry has a companion hash, ``pdq_hot`` only when one is hot) and
    cannot hold vPDQ: an entry with one raises :class:`ValueError` (use jsonl).

    ``te`` is lossy: it writes one ``pdq <hex>`` / ``md5 <hex>`` line per hash
    and drops ids, categories, companion and hot hashes, SHA-256 and vPDQ hashes, and tombstones
    (removed entries are left out entirely).

    Raises :class:`ValueError` for two entries with the same id, or a format
    that cannot be written (``ncmec`` is read-only).
    """
    fmt = format.lower()
    if fmt not in WRITABLE_FORMATS:
        raise ValueError(
            f"cannot write list format {format!r}; expected one of {', '.join(WRITABLE_FORMATS)}"
        )
    items = tuple(entries)
    seen: set[str] = set()
    for e in items:
        if not isinstance(e, ListEntry):
            raise TypeError(f"expected ListEntry, got {type(e).__name__}")
        if e.source_id in seen:
            raise ValueError(f"duplicate id {e.source_id!r}")
        seen.add(e.source_id)
    if fmt == "csv":
        return _dump_csv(items)
    if fmt == "jsonl":
        return _dump_jsonl(items)
    return _dump_te(items)


# --------------------------------------------------------------------------- #
# Shared helpers
# --------------------------------------------------------------------------- #


class _Collector:
    """Accumulates entries in file order, applying the duplicate-id rules."""

    def __init__(self) -> None:
        # id -> (entry, line it came from, whether the id was derived)
        self._by_id: dict[str, tuple[ListEntry, int | None, bool]] = {}

    def add(self, entry: ListEntry, line: int | None, derived: bool) -> None:
        sid = entry.source_id
        prev = self._by_id.get(sid)
        if prev is None:
            self._by_id[sid] = (entry, line, derived)
            return
        old, old_line, old_derived = prev
        if derived and old_derived and old == entry:
            return  # the same hash listed twice: nothing ambiguous about it
        if entry.removed and not old.removed:
            self._by_id[sid] = (entry, line, derived)  # the tombstone wins
            return
        where = f"line {old_line}" if old_line is not None else "earlier"
        if old.removed and not entry.removed:
            why = " (an entry cannot be re-added after its tombstone in the same file)"
        elif old.removed:
            why = " (two tombstones)"
        else:
            why = ""
        raise ListFormatError(f"duplicate id {sid!r}: also on {where}{why}", line=line)

    def entries(self) -> tuple[ListEntry, ...]:
        return tuple(e for e, _, _ in self._by_id.values())


def _decode(data: bytes) -> str:
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ListFormatError(
            f"not valid UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}", line=line
        ) from None


def _make_entry(
    line: int | None,
    *,
    source_id: str | None,
    pdq: Any = None,
    md5: Any = None,
    sha256: Any = None,
    vpdq: tuple[VpdqFrame, ...] | None = None,
    category: Any = None,
    removed: bool = False,
    hash_names: str = "pdq, md5, sha256 or vpdq",
    pdq_companion: Any = None,
    pdq_hot: Any = None,
) -> tuple[ListEntry, bool]:
    """Validate and normalise one row; return the entry and whether its id was derived."""
    try:
        pdq_n = normalise_pdq(pdq) if pdq is not None else None
        comp_n = normalise_pdq_companion(pdq_companion) if pdq_companion is not None else None
        hot_n = normalise_pdq_hot(pdq_hot) if pdq_hot is not None else ()
        md5_n = normalise_md5(md5) if md5 is not None else None
        sha_n = normalise_sha256(sha256) if sha256 is not None else None
        cat = normalise_category(category)
    except ValueError as e:  # InvalidHash is a ValueError
        raise ListFormatError(str(e), line=line) from e
    derived = source_id is None
    if source_id is None:
        source_id = ListEntry.derive_id(pdq_n, md5_n, sha_n, vpdq)
        if source_id is None:
            what = "tombstone" if removed else "entry"
            raise ListFormatError(
                f"{what} has no id and no hash: needs an id or at least one of {hash_names}",
                line=line,
            )
    if not removed and pdq_n is None and md5_n is None and sha_n is None and vpdq is None:
        raise ListFormatError(
            f"entry {source_id!r} has no hash: needs at least one of {hash_names}", line=line
        )
    try:
        entry = ListEntry(
            source_id=source_id,
            pdq=pdq_n,
            md5=md5_n,
            sha256=sha_n,
            vpdq=vpdq,
            category=cat,
            removed=removed,
            pdq_companion=comp_n,
            pdq_hot=hot_n,
        )
    except ValueError as e:
        raise ListFormatError(str(e), line=line) from e
    return entry, derived


def _parse_frame(raw: object, index: int) -> VpdqFrame:
    """One vPDQ frame: a JSON object or a compact ``"hex,quality,timestamp"`` string."""
    where = f"vpdq frame {index}"
    if isinstance(raw, str):
        parts = raw.split(",")
        if len(parts) != 3:
            raise ValueError(f"{where} must be 'pdq,quality,timestamp', got {raw[:80]!r}")
        pdq_s, q_s, ts_s = parts
        try:
            quality: object = int(q_s)
        except ValueError:
            raise ValueError(f"{where}: quality must be an integer, got {q_s!r}") from None
        try:
            timestamp: object = float(ts_s)
        except ValueError:
            raise ValueError(f"{where}: timestamp must be a number, got {ts_s!r}") from None
        pdq: object = pdq_s
    elif isinstance(raw, dict):
        missing = [k for k in ("pdq", "quality", "timestamp") if k not in raw]
        if missing:
            raise ValueError(f"{where} is missing {', '.join(missing)}")
        pdq, quality, timestamp = raw["pdq"], raw["quality"], raw["timestamp"]
    else:
        raise ValueError(f"{where} must be an object or a string, got {_json_type(raw)}")
    try:
        pdq_n = normalise_pdq(pdq)  # type: ignore[arg-type]  # checked at run time
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if isinstance(quality, bool) or not isinstance(quality, int):
        raise ValueError(f"{where}: quality must be an integer, got {quality!r}")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        raise ValueError(f"{where}: timestamp must be a number, got {timestamp!r}")
    try:
        return VpdqFrame(pdq=pdq_n, quality=quality, timestamp=float(timestamp))
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def _parse_frames(raw: object) -> tuple[VpdqFrame, ...]:
    if not isinstance(raw, list):
        raise ValueError(f"vpdq must be a list of frames, got {_json_type(raw)}")
    if not raw:
        raise ValueError("vpdq must have at least one frame")
    return tuple(_parse_frame(f, i) for i, f in enumerate(raw))


def _json_type(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


# --------------------------------------------------------------------------- #
# CSV
# --------------------------------------------------------------------------- #


def _parse_csv(text: str, collector: _Collector) -> None:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    prev_end = 0  # the last line of the previous row
    try:
        for row in reader:
            start, prev_end = prev_end + 1, reader.line_num
            if all(not cell.strip() for cell in row):
                continue
            if header is None:
                header = _csv_header(row, start)
                continue
            if len(row) != len(header):
                raise ListFormatError(
                    f"expected {len(header)} fields (as in the header), got {len(row)}",
                    line=start,
                )
            _csv_row(dict(zip(header, (c.strip() for c in row), strict=True)), start, collector)
    except csv.Error as e:
        # The row that failed starts on the line after the previous row ended.
        raise ListFormatError(f"malformed CSV: {e}", line=prev_end + 1) from None


def _csv_header(row: list[str], line: int) -> list[str]:
    header = [c.strip().lower() for c in row]
    seen: set[str] = set()
    for name in header:
        if name not in CSV_COLUMNS:
            shown = name if len(name) <= 40 else name[:37] + "..."
            raise ListFormatError(
                f"unknown column {shown!r} in header; the first line must be a header "
                f"naming columns from {', '.join(CSV_COLUMNS)}",
                line=line,
            )
        if name in seen:
            raise ListFormatError(f"column {name!r} appears twice in the header", line=line)
        seen.add(name)
    return header


def _csv_row(values: dict[str, str], line: int, collector: _Collector) -> None:
    removed_s = values.get("removed", "").lower()
    if removed_s in _TRUE:
        removed = True
    elif removed_s in _FALSE:
        removed = False
    else:
        raise ListFormatError(
            f"removed must be true/false/1/0/yes/no or empty, got {values['removed']!r}",
            line=line,
        )
    if "id" in values:
        source_id: str | None = values["id"]
        if not source_id:
            raise ListFormatError("id is empty", line=line)
    else:
        source_id = None
    entry, derived = _make_entry(
        line,
        source_id=source_id,
        pdq=values.get("pdq") or None,
        md5=values.get("md5") or None,
        sha256=values.get("sha256") or None,
        category=values.get("category") or None,
        removed=removed,
        hash_names="pdq, md5 or sha256",
        pdq_companion=values.get("pdq_companion") or None,
        pdq_hot=values.get("pdq_hot") or None,
    )
    collector.add(entry, line, derived)


def _dump_csv(entries: tuple[ListEntry, ...]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    companions = any(e.pdq_companion is not None for e in entries)
    hot = any(e.pdq_hot for e in entries)
    writer.writerow(
        [
            *CSV_COLUMNS[:6],
            *(["pdq_companion"] if companions else []),
            *(["pdq_hot"] if hot else []),
        ]
    )
    for e in entries:
        if e.vpdq is not None:
            raise ValueError(f"entry {e.source_id!r} has a vpdq hash, which CSV cannot hold")
        row = [
            e.source_id,
            e.pdq or "",
            e.md5 or "",
            e.sha256 or "",
            e.category or "",
            "true" if e.removed else "false",
        ]
        if companions:
            row.append(e.pdq_companion or "")
        if hot:
            row.append(" ".join(e.pdq_hot))
        writer.writerow(row)
    return buf.getvalue().encode("utf-8")


# --------------------------------------------------------------------------- #
# JSON lines
# --------------------------------------------------------------------------- #


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _parse_jsonl(text: str, collector: _Collector) -> None:
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line:
            continue
        try:
            obj = json.loads(
                line, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants
            )
        except json.JSONDecodeError as e:
            raise ListFormatError(f"not valid JSON: {e.msg} (column {e.colno})", line=n) from None
        except RecursionError:
            raise ListFormatError("JSON nested too deeply", line=n) from None
        except ValueError as e:
            raise ListFormatError(f"not valid JSON: {e}", line=n) from None
        if not isinstance(obj, dict):
            raise ListFormatError(f"each line must be a JSON object, got {_json_type(obj)}", line=n)
        _jsonl_object(obj, n, collector)


def _jsonl_object(obj: dict[str, Any], line: int, collector: _Collector) -> None:
    raw_id = obj.get("id")
    if raw_id is None:
        source_id: str | None = None
    elif isinstance(raw_id, str):
        source_id = raw_id
        if not source_id.strip():
            raise ListFormatError("id is empty", line=line)
    elif isinstance(raw_id, int) and not isinstance(raw_id, bool):
        source_id = str(raw_id)
    else:
        raise ListFormatError(
            f"id must be a string or integer, got {_json_type(raw_id)}", line=line
        )

    removed = obj.get("removed")
    if removed is None:
        removed = False
    elif not isinstance(removed, bool):
        raise ListFormatError(
            f"removed must be true or false, got {_json_type(removed)}", line=line
        )

    category = obj.get("category")
    if category is not None and not isinstance(category, str):
        raise ListFormatError(f"category must be a string, got {_json_type(category)}", line=line)

    vpdq_raw = obj.get("vpdq")
    try:
        vpdq = _parse_frames(vpdq_raw) if vpdq_raw is not None else None
    except ValueError as e:
        raise ListFormatError(str(e), line=line) from None

    entry, derived = _make_entry(
        line,
        source_id=source_id,
        pdq=obj.get("pdq"),
        md5=obj.get("md5"),
        sha256=obj.get("sha256"),
        vpdq=vpdq,
        category=category,
        removed=removed,
        pdq_companion=obj.get("pdq_companion"),
        pdq_hot=_json_hot(obj.get("pdq_hot"), line),
    )
    collector.add(entry, line, derived)


def _json_hot(raw: object, line: int) -> list[object] | None:
    """A JSON ``pdq_hot``: a list (each item checked by :func:`normalise_pdq_hot`) or null."""
    if raw is None or isinstance(raw, list):
        return raw
    raise ListFormatError(f"pdq_hot must be a list of hashes, got {_json_type(raw)}", line=line)


def _dump_jsonl(entries: tuple[ListEntry, ...]) -> bytes:
    out: list[str] = []
    for e in entries:
        obj: dict[str, Any] = {"id": e.source_id}
        if e.pdq is not None:
            obj["pdq"] = e.pdq
        if e.pdq_companion is not None:
            obj["pdq_companion"] = e.pdq_companion
        if e.pdq_hot:
            obj["pdq_hot"] = list(e.pdq_hot)
        if e.md5 is not None:
            obj["md5"] = e.md5
        if e.sha256 is not None:
            obj["sha256"] = e.sha256
        if e.vpdq is not None:
            obj["vpdq"] = [
                {"pdq": f.pdq, "quality": f.quality, "timestamp": f.timestamp} for f in e.vpdq
            ]
        if e.category is not None:
            obj["category"] = e.category
        if e.removed:
            obj["removed"] = True
        out.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False))
        out.append("\n")
    return "".join(out).encode("utf-8")


# --------------------------------------------------------------------------- #
# ThreatExchange lines
# --------------------------------------------------------------------------- #


def _te_type_from_filename(filename: str | None) -> str | None:
    """The signal type of python-threatexchange's ``simple.<type>.te`` file, if it is one."""
    if not filename:
        return None
    m = _TE_SIMPLE_FILE.search(filename)
    if m is None:
        return None
    return TE_SIGNAL_TYPES.get(m.group(1).lower())


def _parse_te(text: str, collector: _Collector, default_field: str | None) -> None:
    decoder = json.JSONDecoder(parse_constant=_no_constants)
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        word = parts[0].lower()
        value: object
        if word in TE_SIGNAL_TYPES:
            field = TE_SIGNAL_TYPES[word]
            rest = parts[1] if len(parts) == 2 else ""
            if not rest:
                raise ListFormatError(f"missing hash after {parts[0]!r}", line=n)
            if field == "vpdq":
                try:
                    value, _ = decoder.raw_decode(rest)
                except (ValueError, RecursionError):
                    raise ListFormatError(
                        "vpdq hash must be a JSON list of 'pdq,quality,timestamp' strings", line=n
                    ) from None
            else:
                value = rest.split(None, 1)[0]
        elif default_field is not None:
            # A row of python-threatexchange's simple.<type>.te store: CSV, hash first.
            field = default_field
            try:
                value = next(csv.reader([line], strict=True))[0]
            except csv.Error as e:
                raise ListFormatError(f"malformed CSV row: {e}", line=n) from None
            if field == "vpdq":
                try:
                    value = json.loads(str(value), parse_constant=_no_constants)
                except (ValueError, RecursionError):
                    raise ListFormatError(
                        "vpdq hash must be a JSON list of 'pdq,quality,timestamp' strings", line=n
                    ) from None
        else:
            shown = word if len(word) <= 40 else word[:37] + "..."
            raise ListFormatError(
                f"expected '<signal type> <hash>' with a signal type of "
                f"{', '.join(TE_SIGNAL_TYPES)}; got {shown!r}",
                line=n,
            )
        if field == "vpdq":
            try:
                frames = _parse_frames(value)
            except ValueError as e:
                raise ListFormatError(str(e), line=n) from None
            entry, derived = _make_entry(n, source_id=None, vpdq=frames)
        else:
            entry, derived = _make_entry(
                n,
                source_id=None,
                pdq=value if field == "pdq" else None,
                md5=value if field == "md5" else None,
                sha256=value if field == "sha256" else None,
            )
        collector.add(entry, n, derived)


def _dump_te(entries: tuple[ListEntry, ...]) -> bytes:
    out: list[str] = []
    for e in entries:
        if e.removed:
            continue
        if e.pdq is not None:
            out.append(f"pdq {e.pdq}\n")
        if e.md5 is not None:
            out.append(f"md5 {e.md5}\n")
    return "".join(out).encode("ascii")


# --------------------------------------------------------------------------- #
# NCMEC hash-sharing XML
# --------------------------------------------------------------------------- #

# container element -> {entry element: is it a deletion}
_NCMEC_ENTRY_TAGS: dict[str, dict[str, bool]] = {
    "images": {"image": False, "deletedImage": True},
    "videos": {"video": False, "deletedVideo": True},
}
# NCMEC fingerprint element (lowercased) -> ListEntry field. Everything else
# (sha1, pdna, netclean, videntifier, tmk-pdqf, ssvh-*) we cannot match.
_NCMEC_FINGERPRINTS: dict[str, str] = {"md5": "md5", "pdq": "pdq", "sha256": "sha256"}
_NORMALISERS: dict[str, Callable[[str], str]] = {
    "md5": normalise_md5,
    "pdq": normalise_pdq,
    "sha256": normalise_sha256,
}


class _Node:
    __slots__ = ("attrs", "children", "line", "parts", "tag")

    def __init__(self, tag: str, attrs: dict[str, str], line: int) -> None:
        self.tag = tag
        self.attrs = attrs
        self.line = line
        self.parts: list[str] = []
        self.children: list[_Node] = []

    @property
    def text(self) -> str:
        return "".join(self.parts).strip()

    def only(self, tag: str) -> _Node | None:
        """The single child named ``tag``, or None; two or more is an error."""
        found: _Node | None = None
        for child in self.children:
            if child.tag == tag:
                if found is not None:
                    raise ListFormatError(
                        f"<{self.tag}> has more than one <{tag}>", line=child.line
                    )
                found = child
        return found


class _NcmecReader:
    """Streams a ``<queryResult>``: each entry is built, handed on, then dropped."""

    def __init__(self, parser: Any, collector: _Collector) -> None:
        self._parser = parser
        self._collector = collector
        self._stack: list[_Node] = []
        self._entry_level: int | None = None  # stack index of the open entry, if any
        self.skipped = 0

    def _line(self) -> int:
        line: int = self._parser.CurrentLineNumber
        return line

    def refuse_dtd(self, *args: object) -> None:
        raise ListFormatError(
            "XML with a DTD or entity declarations is refused (entity expansion attacks)",
            line=self._line(),
        )

    def refuse_external_entity(self, *args: object) -> int:
        self.refuse_dtd()
        return 0

    def start(self, name: str, attrs: dict[str, str]) -> None:
        line = self._line()
        tag = name.rpartition("}")[2]  # drop any namespace
        depth = len(self._stack)
        if depth >= MAX_XML_DEPTH:
            raise ListFormatError(f"XML nested deeper than {MAX_XML_DEPTH} elements", line=line)
        node = _Node(tag, attrs, line)
        if depth == 0:
            if tag != "queryResult":
                raise ListFormatError(
                    f"not an NCMEC hash-sharing document: the root element is <{tag}>, "
                    "expected <queryResult>",
                    line=line,
                )
        elif self._entry_level is not None:
            self._stack[-1].children.append(node)
        elif depth == 1 and any(tag in tags for tags in _NCMEC_ENTRY_TAGS.values()):
            raise ListFormatError(
                f"<{tag}> must be inside <images> or <videos>, not directly in <queryResult>",
                line=line,
            )
        elif depth == 2 and self._stack[1].tag in _NCMEC_ENTRY_TAGS:
            container = self._stack[1].tag
            allowed = _NCMEC_ENTRY_TAGS[container]
            if tag not in allowed:
                raise ListFormatError(
                    f"unexpected <{tag}> in <{container}>; expected "
                    + " or ".join(f"<{t}>" for t in allowed),
                    line=line,
                )
            self._entry_level = depth
        self._stack.append(node)

    def end(self, name: str) -> None:
        node = self._stack.pop()
        if self._entry_level is not None and len(self._stack) == self._entry_level:
            self._entry_level = None
            self._entry(node)

    def chars(self, data: str) -> None:
        if self._entry_level is not None:
            self._stack[-1].parts.append(data)

    def _entry(self, node: _Node) -> None:
        removed = node.tag.startswith("deleted")
        id_node = node.only("id")
        entry_id = id_node.text if id_node is not None else ""
        if not entry_id:
            raise ListFormatError(f"<{node.tag}> has no <id>", line=node.line)
        member = node.only("member")
        member_id = member.attrs.get("id", "").strip() if member is not None else ""
        if not member_id:
            raise ListFormatError(
                f"<{node.tag}> {entry_id!r} has no <member id=...>", line=node.line
            )
        if not _MEMBER_ID.fullmatch(member_id):
            raise ListFormatError(
                f"member id must be a number, got {member_id[:40]!r}",
                line=member.line if member is not None else node.line,
            )
        source_id = f"{member_id.lstrip('0') or '0'}-{entry_id}"

        classification = node.only("classification")
        category = classification.text if classification is not None else None
        category_line = classification.line if classification is not None else node.line
        try:
            category = normalise_category(category)
        except ValueError as e:
            raise ListFormatError(str(e), line=category_line) from None

        hashes: dict[str, str] = {}
        fingerprints = node.only("fingerprints")
        for fp in fingerprints.children if fingerprints is not None else ():
            field = _NCMEC_FINGERPRINTS.get(fp.tag.lower())
            value = fp.text
            if field is None or not value:
                continue
            if field in hashes:
                raise ListFormatError(f"<fingerprints> has more than one <{fp.tag}>", line=fp.line)
            try:  # validated here so that the error points at the fingerprint's line
                hashes[field] = _NORMALISERS[field](value)
            except ValueError as e:
                raise ListFormatError(str(e), line=fp.line) from None

        if not hashes and not removed:
            self.skipped += 1
            return
        entry, _ = _make_entry(
            node.line,
            source_id=source_id,
            pdq=hashes.get("pdq"),
            md5=hashes.get("md5"),
            sha256=hashes.get("sha256"),
            category=category,
            removed=removed,
        )
        self._collector.add(entry, node.line, derived=False)


def _parse_ncmec(data: bytes, collector: _Collector) -> int:
    if len(data) > MAX_XML_BYTES:
        raise ListFormatError(f"XML is larger than the limit of {MAX_XML_BYTES} bytes")
    _decode(data)  # UTF-8 only, with the line of the first bad byte
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    m = _XML_DTD.search(data)
    if m is not None:
        raise ListFormatError(
            "XML with a DTD or entity declarations is refused (entity expansion attacks)",
            line=data.count(b"\n", 0, m.start()) + 1,
        )
    if not data.strip():
        return 0
    parser = expat.ParserCreate(encoding="UTF-8", namespace_separator="}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    reader = _NcmecReader(parser, collector)
    parser.StartDoctypeDeclHandler = reader.refuse_dtd
    parser.EntityDeclHandler = reader.refuse_dtd
    parser.UnparsedEntityDeclHandler = reader.refuse_dtd
    parser.ExternalEntityRefHandler = reader.refuse_external_entity
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.chars
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise ListFormatError(
            f"malformed XML: {expat.ErrorString(e.code)}", line=e.lineno
        ) from None
    return reader.skipped
