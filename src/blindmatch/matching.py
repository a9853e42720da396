"""Match hashes against stored lists: PDQ by Hamming radius, MD5/SHA-256 exactly,
videos by vPDQ frame overlap, and listed pictures found inside crops and
rotations by their keypoints.

The PDQ index lives in memory, catches up with the store by sequence number
(new entries are matchable at once, without a rebuild) and is persisted under
the data folder so a new process starts without re-reading every row. The
keypoint index (only entries added from images carry keypoints) catches up the
same way; it is rebuilt from the store when a process starts.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from blindmatch.errors import BlindmatchError, IndexFormatError, IoFailed, ListNotFound
from blindmatch.fsutil import write_atomic_with
from blindmatch.hashing import MIN_QUALITY, Hashes, Keypoints, VpdqFrame
from blindmatch.hashing.keypoints import ListedFeatures, mirrored_keypoints, work_copy
from blindmatch.index import MultiIndexHash
from blindmatch.index.keypoints import KeypointIndex, KeypointMatch
from blindmatch.store import EntryInfo, Store

DEFAULT_MIN_QUALITY = MIN_QUALITY
VPDQ_FRAME_THRESHOLD = 31
VPDQ_MATCH_FRACTION = 0.8
_INDEX_FILE = "pdq.bmidx"
_INDEX_META = "pdq.json"
_INDEX_LOCK = ".save.lock"
_INDEX_META_VERSION = 2  # 2: the meta names the index file's SHA-256


@dataclass(frozen=True, slots=True)
class Match:
    list: str
    entry_id: str
    hash_type: str  # "pdq", "md5", "sha256", "vpdq" or "keypoints" (PDQ bits of aligned windows)
    distance: int
    category: str | None
    variant: str | None = None  # which robust query variant matched, if not the image as is
    inliers: int | None = None  # keypoint matches: correspondences that fit the alignment

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "list": self.list,
            "entry_id": self.entry_id,
            "hash_type": self.hash_type,
            "distance": self.distance,
            "category": self.category,
        }
        if self.variant:
            out["variant"] = self.variant
        if self.inliers is not None:
            out["inliers"] = self.inliers
        return out


@contextmanager
def _folder_lock(folder: Path, *, shared: bool = False) -> Iterator[bool]:
    """A lock on ``folder/.save.lock``: exclusive and non-blocking for a writer
    (yields False when another process holds it), shared and waiting for a
    reader. Yields True without a lock where ``fcntl`` does not exist or the
    lock file cannot be opened: the SHA-256 in the meta still catches a torn pair."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield True
        return
    try:
        fd = os.open(folder / _INDEX_LOCK, os.O_RDONLY if shared else os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        if not shared:
            raise
        yield True  # nobody has saved here yet, or a read-only folder
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _as_array(pdq_hex: Sequence[str]) -> np.ndarray:
    if not pdq_hex:
        return np.zeros((0, 32), dtype=np.uint8)
    return np.frombuffer(bytes.fromhex("".join(pdq_hex)), dtype=np.uint8).reshape(-1, 32).copy()


class Matcher:
    def __init__(self, store: Store, index_dir: Path | None = None) -> None:
        self.store = store
        self.index_dir = index_dir
        self._lock = threading.Lock()
        self._index = MultiIndexHash()
        self._seq = -1
        self._keypoints = KeypointIndex()
        self._kp_seq = -1
        self._unsaved = 0
        if index_dir is not None:
            self._load(index_dir)
        self.refresh()

    # -- index upkeep ------------------------------------------------------
    def _load(self, index_dir: Path) -> None:
        meta_path, idx_path = index_dir / _INDEX_META, index_dir / _INDEX_FILE
        try:
            with _folder_lock(index_dir, shared=True):  # the pair of one save, not of two
                meta = json.loads(meta_path.read_text())
                if meta.get("version") != _INDEX_META_VERSION:
                    return
                data = idx_path.read_bytes()
            if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
                return  # not the index this seq describes (a save cut short): rebuild
            index = MultiIndexHash.load(io.BytesIO(data))
            seq = int(meta["seq"])
        except (OSError, ValueError, KeyError, TypeError, IndexFormatError):
            return  # absent or unreadable: rebuilt from the store
        self._index, self._seq = index, seq

    def refresh(self) -> int:
        """Apply the store's changes since the last refresh; returns how many.

        The two indexes catch up separately: the PDQ index may start from a saved
        file, already current, while the keypoint index always starts empty."""
        with self._lock:
            return self._refresh_pdq() + self._refresh_keypoints()

    def _refresh_pdq(self) -> int:
        ch = self.store.pdq_changes(self._seq)
        if ch.seq == self._seq and not ch.full:
            return 0
        if ch.full:
            index = MultiIndexHash()
            if ch.added_ids:
                index.add(_as_array(ch.added_pdq), np.asarray(ch.added_ids, dtype=np.int64))
            self._index = index
        else:
            if ch.removed_ids:
                self._index.remove(np.asarray(ch.removed_ids, dtype=np.int64))
            if ch.added_ids:
                self._index.add(_as_array(ch.added_pdq), np.asarray(ch.added_ids, dtype=np.int64))
        self._seq = ch.seq
        applied = len(ch.added_ids) + len(ch.removed_ids)
        self._unsaved += applied + 1
        return applied

    def _refresh_keypoints(self) -> int:
        kc = self.store.keypoint_changes(self._kp_seq)
        if kc.seq == self._kp_seq and not kc.full:
            return 0
        if kc.full:
            self._keypoints = KeypointIndex()
        else:
            self._keypoints.remove(kc.removed_ids)
        feats = []
        ids = []
        for i, data in zip(kc.added_ids, kc.added_features, strict=True):
            try:
                feats.append(ListedFeatures.from_bytes(data))
                ids.append(i)
            except IndexFormatError:
                continue  # a record this version cannot read matches by its PDQ only
        self._keypoints.add(ids, feats)
        self._kp_seq = kc.seq
        return len(ids) + len(kc.removed_ids)

    def save(self) -> None:
        """Persist the index so the next process starts warm.

        Safe when several processes save one folder at once: each writes its own
        temporary files and renames them into place, a lock file makes the pair
        (index, meta) of one process land together (a process that finds the lock
        taken skips its save: the index is a cache, and the next start catches up
        from the saved sequence), and the meta names the index's SHA-256, so a
        pair torn by a crash is rebuilt rather than trusted. Raises ``IoFailed``
        if the folder cannot be written."""
        if self.index_dir is None:
            return
        try:
            self.index_dir.mkdir(parents=True, exist_ok=True)
            with self._lock, _folder_lock(self.index_dir) as mine:
                if not mine:
                    return
                digest = write_atomic_with(self.index_dir / _INDEX_FILE, self._index.save)
                meta = {"version": _INDEX_META_VERSION, "seq": self._seq, "sha256": digest}
                body = json.dumps(meta).encode()
                write_atomic_with(self.index_dir / _INDEX_META, lambda f: f.write(body))
                self._unsaved = 0
        except OSError as e:
            raise IoFailed(f"cannot save the index in {self.index_dir}: {e}") from e

    @property
    def unsaved_changes(self) -> int:
        """Changes applied since the index was last saved (0: the file is current)."""
        return self._unsaved

    def __len__(self) -> int:
        return len(self._index)

    # -- matching ----------------------------------------------------------
    def _thresholds(self, lists: Sequence[str] | None, threshold: int | None) -> dict[str, int]:
        known = self.store.thresholds()
        if lists:
            missing = [n for n in lists if n not in known]
            if missing:
                raise ListNotFound(f"no list named {missing[0]!r}")
            known = {n: known[n] for n in lists}
        if threshold is not None:
            if not 0 <= threshold <= 128:
                raise BlindmatchError("threshold must be between 0 and 128")
            known = {n: threshold for n in known}
        return known

    def match_pdq(
        self, pdq: str, *, lists: Sequence[str] | None = None, threshold: int | None = None
    ) -> list[Match]:
        """Entries within each list's radius (or ``threshold``) of a PDQ hex hash."""
        return self._match_pdq(pdq, self._thresholds(lists, threshold))

    def _match_pdq(self, pdq: str, limits: dict[str, int]) -> list[Match]:
        if not limits:
            return []
        query = np.frombuffer(bytes.fromhex(pdq), dtype=np.uint8)
        with self._lock:  # the service refreshes from other threads
            ids, dists = self._index.search(query, max(limits.values()))
        if len(ids) == 0:
            return []
        info = self.store.entries_by_ids(ids.tolist())
        out = []
        for i, d in zip(ids.tolist(), dists.tolist(), strict=True):
            e = info.get(i)
            if e is not None and e.list_name in limits and d <= limits[e.list_name]:
                out.append(_match(e, "pdq", int(d)))
        return out

    def match_values(
        self,
        *,
        pdq: str | None = None,
        md5: str | None = None,
        sha256: str | None = None,
        lists: Sequence[str] | None = None,
        threshold: int | None = None,
    ) -> list[Match]:
        """Matches for hash values (normalised lowercase hex), best first."""
        return self._match_all(pdq, md5, sha256, (), self._thresholds(lists, threshold), 0)

    def match(
        self,
        hashes: Hashes,
        *,
        lists: Sequence[str] | None = None,
        threshold: int | None = None,
        min_quality: int = DEFAULT_MIN_QUALITY,
        image: Callable[[], np.ndarray] | None = None,
        lazy_keypoints: bool = False,
    ) -> list[Match]:
        """Every match for one file's hashes, best first, one per (list, entry, type).

        A PDQ (or vPDQ frame) below ``min_quality`` is not trusted to match.
        Keypoint matching runs only when nothing else matched, and needs the
        hashes' keypoints and ``image``, which gives the RGB pixels they were
        computed from (called only when there is a candidate to verify). With
        ``lazy_keypoints`` the keypoints are computed here from ``image`` when the
        hashes carry none, and only if some listed entry has keypoints."""
        limits = self._thresholds(lists, threshold)
        pdq = hashes.pdq if (hashes.pdq_quality or 0) >= min_quality else None
        found = self._match_all(pdq, hashes.md5, hashes.sha256, hashes.vpdq, limits, min_quality)
        for label, hex_, quality in hashes.variants:
            if quality >= min_quality:
                found += [replace(m, variant=label) for m in self._match_pdq(hex_, limits)]
        wanted = hashes.keypoints is not None or lazy_keypoints
        if not found and wanted and image is not None and limits and len(self._keypoints):
            found += self._match_keypoints(hashes.keypoints, image, limits)
        return _best_first(found)

    def _match_keypoints(
        self,
        keypoints: tuple[Keypoints, Keypoints] | None,
        image: Callable[[], np.ndarray],
        limits: dict[str, int],
    ) -> list[Match]:
        """The plain image first; its mirror image only if that found nothing. Keypoints
        not computed by the caller (``hash_bytes(..., keypoints=False)``) are computed
        here from ``image``, only when some listed entry has keypoints."""
        rgb: np.ndarray | None = None
        out: list[Match] = []
        if keypoints is None:
            try:
                rgb = work_copy(image())
            except (BlindmatchError, OSError):
                return out
            keypoints = mirrored_keypoints(rgb)
        for mirrored, kp in ((False, keypoints[0]), (True, keypoints[1])):
            with self._lock:
                candidates = self._keypoints.candidates(kp)
            if not candidates:
                continue
            if rgb is None:
                try:
                    rgb = work_copy(image())  # what the keypoints were computed on
                except (BlindmatchError, OSError):
                    return out  # the image cannot be read again: no keypoint evidence
            pixels = np.ascontiguousarray(rgb[:, ::-1]) if mirrored else rgb
            with self._lock:
                verified = self._keypoints.verify(pixels, candidates, mirrored=mirrored)
            out += self._keypoint_matches(verified, limits)
            if out:
                break
        return out

    def _keypoint_matches(self, found: list[KeypointMatch], limits: dict[str, int]) -> list[Match]:
        info = self.store.entries_by_ids([m.id for m in found])
        out = []
        for m in found:
            e = info.get(m.id)
            if e is not None and e.list_name in limits and m.distance <= limits[e.list_name]:
                label = "keypoints-mirrored" if m.mirrored else "keypoints"
                out.append(
                    replace(_match(e, "keypoints", m.distance), variant=label, inliers=m.inliers)
                )
        return out

    def _match_all(
        self,
        pdq: str | None,
        md5: str | None,
        sha256: str | None,
        vpdq: Sequence[VpdqFrame],
        limits: dict[str, int],
        min_quality: int,
    ) -> list[Match]:
        out = [
            _match(e, kind, 0)
            for kind, e in self.store.lookup_exact(md5, sha256)
            if e.list_name in limits
        ]
        if pdq:
            out.extend(self._match_pdq(pdq, limits))
        if vpdq:
            out.extend(self._match_vpdq(vpdq, limits, min_quality))
        return _best_first(out)

    def _match_vpdq(
        self, frames: Sequence[VpdqFrame], limits: dict[str, int], min_quality: int
    ) -> list[Match]:
        """python-threatexchange's rule: a video matches a listed one when at least
        80% of the query's good frames match some listed frame, and 80% of the
        listed good frames match some query frame."""
        query = [f.pdq for f in frames if f.quality >= min_quality]
        if not query:
            return []
        q = _as_array(sorted(set(query)))
        out = []
        for e, listed in self.store.vpdq_entries():
            if e.list_name not in limits:
                continue
            target = [f.pdq for f in listed if f.quality >= min_quality]
            if not target:
                continue
            t = _as_array(sorted(set(target)))
            d = np.bitwise_count(q[:, None, :] ^ t[None, :, :]).sum(axis=2)
            close = d <= VPDQ_FRAME_THRESHOLD
            q_frac = close.any(axis=1).mean()
            t_frac = close.any(axis=0).mean()
            if q_frac >= VPDQ_MATCH_FRACTION and t_frac >= VPDQ_MATCH_FRACTION:
                out.append(_match(e, "vpdq", int(d.min())))
        return out


def _best_first(matches: list[Match]) -> list[Match]:
    """One match per (list, entry, hash type): the closest; the image as is wins ties."""
    seen: set[tuple[str, str, str]] = set()
    unique = []
    key = lambda m: (m.distance, m.variant is not None, m.list, m.entry_id, m.hash_type)  # noqa: E731
    for m in sorted(matches, key=key):
        k = (m.list, m.entry_id, m.hash_type)
        if k not in seen:
            seen.add(k)
            unique.append(m)
    return unique


def _match(e: EntryInfo, kind: str, distance: int) -> Match:
    return Match(e.list_name, e.source_id, kind, distance, e.category)
