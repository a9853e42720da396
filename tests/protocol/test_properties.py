"""Property tests for what the known-answer vectors alone would catch (issue 10, "Tests that can
fail"). Each section names the mutation of the protocol code it exists to catch; none of these
tests compares against a stored output, so regenerating the vectors cannot hide a regression.

1. No repeated group element or ciphertext within a voucher (β, γ reused across a probe's three
   cuckoo positions; synthetic filler that repeats a point or a ciphertext).
2. Empty table slots are fresh randomness (not derived from anything public).
3. ``t − 1`` real account-level shares reveal nothing about the account's secret ``a_0``.
4. Synthetic filler is indistinguishable from real pair ciphertexts.

Vouchers are read through :class:`ParsedVoucher` / :class:`Layout` (header, then the pairs
region of ``n_pairs`` × ``Q ‖ W``), never through hard-coded offsets.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence

import pytest

from blindmatch.protocol import (
    AccountSecret,
    BitSamplingLSH,
    ClientSession,
    HotlineList,
    MemoryThresholdStore,
    Policy,
    ServerSession,
    select_entries,
    verify_table,
)
from blindmatch.protocol.hazmat import group
from blindmatch.protocol.hazmat.cuckoo import slot_positions
from blindmatch.protocol.hazmat.rng import Rng, SeededRng
from blindmatch.protocol.hazmat.shamir import ORDER, Share, interpolate_at
from blindmatch.protocol.lookup import PDQ_BITS
from blindmatch.protocol.server import _split_key
from blindmatch.protocol.table import KEY_DOMAIN, BuiltTable, ListedEntry, Table, build_table
from blindmatch.protocol.voucher import (
    HEADER_BYTES,
    Layout,
    ParsedVoucher,
    evidence_key,
    voucher_is_synthetic,
)
from tests.protocol.conftest import World, make_world
from tests.protocol.kat_fixture import trust
from tests.protocol.test_table import _bit_z_max, _byte_histogram, _chi2_homogeneity

# chi-square with 255 degrees of freedom: mean 255, sd 22.6; 420 is p ≈ 4e-10
# (Wilson–Hilferty). The inputs are fixed by seeds (opening seeds, SeededRng), so the
# outcome is deterministic as well.
CHI2_GENEROUS = 420.0
# 256 bit positions at family-wise p ≈ 1e-5.
Z_GENEROUS = 5.5


def _pairs(table: Table, voucher: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """The voucher's ``(Q, W)`` pairs, checked against the header's ``n_pairs`` and the layout."""
    lay = Layout.for_table(table)
    pairs = ParsedVoucher.from_bytes(voucher, table).pairs
    assert len(pairs) == lay.n_pairs == int.from_bytes(voucher[6:8], "big")
    assert b"".join(q + w for q, w in pairs) == voucher[lay.pairs_offset : lay.r_offset]
    return pairs


def _seeded_client(world: World, label: bytes) -> tuple[ClientSession, AccountSecret]:
    """A client whose account and system-RNG draws are fixed (opening seeds are passed in)."""
    verified = verify_table(world.prep.table.to_bytes(), world.signed, trust())
    account = AccountSecret.generate(SeededRng(b"account/" + label))
    return ClientSession(verified, account, rng=SeededRng(b"client/" + label)), account


def _seeds(world: World, label: str, *, synthetic: bool) -> Iterator[bytes]:
    """Opening seeds whose coin makes the voucher synthetic (or real), from a fixed stream."""
    verified = verify_table(world.prep.table.to_bytes(), world.signed, trust())
    rnd = random.Random(label)
    while True:
        seed = rnd.randbytes(32)
        if voucher_is_synthetic(verified, seed) == synthetic:
            yield seed


def _confidence(rnd: random.Random) -> list[float]:
    return [rnd.random() for _ in range(PDQ_BITS)]


# --- 1. no repeated group element or ciphertext within a voucher ------------------------------


def _assert_no_repeats(table: Table, voucher: bytes, kind: str) -> None:
    pairs = _pairs(table, voucher)
    qs, ws = [q for q, _ in pairs], [w for _, w in pairs]
    assert len(set(qs)) == len(qs), f"{kind}: a point Q repeats within the voucher"
    assert len(set(ws)) == len(ws), f"{kind}: a wrapped key W repeats within the voucher"
    assert all(group.is_valid_point(q) for q in qs), f"{kind}: a Q is not a valid point"
    assert not any(w == bytes(len(w)) for w in ws), f"{kind}: an all-zero W"
    r = ParsedVoucher.from_bytes(voucher, table).server_r
    assert r not in qs, f"{kind}: R repeats a Q"


def test_block_vouchers_repeat_no_point_and_no_ciphertext(block_world: World) -> None:
    rnd = random.Random("block-repeats")
    client, table = block_world.client, block_world.prep.table
    server = block_world.new_server()
    listed = block_world.listed[:3]
    cases = [("matching", p, None) for p in listed]
    cases += [("matching, multi-probe", p, _confidence(rnd)) for p in listed]
    cases += [("non-matching", rnd.randbytes(32), None) for _ in range(3)]
    cases += [("non-matching, multi-probe", rnd.randbytes(32), _confidence(rnd)) for _ in range(3)]
    for i, (kind, pdq, conf) in enumerate(cases):
        v = client.make_voucher(pdq, confidence=conf)
        assert server.open(v, account=f"a{i}").matched == kind.startswith("matching"), kind
        _assert_no_repeats(table, v, kind)


def test_threshold_vouchers_repeat_no_point_and_no_ciphertext(threshold_world: World) -> None:
    rnd = random.Random("threshold-repeats")
    client, _ = _seeded_client(threshold_world, b"repeats")
    table = threshold_world.prep.table
    server = threshold_world.new_server()
    real = _seeds(threshold_world, "repeats-real", synthetic=False)
    fake = _seeds(threshold_world, "repeats-synthetic", synthetic=True)
    cases = [("real matching", p, next(real)) for p in threshold_world.listed[:3]]
    cases += [("real non-matching", rnd.randbytes(32), next(real)) for _ in range(3)]
    cases += [("synthetic, listed image", p, next(fake)) for p in threshold_world.listed[3:5]]
    cases += [("synthetic, unlisted image", rnd.randbytes(32), next(fake)) for _ in range(4)]
    for i, (kind, pdq, seed) in enumerate(cases):
        v = client.make_voucher(pdq, confidence=_confidence(rnd), opening_seed=seed)
        # every voucher but a real non-match opens (before t the server cannot tell which)
        assert server.open(v, account=f"a{i}").opened == (kind != "real non-matching"), kind
        _assert_no_repeats(table, v, kind)


# --- 2. empty table slots are fresh randomness ----------------------------------------------


class _ForkedRng:
    """Two builds' RNG: one shared stream up to and including the first draw of at least 64
    bytes (the cuckoo seed, the cuckoo walk's coins and α), then a stream of the build's own.

    Everything public in the two tables is then identical (seed, placement, α·G, every real
    slot), so an empty slot computed from public data would come out equal in both; an empty
    slot drawn from the RNG differs."""

    def __init__(self, shared: bytes, own: bytes) -> None:
        self._shared, self._own = SeededRng(shared), SeededRng(own)
        self._forked = False

    def __call__(self, n: int) -> bytes:
        if self._forked:
            return self._own(n)
        self._forked = n >= 64
        return self._shared(n)


class _CountingRng:
    def __init__(self, seed: bytes) -> None:
        self._rng = SeededRng(seed)
        self.drawn = 0

    def __call__(self, n: int) -> bytes:
        self.drawn += n
        return self._rng(n)


SCHEME = BitSamplingLSH(seed=bytes(range(32)))


def _entries(n: int = 300) -> list[ListedEntry]:
    rnd = random.Random("dummy-slots")
    pdqs = [rnd.randbytes(32) for _ in range(n)]
    lists = [
        HotlineList(h, j, "l", "1", tuple((f"{h}{i}", p) for i, p in enumerate(pdqs)))
        for h, j in (("HL-A", "GB"), ("HL-B", "US"))
    ]
    return select_entries(lists)


def _build(rng: Rng) -> BuiltTable:
    return build_table(_entries(), scheme=SCHEME, evidence_bytes=64, load=0.5, rng=rng)


def _real_positions(built: BuiltTable) -> dict[int, bytes]:
    """Slot index → blinded key, for every listed key (found where the table holds α·H(key))."""
    table, alpha = built.table, built.server_secret.alpha
    keys = {k for e in built.entries for k in table.scheme.list_keys(e.pdq)}
    out: dict[int, bytes] = {}
    for key in keys:
        want = group.mul(alpha, group.hash_to_group(KEY_DOMAIN, key))
        places = slot_positions(table.cuckoo_seed, key, table.n_slots)
        (pos,) = {p for p in places if table.slot(p) == want}
        out[pos] = want
    assert len(out) == len(keys) == built.n_keys
    return out


def _slots(table: Table) -> list[bytes]:
    return [table.slot(i) for i in range(table.n_slots)]


def test_empty_slots_are_not_a_function_of_the_public_table() -> None:
    one = _build(_ForkedRng(b"shared", b"build one"))
    two = _build(_ForkedRng(b"shared", b"build two"))
    t1, t2 = one.table, two.table
    # the fork is where the brief puts it: everything public is the same in both builds...
    assert t1.cuckoo_seed == t2.cuckoo_seed and t1.n_slots == t2.n_slots
    assert t1.server_point == t2.server_point
    real1, real2 = _real_positions(one), _real_positions(two)
    assert real1 == real2, "placement or blinding differ: the fork is not after α"
    empty = [i for i in range(t1.n_slots) if i not in real1]
    assert len(empty) >= 0.4 * t1.n_slots
    # ...and yet every empty slot differs, and no empty slot of one build appears in the other
    same = [i for i in empty if t1.slot(i) == t2.slot(i)]
    assert not same, f"{len(same)}/{len(empty)} empty slots are equal in both builds"
    assert not {t1.slot(i) for i in empty} & set(_slots(t2))
    for t in (t1, t2):
        assert len(set(_slots(t))) == t.n_slots, "a slot repeats within the table"


def test_build_table_draws_64_fresh_bytes_per_empty_slot() -> None:
    rng = _CountingRng(b"count")
    built = _build(rng)
    n_empty = built.table.n_slots - built.n_keys
    # 32 for the cuckoo seed, 64 for α, then at least 64 per empty slot
    want = 32 + 64 + 64 * n_empty
    assert rng.drawn >= want, f"{rng.drawn} bytes drawn for {n_empty} empty slots (want {want})"


def _neg(p: bytes) -> bytes:
    return group.mul(group.scalar_from_int(ORDER - 1), p)


def test_empty_slots_show_no_structure_an_attacker_could_use() -> None:
    built = _build(SeededRng(b"structure"))
    table = built.table
    real = _real_positions(built)
    empty = [table.slot(i) for i in range(table.n_slots) if i not in real]
    slots = _slots(table)
    # valid, non-identity points, none repeated, none equal to G-side public points
    assert all(group.is_valid_point(s) for s in slots)
    assert len(set(slots)) == len(slots)
    assert table.server_point not in slots
    small = {group.base_mul(group.scalar_from_int(k)) for k in range(1, 65)}
    small |= {group.mul(group.scalar_from_int(k), table.server_point) for k in range(1, 65)}
    assert not small & set(empty), "an empty slot is a small multiple of G or of L"
    # no linear structure: the steps between consecutive empty slots are all different
    # (a progression D, D + X, D + 2X, ... would mark every empty slot at once)
    steps = [group.add(b, _neg(a)) for a, b in itertools.pairwise(empty)]
    assert len(set(steps)) == len(steps), "consecutive empty slots differ by a repeated step"
    # and byte and bit statistics of empty slots match those of real ones (as test_table does)
    real_bytes = list(real.values())
    assert _chi2_homogeneity(_byte_histogram(real_bytes), _byte_histogram(empty)) < CHI2_GENEROUS
    assert _bit_z_max(real_bytes, empty) < Z_GENEROUS


# --- 3. t − 1 real shares reveal nothing about a_0 ------------------------------------------


def _poly_through(shares: Sequence[Share]) -> list[int]:
    """Coefficients (constant first) of the polynomial of degree < len(shares) through them."""
    coeffs = [0] * len(shares)
    for i, si in enumerate(shares):
        basis, den = [1], 1  # ∏_{j≠i} (X − x_j), built up one factor at a time
        for j, sj in enumerate(shares):
            if i == j:
                continue
            basis = [
                ((basis[k - 1] if k else 0) - sj.x * (basis[k] if k < len(basis) else 0)) % ORDER
                for k in range(len(basis) + 1)
            ]
            den = den * (si.x - sj.x) % ORDER
        scale = si.y * pow(den, -1, ORDER) % ORDER
        coeffs = [(c + scale * b) % ORDER for c, b in zip(coeffs, basis, strict=True)]
    return coeffs


@pytest.fixture(scope="module")
def block_world_t5() -> World:
    return make_world(Policy.BLOCK, threshold=5)


@pytest.mark.parametrize("world_name", ["block_world", "threshold_world", "block_world_t5"])
def test_fewer_than_t_real_shares_reveal_nothing_and_t_shares_give_the_secret(
    world_name: str, request: pytest.FixtureRequest
) -> None:
    world: World = request.getfixturevalue(world_name)
    table = world.prep.table
    t = table.threshold
    client, account = _seeded_client(world, world_name.encode())
    store = MemoryThresholdStore()
    server = ServerSession(world.prep.server_secret, table, store=store)
    seeds = _seeds(world, f"shares-{world_name}", synthetic=False)
    n = t + 3
    for i in range(n):  # real matches: under block only confirmed matches keep their share
        v = client.make_voucher(world.listed[i], opening_seed=next(seeds))
        result = server.open(v, account="acct")
        assert result.opened and (result.matched or i < t - 1)
    state = store.load("acct")
    shares = [rec.share for rec in state.vouchers]
    assert len(shares) == n
    a = account.coefficients(t)
    a0 = a[0]
    # fewer than t shares: the polynomial of lower degree through them misses a_0 at 0,
    # whichever subset it is (a share equal to a_0, or a degree below t − 1, would hit it)
    for size in range(1, t):
        for subset in itertools.combinations(shares, size):
            assert interpolate_at(subset, 0) != a0, f"{size} < t = {t} shares give a_0"
    assert len({s.x for s in shares}) == n, "two vouchers' shares have the same x"
    assert len({s.y for s in shares}) == n, "two vouchers' shares have the same y"
    # t shares: the whole polynomial, of degree exactly t − 1 with no zero coefficient
    for subset in itertools.combinations(shares, t):
        poly = _poly_through(subset)
        assert poly[0] == a0 and interpolate_at(subset, 0) == a0
        assert all(poly[1:]), f"a coefficient of a_1..a_{t - 1} is zero: {poly.index(0)}"
        assert poly == a
    # ...and the server, holding them, did recover the account's key (the test fails both ways)
    assert state.evidence_key is not None
    ek, recovered = _split_key(state.evidence_key)  # the store keeps the whole polynomial
    assert ek == evidence_key(a0) and recovered == a


# --- 4. synthetic filler is indistinguishable from real pair ciphertexts ---------------------


def _chi2_uniform(h: list[int]) -> float:
    n = sum(h)
    e = n / len(h)
    return sum((x - e) ** 2 / e for x in h)


def test_synthetic_filler_is_indistinguishable_from_real_pairs(threshold_world: World) -> None:
    rnd = random.Random("filler")
    client, _ = _seeded_client(threshold_world, b"filler")
    table = threshold_world.prep.table
    fake_seeds = _seeds(threshold_world, "filler-synthetic", synthetic=True)
    real_seeds = _seeds(threshold_world, "filler-real", synthetic=False)
    n = 12
    pdqs = [*threshold_world.listed[: n // 2], *(rnd.randbytes(32) for _ in range(n // 2))]
    fake = [client.make_voucher(p, opening_seed=next(fake_seeds)) for p in pdqs]
    real = [client.make_voucher(p, opening_seed=next(real_seeds)) for p in pdqs]
    assert {len(v) for v in fake + real} == {Layout.for_table(table).total}
    assert {v[:HEADER_BYTES] for v in fake + real} == {fake[0][:HEADER_BYTES]}

    fake_pairs = [p for v in fake for p in _pairs(table, v)]
    real_pairs = [p for v in real for p in _pairs(table, v)]
    fake_q, fake_w = [q for q, _ in fake_pairs], [w for _, w in fake_pairs]
    real_q, real_w = [q for q, _ in real_pairs], [w for _, w in real_pairs]
    # no zero, no repeat, across all synthetic vouchers together
    assert not any(w.count(0) == len(w) for w in fake_w), "an all-zero filler W"
    assert len(set(fake_w)) == len(fake_w), "a filler W repeats across synthetic vouchers"
    assert len(set(fake_q)) == len(fake_q), "a filler Q repeats across synthetic vouchers"
    # W: the same byte distribution as real ciphertexts, and uniform
    hw_fake, hw_real = _byte_histogram(fake_w), _byte_histogram(real_w)
    assert _chi2_homogeneity(hw_fake, hw_real) < CHI2_GENEROUS, "W bytes: synthetic ≠ real"
    assert _chi2_uniform(hw_fake) < CHI2_GENEROUS, "W bytes of synthetic vouchers not uniform"
    assert _bit_z_max(fake_w, real_w) < Z_GENEROUS, "W bits: synthetic ≠ real"
    # Q: the same distribution of point encodings as real ones (not uniform bytes: encodings
    # of ristretto points are not, see test_table)
    assert all(group.is_valid_point(q) for q in fake_q)
    hq_fake, hq_real = _byte_histogram(fake_q), _byte_histogram(real_q)
    assert _chi2_homogeneity(hq_fake, hq_real) < CHI2_GENEROUS, "Q bytes: synthetic ≠ real"
    assert _bit_z_max(fake_q, real_q) < Z_GENEROUS, "Q bits: synthetic ≠ real"
    # the tests have power: zero filler or uniform bytes in place of points are caught
    zeros = [bytes(len(w)) if i % 2 else w for i, w in enumerate(fake_w)]
    assert _chi2_homogeneity(_byte_histogram(zeros), hw_real) >= CHI2_GENEROUS
    uniform = [rnd.randbytes(32) for _ in fake_q]
    assert (
        _chi2_homogeneity(_byte_histogram(uniform), hq_real) >= CHI2_GENEROUS
        or _bit_z_max(uniform, real_q) >= Z_GENEROUS
    )
