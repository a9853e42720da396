"""Finding and reading input files safely: the I/O edge of hashing.

Every problem becomes an ``InputError`` naming the path, so a batch can report
it and move on: missing files, permissions, symlink loops, FIFOs and devices,
files over the size limit.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from blindmatch.errors import (
    EmptyFile,
    FileTooLarge,
    InputError,
    NotAFile,
    NotFound,
    PermissionDenied,
    SymlinkLoop,
)
from blindmatch.hashing import DEFAULT_MAX_PIXELS, Hashes, hash_bytes, open_image

DEFAULT_MAX_FILE_BYTES = 1 << 30  # 1 GiB: long videos are large


@dataclass(frozen=True, slots=True)
class Limits:
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Failure:
    """An input that could not be hashed."""

    path: str
    error: InputError

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "error": self.error.as_dict()}


def _os_error(path: str, e: OSError) -> InputError:
    if e.errno == errno.ENOENT:
        return NotFound(f"no such file: {path}")
    if e.errno in (errno.EACCES, errno.EPERM):
        return PermissionDenied(f"permission denied: {path}")
    if e.errno == errno.ELOOP:
        return SymlinkLoop(f"symbolic link loop: {path}")
    if e.errno == errno.EISDIR:
        return NotAFile(f"is a directory: {path}")
    if e.errno == errno.ENAMETOOLONG:
        return NotFound(f"file name too long: {path[:80]}...")
    return InputError(f"cannot read {path}: {e.strerror or e}")


def iter_files(paths: Iterable[str]) -> Iterator[str | Failure]:
    """Yield regular files under ``paths`` (directories recurse, sorted), or failures.

    Symbolic links are followed, but a directory reached twice (a link loop) is
    reported once and not entered again.
    """
    seen_dirs: set[tuple[int, int]] = set()
    for path in paths:
        yield from _walk(os.fspath(path), seen_dirs)


def _walk(path: str, seen_dirs: set[tuple[int, int]]) -> Iterator[str | Failure]:
    try:
        st = os.stat(path)
    except OSError as e:
        yield Failure(path, _os_error(path, e))
        return
    if stat.S_ISREG(st.st_mode):
        yield path
        return
    if not stat.S_ISDIR(st.st_mode):
        yield Failure(path, NotAFile(f"not a regular file: {path}"))
        return
    key = (st.st_dev, st.st_ino)
    if key in seen_dirs:
        yield Failure(path, SymlinkLoop(f"directory already visited (symbolic link loop): {path}"))
        return
    seen_dirs.add(key)
    try:
        names = sorted(os.listdir(path))
    except OSError as e:
        yield Failure(path, _os_error(path, e))
        return
    for name in names:
        yield from _walk(os.path.join(path, name), seen_dirs)


def read_file(
    path: str, max_bytes: int = DEFAULT_MAX_FILE_BYTES, *, allow_empty: bool = False
) -> bytes:
    """Read a regular file whole, refusing anything else or anything too large (and
    an empty file unless ``allow_empty``: an empty hash list is a valid list)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise _os_error(path, e) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotAFile(f"not a regular file: {path}")
        if st.st_size == 0 and not allow_empty:
            raise EmptyFile(f"file is empty: {path}")
        if st.st_size > max_bytes:
            raise FileTooLarge(f"file is {st.st_size:,} bytes; the limit is {max_bytes:,}")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise FileTooLarge(f"file grew past the limit of {max_bytes:,} bytes while reading")
        return data
    except OSError as e:
        raise _os_error(path, e) from None
    finally:
        os.close(fd)


def hash_file(
    path: str,
    limits: Limits = DEFAULT_LIMITS,
    *,
    variants: bool = False,
    companion: bool = False,
    hot: bool = False,
) -> Hashes:
    """Read and hash one file; raises an ``InputError`` on any problem.

    ``variants`` adds the robust query variants that matching looks up; ``companion`` an
    image's companion hash, which a list built from pictures carries (``lists add``);
    ``hot`` its hot companion hashes (``lists add --hot``)."""
    data = read_file(path, limits.max_file_bytes)
    return hash_bytes(
        data,
        video_path=path,
        max_pixels=limits.max_pixels,
        variants=variants,
        companion=companion,
        hot=hot,
    )


def image_pixels(path: str, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """The RGB pixels ``hash_file`` hashes for an image (the same decode), for
    keypoint matching to verify a candidate against."""
    data = read_file(path, limits.max_file_bytes)
    return np.asarray(open_image(data, max_pixels=limits.max_pixels))
