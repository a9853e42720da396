"""The second private distance check (``protocol/distance.py``): conditional disclosure of a
key exactly when ``d ≤ R``, nothing else for the server, a response fixed by its stream,
shuffled and re-randomised, strict wire forms. Benign random hashes only."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blindmatch.errors import InvalidDistanceCheck, InvalidHash, InvalidKey, ProtocolError
from blindmatch.protocol import distance
from blindmatch.protocol.distance import (
    ENCRYPTED_BITS_BYTES,
    DistanceKey,
    EncryptedBits,
    Response,
    decrypted_points,
    disclose,
    disclosed_key,
    encrypt_bits,
    encrypted_distance,
    key_point,
    respond,
    response_bytes,
)
from blindmatch.protocol.hazmat import group
from blindmatch.protocol.hazmat.rng import SeededRng
from blindmatch.protocol.lookup import hamming, pdq_bit
from tests.protocol.conftest import flip_bits

R = 31
RND = random.Random("distance-check")
LISTED = RND.randbytes(32)
KAPPA = RND.randbytes(32)


@pytest.fixture(scope="module")
def dk() -> DistanceKey:
    return DistanceKey.generate(SeededRng(b"distance key"))


@pytest.fixture(scope="module")
def enc(dk: DistanceKey) -> EncryptedBits:
    return dk.encrypt_bits(LISTED, SeededRng(b"encrypted bits"))


def at_distance(pdq: bytes, d: int, rnd: random.Random) -> bytes:
    return flip_bits(pdq, rnd.sample(range(256), d))


def run(
    dk: DistanceKey, enc: EncryptedBits, query: bytes, *, radius: int = R, seed: bytes = b"s"
) -> list[bytes]:
    resp = respond(enc, query, public=dk.public, radius=radius, key=KAPPA, stream=SeededRng(seed))
    return disclose(resp, dk)


# --- keys and encrypted bits -------------------------------------------------------------


def test_key_round_trips_and_keeps_its_secret_out_of_repr(dk: DistanceKey) -> None:
    again = DistanceKey.from_bytes(dk.to_bytes())
    assert again.public == dk.public == group.base_mul(dk.to_bytes())
    assert dk.to_bytes().hex() not in repr(dk) and dk.to_bytes().hex()[:16] not in repr(dk)
    for bad in (bytes(32), group.ORDER.to_bytes(32, "little"), b"\xff" * 32, bytes(31), "x"):
        with pytest.raises(InvalidKey):
            DistanceKey.from_bytes(bad)  # type: ignore[arg-type]


def test_encrypted_bits_decrypt_to_the_entrys_bits_in_pdq_bit_order(
    dk: DistanceKey, enc: EncryptedBits
) -> None:
    g, neg_g = group.GENERATOR, group.sub(group.IDENTITY, group.GENERATOR)
    want = [g if pdq_bit(LISTED, i) else neg_g for i in range(256)]
    assert [dk.decrypt(ct) for ct in enc.ciphertexts] == want
    # from the public key alone: the same ciphertexts for the same randomness
    assert encrypt_bits(LISTED, dk.public, SeededRng(b"encrypted bits")) == enc
    assert len({c1 for c1, _ in enc.ciphertexts}) == 256  # fresh r_i per bit


def test_encrypted_distance_is_enc_of_256_minus_2d(dk: DistanceKey, enc: EncryptedBits) -> None:
    rnd = random.Random(5)
    for d in (0, 1, 17, 128, 200, 256):
        query = at_distance(LISTED, d, rnd)
        assert hamming(query, LISTED) == d
        m = dk.decrypt(encrypted_distance(enc, query))
        assert m == (
            group.IDENTITY if d == 128 else group.base_mul(group.scalar_from_int(256 - 2 * d))
        )


# --- disclosure exactly within the radius --------------------------------------------------


@pytest.mark.parametrize("d", [0, 1, 16, R, R + 1, R + 2, 128, 256])
def test_discloses_the_key_exactly_when_d_is_within_the_radius(
    dk: DistanceKey, enc: EncryptedBits, d: int
) -> None:
    query = at_distance(LISTED, d, random.Random(d))
    cands = run(dk, enc, query, seed=b"d%d" % d)
    assert len(cands) == R + 1 and len(set(cands)) == R + 1
    assert cands.count(disclosed_key(KAPPA)) == (1 if d <= R else 0)
    # the plaintext itself: K for the one j = d, never K otherwise
    points = decrypted_points(
        respond(enc, query, public=dk.public, radius=R, key=KAPPA, stream=SeededRng(b"d%d" % d)),
        dk,
    )
    assert points.count(key_point(KAPPA)) == (1 if d <= R else 0)


def test_random_pairs_disclose_iff_within_radius(dk: DistanceKey) -> None:
    rnd = random.Random(12)
    seen = {True: 0, False: 0}
    for k in range(10):
        listed = rnd.randbytes(32)
        query = at_distance(listed, rnd.randrange(0, 48), rnd) if k % 3 else rnd.randbytes(32)
        radius = rnd.choice((8, 20, 31))
        enc = dk.encrypt_bits(listed, SeededRng(b"pair%d" % k))
        cands = run(dk, enc, query, radius=radius, seed=b"pair%d" % k)
        within = hamming(query, listed) <= radius
        assert cands.count(disclosed_key(KAPPA)) == int(within)
        seen[within] += 1
    assert seen[True] >= 2 and seen[False] >= 2  # both outcomes exercised


def test_beyond_the_radius_every_candidate_is_unrelated_to_the_key(
    dk: DistanceKey, enc: EncryptedBits
) -> None:
    query = at_distance(LISTED, R + 1, random.Random(3))
    a, b = run(dk, enc, query, seed=b"run a"), run(dk, enc, query, seed=b"run b")
    key = disclosed_key(KAPPA)
    assert key not in a and key not in b
    assert not set(a) & set(b)  # fresh values each run: nothing fixed by κ or the hash
    other = disclosed_key(bytes(32))
    assert other not in a  # nor another key's value


def test_the_server_cannot_test_a_guess_of_the_hash(dk: DistanceKey) -> None:
    """Re-randomisation: the server knows every r_i. Without t_j·(G, X), c1 = ρ_j·a·G with
    a = Σ s_i r_i and the plaintext is ρ_j·2(j − d)·G + K, so a server holding a guess of s
    (hence a and d) would confirm it from P − K = (2(j − d)/a)·c1 for some position and j."""
    rnd = random.Random(99)
    x = group.scalar_to_int(dk.to_bytes())
    rs = [rnd.randrange(1, group.ORDER) for _ in range(256)]
    cts = []
    for i, r in enumerate(rs):
        y = 1 if pdq_bit(LISTED, i) else -1
        cts.append(
            (
                group.base_mul(group.scalar_from_int(r)),
                group.base_mul(group.scalar_from_int(y + x * r)),
            )
        )
    enc = EncryptedBits(tuple(cts))
    d = R + 5
    query = at_distance(LISTED, d, rnd)
    a = sum((1 if pdq_bit(query, i) else -1) * r for i, r in enumerate(rs)) % group.ORDER
    resp = respond(enc, query, public=dk.public, radius=R, key=KAPPA, stream=SeededRng(b"g"))
    kpt = key_point(KAPPA)
    inv_a = pow(a, -1, group.ORDER)
    for (c1, _c2), p in zip(resp.ciphertexts, decrypted_points(resp, dk), strict=True):
        shifted = group.sub(p, kpt)
        for j in range(R + 1):
            lam = group.scalar_from_int(2 * (j - d) * inv_a)
            assert group.mul(lam, c1) != shifted


# --- the response: fixed by the stream, shuffled, fixed size --------------------------------


def test_response_is_a_deterministic_function_of_the_stream(
    dk: DistanceKey, enc: EncryptedBits
) -> None:
    query = at_distance(LISTED, 9, random.Random(9))

    def resp(seed: bytes, key: bytes = KAPPA) -> bytes:
        return respond(
            enc, query, public=dk.public, radius=R, key=key, stream=SeededRng(seed)
        ).to_bytes()

    one = resp(b"seed one")
    assert resp(b"seed one") == one
    two = resp(b"seed two")
    assert two != one
    # no ciphertext in common: every one is re-randomised from the stream
    assert not {one[i : i + 64] for i in range(0, len(one), 64)} & {
        two[i : i + 64] for i in range(0, len(two), 64)
    }
    assert resp(b"seed one", key=bytes(32)) != one


def test_the_disclosing_ciphertext_is_shuffled(dk: DistanceKey, enc: EncryptedBits) -> None:
    radius = 7
    key = disclosed_key(KAPPA)
    for d in (0, radius):
        query = at_distance(LISTED, d, random.Random(d))
        positions = [
            run(dk, enc, query, radius=radius, seed=b"shuffle%d" % k).index(key) for k in range(40)
        ]
        # 40 fixed seeds over 8 positions: uniform placement visits nearly all of them
        assert len(set(positions)) >= 6, positions
        assert max(positions.count(p) for p in set(positions)) <= 15, positions


@pytest.mark.parametrize("radius", [0, 5, R])
def test_sizes_are_constant_for_a_radius(dk: DistanceKey, enc: EncryptedBits, radius: int) -> None:
    assert len(enc.to_bytes()) == ENCRYPTED_BITS_BYTES == 16384
    for d in (0, radius + 1, 128):
        query = at_distance(LISTED, d, random.Random(d))
        resp = respond(
            enc, query, public=dk.public, radius=radius, key=KAPPA, stream=SeededRng(b"z")
        )
        assert len(resp.to_bytes()) == response_bytes(radius) == 64 * (radius + 1)
        assert resp.radius == radius


# --- malformed input ----------------------------------------------------------------------


def _bad_points() -> list[bytes]:
    return [group.IDENTITY, b"\xff" * 32, (2).to_bytes(32, "little") + b"", b"\x01" + bytes(31)]


def test_wire_forms_round_trip(dk: DistanceKey, enc: EncryptedBits) -> None:
    assert EncryptedBits.from_bytes(enc.to_bytes()) == enc
    resp = respond(enc, LISTED, public=dk.public, radius=R, key=KAPPA, stream=SeededRng(b"w"))
    assert Response.from_bytes(resp.to_bytes(), radius=R) == resp


@pytest.mark.parametrize("where", [0, 32, 64 * 100 + 32, ENCRYPTED_BITS_BYTES - 32])
def test_malformed_encrypted_bits_are_refused(enc: EncryptedBits, where: int) -> None:
    raw = enc.to_bytes()
    for bad in _bad_points():
        assert not group.is_valid_point(bad)
        with pytest.raises(InvalidDistanceCheck) as e:
            EncryptedBits.from_bytes(raw[:where] + bad + raw[where + 32 :])
        assert e.value.code == "invalid_distance_check" and isinstance(e.value, ProtocolError)
    for bad_len in (raw[:-1], raw + b"\x00", raw[:-64], b"", bytearray(raw)):
        with pytest.raises(InvalidDistanceCheck):
            EncryptedBits.from_bytes(bad_len)  # type: ignore[arg-type]


def test_malformed_responses_are_refused(dk: DistanceKey, enc: EncryptedBits) -> None:
    raw = respond(
        enc, LISTED, public=dk.public, radius=R, key=KAPPA, stream=SeededRng(b"m")
    ).to_bytes()
    for where in (0, 32, 64 * 7, len(raw) - 32):
        for bad in _bad_points():
            with pytest.raises(InvalidDistanceCheck):
                Response.from_bytes(raw[:where] + bad + raw[where + 32 :], radius=R)
    for bad_len in (raw[:-64], raw + raw[:64], raw[:-1]):
        with pytest.raises(InvalidDistanceCheck):
            Response.from_bytes(bad_len, radius=R)
    with pytest.raises(InvalidDistanceCheck):
        Response.from_bytes(raw, radius=R - 1)


def test_bad_arguments_are_refused(dk: DistanceKey, enc: EncryptedBits) -> None:
    ok = {"public": dk.public, "radius": R, "key": KAPPA, "stream": SeededRng(b"a")}
    with pytest.raises(InvalidHash):
        respond(enc, LISTED[:31], **ok)  # type: ignore[arg-type]
    with pytest.raises(InvalidHash):
        dk.encrypt_bits(LISTED + b"\x00")
    for radius in (-1, distance.MAX_RADIUS + 1):
        with pytest.raises(ProtocolError):
            respond(enc, LISTED, **{**ok, "radius": radius})  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        respond(enc, LISTED, **{**ok, "key": KAPPA[:16]})  # type: ignore[arg-type]
    for public in (group.IDENTITY, b"\xff" * 32):
        with pytest.raises(InvalidKey):
            respond(enc, LISTED, **{**ok, "public": public})  # type: ignore[arg-type]
        with pytest.raises(InvalidKey):
            encrypt_bits(LISTED, public)


def test_respond_never_fails_on_ciphertexts_that_cancel(dk: DistanceKey) -> None:
    """A malicious server can choose ciphertexts whose sum over the client's bits is the
    identity; the client must still answer (an error would tell the server about its bits)."""
    ct = (group.random_point(SeededRng(b"p")), group.random_point(SeededRng(b"q")))
    enc = EncryptedBits((ct,) * 256)
    query = bytes([0x0F]) * 32  # weight 128: Σ s_i·C = 0
    assert encrypted_distance(enc, query) == (group.IDENTITY, group.IDENTITY)
    resp = respond(enc, query, public=dk.public, radius=R, key=KAPPA, stream=SeededRng(b"c"))
    assert Response.from_bytes(resp.to_bytes(), radius=R) == resp
    assert disclosed_key(KAPPA) not in disclose(resp, dk)


# --- property ------------------------------------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(
    st.binary(min_size=32, max_size=32),
    st.lists(st.integers(0, 255), unique=True, max_size=12),
    st.integers(0, 8),
    st.binary(min_size=8, max_size=8),
)
def test_property_disclosure_iff_within_radius(
    listed: bytes, flips: list[int], radius: int, seed: bytes
) -> None:
    dk = DistanceKey.generate(SeededRng(b"prop key" + seed))
    enc = dk.encrypt_bits(listed, SeededRng(b"prop enc" + seed))
    query = flip_bits(listed, flips)
    key = seed * 4
    resp = respond(enc, query, public=dk.public, radius=radius, key=key, stream=SeededRng(seed))
    cands = disclose(resp, dk)
    assert len(cands) == radius + 1
    assert cands.count(disclosed_key(key)) == (1 if len(flips) <= radius else 0)


def test_the_candidates_beyond_the_radius_are_not_related_to_each_other(
    dk: DistanceKey, enc: EncryptedBits
) -> None:
    """Each j has its own ρ_j. With one ρ for all j, the plaintexts minus K would be
    ρ·2(j − d)·G, multiples of one point by small known factors: the server could line them up
    and recover K (and d) by trying each d. Here even a tester who knows K and d finds no two
    of them so related."""
    d = R + 3
    query = at_distance(LISTED, d, random.Random(4))
    resp = respond(enc, query, public=dk.public, radius=R, key=KAPPA, stream=SeededRng(b"rho"))
    kpt = key_point(KAPPA)
    q = [group.sub(p, kpt) for p in decrypted_points(resp, dk)]
    factors = [group.scalar_from_int(2 * (j - d)) for j in range(R + 1)]
    for a, b in ((0, 1), (2, 3)):
        left = {group.mul(m, q[a]) for m in factors}
        right = {group.mul(m, q[b]) for m in factors}
        assert not left & right
