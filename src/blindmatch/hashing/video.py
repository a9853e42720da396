"""vPDQ video hashing via Meta's reference implementation (``vpdq``)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from blindmatch.errors import VideoError
from blindmatch.lists.model import VpdqFrame  # one frame type for hashes and list entries


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """The C++ library writes its own errors to fd 2; keep them out of our output."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    saved = os.dup(fd)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def vpdq_from_path(path: str, *, seconds_per_hash: float = 1.0) -> list[VpdqFrame]:
    """Hash one frame per ``seconds_per_hash`` of the video at ``path``."""
    import vpdq

    try:
        with _quiet_native_stderr():
            features = vpdq.computeHash(
                str(path), seconds_per_hash=seconds_per_hash, thread_count=1
            )
    except Exception as e:  # noqa: BLE001 - the binding raises bare Exception
        raise VideoError(f"video could not be decoded: {e}") from None
    if not features:
        raise VideoError("video has no decodable frames")
    return [VpdqFrame(f.hex, int(f.quality), float(f.timestamp)) for f in features]
