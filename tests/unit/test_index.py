"""PDQ Hamming-radius indexes: MultiIndexHash must agree exactly with a plain scan."""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blindmatch.errors import IndexFormatError, InvalidHash
from blindmatch.index import BruteForceIndex, MultiIndexHash, PDQIndex
from blindmatch.index import mih as mih_module
from blindmatch.index.mih import DEAD, choose_widths, even_widths

RADII = [0, 8, 15, 16, 31, 32, 47, 64, 200]
WIDE = even_widths(12)  # 21/22-bit chunks that straddle 64-bit words: the 10M layout
MEDIUM = even_widths(14)  # 18/19-bit chunks, also straddling, with 8x smaller tables


# ------------------------------------------------------------------ helpers


def random_hashes(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 32), dtype=np.uint8)


def clustered_hashes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Centres plus copies with a few random bit flips; cluster sizes very uneven."""
    sizes = np.minimum(rng.zipf(1.6, size=n), n // 8)
    sizes = sizes[np.cumsum(sizes) <= n]
    sizes = np.append(sizes, n - sizes.sum()) if sizes.sum() < n else sizes
    centres = random_hashes(rng, sizes.shape[0])
    out = np.repeat(centres, sizes, axis=0)
    bits = np.unpackbits(out, axis=1)
    flips = rng.random(bits.shape) < rng.uniform(0, 0.04, size=(out.shape[0], 1))
    return np.packbits(bits ^ flips, axis=1)


def flip_bits(h: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """A copy of one hash with exactly ``k`` distinct bits flipped (so at distance k)."""
    bits = np.unpackbits(h)
    bits[rng.choice(256, size=k, replace=False)] ^= 1
    return np.packbits(bits)


def popcount_distance(a: np.ndarray, b: np.ndarray) -> int:
    return (int.from_bytes(a.tobytes(), "big") ^ int.from_bytes(b.tobytes(), "big")).bit_count()


def assert_same(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> None:
    assert got[0].dtype == np.int64 and got[1].dtype == np.int32
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def queries_for(db: np.ndarray, r: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Stored hashes moved to exactly r and r+1 bits away, exact copies, random hashes."""
    for i in rng.choice(db.shape[0], size=4, replace=False):
        yield flip_bits(db[i], r, rng)
        yield flip_bits(db[i], min(r + 1, 256), rng)
    yield db[int(rng.integers(db.shape[0]))].copy()
    yield random_hashes(rng, 1)[0]


@pytest.fixture(scope="module")
def datasets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(20240601)
    out = {}
    for kind, make in (("random", random_hashes), ("clustered", clustered_hashes)):
        db = make(rng, 3000)
        ids = rng.choice(10**12, size=db.shape[0], replace=False).astype(np.int64) - 5 * 10**11
        out[kind] = (db, ids)
    return out


# --------------------------------------------------------------- the oracle


def test_brute_force_oracle_matches_python_popcount() -> None:
    rng = np.random.default_rng(1)
    db = random_hashes(rng, 200)
    db[7] = ~db[3]  # a pair at distance 256
    idx = BruteForceIndex(db, np.arange(200, dtype=np.int64))
    for q in (db[3], flip_bits(db[10], 5, rng), random_hashes(rng, 1)[0]):
        want = np.array([popcount_distance(q, h) for h in db])
        np.testing.assert_array_equal(idx.distances(q), want)
        ids, d = idx.search(q, 120)
        order = np.lexsort((np.arange(200), want))
        keep = order[want[order] <= 120]
        np.testing.assert_array_equal(ids, keep)
        np.testing.assert_array_equal(d, want[keep])


# ------------------------------------------------------- exactness vs scan


@pytest.mark.parametrize("kind", ["random", "clustered"])
@pytest.mark.parametrize("widths", [None, WIDE], ids=["auto16", "wide12"])
def test_matches_brute_force(datasets, kind: str, widths) -> None:
    db, ids = datasets[kind]
    rng = np.random.default_rng({"random": 1, "clustered": 2}[kind] + (10 if widths else 0))
    ref = BruteForceIndex(db, ids)
    index = MultiIndexHash(db, ids, widths=widths)
    probe_only = MultiIndexHash(db, ids, widths=widths, brute_fraction=float("inf"))
    for r in [*RADII, 255, 256]:
        qs = list(queries_for(db, r, rng))
        for q in qs:
            want = ref.search(q, r)
            assert_same(index.search(q, r), want)
            assert_same(probe_only.search(q, r), want)
        for got, q in zip(index.search_many(np.array(qs), r), qs, strict=True):
            assert_same(got, ref.search(q, r))


@pytest.mark.parametrize("widths", [None, WIDE], ids=["auto16", "wide12"])
def test_boundary_distance_r_found_r_plus_one_not(datasets, widths) -> None:
    db, ids = datasets["random"]
    index = MultiIndexHash(db, ids, widths=widths)
    rng = np.random.default_rng(7)
    for r in RADII:
        for i in rng.choice(db.shape[0], size=5, replace=False):
            at_r = flip_bits(db[i], r, rng)
            found, d = index.search(at_r, r)
            assert ids[i] in found
            assert d[list(found).index(ids[i])] == r
            beyond = flip_bits(db[i], r + 1, rng)
            assert ids[i] not in index.search(beyond, r)[0]
            assert ids[i] in index.search(beyond, r + 1)[0]


def test_probe_path_is_exact_without_falling_back(datasets, monkeypatch) -> None:
    """Radius <= 31 on random data must be answered by the tables alone."""
    db, ids = datasets["random"]
    ref = BruteForceIndex(db, ids)
    rng = np.random.default_rng(3)
    indexes = [MultiIndexHash(db, ids), MultiIndexHash(db, ids, widths=WIDE)]
    queries = [flip_bits(db[i], int(rng.integers(0, 32)), rng) for i in range(40)]
    expected = [ref.search(q, 31) for q in queries]

    def no_scan(*args, **kwargs):
        raise AssertionError("fell back to a scan")

    monkeypatch.setattr(mih_module, "_scan", no_scan)
    for index in indexes:
        for q, want in zip(queries, expected, strict=True):
            assert_same(index.search(q, 31), want)


def chunk_bits(widths) -> list[list[int]]:
    """Bit numbers of each chunk; bit g is bit g % 8 (LSB first) of byte g // 8."""
    starts = np.cumsum((0, *widths[:-1]))
    return [list(range(a, a + w)) for a, w in zip(starts.tolist(), widths, strict=True)]


def flip_exact(h: np.ndarray, bits: list[int]) -> np.ndarray:
    out = h.copy()
    for g in bits:
        out[g // 8] ^= 1 << (g % 8)
    return out


@pytest.mark.parametrize("widths", [(16,) * 16, MEDIUM, WIDE], ids=["w16", "w14", "w12"])
def test_chunk_keys_are_the_chunk_bits(widths) -> None:
    layout = mih_module._layout(widths)
    rng = np.random.default_rng(17)
    hs = random_hashes(rng, 20)
    keys = layout.keys(hs.view(np.uint64))
    for h, k in zip(hs, keys, strict=True):
        value = int.from_bytes(h.tobytes(), "little")
        for j, bits in enumerate(chunk_bits(widths)):
            assert k[j] == (value >> bits[0]) & ((1 << len(bits)) - 1)
            assert layout.chunk(h[None].view(np.uint64), j)[0] == k[j]


@pytest.mark.parametrize("widths", [(16,) * 16, MEDIUM, WIDE], ids=["w16", "w14", "w12"])
def test_pigeonhole_tight_queries_are_found(datasets, widths) -> None:
    """Queries at distance r whose flips exceed the probe budget in all chunks but one.

    Each chunk j gets t_j + 1 flips (one more than it is probed with) except
    one chunk, which gets whatever brings the total to exactly r: the only
    chunk that can find the match. Random flips almost never look like this.
    """
    db, ids = datasets["random"]
    index = MultiIndexHash(db, ids, widths=widths, brute_fraction=float("inf"))
    seg = index._main
    assert seg is not None
    rng = np.random.default_rng(19)
    chunks = chunk_bits(widths)
    tried = 0
    for r in range(0, 64):
        budgets = mih_module._flip_budgets(widths, r, seg.n)
        if budgets is None:
            continue
        for k in range(len(widths)):
            over = sum(t + 1 for j, t in enumerate(budgets) if j != k)
            d_k = r - over
            if not 0 <= d_k <= budgets[k]:
                continue
            flips = [g for j, t in enumerate(budgets) if j != k for g in chunks[j][: t + 1]]
            flips += chunks[k][:d_k]
            i = int(rng.integers(db.shape[0]))
            q = flip_exact(db[i], flips)
            assert popcount_distance(q, db[i]) == r
            found, d = index.search(q, r)
            assert ids[i] in found, (r, k)
            tried += 1
    assert tried > 50


def test_distance_256_never_wraps(datasets) -> None:
    db, ids = datasets["random"]
    index = MultiIndexHash(db, ids)
    for i in range(5):
        q = ~db[i]
        for r in (0, 31, 64, 200, 254, 255):
            assert ids[i] not in index.search(q, r)[0]
        found, d = index.search(q, 256)
        assert found.shape[0] == db.shape[0] and d[-1] <= 256
        assert d[list(found).index(ids[i])] == 256


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 300),
    radius=st.integers(0, 256),
    clustered=st.booleans(),
)
def test_random_radius_matches_brute_force(seed: int, n: int, radius: int, clustered: bool) -> None:
    rng = np.random.default_rng(seed)
    db = clustered_hashes(rng, n) if clustered and n >= 8 else random_hashes(rng, n)
    ids = rng.permutation(n).astype(np.int64)
    ref = BruteForceIndex(db, ids)
    index = MultiIndexHash(db, ids, brute_fraction=float("inf"))
    qs = [random_hashes(rng, 1)[0]]
    if n:
        qs.append(flip_bits(db[int(rng.integers(n))], min(radius, 256), rng))
    for q in qs:
        assert_same(index.search(q, radius), ref.search(q, radius))


# ------------------------------------------------------------- mutation


@pytest.mark.parametrize("widths", [None, WIDE], ids=["auto16", "wide12"])
def test_adds_after_construction(datasets, widths) -> None:
    db, ids = datasets["clustered"]
    rng = np.random.default_rng(11)
    extra = np.concatenate([clustered_hashes(rng, 600), random_hashes(rng, 400)])
    extra_ids = np.arange(10**13, 10**13 + extra.shape[0], dtype=np.int64)
    index = MultiIndexHash(db[:1000], ids[:1000], widths=widths, delta_max=64, tail_fraction=0.5)
    ref = BruteForceIndex(db[:1000], ids[:1000])
    all_db = np.concatenate([db[:1000], db[1000:], extra])
    all_ids = np.concatenate([ids[:1000], ids[1000:], extra_ids])
    pos = 1000
    seen = set()
    for size in [1, 5, 30, 64, 1, 200, 3, 700, 17, 1500, 1, 40]:
        h, i = all_db[pos : pos + size], all_ids[pos : pos + size]
        index.add(h, i)
        ref.add(h, i)
        pos += size
        assert len(index) == len(ref) == pos
        # the newest hash is matchable immediately
        assert i[-1] in index.search(h[-1], 0)[0]
        seen.add(tuple(index.describe()["segments"]))
        for r in (0, 16, 31, 47):
            q = flip_bits(all_db[int(rng.integers(pos))], r, rng)
            assert_same(index.search(q, r), ref.search(q, r))
    index._check()
    assert ("main", "tail") in seen  # the tail segment was exercised
    index.compact()
    index._check()
    assert index.describe()["delta"] == 0 and "tail" not in index.describe()["segments"]
    for r in (0, 31):
        q = flip_bits(all_db[5], r, rng)
        assert_same(index.search(q, r), ref.search(q, r))


def test_add_into_empty_index_and_bulk_add() -> None:
    rng = np.random.default_rng(5)
    db = random_hashes(rng, 5000)
    ids = np.arange(5000, dtype=np.int64)
    index = MultiIndexHash(delta_max=100)
    index.add(db[:10], ids[:10])
    assert index.describe()["delta"] == 10
    index.add(db[10:], ids[10:])  # overflows the delta: rebuilt into the main segment
    assert index.describe()["segments"]["main"]["rows"] == 5000
    index._check()
    for i in (0, 9, 10, 4999):
        assert_same(index.search(db[i], 0), (np.array([i]), np.array([0], dtype=np.int32)))


def test_removals(datasets) -> None:
    db, ids = datasets["clustered"]
    rng = np.random.default_rng(13)
    index = MultiIndexHash(db[:2000], ids[:2000], delta_max=50, tail_fraction=0.5)
    ref = BruteForceIndex(db[:2000], ids[:2000])
    index.add(db[2000:2400], ids[2000:2400])  # tail segment
    index.add(db[2400:2430], ids[2400:2430])  # delta
    ref.add(db[2000:2430], ids[2000:2430])
    assert set(index.describe()["segments"]) == {"main", "tail"}
    assert index.describe()["delta"] == 30
    gone = np.concatenate([ids[:300:3], ids[2000:2400:7], ids[2400:2430:2]])
    index.remove(gone)
    ref.remove(gone)
    index.remove(gone[:10])  # removing twice is a no-op
    index.remove(np.array([12345, -1, 10**15], dtype=np.int64))  # unknown ids are ignored
    index.remove(np.array([DEAD]))  # the tombstone value is never an id
    assert len(index) == len(ref) == 2430 - gone.shape[0]
    index._check()
    gone_set = set(gone.tolist())
    for r in (0, 8, 31, 64, 256):
        for i in list(range(0, 300, 3))[:10] + list(range(2400, 2430, 2)):
            q = flip_bits(db[i], min(r, 5), rng)
            got = index.search(q, r)
            assert not gone_set & set(got[0].tolist())
            assert_same(got, ref.search(q, r))
        many = index.search_many(db[:50], r)
        for got, q in zip(many, db[:50], strict=True):
            assert_same(got, ref.search(q, r))
    # a removed id may be added again, with a new hash
    new_hash = random_hashes(rng, 1)
    index.add(new_hash, gone[:1])
    assert_same(index.search(new_hash[0], 0), (gone[:1], np.array([0], dtype=np.int32)))
    assert gone[0] not in index.search(db[0], 0)[0]
    # removing most of the main segment triggers a compacting rebuild at the next fold
    index.remove(ids[:1500])
    index.add(random_hashes(rng, 60), np.arange(-60, 0, dtype=np.int64))
    index._check()
    assert index.describe()["segments"]["main"]["dead"] == 0


@pytest.mark.parametrize("widths", [None, MEDIUM], ids=["auto16", "w14"])
def test_full_rebuild_is_spread_over_later_calls(datasets, widths) -> None:
    """A small add that needs a full rebuild returns at once; the rebuild runs a step per call."""
    rng = np.random.default_rng(23)
    db = np.concatenate([datasets["clustered"][0], clustered_hashes(rng, 2000)])
    ids = np.concatenate([datasets["clustered"][1], np.arange(10**13, 10**13 + 2000)])
    index = MultiIndexHash(db[:2000], ids[:2000], delta_max=200, tail_fraction=0.01, widths=widths)
    ref = BruteForceIndex(db[:2000], ids[:2000])
    pos, started, calls_while_pending, swaps = 2000, 0, 0, 0
    removed: set[int] = set()
    state = {"rebuilding": False}

    def observe() -> None:
        nonlocal started, calls_while_pending, swaps
        now = index.describe()
        if now["rebuilding"] and not state["rebuilding"]:
            started += 1
            assert now["frozen"] > 0 and now["delta"] == 0
        if state["rebuilding"]:
            calls_while_pending += 1
            if not now["rebuilding"]:
                swaps += 1  # finished step by step, not by a delta overflow
                assert now["frozen"] == 0 and set(now["segments"]) == {"main"}
                assert 0 < now["delta"] < 200
        state["rebuilding"] = now["rebuilding"]

    while swaps < 2:
        assert pos + 3 <= 4000
        h, i = db[pos : pos + 3], ids[pos : pos + 3]
        index.add(h, i)
        ref.add(h, i)
        pos += 3
        observe()
        if state["rebuilding"] and calls_while_pending % 3 == 0:
            # remove rows from every part while the rebuild runs: main, frozen, delta
            gone = np.array([ids[int(rng.integers(0, 2000))], ids[pos - 250], ids[pos - 1]])
            index.remove(gone)
            ref.remove(gone)
            removed |= set(gone.tolist())
            observe()
        assert len(index) == len(ref)
        for q in (h[-1], db[int(rng.integers(pos))], flip_bits(db[pos - 12], 9, rng)):
            for r in (0, 31):
                got = index.search(q, r)
                assert not removed & set(got[0].tolist())
                assert_same(got, ref.search(q, r))
        assert i[-1] in index.search(h[-1], 0)[0] or i[-1] in removed
    assert started == 2
    assert calls_while_pending <= 2 * (2 * 16 + 4)  # one step per call, ~2 steps per chunk
    index._check()
    # a removed id can come back while a rebuild is pending, and stays after the swap
    while not index.describe()["rebuilding"]:
        assert pos + 7 <= 5000
        index.add(db[pos : pos + 7], ids[pos : pos + 7])
        ref.add(db[pos : pos + 7], ids[pos : pos + 7])
        pos += 7
    back = np.array([ids[pos - 1]])
    index.remove(back)
    index.add(random_hashes(rng, 1), back)
    index.finish_rebuild()
    assert not index.describe()["rebuilding"]
    assert index.search(db[pos - 1], 0)[0].tolist().count(int(back[0])) == 0
    assert len(index) == len(ref)
    index._check()


def test_save_and_compact_during_a_pending_rebuild(datasets) -> None:
    db, ids = datasets["random"]
    index = MultiIndexHash(db[:2000], ids[:2000], delta_max=20, tail_fraction=0.01)
    ref = BruteForceIndex(db[:2000], ids[:2000])
    pos = 2000
    while not index.describe()["rebuilding"]:
        index.add(db[pos : pos + 5], ids[pos : pos + 5])
        ref.add(db[pos : pos + 5], ids[pos : pos + 5])
        pos += 5
    assert index.describe()["frozen"] > 0
    with pytest.raises(ValueError, match="already"):  # the last ids are in the frozen buffer
        index.add(random_hashes(np.random.default_rng(1), 1), ids[pos - 1 : pos])
    buf = io.BytesIO()
    index.save(buf)  # finishes the rebuild first
    assert not index.describe()["rebuilding"]
    loaded = MultiIndexHash.load(io.BytesIO(buf.getvalue()))
    loaded._check()
    assert len(loaded) == len(ref) == len(index)
    while not index.describe()["rebuilding"]:
        index.add(db[pos : pos + 5], ids[pos : pos + 5])
        ref.add(db[pos : pos + 5], ids[pos : pos + 5])
        pos += 5
    index.remove(ids[pos - 5 : pos - 3])
    ref.remove(ids[pos - 5 : pos - 3])
    index.compact()  # abandons the pending rebuild, keeps every row
    assert index.describe() == {
        "segments": {"main": {"rows": len(ref), "dead": 0, "widths": [16] * 16}},
        "delta": 0,
        "delta_max": 20,
        "rebuilding": False,
        "frozen": 0,
    }
    for q in db[pos - 10 : pos]:
        assert_same(index.search(q, 31), ref.search(q, 31))


def test_an_interrupted_rebuild_loses_nothing(datasets) -> None:
    """KeyboardInterrupt (or MemoryError) inside a rebuild step must not drop rows."""
    db, ids = datasets["random"]
    index = MultiIndexHash(db[:2000], ids[:2000], delta_max=20, tail_fraction=0.01)
    ref = BruteForceIndex(db[:2000], ids[:2000])
    pos = 2000
    while not index.describe()["rebuilding"]:
        index.add(db[pos : pos + 5], ids[pos : pos + 5])
        ref.add(db[pos : pos + 5], ids[pos : pos + 5])
        pos += 5

    def interrupted():
        raise KeyboardInterrupt
        yield

    index._pending = interrupted()
    with pytest.raises(KeyboardInterrupt):
        index.add(db[pos : pos + 1], ids[pos : pos + 1])
    assert not index.describe()["rebuilding"] and index.describe()["frozen"] > 0
    assert len(index) == len(ref)
    for q in db[pos - 30 : pos]:
        assert_same(index.search(q, 31), ref.search(q, 31))
    buf = io.BytesIO()
    index.save(buf)  # folds the leftover frozen rows in first
    loaded = MultiIndexHash.load(io.BytesIO(buf.getvalue()))
    assert len(loaded) == len(ref)
    # an index that keeps going folds such leftover rows back by itself: move
    # ten rows from main to the frozen buffer, as an abandoned rebuild leaves them
    index2 = MultiIndexHash.load(io.BytesIO(buf.getvalue()))
    index2.remove(ids[pos - 10 : pos])
    index2._fh, index2._fids = db[pos - 10 : pos].copy(), ids[pos - 10 : pos].copy()
    assert len(index2) == len(ref)
    for a in range(pos, pos + 200, 5):
        index2.add(db[a : a + 5], ids[a : a + 5])
        ref.add(db[a : a + 5], ids[a : a + 5])
    index2.finish_rebuild()
    index2._check()
    assert len(index2) == len(ref)
    for q in db[pos - 10 : pos + 200 : 7]:
        assert_same(index2.search(q, 31), ref.search(q, 31))


def test_many_tombstones_trigger_a_compacting_rebuild() -> None:
    rng = np.random.default_rng(21)
    db = random_hashes(rng, 2000)
    index = MultiIndexHash(db, np.arange(2000, dtype=np.int64), delta_max=10, tail_fraction=10.0)
    index.remove(np.arange(0, 2000, 3))  # a third of the main segment
    assert index.describe()["segments"]["main"]["dead"] == 667
    index.add(random_hashes(rng, 11), np.arange(5000, 5011))  # folds the delta
    desc = index.describe()
    assert desc["segments"] == {"main": {"rows": 1344, "dead": 0, "widths": [16] * 16}}
    index._check()
    for i in (0, 1, 1999):
        assert (i % 3 == 0) != (i in index.search(db[i], 0)[0])


def test_duplicate_ids_rejected() -> None:
    rng = np.random.default_rng(2)
    index = MultiIndexHash(random_hashes(rng, 10), np.arange(10, dtype=np.int64))
    with pytest.raises(ValueError, match="already"):
        index.add(random_hashes(rng, 2), np.array([3, 99]))
    with pytest.raises(ValueError, match="unique"):
        index.add(random_hashes(rng, 2), np.array([100, 100]))
    with pytest.raises(ValueError, match="reserved"):
        index.add(random_hashes(rng, 1), np.array([DEAD]))
    with pytest.raises(ValueError, match="unique"):
        BruteForceIndex(random_hashes(rng, 2), np.array([1, 1]))
    assert len(index) == 10


def test_duplicate_hashes_with_different_ids() -> None:
    rng = np.random.default_rng(4)
    h = random_hashes(rng, 1)
    db = np.concatenate([np.repeat(h, 50, axis=0), random_hashes(rng, 500)])
    ids = np.concatenate([np.arange(1000, 950, -1), np.arange(500)]).astype(np.int64)
    for index in (MultiIndexHash(db, ids), BruteForceIndex(db, ids)):
        got_ids, d = index.search(h[0], 10)
        np.testing.assert_array_equal(got_ids[:50], np.arange(951, 1001))
        assert (d[:50] == 0).all()
        index.remove(np.array([960, 970]))
        assert index.search(h[0], 0)[0].shape[0] == 48


def test_empty_index() -> None:
    for index in (MultiIndexHash(), BruteForceIndex()):
        assert len(index) == 0
        for r in (0, 31, 256):
            ids, d = index.search(bytes(32), r)
            assert ids.dtype == np.int64 and d.dtype == np.int32 and ids.size == d.size == 0
        many = index.search_many(np.zeros((3, 32), np.uint8), 31)
        assert len(many) == 3 and all(ids.size == d.size == 0 for ids, d in many)
        assert index.search_many(np.zeros((0, 32), np.uint8), 31) == []
        index.remove(np.array([1, 2]))
        index.add(np.zeros((0, 32), np.uint8), np.zeros(0, np.int64))
        buf = io.BytesIO()
        index.save(buf)
        buf.seek(0)
        again = PDQIndex.load(buf)
        assert type(again) is type(index) and len(again) == 0


def test_results_sorted_by_distance_then_id_and_query_forms() -> None:
    rng = np.random.default_rng(9)
    base = random_hashes(rng, 1)[0]
    db = np.array([flip_bits(base, k, rng) for k in (3, 1, 3, 0, 2, 1)])
    ids = np.array([50, 40, 30, 20, 10, 5], dtype=np.int64)
    index = MultiIndexHash(db, ids)
    want = (np.array([20, 5, 40, 10, 30, 50]), np.array([0, 1, 1, 2, 3, 3], dtype=np.int32))
    assert_same(index.search(base, 31), want)
    assert_same(index.search(base.tobytes(), 31), want)
    assert_same(index.search(bytes.fromhex(base.tobytes().hex()), 31), want)
    assert_same(index.search_many([base.tobytes()], 31)[0], want)
    assert_same(index.search(base, 1), (np.array([20, 5, 40]), np.array([0, 1, 1], np.int32)))


def test_input_validation() -> None:
    index = MultiIndexHash(np.zeros((2, 32), np.uint8), np.array([1, 2]))
    for bad in (np.zeros((2, 31), np.uint8), np.zeros((2, 32), np.int64), np.zeros(32, np.uint8)):
        with pytest.raises(InvalidHash):
            index.add(bad, np.array([3, 4]))
    with pytest.raises(InvalidHash):
        index.add([[0] * 32], np.array([3]))  # type: ignore[arg-type]
    for q in (bytes(31), b"", np.zeros(33, np.uint8), np.zeros(32, np.int8), "ab" * 32, None):
        with pytest.raises(InvalidHash):
            index.search(q, 5)  # type: ignore[arg-type]
    with pytest.raises(InvalidHash):
        index.search_many(np.zeros((2, 16), np.uint8), 5)
    for r in (-1, 257, 1000):
        with pytest.raises(ValueError):
            index.search(bytes(32), r)
    for r in (1.5, "3", True, None):
        with pytest.raises(TypeError):
            index.search(bytes(32), r)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        index.add(np.zeros((2, 32), np.uint8), np.array([3]))
    with pytest.raises(ValueError):
        index.add(np.zeros((1, 32), np.uint8), np.array([3.0]))
    with pytest.raises(ValueError):
        MultiIndexHash(np.zeros((1, 32), np.uint8))
    with pytest.raises(ValueError):
        MultiIndexHash(widths=[16] * 15)
    assert len(index) == 2


def test_layout_choice() -> None:
    assert choose_widths(1000) == (16,) * 16
    assert choose_widths(1_000_000) == (16,) * 16
    wide = choose_widths(10_000_000)
    assert sum(wide) == 256 and len(wide) == 12
    for n in (10**5, 10**6, 3 * 10**6, 10**7, 3 * 10**7):
        w = choose_widths(n)
        assert sum(w) == 256
        if n >= 2 * 10**6:  # fits the 64 B/hash budget for tables
            assert mih_module.table_bytes(w, n) <= 64 * n


# ----------------------------------------------------------- persistence


def _mutated_index(seed: int, n: int, widths) -> tuple[MultiIndexHash, BruteForceIndex]:
    rng = np.random.default_rng(seed)
    db = clustered_hashes(rng, n) if n >= 8 else random_hashes(rng, n)
    ids = rng.permutation(3 * n + 10)[:n].astype(np.int64)
    half = n // 2
    index = MultiIndexHash(db[:half], ids[:half], delta_max=16, widths=widths, tail_fraction=1.0)
    ref = BruteForceIndex(db[:half], ids[:half])
    for a in range(half, n, 7):
        index.add(db[a : a + 7], ids[a : a + 7])
        ref.add(db[a : a + 7], ids[a : a + 7])
    gone = ids[: n // 5]
    index.remove(gone)
    ref.remove(gone)
    return index, ref


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 120),
    wide=st.booleans(),
    via_base=st.booleans(),
)
def test_save_load_round_trip(seed: int, n: int, wide: bool, via_base: bool) -> None:
    index, ref = _mutated_index(seed, n, MEDIUM if wide else None)
    rng = np.random.default_rng(seed + 1)
    for original in (index, ref):
        buf = io.BytesIO()
        original.save(buf)
        buf.seek(0)
        loader = PDQIndex if via_base else type(original)
        loaded = loader.load(buf)
        assert type(loaded) is type(original)
        assert len(loaded) == len(original) == len(ref)
        if isinstance(loaded, MultiIndexHash):
            loaded._check()
            assert loaded.describe() == original.describe()  # type: ignore[attr-defined]
        qs = [random_hashes(rng, 1)[0]] + ([ref._h[0]] if len(ref) else [])
        for q in qs:
            for r in (0, 31, 100):
                assert_same(loaded.search(q, r), ref.search(q, r))
        # a loaded index keeps working under mutation
        loaded.add(random_hashes(rng, 3), np.array([-7, -8, -9]))
        assert len(loaded) == len(ref) + 3


def test_save_load_path(tmp_path: Path) -> None:
    index, ref = _mutated_index(99, 500, None)
    path = tmp_path / "pdq.bmidx"
    index.save(path)
    index.save(str(path))  # overwrite in place
    assert [p.name for p in tmp_path.iterdir()] == ["pdq.bmidx"]
    loaded = MultiIndexHash.load(path)
    assert len(loaded) == len(ref)
    q = ref._h[3]
    assert_same(loaded.search(q, 31), ref.search(q, 31))
    with open(path, "ab") as f:
        f.write(b"extra")
    with pytest.raises(IndexFormatError, match="trailing"):
        MultiIndexHash.load(path)


@pytest.fixture(scope="module")
def saved() -> bytes:
    index, _ = _mutated_index(5, 200, None)
    buf = io.BytesIO()
    index.save(buf)
    return buf.getvalue()


def _header(blob: bytes) -> tuple[dict, int]:
    (hlen,) = struct.unpack_from("<I", blob, 6)
    return json.loads(blob[10 : 10 + hlen]), 10 + hlen


def _with_header(blob: bytes, header: dict) -> bytes:
    _, body = _header(blob)
    raw = json.dumps(header).encode()
    return blob[:6] + struct.pack("<I", len(raw)) + raw + blob[body:]


def _load(blob: bytes) -> PDQIndex:
    return PDQIndex.load(io.BytesIO(blob))


def test_load_rejects_bad_magic_and_versions(saved: bytes) -> None:
    assert len(_load(saved)) > 0
    with pytest.raises(IndexFormatError, match="magic"):
        _load(b"PK\x03\x04" + saved[4:])
    with pytest.raises(IndexFormatError, match="magic"):
        _load(b"\x93NUMPY" + saved[6:])
    for version in (0, 2, 255):
        with pytest.raises(IndexFormatError, match="version"):
            _load(saved[:5] + bytes([version]) + saved[6:])
    with pytest.raises(IndexFormatError):
        _load(b"")


def test_load_rejects_truncation(saved: bytes) -> None:
    _, body = _header(saved)
    cuts = {1, 5, 6, 9, 10, body // 2, body - 1, body, body + 1, len(saved) - 1}
    cuts |= set(np.linspace(body, len(saved) - 1, 40).astype(int).tolist())
    for cut in sorted(cuts):
        with pytest.raises(IndexFormatError):
            _load(saved[:cut])

    class NoSeek(io.BytesIO):  # a pipe: truncation is only found while reading
        def seekable(self) -> bool:
            return False

    with pytest.raises(IndexFormatError, match="truncated"):
        PDQIndex.load(NoSeek(saved[: len(saved) - 100]))


def test_load_rejects_corrupt_bodies_and_headers(saved: bytes) -> None:
    _, body = _header(saved)
    rng = np.random.default_rng(0)
    for at in rng.choice(np.arange(body, len(saved)), size=25, replace=False):
        blob = bytearray(saved)
        blob[at] ^= 0x10
        with pytest.raises(IndexFormatError, match="checksum"):
            _load(bytes(blob))
    header, _ = _header(saved)
    bad_headers = []
    for key, value in [("kind", "faiss"), ("kind", None), ("meta", []), ("arrays", {})]:
        bad_headers.append({**header, key: value})
    for field, value in [("dtype", "<f8"), ("dtype", "|O"), ("shape", [-1, 32]), ("name", "x")]:
        arrays = [dict(a) for a in header["arrays"]]
        arrays[0][field] = value
        bad_headers.append({**header, "arrays": arrays})
    arrays = [dict(a) for a in header["arrays"]]
    arrays[0]["shape"] = [10**12, 32]  # implausibly large, must not try to allocate it
    bad_headers.append({**header, "arrays": arrays})
    bad_headers.append({**header, "arrays": header["arrays"][:-1]})
    bad_headers.append({**header, "meta": {**header["meta"], "delta_max": -1}})
    bad_headers.append({**header, "meta": {**header["meta"], "main_widths": [16] * 15}})
    bad_headers.append({**header, "meta": {**header["meta"], "main_widths": list(WIDE)}})
    for h in bad_headers:
        with pytest.raises(IndexFormatError):
            _load(_with_header(saved, h))
    raw = b"{not json"
    with pytest.raises(IndexFormatError, match="header"):
        _load(saved[:6] + struct.pack("<I", len(raw)) + raw)
    with pytest.raises(IndexFormatError, match="header"):
        _load(saved[:6] + struct.pack("<I", 2**31) + saved[10:])


def test_load_rejects_wrong_kind(saved: bytes) -> None:
    buf = io.BytesIO()
    BruteForceIndex(np.zeros((1, 32), np.uint8), np.array([1])).save(buf)
    with pytest.raises(IndexFormatError, match="brute"):
        MultiIndexHash.load(io.BytesIO(buf.getvalue()))
    with pytest.raises(IndexFormatError, match="mih"):
        BruteForceIndex.load(io.BytesIO(saved))


def test_load_rejects_inconsistent_tables_with_valid_checksums() -> None:
    """A well-formed file whose tables disagree with its hashes must not load."""
    rng = np.random.default_rng(8)
    db = random_hashes(rng, 300)
    for tamper in ("offsets", "perm_range", "order"):
        index = MultiIndexHash(db, np.arange(300, dtype=np.int64))
        seg = index._main
        assert seg is not None
        if tamper == "offsets":
            seg.offs = seg.offs.copy()
            seg.offs[5] += 1
        elif tamper == "perm_range":
            seg.perm = seg.perm.copy()
            seg.perm[0] = 300
        else:
            seg.h = seg.h[::-1].copy()
            seg.h64 = seg.h.view(np.uint64)
        buf = io.BytesIO()
        index.save(buf)
        with pytest.raises(IndexFormatError):
            PDQIndex.load(io.BytesIO(buf.getvalue()))
