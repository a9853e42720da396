"""Small filesystem helpers shared by the CLI, the client state files and the index."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def write_atomic_with(
    path: Path | str, write: Callable[[IO[bytes]], object], *, private: bool = False
) -> str:
    """Replace ``path`` atomically with what ``write`` writes to the file object it is given:
    a uniquely named temporary file in the same folder (so concurrent writers never share
    one), written, flushed to disk, then renamed over ``path``. Mode 0600 if ``private``,
    else 0644. On any failure the temporary file is removed and ``path`` is left as it was.
    Returns the SHA-256 (hex) of what was written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600 if private else 0o644)
        with os.fdopen(fd, "w+b") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            f.seek(0)
            digest = hashlib.sha256()
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def write_atomic(path: Path | str, data: bytes, *, private: bool = False) -> None:
    """:func:`write_atomic_with` for bytes in hand."""
    write_atomic_with(path, lambda f: f.write(data), private=private)


__all__ = ["write_atomic", "write_atomic_with"]
