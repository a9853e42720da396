"""The second distance check wired into vouchers (format 4), the server's two rounds, the
committed records and the recipient's check (docs/protocol.md §11). Benign random hashes."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, replace

import pytest

from blindmatch.errors import (
    InvalidDistanceCheck,
    InvalidKey,
    InvalidManifest,
    InvalidTable,
    InvalidVoucher,
    ProtocolError,
)
from blindmatch.protocol import (
    AccountSecret,
    ClientSession,
    Floors,
    HotlineList,
    Policy,
    PreparedTable,
    ServerSecret,
    ServerSession,
    Table,
    VariantProbeLSH,
    VerifiedTable,
    answer_for_image,
    new_opening_seed,
    prepare_table,
    verify_table,
    verify_voucher_for_image,
)
from blindmatch.protocol.challenge import Challenge, Slot, answer_bytes, challenge_bytes
from blindmatch.protocol.distance import DistanceKey, decrypted_points, key_point
from blindmatch.protocol.hazmat import group
from blindmatch.protocol.hazmat.aead import open_sealed
from blindmatch.protocol.hazmat.kdf import hkdf_sha256
from blindmatch.protocol.hazmat.rng import SeededRng
from blindmatch.protocol.lookup import hamming
from blindmatch.protocol.records import (
    MerkleTree,
    audit_records,
    leaf_digest,
    leaf_seed,
    merkle_root,
    record_from_public,
    record_with_key,
    verify_path,
)
from blindmatch.protocol.table import leaf_hashes
from blindmatch.protocol.voucher import (
    INFO_EVIDENCE_OUTER,
    INFO_MID,
    Layout,
    derive_opening,
    header_for,
)
from tests.protocol.conftest import flip_bits
from tests.protocol.kat_fixture import sign_all, trust

RADIUS = 31
rnd = random.Random("distance-wired")
LISTED = [rnd.randbytes(32) for _ in range(12)]
COMMITMENT = bytes(32)


@dataclass
class Checked:
    prep: PreparedTable
    verified: VerifiedTable
    client: ClientSession
    server: ServerSession

    @property
    def scheme(self) -> VariantProbeLSH:
        s = self.prep.table.scheme
        assert isinstance(s, VariantProbeLSH)
        return s

    def outside(self, pdq: bytes, d: int) -> bytes:
        """``pdq`` with ``d`` bits flipped outside the key's sample: its key stays exact."""
        sample = set(self.scheme.positions[0])
        return flip_bits(pdq, [i for i in range(256) if i not in sample][:d])


def _leaf_list(w: Checked) -> list[bytes]:
    """The listed hash of every record, in leaf order (the server's view)."""
    distance = w.prep.server_secret.distance
    assert distance is not None
    return [h for _, h in leaf_hashes(w.prep.server_secret.entries, distance[1])]


def _lists(listed: list[bytes]) -> list[HotlineList]:
    return [
        HotlineList("HL-A", "GB", "a", "1", tuple((f"a{i}", p) for i, p in enumerate(listed))),
        HotlineList("HL-B", "US", "b", "1", tuple((f"b{i}", p) for i, p in enumerate(listed))),
    ]


def checked_prep(slots: int = 2, radius: int = RADIUS, seed: bytes = b"dc") -> PreparedTable:
    return prepare_table(
        _lists(LISTED),
        scheme=VariantProbeLSH(k=40),
        policy=Policy.BLOCK,
        threshold=3,
        evidence_bytes=64,
        rng=SeededRng(seed),
        distance_radius=radius,
        distance_slots=slots,
    )


def make_checked(slots: int = 2, radius: int = RADIUS, seed: bytes = b"dc") -> Checked:
    prep = checked_prep(slots, radius, seed)
    verified = verify_table(prep.table.to_bytes(), sign_all(prep, ["HL-A", "HL-B"]), trust())
    server = ServerSession(prep.server_secret, prep.table, records=prep.records)
    return Checked(prep, verified, ClientSession(verified, AccountSecret.generate()), server)


@pytest.fixture(scope="module")
def w() -> Checked:
    return make_checked()


def send(w: Checked, pdq: bytes, account: str = "alice", server: ServerSession | None = None):
    """The sender's whole exchange; returns (pending, answer, result, seed, voucher)."""
    server = server or w.server
    seed = new_opening_seed()
    voucher = w.client.make_voucher(pdq, opening_seed=seed)
    pending = server.begin(voucher)
    answer = answer_for_image(w.verified, pending.challenge, seed, pdq)
    return pending, answer, server.finish(pending, answer, account=account), seed, voucher


# -- committed records and the Merkle tree ---------------------------------------------------


def _rfc6962(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1's recursive definition, as a reference for the iterative tree."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _rfc6962(leaves[:k]) + _rfc6962(leaves[k:])).digest()


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 9, 16, 17])
def test_merkle_tree_is_rfc6962_and_every_path_verifies_only_for_its_leaf(n: int) -> None:
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(n)]
    tree = MerkleTree(leaves)
    assert tree.root == merkle_root(leaves) == _rfc6962(leaves)
    for i in range(n):
        path = tree.path(i)
        assert verify_path(tree.root, n, i, leaves[i], path)
        assert not verify_path(tree.root, n, i, hashlib.sha256(b"other").digest(), path)
        if n > 1:
            assert not verify_path(tree.root, n, (i + 1) % n, leaves[i], path)
            bad = (bytes(32),) + path[1:] if path else path
            assert not path or not verify_path(tree.root, n, i, leaves[i], bad)


def test_records_are_deterministic_from_the_leaf_seed_and_auditable_from_x() -> None:
    dk = DistanceKey.generate(SeededRng(b"x"))
    audit = SeededRng(b"audit")(32)
    hashes = LISTED[:3]
    recs = [record_with_key(dk, h, leaf_seed(audit, i)).to_bytes() for i, h in enumerate(hashes)]
    # a hotline holding X, its hashes and their leaf seeds recomputes them byte for byte
    assert recs[1] == record_from_public(dk.public, hashes[1], leaf_seed(audit, 1)).to_bytes()
    assert leaf_seed(audit, 0) != leaf_seed(audit, 1)
    leaves = [leaf_digest(i, r) for i, r in enumerate(recs)]
    root = merkle_root(leaves)
    mine = [(i, h, leaf_seed(audit, i)) for i, h in enumerate(hashes)]
    assert audit_records(dk.public, root, mine, leaves) == []
    # a record of another hash (what a cheating server would slot in) fails the audit
    forged = record_with_key(dk, LISTED[7], leaf_seed(audit, 2)).to_bytes()
    leaves2 = [*leaves[:2], leaf_digest(2, forged)]
    assert audit_records(dk.public, merkle_root(leaves2), mine, leaves2) == [2]
    with pytest.raises(InvalidDistanceCheck):
        audit_records(dk.public, root, mine, leaves2)


# -- table and key formats -----------------------------------------------------------------


def test_a_checked_table_and_its_server_key_round_trip(w: Checked) -> None:
    table = w.prep.table
    assert table.raw[4] == 2 and table.distance is not None
    assert table.distance.radius == RADIUS and table.distance.n_records == len(LISTED)
    assert Table.from_bytes(table.to_bytes()).distance == table.distance
    raw = w.prep.server_secret.to_bytes()
    assert raw[4] == 4 and ServerSecret.from_bytes(raw) == w.prep.server_secret
    assert "x" not in repr(w.prep.server_secret).lower().replace("hidden", "")
    # a version-4 key must say it is distance-checked
    with pytest.raises(InvalidKey):
        ServerSecret.from_bytes(raw[:69] + b"\x02" + raw[70:])


def test_a_checked_table_is_block_only_and_needs_its_own_key() -> None:
    with pytest.raises(ValueError, match="block"):
        prepare_table(
            _lists(LISTED), scheme=VariantProbeLSH(k=40), policy=Policy.THRESHOLD,
            synthetic_ppm=10_000, distance_radius=RADIUS,
        )  # fmt: skip
    w1, w2 = make_checked(seed=b"one"), make_checked(seed=b"two")
    plain = prepare_table(_lists(LISTED), scheme=VariantProbeLSH(), rng=SeededRng(b"p"))
    with pytest.raises(InvalidKey):  # records of another table
        ServerSession(w1.prep.server_secret, w1.prep.table, records=w2.prep.records)
    with pytest.raises(InvalidKey):
        ServerSession(plain.server_secret, w1.prep.table)
    # a table file whose header says threshold is refused as malformed
    raw = bytearray(w1.prep.table.to_bytes())
    raw[5] = 1
    with pytest.raises(InvalidTable):
        Table.from_bytes(bytes(raw))


def test_records_recomputed_from_the_secret_equal_the_built_ones(w: Checked) -> None:
    again = ServerSession(w.prep.server_secret, w.prep.table)  # records=None: recomputed
    pdq = w.outside(LISTED[4], 20)
    *_, result, _, _ = send(w, pdq, server=again)
    assert result.matched


def test_client_floors_for_checked_tables() -> None:
    wide = checked_prep(radius=32)
    signed = sign_all(wide, ["HL-A", "HL-B"])
    with pytest.raises(InvalidManifest, match="radius of 32"):
        verify_table(
            wide.table.to_bytes(), signed, trust(floors=replace(Floors(), min_threshold=3))
        )
    ok = make_checked()
    signed = sign_all(ok.prep, ["HL-A", "HL-B"])
    verify_table(
        ok.prep.table.to_bytes(), signed, trust(floors=replace(Floors(), min_threshold=3))
    )  # k = 40 passes
    with pytest.raises(InvalidManifest, match="PDQ bits"):
        strict = replace(Floors(), min_threshold=3, max_unrelated_bits=1e-12)
        verify_table(ok.prep.table.to_bytes(), signed, trust(floors=strict))


# -- the exchange ----------------------------------------------------------------------------


@pytest.mark.parametrize("d", [0, 9, 24, RADIUS])
def test_within_the_radius_the_check_passes_and_the_send_is_blocked(w: Checked, d: int) -> None:
    pdq = w.outside(LISTED[2], d)
    pending, answer, result, seed, voucher = send(w, pdq, account=f"near-{d}")
    assert pending.candidate and result.candidate and result.opened
    assert result.matched and result.block and [m.distance for m in result.matches] == [d]
    verify_voucher_for_image(
        w.verified, voucher, seed, pdq, commitment=COMMITMENT,
        challenge=pending.challenge, answer=answer,
    )  # fmt: skip


@pytest.mark.parametrize("d", [RADIUS + 1, 40, 120])
def test_beyond_the_radius_a_candidate_opens_nothing(w: Checked, d: int) -> None:
    """Property: a candidate (its key matched) reveals no more than candidacy unless d ≤ R —
    the match layer (the PDQ) stays closed and nothing is stored."""
    pdq = w.outside(LISTED[3], d)
    pending, _, result, _, _ = send(w, pdq, account=f"far-{d}")
    assert pending.candidate and result.candidate
    assert not result.opened and not result.matched and not result.block
    assert w.server.account_state(f"far-{d}") == (0, False)
    # what the server holds of the candidate (rkey) opens the middle layer but not M:
    # M, the share and the evidence need the key only d ≤ R discloses
    v, t, rkey = pending._voucher, pending._t, pending._rkey
    assert rkey is not None
    mid = open_sealed(hkdf_sha256(rkey, salt=t, info=INFO_MID), v.mid, v.mid_aad())
    assert mid is not None
    assert w.server._open_match(rkey, t, mid[:32], mid[32:]) is None
    assert open_sealed(hkdf_sha256(rkey, salt=t, info=INFO_EVIDENCE_OUTER), v.evidence) is None


def test_an_unrelated_picture_gets_the_same_exchange_and_is_no_candidate(w: Checked) -> None:
    params = w.prep.table.distance
    assert params is not None
    pdq = rnd.randbytes(32)
    assert min(hamming(pdq, h) for h in LISTED) > 60
    pending, answer, result, *_ = send(w, pdq)
    assert not pending.candidate and not result.candidate and not result.opened
    near, near_answer, *_ = send(w, w.outside(LISTED[0], 5))
    # the sender sees challenges and answers of one size, every slot a committed record
    assert len(pending.challenge) == len(near.challenge) == challenge_bytes(params)
    assert len(answer) == len(near_answer) == answer_bytes(params)
    for ch in (pending.challenge, near.challenge):
        parsed = Challenge.from_bytes(ch, params, 3 * w.scheme.n_probes)
        assert len(parsed.slots) == params.slots == 2


def test_the_candidate_slot_holds_the_listed_hashs_record(w: Checked) -> None:
    params = w.prep.table.distance
    assert params is not None
    pending, *_ = send(w, w.outside(LISTED[5], 12))
    slots = Challenge.from_bytes(pending.challenge, params, 3 * w.scheme.n_probes).slots
    leaves = _leaf_list(w)
    assert LISTED[5] in {leaves[s.leaf] for s in slots}


def test_a_client_answering_garbage_only_lets_its_own_picture_through(w: Checked) -> None:
    seed = new_opening_seed()
    pdq = w.outside(LISTED[6], 3)
    voucher = w.client.make_voucher(pdq, opening_seed=seed)
    pending = w.server.begin(voucher)
    params = w.prep.table.distance
    assert params is not None
    junk = b"".join(group.random_point() for _ in range(answer_bytes(params) // 32))
    result = w.server.finish(pending, junk, account="mallory")
    assert result.candidate and not result.opened and not result.block
    # ... which the recipient catches: the answer is not the one the image gives
    with pytest.raises(InvalidVoucher):
        verify_voucher_for_image(
            w.verified, voucher, seed, pdq, commitment=COMMITMENT,
            challenge=pending.challenge, answer=junk,
        )  # fmt: skip


def test_malformed_answers_raise_the_same_error_for_candidates_and_others(w: Checked) -> None:
    params = w.prep.table.distance
    assert params is not None
    for pdq in (w.outside(LISTED[7], 2), rnd.randbytes(32)):
        pending = w.server.begin(w.client.make_voucher(pdq))
        good = b"\x01" * answer_bytes(params)
        for bad in (b"", good[:-1], good, bytes(answer_bytes(params))):
            with pytest.raises(InvalidDistanceCheck) as e:
                w.server.finish(pending, bad, account="x")
            assert str(e.value) == "malformed distance-check answer" or "malformed" in str(e.value)


def test_open_refuses_a_checked_table_and_begin_a_plain_one(w: Checked) -> None:
    with pytest.raises(ProtocolError, match="begin"):
        w.server.open(w.client.make_voucher(LISTED[0]), account="a")
    plain = prepare_table(_lists(LISTED), scheme=VariantProbeLSH(), rng=SeededRng(b"p"))
    with pytest.raises(ProtocolError, match="open"):
        ServerSession(plain.server_secret, plain.table).begin(b"")


# -- a malicious server --------------------------------------------------------------------


def _reslot(w: Checked, challenge: bytes, **change) -> bytes:
    params = w.prep.table.distance
    assert params is not None
    slots = list(Challenge.from_bytes(challenge, params, 3 * w.scheme.n_probes).slots)
    s = slots[0]
    slots[0] = Slot(
        change.get("pair", s.pair), change.get("leaf", s.leaf),
        change.get("record", s.record), change.get("path", s.path),
    )  # fmt: skip
    return Challenge(tuple(slots)).to_bytes(params)


def test_the_client_answers_only_committed_records(w: Checked) -> None:
    """Property: the server cannot put an uncommitted record in a slot — e.g. one encrypting
    ``y_0 = 256`` and zeros, which would disclose κ for every picture whose bit 0 is 1."""
    dk = DistanceKey(w.prep.server_secret.distance[0])  # type: ignore[index]
    seed = new_opening_seed()
    pdq = rnd.randbytes(32)
    pending = w.server.begin(w.client.make_voucher(pdq, opening_seed=seed))
    evil = bytearray()
    for i in range(256):
        r = group.random_scalar()
        m = 256 if i == 0 else 0
        c2 = group.add(group.mul(r, dk.public), group.base_mul(group.scalar_from_int(m))) if m \
            else group.mul(r, dk.public)  # fmt: skip
        evil += group.base_mul(r) + c2
    forged = _reslot(w, pending.challenge, record=bytes(evil))
    with pytest.raises(InvalidDistanceCheck):
        answer_for_image(w.verified, forged, seed, pdq)
    # a committed record under another leaf's index or path is refused too
    other = (
        0
        if Challenge.from_bytes(
            pending.challenge,
            w.prep.table.distance,
            3 * w.scheme.n_probes,  # type: ignore[arg-type]
        )
        .slots[0]
        .leaf
        else 1
    )
    with pytest.raises(InvalidDistanceCheck):
        answer_for_image(w.verified, _reslot(w, pending.challenge, leaf=other), seed, pdq)
    with pytest.raises(InvalidDistanceCheck):
        answer_for_image(w.verified, _reslot(w, pending.challenge, pair=60_000), seed, pdq)
    with pytest.raises(InvalidDistanceCheck):
        answer_for_image(w.verified, pending.challenge[:-1], seed, pdq)


def test_two_challenges_for_one_voucher_never_reuse_the_randomness(w: Checked) -> None:
    """Property: answering one voucher's slot with two different records draws fresh
    ``ρ_j``; with the same ``ρ_j`` on two encrypted distances ``d ≠ d'`` the server solves
    ``K = P_j − (j − d)/(d' − d) · (P_j − P'_j)`` for κ's point — here it must never."""
    x, _ = w.prep.server_secret.distance  # type: ignore[misc]
    dk = DistanceKey(x)
    params = w.prep.table.distance
    assert params is not None
    seed = new_opening_seed()
    pdq = rnd.randbytes(32)
    voucher = w.client.make_voucher(pdq, opening_seed=seed)
    pending = w.server.begin(voucher)
    slots = Challenge.from_bytes(pending.challenge, params, 3 * w.scheme.n_probes).slots
    tree_leaves = _leaf_list(w)
    other_leaf = (slots[0].leaf + 1) % params.n_records
    tree = MerkleTree([leaf_digest(i, r) for i, r in enumerate(w.prep.records)])
    second = _reslot(
        w, pending.challenge, leaf=other_leaf, record=w.prep.records[other_leaf],
        path=tree.path(other_leaf),
    )  # fmt: skip
    a1 = answer_for_image(w.verified, pending.challenge, seed, pdq)
    a2 = answer_for_image(w.verified, second, seed, pdq)
    assert a1 == answer_for_image(w.verified, pending.challenge, seed, pdq)  # deterministic
    opening = derive_opening(w.prep.table, seed, pdq, None, (), COMMITMENT, pairs_wanted=False)
    target = key_point(opening.kappa)
    s = opening.pair_hashes[slots[0].pair] or pdq
    d1, d2 = hamming(s, tree_leaves[slots[0].leaf]), hamming(s, tree_leaves[other_leaf])
    assert d1 > RADIUS and d2 > RADIUS and d1 != d2
    size = 64 * (RADIUS + 1)
    from blindmatch.protocol.distance import Response

    p1 = decrypted_points(Response.from_bytes(a1[:size], radius=RADIUS), dk)
    p2 = decrypted_points(Response.from_bytes(a2[:size], radius=RADIUS), dk)
    inv = pow(d2 - d1, -1, group.ORDER)
    for a, b in zip(p1, p2, strict=True):
        delta = group.sub(a, b)
        for j in range(RADIUS + 1):
            factor = group.scalar_from_int((j - d1) * inv)
            assert group.sub(a, group.mul_total(factor, delta)) != target
    assert header_for(w.prep.table)[4] == 4  # the voucher is format 4


def test_the_recipient_recomputes_the_answer(w: Checked) -> None:
    pdq = w.outside(LISTED[8], 7)
    pending, answer, result, seed, voucher = send(w, pdq)
    assert result.matched
    ok = dict(commitment=COMMITMENT, challenge=pending.challenge, answer=answer)
    verify_voucher_for_image(w.verified, voucher, seed, pdq, **ok)  # type: ignore[arg-type]
    flipped = answer[:-1] + bytes([answer[-1] ^ 1])
    for bad in (
        dict(ok, answer=flipped),
        dict(ok, answer=answer_for_image(w.verified, pending.challenge, seed, LISTED[9])),
        dict(ok, challenge=pending.challenge[:-1]),
    ):
        with pytest.raises(InvalidVoucher):
            verify_voucher_for_image(w.verified, voucher, seed, pdq, **bad)  # type: ignore[arg-type]


def test_a_slot_is_checked_against_the_hash_its_pair_carries(w: Checked) -> None:
    """A variant's probe found the candidate (the image's own hash is far from every entry):
    the client answers that slot with the variant's hash, as the server's pair names it."""
    from blindmatch.protocol import QueryHash

    own = rnd.randbytes(32)
    variant = w.outside(LISTED[10], 8)
    seed = new_opening_seed()
    variants = [QueryHash(variant, prior=1.0)]
    voucher = w.client.make_voucher(own, variants=variants, opening_seed=seed)
    pending = w.server.begin(voucher)
    answer = answer_for_image(w.verified, pending.challenge, seed, own, variants=variants)
    result = w.server.finish(pending, answer, account="variant")
    assert result.matched and [m.distance for m in result.matches] == [8]
    verify_voucher_for_image(
        w.verified, voucher, seed, own, variants=variants, commitment=COMMITMENT,
        challenge=pending.challenge, answer=answer,
    )  # fmt: skip


def test_the_challenge_is_a_function_of_the_voucher(w: Checked) -> None:
    """Asking twice, or another server process, gives the same bytes — so a sender learns
    nothing new by asking again, the recipient can fetch the very challenge the sender
    answered, and round two needs no kept state (``finish_voucher``)."""
    seed = new_opening_seed()
    for pdq in (rnd.randbytes(32), w.outside(LISTED[11], 6)):
        voucher = w.client.make_voucher(pdq, opening_seed=seed)
        first = w.server.begin(voucher).challenge
        other = ServerSession(w.prep.server_secret, w.prep.table, records=w.prep.records)
        assert other.begin(voucher).challenge == first == w.server.begin(voucher).challenge
        seed = new_opening_seed()
    assert w.server.begin(w.client.make_voucher(pdq)).challenge != first  # per voucher
    seed = new_opening_seed()
    voucher = w.client.make_voucher(pdq, opening_seed=seed)
    answer = answer_for_image(w.verified, w.server.begin(voucher).challenge, seed, pdq)
    result = w.server.finish_voucher(voucher, answer, account="stateless")
    assert result.matched and [m.distance for m in result.matches] == [6]


def test_a_leaf_index_says_nothing_about_the_listed_hash(w: Checked) -> None:
    """Entries are sorted by PDQ; leaves are in an order keyed by the audit seed, so the leaf
    index a challenge shows is not the hash's rank (which a sender could compare with its
    own hash to tell its candidate from padding)."""
    leaves = _leaf_list(w)
    assert sorted(leaves) == sorted(LISTED)
    assert leaves != sorted(leaves)  # 1 in 12! by chance
    other = make_checked(seed=b"another audit seed")
    assert _leaf_list(other) != leaves  # the order is the seed's, not the hashes'


def test_a_candidate_with_a_broken_middle_layer_is_not_blocked(w: Checked) -> None:
    """Under format 3 a voucher whose pair opened but whose inner layer fails is blocked;
    here that would tell a sender who breaks its own voucher whether its picture was a
    candidate — so it is reported as tampered, not blocked (the recipient's check fails)."""
    seed = new_opening_seed()
    pdq = w.outside(LISTED[1], 4)
    voucher = bytearray(w.client.make_voucher(pdq, opening_seed=seed))
    lay = Layout.for_table(w.prep.table)
    voucher[lay.mid_offset + 5] ^= 1
    pending = w.server.begin(bytes(voucher))
    answer = answer_for_image(w.verified, pending.challenge, seed, pdq)
    result = w.server.finish(pending, answer, account="breaker")
    assert result.candidate and result.tampered and not result.block and not result.opened
    unrelated = w.server.begin(w.client.make_voucher(rnd.randbytes(32)))
    assert len(unrelated.challenge) == len(pending.challenge)


def test_on_a_tie_the_slot_goes_to_the_pictures_own_hash_not_a_hot_one() -> None:
    """A hot companion can share the sampled bits of its picture's PDQ while lying far from
    it: one opened key then names both records. With one slot, the PDQ's record goes first
    (else a near copy of the picture would be checked against the far hot hash and missed)."""
    pdq = LISTED[0]
    scheme = VariantProbeLSH(k=40)
    outside = [i for i in range(256) if i not in set(scheme.positions[0])]
    hot = flip_bits(pdq, outside[:40])  # same 40-bit key, 40 bits away
    query = flip_bits(pdq, outside[100:110])  # 10 bits from the PDQ, 50 from the hot hash
    entry = (("e0", pdq, (), (hot,)),)
    lists = [HotlineList("HL-A", "GB", "a", "1", entry), HotlineList("HL-B", "US", "b", "1", entry)]
    for n in range(40):  # a table whose keyed leaf order puts the hot record first
        prep = prepare_table(
            lists, scheme=scheme, policy=Policy.BLOCK, threshold=3, rng=SeededRng(b"tie%d" % n),
            distance_radius=RADIUS, distance_slots=1,
        )  # fmt: skip
        distance = prep.server_secret.distance
        assert distance is not None
        order = [h for _, h in leaf_hashes(prep.server_secret.entries, distance[1])]
        if order.index(hot) < order.index(pdq):
            break
    else:
        pytest.fail("no seed put the hot record first")
    verified = verify_table(prep.table.to_bytes(), sign_all(prep, ["HL-A", "HL-B"]), trust())
    client = ClientSession(verified, AccountSecret.generate())
    server = ServerSession(prep.server_secret, prep.table, records=prep.records)
    seed = new_opening_seed()
    pending = server.begin(client.make_voucher(query, opening_seed=seed))
    answer = answer_for_image(verified, pending.challenge, seed, query)
    result = server.finish(pending, answer, account="tie")
    assert result.matched and [m.distance for m in result.matches] == [10]


def test_the_key_length_for_a_checked_table_keeps_the_clients_floor() -> None:
    """40 bits while the bits an unrelated image reveals stay within half the floor, then
    longer; every choice passes the client's own bound for a table of that size."""
    from blindmatch.protocol import checked_key_bits

    floor = Floors().max_unrelated_bits
    for n_keys in (10, 10_000, 1_000_000, 2_900_000, 3_100_000, 10_000_000, 50_000_000):
        k = checked_key_bits(n_keys, 37)
        assert k % 8 == 0 and k >= 40
        assert k * 37 * (n_keys / 0.8) * 2.0**-k <= floor / 2
        if k > 40:  # and 8 bits fewer would not have kept it
            assert (k - 8) * 37 * (n_keys / 0.8) * 2.0 ** -(k - 8) > floor / 2
    assert checked_key_bits(1_000_000, 37) == 40 and checked_key_bits(10_000_000, 37) == 48


def test_records_built_in_parallel_are_the_serial_ones() -> None:
    from blindmatch.batch import parallel_records
    from blindmatch.protocol.table import make_records

    x, audit = group.random_scalar(), rnd.randbytes(32)
    hashes = [rnd.randbytes(32) for _ in range(70)]
    assert parallel_records(2)(x, audit, hashes) == make_records(x, audit, hashes)
    assert make_records(x, audit, hashes[5:9], 5) == make_records(x, audit, hashes)[5:9]
