"""Small filesystem helpers shared by the CLI, the client state files and the index."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path | str, data: bytes, *, private: bool = False) -> None:
    """Replace ``path`` with ``data`` atomically: a uniquely named temporary file in the same
    folder (so concurrent writers never share one), written, flushed to disk, then renamed
    over ``path``. Mode 0600 if ``private``, else 0644. On any failure the temporary file is
    removed and ``path`` is left as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600 if private else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["write_atomic"]
