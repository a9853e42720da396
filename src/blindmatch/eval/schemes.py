"""Matching schemes the harness compares: how each side hashes an image.

A scheme turns a listed image into the hashes a list stores for it, and a
client's image into the hashes it looks up; an image matches a listed one when
any query hash is within the scheme's threshold of any of that entry's hashes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
from PIL import Image

from blindmatch.hashing import MIN_QUALITY, PDQ, pdq_from_rgb
from blindmatch.hashing.robust import find_frames, query_variants


def _rows(hexes: list[str]) -> np.ndarray:
    if not hexes:
        return np.zeros((0, 32), dtype=np.uint8)
    return np.frombuffer(bytes.fromhex("".join(hexes)), dtype=np.uint8).reshape(len(hexes), -1)


def _trusted(pdqs: list[PDQ]) -> list[str]:
    """As in production: a PDQ below MIN_QUALITY is not looked up."""
    return [p.hex for p in pdqs if p.quality >= MIN_QUALITY]


class Scheme(ABC):
    name: str
    bits: int
    threshold: int  # the distance at which the scheme is used in production

    @abstractmethod
    def list_hashes(self, rgb: np.ndarray) -> np.ndarray:
        """``(k, bits/8)`` uint8: what a list stores for one listed image."""

    @abstractmethod
    def query_hashes(self, rgb: np.ndarray) -> np.ndarray:
        """``(m, bits/8)`` uint8: what a client looks up for one image."""


class PlainPDQ(Scheme):
    """One PDQ each side: what HMA and python-threatexchange do."""

    name, bits, threshold = "pdq", 256, 31

    def list_hashes(self, rgb: np.ndarray) -> np.ndarray:
        return _rows([pdq_from_rgb(rgb).hex])

    def query_hashes(self, rgb: np.ndarray) -> np.ndarray:
        return _rows(_trusted([pdq_from_rgb(rgb)]))


class RobustPDQ(Scheme):
    """blindmatch's matching, as ``scan`` and the service run it: plain PDQ
    lists, robust queries (the 8 dihedral hashes of the image and of the
    picture inside any frame; see ``blindmatch.hashing.robust``)."""

    name, bits, threshold = "robust", 256, 31

    def __init__(
        self, *, dihedral: bool = True, trim: bool = True, list_trim: bool = False
    ) -> None:
        self.dihedral, self.trim, self.list_trim = dihedral, trim, list_trim
        self.name = (
            "robust"
            + ("" if dihedral else "-nodihedral")
            + ("" if trim else "-notrim")
            + ("+listtrim" if list_trim else "")
        )

    def list_hashes(self, rgb: np.ndarray) -> np.ndarray:
        """The listed image's PDQ; with ``list_trim`` (a candidate, not yet what
        ``lists add`` stores) also the PDQ of the picture inside each frame the
        client would find, so both sides trim to the same box."""
        hexes = [pdq_from_rgb(rgb).hex]
        if self.list_trim:
            for left, top, right, bottom in find_frames(rgb):
                hexes.append(pdq_from_rgb(rgb[top:bottom, left:right]).hex)
        return _rows(hexes)

    def query_hashes(self, rgb: np.ndarray) -> np.ndarray:
        variants = query_variants(rgb, dihedral=self.dihedral, trim=self.trim)
        return _rows(_trusted([pdq_from_rgb(rgb), *(v.pdq for v in variants)]))


class ImageHash(Scheme):
    """pHash or dHash (64 bits) from the ``imagehash`` package, as a reference point."""

    bits, threshold = 64, 10

    def __init__(self, kind: str) -> None:
        if kind not in ("phash", "dhash"):
            raise ValueError("kind must be 'phash' or 'dhash'")
        self.name = kind

    def _hash(self, rgb: np.ndarray) -> np.ndarray:
        import imagehash

        fn = imagehash.phash if self.name == "phash" else imagehash.dhash
        bits = np.asarray(fn(Image.fromarray(rgb)).hash, dtype=np.uint8).reshape(-1)
        return np.packbits(bits).reshape(1, -1)

    def list_hashes(self, rgb: np.ndarray) -> np.ndarray:
        return self._hash(rgb)

    def query_hashes(self, rgb: np.ndarray) -> np.ndarray:
        return self._hash(rgb)


class BrokenPDQ(Scheme):
    """A deliberately broken matcher for testing the harness: it flips 40 bits
    of every query hash (chosen from the hash itself, so runs repeat), so it
    must score worse than plain PDQ."""

    name, bits, threshold = "broken", 256, 31

    def list_hashes(self, rgb: np.ndarray) -> np.ndarray:
        return _rows([pdq_from_rgb(rgb).hex])

    def query_hashes(self, rgb: np.ndarray) -> np.ndarray:
        row = _rows([pdq_from_rgb(rgb).hex])
        h = np.unpackbits(row, axis=1)
        rng = np.random.default_rng(int.from_bytes(row.tobytes()[:8], "big"))
        h[0, rng.choice(256, size=40, replace=False)] ^= 1
        return np.packbits(h, axis=1)


_FACTORIES: dict[str, Callable[[], Scheme]] = {
    "pdq": PlainPDQ,
    "robust": RobustPDQ,
    "robust-nodihedral": lambda: RobustPDQ(dihedral=False),
    "robust-notrim": lambda: RobustPDQ(trim=False),
    "robust+listtrim": lambda: RobustPDQ(list_trim=True),
    "phash": lambda: ImageHash("phash"),
    "dhash": lambda: ImageHash("dhash"),
    "broken": BrokenPDQ,
}
SCHEMES = tuple(_FACTORIES)


def make_scheme(name: str) -> Scheme:
    try:
        return _FACTORIES[name]()
    except KeyError:
        raise ValueError(f"unknown scheme {name!r}: choose from {', '.join(SCHEMES)}") from None
