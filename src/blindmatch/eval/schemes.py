"""Matching schemes the harness compares: what a list stores, how a client looks up.

Every scheme turns a listed image into what a list stores for it
(:meth:`Scheme.list_item`), is given the whole list once (:meth:`Scheme.prepare`)
and then scores a client's image against every listed one
(:meth:`Scheme.distances`): a distance per listed image, lower is closer, and
the image matches where it is within the scheme's threshold.

Hash schemes (:class:`HashScheme`) store hash rows and score by Hamming
distance: an image matches a listed one when any query hash is within the
threshold of any of that entry's hashes. :class:`Keypoints` finds the listed
picture inside the image by ORB keypoints and scores the aligned window's PDQ
distance (see :mod:`blindmatch.index.keypoints`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from blindmatch.eval.privacy import Observation, PrivacySummary
from blindmatch.hashing import MIN_QUALITY, PDQ, pdq_from_rgb
from blindmatch.hashing.keypoints import ListedFeatures, listed_features
from blindmatch.hashing.robust import find_frames, query_variants

NO_MATCH = 10_000  # the distance of a listed image a scheme found no evidence for


def _rows(hexes: list[str]) -> np.ndarray:
    if not hexes:
        return np.zeros((0, 32), dtype=np.uint8)
    return np.frombuffer(bytes.fromhex("".join(hexes)), dtype=np.uint8).reshape(len(hexes), -1)


def _trusted(pdqs: list[PDQ]) -> list[str]:
    """As in production: a PDQ below MIN_QUALITY is not looked up."""
    return [p.hex for p in pdqs if p.quality >= MIN_QUALITY]


class Scheme(ABC):
    name: str
    bits: int  # the scale of the distances (a hash's length in bits)
    threshold: int  # the distance at which the scheme is used in production

    @abstractmethod
    def list_item(self, rgb: np.ndarray) -> Any:
        """What a list stores for one listed image (picklable)."""

    @abstractmethod
    def list_bytes(self, item: Any) -> int:
        """How many bytes ``item`` takes in a list."""

    @abstractmethod
    def prepare(self, items: Sequence[Any]) -> None:
        """Take the whole list: listed image ``i`` is ``items[i]``."""

    @abstractmethod
    def distances(self, rgb: np.ndarray) -> tuple[np.ndarray, int]:
        """A client's image against the prepared list: the distance to each
        listed image (``NO_MATCH`` where there is no evidence), and how many
        lookups the client made."""

    def privacy(self, own: int) -> Observation | None:
        """What the last :meth:`distances` call revealed, with the image taken as innocent
        of every entry but listed image ``own``'s (-1: a distractor); None for schemes
        that reveal nothing to a server (plaintext ones)."""
        return None

    def privacy_summary(
        self, distractors: Sequence[Observation], edited: Mapping[str, Sequence[Observation]]
    ) -> PrivacySummary | None:
        """The run's privacy figures from every distractor's and, per edit, every edited
        listed image's :meth:`privacy` (None for schemes without any)."""
        return None


class HashScheme(Scheme):
    """A scheme of hash rows compared by Hamming distance."""

    _rows: np.ndarray
    _owners: np.ndarray
    _n: int

    @abstractmethod
    def list_hashes(self, rgb: np.ndarray) -> np.ndarray:
        """``(k, bits/8)`` uint8: what a list stores for one listed image."""

    @abstractmethod
    def query_hashes(self, rgb: np.ndarray) -> np.ndarray:
        """``(m, bits/8)`` uint8: what a client looks up for one image."""

    def list_item(self, rgb: np.ndarray) -> np.ndarray:
        return self.list_hashes(rgb)

    def list_bytes(self, item: Any) -> int:
        return int(np.asarray(item).nbytes)

    def prepare(self, items: Sequence[Any]) -> None:
        self._n = len(items)
        rows = [np.asarray(i, dtype=np.uint8) for i in items]
        self._rows = np.concatenate(rows) if rows else np.zeros((0, self.bits // 8), np.uint8)
        self._owners = np.concatenate(
            [np.full(len(r), k, dtype=np.int64) for k, r in enumerate(rows)]
        ) if rows else np.zeros(0, np.int64)  # fmt: skip

    def distances(self, rgb: np.ndarray) -> tuple[np.ndarray, int]:
        return self.hash_distances(self.query_hashes(rgb))

    def hash_distances(self, q: np.ndarray) -> tuple[np.ndarray, int]:
        out = np.full(self._n, NO_MATCH, dtype=np.int32)
        if len(q) and len(self._rows):
            d = np.bitwise_count(q[:, None, :] ^ self._rows[None, :, :]).sum(axis=2, dtype=np.int32)
            np.minimum.at(out, self._owners, d.min(axis=0))
        return out, len(q)


class PlainPDQ(HashScheme):
    """One PDQ each side: what HMA and python-threatexchange do."""

    name, bits, threshold = "pdq", 256, 31

    def list_hashes(self, rgb: np.ndarray) -> np.ndarray:
        return _rows([pdq_from_rgb(rgb).hex])

    def query_hashes(self, rgb: np.ndarray) -> np.ndarray:
        return _rows(_trusted([pdq_from_rgb(rgb)]))


class RobustPDQ(HashScheme):
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


class ImageHash(HashScheme):
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


class BrokenPDQ(HashScheme):
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


class Keypoints(Scheme):
    """ORB keypoints found in the listed picture, verified by the aligned
    window's PDQ; optionally together with a hash scheme (an image matches when
    either does, and its distance is the smaller of the two)."""

    bits, threshold = 256, 31

    def __init__(self, hashes: HashScheme | None = None) -> None:
        from blindmatch.index.keypoints import KeypointIndex

        self.hashes = hashes
        self.name = "orb" if hashes is None else f"{hashes.name}+orb"
        self._index = KeypointIndex(mirror_below=self.threshold)
        self._n = 0

    def list_item(self, rgb: np.ndarray) -> tuple[np.ndarray | None, bytes]:
        rows = self.hashes.list_hashes(rgb) if self.hashes else None
        return rows, listed_features(rgb).to_bytes()

    def list_bytes(self, item: Any) -> int:
        rows, feats = item
        return len(feats) + (int(rows.nbytes) if rows is not None else 0)

    def prepare(self, items: Sequence[Any]) -> None:
        self._n = len(items)
        if self.hashes:
            self.hashes.prepare([rows for rows, _ in items])
        self._index.add(list(range(len(items))), [ListedFeatures.from_bytes(f) for _, f in items])

    def distances(self, rgb: np.ndarray) -> tuple[np.ndarray, int]:
        out, lookups = (
            self.hashes.distances(rgb) if self.hashes
            else (np.full(self._n, NO_MATCH, dtype=np.int32), 0)
        )  # fmt: skip
        for m in self._index.search(rgb):
            out[m.id] = min(int(out[m.id]), m.distance)
        return out, lookups + 1


def _private(
    companions: bool = False, hot: bool = False, check: int = 0, key_bits: int = 40
) -> Scheme:
    """Private matching, exactly as the Matrix integration runs it (blindmatch.eval.private):
    a list of bare PDQs, or (``companions``) a list built from the pictures, or (``hot``)
    one whose every picture is in the hot tier too; ``check``: a distance-checked table
    with that many candidate slots and ``key_bits`` lookup keys (docs/protocol.md §11)."""
    from blindmatch.eval.private import PrivateScheme

    return PrivateScheme(companions=companions, hot=hot, check=check, key_bits=key_bits)


_FACTORIES: dict[str, Callable[[], Scheme]] = {
    "pdq": PlainPDQ,
    "robust": RobustPDQ,
    "robust-nodihedral": lambda: RobustPDQ(dihedral=False),
    "robust-notrim": lambda: RobustPDQ(trim=False),
    "robust+listtrim": lambda: RobustPDQ(list_trim=True),
    "phash": lambda: ImageHash("phash"),
    "dhash": lambda: ImageHash("dhash"),
    "broken": BrokenPDQ,
    "orb": Keypoints,
    "robust+orb": lambda: Keypoints(RobustPDQ()),
    "private": _private,
    "private+companion": lambda: _private(companions=True),
    "private+hot": lambda: _private(hot=True),
    "private+check": lambda: _private(check=1),
    "private+companion+check": lambda: _private(companions=True, check=1),
    "private+companion+check2": lambda: _private(companions=True, check=2),
    "private+hot+check": lambda: _private(hot=True, check=1),
    "private+companion+check-k48": lambda: _private(companions=True, check=1, key_bits=48),
    "private+hot+check-k48": lambda: _private(hot=True, check=1, key_bits=48),
}
SCHEMES = tuple(_FACTORIES)


def make_scheme(name: str) -> Scheme:
    try:
        return _FACTORIES[name]()
    except KeyError:
        raise ValueError(f"unknown scheme {name!r}: choose from {', '.join(SCHEMES)}") from None


def make_hash_scheme(name: str) -> HashScheme:
    """A scheme made of hash rows (what the adversarial measurements attack)."""
    scheme = make_scheme(name)
    if not isinstance(scheme, HashScheme):
        raise ValueError(f"scheme {name!r} is not a hash scheme")
    return scheme
