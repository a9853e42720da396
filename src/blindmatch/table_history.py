"""The file adapter of :class:`blindmatch.protocol.TableHistory`: the newest table a client
accepted, per platform key, kept across runs (rollback protection, docs/protocol.md §4).

One small JSON file, mode 0600, replaced atomically (a temporary file, fsync, rename)::

    {"format": "blindmatch-table-history", "version": 1,
     "platforms": {"<platform key, 64 hex>": {"sequence": 7, "table_digest": "<64 hex>"}}}

A ``record`` re-reads the file under an exclusive lock (``fcntl.flock`` on a sibling
``.lock`` file) and keeps the higher sequence, so two processes of one client lose no
update. A file that cannot be read is an error, never an empty history: forgetting what was
seen is exactly what a rollback needs. Used by ``blindmatch voucher make``/``check``
(``$BLINDMATCH_HOME/client/table-history.json``) and the Matrix client (its store folder).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from blindmatch.errors import ConfigError
from blindmatch.files import read_file
from blindmatch.fsutil import write_atomic

HISTORY_FORMAT = "blindmatch-table-history"
_MAX_BYTES = 1 << 20


class FileTableHistory:
    """A :class:`~blindmatch.protocol.TableHistory` in the JSON file ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"FileTableHistory({str(self.path)!r})"

    def _read(self) -> dict[str, tuple[int, bytes]]:
        if not self.path.exists():
            return {}
        data = read_file(str(self.path), _MAX_BYTES)
        try:
            d = json.loads(data)
            if d.get("format") != HISTORY_FORMAT or d.get("version") != 1:
                raise ValueError
            out: dict[str, tuple[int, bytes]] = {}
            for key, v in d["platforms"].items():
                seq, digest = v["sequence"], bytes.fromhex(v["table_digest"])
                if len(bytes.fromhex(key)) != 32 or type(seq) is not int or seq < 0:
                    raise ValueError
                if len(digest) != 32:
                    raise ValueError
                out[key] = (seq, digest)
            return out
        except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
            raise ConfigError(
                f"{self.path}: not a table history file ({HISTORY_FORMAT!r}, version 1); "
                "it keeps this client from accepting older tables, so it is not reset "
                "silently: restore it, or remove it to start over"
            ) from None

    def last(self, platform_key: bytes) -> tuple[int, bytes] | None:
        return self._read().get(bytes(platform_key).hex())

    def record(self, platform_key: bytes, sequence: int, digest: bytes) -> None:
        key = bytes(platform_key).hex()
        with self._locked():
            seen = self._read()
            cur = seen.get(key)
            if cur is not None and cur[0] >= sequence:
                return
            seen[key] = (sequence, bytes(digest))
            self._write(seen)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = self.path.with_name(f".{self.path.name}.lock")
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self, seen: dict[str, tuple[int, bytes]]) -> None:
        doc = {
            "format": HISTORY_FORMAT,
            "version": 1,
            "platforms": {
                k: {"sequence": s, "table_digest": d.hex()} for k, (s, d) in sorted(seen.items())
            },
        }
        data = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
        write_atomic(self.path, data, private=True)


__all__ = ["HISTORY_FORMAT", "FileTableHistory"]
