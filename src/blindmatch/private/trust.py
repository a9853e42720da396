"""Trust files (``trust.json``) and table directories: the files around the pure protocol.

A trust file is what a client pins: the platform's and hotlines' public keys,
``min_hotlines``, and optionally ``max_age_seconds`` and ``floors`` (docs/protocol.md §4). A
table directory is what the platform publishes (``table.bin``, ``manifest.json``,
``trust.json``) plus its secret ``server.key`` (0600).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blindmatch.errors import ConfigError
from blindmatch.files import read_file
from blindmatch.fsutil import write_atomic
from blindmatch.protocol import Floors, PreparedTable, TrustPolicy

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

TRUST_FORMAT = "blindmatch-trust"
TABLE_FILE, MANIFEST_FILE, TRUST_FILE, SERVER_KEY_FILE = (
    "table.bin",
    "manifest.json",
    "trust.json",
    "server.key",
)
MAX_TRUST_FILE_BYTES = 1 << 20
#: A distance-checked table's committed records (docs/protocol.md §11), the server's copy:
#: every record (16,384 B) in leaf order, nothing else. Public by design (IND-CPA under X).
RECORDS_FILE = "records.bin"


def public_key_bytes(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte Ed25519 public key of ``key`` (what a trust policy pins)."""
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _public_hex(key: Ed25519PrivateKey) -> str:
    return public_key_bytes(key).hex()


def sign_by_all(
    prep: PreparedTable,
    platform: Ed25519PrivateKey,
    hotlines: dict[str, tuple[Ed25519PrivateKey, str]],
) -> bytes:
    """``prep``'s manifest signed by the platform, then by every hotline (sorted by name):
    the signed manifest's bytes."""
    from blindmatch.protocol import SignedManifest, sign_manifest

    sigs = [sign_manifest(prep.manifest, role="platform", signer="platform", key=platform)]
    for hotline, (key, _) in sorted(hotlines.items()):
        sigs.append(sign_manifest(prep.manifest, role="hotline", signer=hotline, key=key))
    return SignedManifest(prep.manifest, tuple(sigs)).to_bytes()


def trust_json(
    platform: Ed25519PrivateKey,
    hotlines: dict[str, tuple[Ed25519PrivateKey, str]],
    min_hotlines: int,
    floors: Floors | None = None,
) -> bytes:
    doc: dict[str, Any] = {
        "format": TRUST_FORMAT,
        "version": 1,
        "platform_key": _public_hex(platform),
        "hotlines": {
            h: {"public_key": _public_hex(k), "jurisdiction": j}
            for h, (k, j) in sorted(hotlines.items())
        },
        "min_hotlines": min_hotlines,
    }
    if floors is not None:
        doc["floors"] = dataclasses.asdict(floors)
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _floors(path: str, d: Any) -> Floors:
    """``floors`` of a trust file: any of :class:`~blindmatch.protocol.Floors`' fields."""
    from blindmatch.protocol import Floors

    if not isinstance(d, dict):
        raise ValueError
    names = {f.name for f in dataclasses.fields(Floors)}
    for name, value in d.items():
        if name not in names:
            raise ConfigError(f"{path}: unknown floor {name!r} (known: {', '.join(sorted(names))})")
        if name == "max_unrelated_openings":
            ok = type(value) in (int, float) and 0 < value <= 1
        elif name == "max_unrelated_bits":  # expected PDQ bits a checked table reveals
            ok = type(value) in (int, float) and 0 < value <= 256
        else:
            ok = type(value) is int and value >= 0
        if not ok:
            raise ConfigError(f"{path}: floor {name!r} has a bad value {value!r}")
    return Floors(**d)


def load_trust_file(path: str) -> TrustPolicy:
    """A trust file: the keys, ``min_hotlines`` and, optionally, ``max_age_seconds``
    (an integer, or null for no maximum; default 30 days) and ``floors`` (any fields of
    :class:`~blindmatch.protocol.Floors`; the others keep their defaults)."""
    from blindmatch.protocol import (
        DEFAULT_MAX_AGE_SECONDS,
        Floors,
        TrustedHotline,
        TrustPolicy,
        accept_without_log,
    )

    data = read_file(path, MAX_TRUST_FILE_BYTES)

    def key(v: Any) -> bytes:
        if not isinstance(v, str) or len(v) != 64:
            raise ValueError
        return bytes.fromhex(v)

    try:
        d = json.loads(data)
        if not isinstance(d, dict) or d.get("format") != TRUST_FORMAT or d.get("version") != 1:
            raise ValueError
        hotlines = {}
        for name, h in d["hotlines"].items():
            if not isinstance(h["jurisdiction"], str):
                raise ValueError
            hotlines[name] = TrustedHotline(key(h["public_key"]), h["jurisdiction"])
        min_hotlines = d["min_hotlines"]
        if type(min_hotlines) is not int or min_hotlines < 1:
            raise ValueError
        max_age = d.get("max_age_seconds", DEFAULT_MAX_AGE_SECONDS)
        if max_age is not None and (type(max_age) is not int or max_age < 1):
            raise ValueError
        return TrustPolicy(
            platform_key=key(d["platform_key"]),
            hotlines=hotlines,
            # The transparency log does not exist yet (docs/protocol.md): say so out loud.
            log_check=accept_without_log,
            min_hotlines=min_hotlines,
            floors=_floors(path, d["floors"]) if "floors" in d else Floors(),
            max_age_seconds=max_age,
        )
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
        raise ConfigError(
            f"{path}: not a trust file (JSON with format {TRUST_FORMAT!r}, platform_key, "
            "hotlines, min_hotlines; optional max_age_seconds, floors)"
        ) from None


def write_table_dir(
    out: Path,
    prep: PreparedTable,
    platform: Ed25519PrivateKey,
    hotlines: dict[str, tuple[Ed25519PrivateKey, str]],
    min_hotlines: int,
    floors: Floors | None = None,
) -> None:
    """Sign ``prep``'s manifest (the platform, then every hotline) and write the table
    directory: ``server.key`` (0600), ``table.bin``, ``manifest.json``, ``trust.json``
    (with ``floors`` when given: test and demo tables below the default floors), and for a
    distance-checked table ``records.bin``."""
    signed = sign_by_all(prep, platform, hotlines)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / SERVER_KEY_FILE, prep.server_secret.to_bytes(), private=True)
    write_atomic(out / TABLE_FILE, prep.table.to_bytes())
    write_atomic(out / MANIFEST_FILE, signed + b"\n")
    write_atomic(out / TRUST_FILE, trust_json(platform, hotlines, min_hotlines, floors))
    if prep.records:
        write_atomic(out / RECORDS_FILE, b"".join(prep.records))


def load_records(path: Path, table: Any) -> tuple[bytes, ...] | None:
    """The committed records of a distance-checked ``table`` from ``path`` (None when the
    table has no check, or the file is absent: the server then recomputes them from its
    key, ~12 ms a record). A file of the wrong size is a :class:`ConfigError`; records
    that do not make the table's root are refused by ``ServerSession`` itself."""
    from blindmatch.protocol.distance import ENCRYPTED_BITS_BYTES

    params = getattr(table, "distance", None)
    if params is None or not path.exists():
        return None
    data = path.read_bytes()
    if len(data) != params.n_records * ENCRYPTED_BITS_BYTES:
        raise ConfigError(
            f"{path}: {len(data):,} bytes, but the table's {params.n_records:,} records "
            f"take {params.n_records * ENCRYPTED_BITS_BYTES:,}"
        )
    size = ENCRYPTED_BITS_BYTES
    return tuple(data[i : i + size] for i in range(0, len(data), size))


__all__ = [
    "MANIFEST_FILE",
    "RECORDS_FILE",
    "SERVER_KEY_FILE",
    "TABLE_FILE",
    "TRUST_FILE",
    "TRUST_FORMAT",
    "load_records",
    "load_trust_file",
    "public_key_bytes",
    "sign_by_all",
    "trust_json",
    "write_table_dir",
]
