"""The values a hash list is made of: entries, video frames, categories.

Everything here is immutable and validated on construction, so a
:class:`ListEntry` that exists is a well-formed one: hashes are lowercase hex
of the right length, the category is a known one, and an entry that is not a
tombstone carries at least one hash.
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from dataclasses import dataclass

from blindmatch.errors import InvalidField, InvalidHash

__all__ = [
    "CATEGORIES",
    "MAX_DESCRIPTION_LENGTH",
    "MAX_LIST_NAME_LENGTH",
    "MAX_PDQ_HOT",
    "MAX_SOURCE_ID_LENGTH",
    "MAX_SOURCE_LENGTH",
    "MAX_VERSION_LENGTH",
    "ListEntry",
    "VpdqFrame",
    "normalise_category",
    "normalise_md5",
    "normalise_pdq",
    "normalise_pdq_companion",
    "normalise_pdq_hot",
    "normalise_sha256",
    "validate_list_name",
    "validate_list_text",
    "validate_source_id",
]

#: Industry categorisation (A1, A2, B1, B2) and the UK (IWF) A/B/C categories.
CATEGORIES: frozenset[str] = frozenset({"A1", "A2", "B1", "B2", "A", "B", "C"})

#: Longest source id accepted, in characters.
MAX_SOURCE_ID_LENGTH = 1024

#: Longest list name, source, version and description accepted, in characters (the
#: first three are the database columns' widths). Every match reads each list's row,
#: so an unbounded description made every match slower (40 MB: 0.40 -> 18.45 ms).
MAX_LIST_NAME_LENGTH = 200
MAX_SOURCE_LENGTH = 200
MAX_VERSION_LENGTH = 100
MAX_DESCRIPTION_LENGTH = 4000

_HEX = frozenset("0123456789abcdef")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
#: Characters that reorder or hide text: bidi embeddings, overrides, isolates and
#: marks, zero-width spaces and joiners, the word joiner and the BOM.
_HIDING = frozenset(
    "\u061c\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2066\u2067\u2068\u2069\ufeff"
)


def validate_list_name(name: object) -> str:
    """Return ``name`` if it may name a list, else raise :class:`InvalidField`.

    A list name is 1-200 ASCII letters, digits, ``-``, ``_`` and ``.``, starting with
    a letter or digit: no ``.`` or ``..``, no path separators, no control, invisible
    or bidi characters, and no look-alike letters from other scripts (names show up
    in URLs, logs, exports and the match results moderators read; two names that
    look the same must be the same name).
    """
    if not isinstance(name, str) or not name:
        raise InvalidField("name", "a list name must be a non-empty string")
    if len(name) > MAX_LIST_NAME_LENGTH:
        raise InvalidField(
            "name",
            f"list name is {len(name)} characters long; the limit is {MAX_LIST_NAME_LENGTH}",
            MAX_LIST_NAME_LENGTH,
        )
    if not set(name) <= _NAME_CHARS or not name[0].isalnum():
        raise InvalidField(
            "name",
            f"list name {name!r} must be ASCII letters, digits, '-', '_' or '.', "
            "starting with a letter or digit",
        )
    return name


def validate_list_text(field: str, value: object, limit: int, *, multiline: bool = False) -> str:
    """Return ``value`` if it fits the list field ``field``, else raise
    :class:`InvalidField` naming the field (and the limit when it is too long).

    At most ``limit`` characters; no control characters (tab and newline allowed in
    ``multiline`` text), lone surrogates, bidi controls or zero-width characters.
    """
    if not isinstance(value, str):
        raise InvalidField(field, f"{field} must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidField(
            field, f"{field} is {len(value):,} characters long; the limit is {limit:,}", limit
        )
    for c in value:
        if c in _HIDING or (
            unicodedata.category(c) in ("Cc", "Cs") and not (multiline and c in "\t\n\r")
        ):
            raise InvalidField(
                field, f"{field} contains the control or invisible character U+{ord(c):04X}"
            )
    return value


def _normalise_hex(kind: str, value: object, length: int) -> str:
    if not isinstance(value, str):
        raise InvalidHash(
            f"{kind} must be a string of {length} hex digits, got {type(value).__name__}"
        )
    s = value.strip().lower()
    if len(s) != length:
        raise InvalidHash(f"{kind} must be {length} hex digits, got {len(s)}")
    for c in s:
        if c not in _HEX:
            raise InvalidHash(f"{kind} must be {length} hex digits, got non-hex character {c!r}")
    return s


def normalise_pdq(value: str) -> str:
    """Strip and lowercase a PDQ hash; raise :class:`InvalidHash` unless 64 hex digits."""
    return _normalise_hex("pdq", value, 64)


def normalise_pdq_companion(value: str) -> str:
    """Strip and lowercase a companion hash (a PDQ; see :attr:`ListEntry.pdq_companion`);
    raise :class:`InvalidHash` naming ``pdq_companion`` unless 64 hex digits."""
    return _normalise_hex("pdq_companion", value, 64)


#: The most hot companion hashes an entry may carry (``blindmatch.hashing.hot`` makes at
#: most 91; the table's limit, ``blindmatch.protocol.table.MAX_HOT_COMPANIONS``).
MAX_PDQ_HOT = 96


def normalise_pdq_hot(value: object) -> tuple[str, ...]:
    """A hot entry's hot companion hashes (see :attr:`ListEntry.pdq_hot`) from a list of
    hex strings or one string of them separated by whitespace: each stripped and
    lowercased, in order; ``()`` for none. Raises :class:`InvalidHash` naming ``pdq_hot``
    unless each is 64 hex digits, there are at most :data:`MAX_PDQ_HOT` and none twice."""
    if isinstance(value, str):
        items: list[object] = list(value.split())
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise InvalidHash(
            f"pdq_hot must be a list of hashes (or one string of them separated by spaces), "
            f"got {type(value).__name__}"
        )
    if len(items) > MAX_PDQ_HOT:
        raise InvalidHash(f"pdq_hot has {len(items)} hashes; the limit is {MAX_PDQ_HOT}")
    out = tuple(_normalise_hex("pdq_hot", v, 64) for v in items)
    if len(set(out)) != len(out):
        twice = next(h for i, h in enumerate(out) if h in out[:i])
        raise InvalidHash(f"pdq_hot has the hash {twice} twice")
    return out


def normalise_md5(value: str) -> str:
    """Strip and lowercase an MD5; raise :class:`InvalidHash` unless 32 hex digits."""
    return _normalise_hex("md5", value, 32)


def normalise_sha256(value: str) -> str:
    """Strip and lowercase a SHA-256; raise :class:`InvalidHash` unless 64 hex digits."""
    return _normalise_hex("sha256", value, 64)


def normalise_category(value: str | None) -> str | None:
    """Uppercase a category; ``None`` or blank means none.

    Raises :class:`ValueError` unless the category is one of :data:`CATEGORIES`.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"category must be a string, got {type(value).__name__}")
    s = value.strip().upper()
    if not s:
        return None
    if s not in CATEGORIES:
        allowed = ", ".join(sorted(CATEGORIES))
        raise ValueError(f"unknown category {value.strip()!r}; expected one of {allowed}")
    return s


def validate_source_id(value: str) -> str:
    """Return ``value`` if it is a usable source id, else raise :class:`ValueError`.

    A source id is non-empty, at most :data:`MAX_SOURCE_ID_LENGTH` characters,
    has no leading or trailing whitespace, no control characters, no bidi
    controls or zero-width characters (which would let two ids look alike) and no
    lone surrogates.
    """
    if not isinstance(value, str):
        raise ValueError(f"id must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError("id is empty")
    if value != value.strip():
        raise ValueError(f"id {value!r} has leading or trailing whitespace")
    if len(value) > MAX_SOURCE_ID_LENGTH:
        raise ValueError(f"id is {len(value)} characters long; the limit is {MAX_SOURCE_ID_LENGTH}")
    for c in value:
        if unicodedata.category(c) in ("Cc", "Cs") or c in _HIDING:
            raise ValueError(
                f"id {value!r} contains a control character (bidi, zero-width or other: "
                f"U+{ord(c):04X}) or a lone surrogate"
            )
    return value


@dataclass(frozen=True, slots=True)
class VpdqFrame:
    """One frame of a vPDQ video hash."""

    pdq: str  # 64 lowercase hex
    quality: int  # 0..100
    timestamp: float  # seconds from the start of the video, >= 0

    def __post_init__(self) -> None:
        if normalise_pdq(self.pdq) != self.pdq:
            raise InvalidHash("vpdq frame pdq must be 64 lowercase hex digits")
        if isinstance(self.quality, bool) or not isinstance(self.quality, int):
            raise ValueError(f"vpdq quality must be an integer, got {self.quality!r}")
        if not 0 <= self.quality <= 100:
            raise ValueError(f"vpdq quality must be 0..100, got {self.quality}")
        if isinstance(self.timestamp, bool) or not isinstance(self.timestamp, int | float):
            raise ValueError(f"vpdq timestamp must be a number, got {self.timestamp!r}")
        if not math.isfinite(self.timestamp) or self.timestamp < 0:
            raise ValueError(f"vpdq timestamp must be finite and >= 0, got {self.timestamp!r}")
        if not isinstance(self.timestamp, float):
            object.__setattr__(self, "timestamp", float(self.timestamp))


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One entry of a hash list, as its source published it.

    ``source_id`` is the source's own id for the entry; formats that have no
    ids get one derived from the hashes (see :meth:`derive_id`). A tombstone
    (``removed=True``) says the source deleted the entry; it may carry no
    hashes at all, since the id identifies it.

    ``pdq_companion`` is the picture's *companion hash*
    (:func:`blindmatch.hashing.canonical.companion_pdq`: the PDQ of the picture in its
    canonical pose at 64 px), which ``lists add`` computes from the picture; private
    matching adds lookup keys for it beside the PDQ's, so mirrored, rotated and shrunk
    copies are found. It belongs to the entry's PDQ, so it needs one; it is not a hash
    of its own (it neither makes an entry nor derives an id).

    ``pdq_hot`` makes the entry *hot* (a picture a hotline knows is re-shared a lot): the
    companion hashes of the picture cropped and turned by a fixed grid
    (:func:`blindmatch.hashing.hot.hot_companions`, at most :data:`MAX_PDQ_HOT`), which
    ``lists add --hot`` computes; private matching adds a lookup key for each, so cropped
    and slightly rotated copies are found. ``()`` (the default) means not hot. Like the
    companion it belongs to the entry's PDQ and needs one.
    """

    source_id: str
    pdq: str | None = None
    md5: str | None = None
    sha256: str | None = None
    vpdq: tuple[VpdqFrame, ...] | None = None
    category: str | None = None
    removed: bool = False
    pdq_companion: str | None = None
    pdq_hot: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_source_id(self.source_id)
        if self.pdq is not None and normalise_pdq(self.pdq) != self.pdq:
            raise InvalidHash("pdq must be 64 lowercase hex digits")
        if self.pdq_companion is not None:
            if normalise_pdq_companion(self.pdq_companion) != self.pdq_companion:
                raise InvalidHash("pdq_companion must be 64 lowercase hex digits")
            if self.pdq is None:
                raise ValueError(
                    "pdq_companion needs a pdq: it is a companion of the picture's PDQ"
                )
        if self.pdq_hot != ():
            if not isinstance(self.pdq_hot, tuple):
                raise ValueError("pdq_hot must be a tuple of hashes")
            if normalise_pdq_hot(self.pdq_hot) != self.pdq_hot:
                raise InvalidHash("pdq_hot must be 64 lowercase hex digits each")
            if self.pdq is None:
                raise ValueError("pdq_hot needs a pdq: hot companions belong to the picture's PDQ")
        if self.md5 is not None and normalise_md5(self.md5) != self.md5:
            raise InvalidHash("md5 must be 32 lowercase hex digits")
        if self.sha256 is not None and normalise_sha256(self.sha256) != self.sha256:
            raise InvalidHash("sha256 must be 64 lowercase hex digits")
        if self.vpdq is not None:
            if not isinstance(self.vpdq, tuple) or not self.vpdq:
                raise ValueError("vpdq must be a non-empty tuple of VpdqFrame")
            for frame in self.vpdq:
                if not isinstance(frame, VpdqFrame):
                    raise ValueError("vpdq must be a non-empty tuple of VpdqFrame")
        if self.category is not None and self.category not in CATEGORIES:
            raise ValueError(f"unknown category {self.category!r}")
        if not isinstance(self.removed, bool):
            raise ValueError(f"removed must be a bool, got {self.removed!r}")
        if not self.removed and not self.has_hash:
            raise ValueError("entry has no hash: needs at least one of pdq, md5, sha256, vpdq")

    @property
    def has_hash(self) -> bool:
        return (
            self.pdq is not None
            or self.md5 is not None
            or self.sha256 is not None
            or self.vpdq is not None
        )

    @staticmethod
    def derive_id(
        pdq: str | None = None,
        md5: str | None = None,
        sha256: str | None = None,
        vpdq: tuple[VpdqFrame, ...] | None = None,
    ) -> str | None:
        """A stable id made from the (normalised) hashes, for formats without ids.

        ``"pdq:<hex>"``, else ``"md5:<hex>"``, else ``"sha256:<hex>"``, else
        ``"vpdq:<sha256 of the frames>"``; ``None`` if there is no hash.
        """
        if pdq is not None:
            return f"pdq:{pdq}"
        if md5 is not None:
            return f"md5:{md5}"
        if sha256 is not None:
            return f"sha256:{sha256}"
        if vpdq:
            canon = "\n".join(f"{f.pdq},{f.quality},{f.timestamp!r}" for f in vpdq)
            return f"vpdq:{hashlib.sha256(canon.encode()).hexdigest()}"
        return None
