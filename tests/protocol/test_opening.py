"""Property 6, honest senders are checkable: the recipient recomputes the voucher from the
opening seed and the image, and cannot open the share (voucher format 3)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import pytest

from blindmatch.errors import InvalidVoucher, ProtocolError
from blindmatch.protocol import (
    AccountSecret,
    ClientSession,
    HotlineList,
    Policy,
    QueryHash,
    ServerSession,
    VariantProbeLSH,
    VerifiedTable,
    new_opening_seed,
    prepare_table,
    verify_table,
    verify_voucher_for_image,
    voucher_is_synthetic,
)
from blindmatch.protocol.hazmat import group
from blindmatch.protocol.hazmat.aead import open_sealed, seal
from blindmatch.protocol.hazmat.cuckoo import slot_positions
from blindmatch.protocol.hazmat.kdf import hkdf_sha256
from blindmatch.protocol.hazmat.shamir import evaluate
from blindmatch.protocol.lookup import PDQ_BITS
from blindmatch.protocol.server import TAMPERED_EVIDENCE, TAMPERED_SHARE
from blindmatch.protocol.table import KEY_DOMAIN
from blindmatch.protocol.voucher import (
    INFO_EVIDENCE,
    INFO_EVIDENCE_OUTER,
    INFO_MATCH,
    INFO_MID,
    INFO_SHARE,
    PAIR_BYTES,
    Layout,
    ParsedVoucher,
    derive_opening,
    evidence_key,
    match_commitment,
    opening_stream,
    pair_key,
    shamir_x,
    share_key,
    transcript,
)
from tests.protocol.conftest import World, flip_bits
from tests.protocol.kat_fixture import sign_all, trust

rnd = random.Random(61)


def conf() -> list[float]:
    return [rnd.uniform(-1, 1) for _ in range(PDQ_BITS)]


@dataclass
class Image:
    """What sender and recipient both compute from one picture."""

    pdq: bytes
    confidence: list[float]
    variants: list[QueryHash]

    @classmethod
    def random(cls, pdq: bytes | None = None) -> Image:
        pdq = pdq or rnd.randbytes(32)
        variants = [QueryHash(rnd.randbytes(32), conf(), 0.05) for _ in range(3)]
        return cls(pdq, conf(), variants)


@dataclass
class Party:
    verified: VerifiedTable
    account: AccountSecret
    client: ClientSession
    server: ServerSession
    listed: list[bytes]

    def make(self, img: Image, seed: bytes, commitment: bytes, evidence: bytes = b"") -> bytes:
        return self.client.make_voucher(
            img.pdq, confidence=img.confidence, variants=img.variants, evidence=evidence,
            commitment=commitment, opening_seed=seed,
        )  # fmt: skip

    def check(self, voucher: bytes, seed: bytes, img: Image, commitment: bytes) -> None:
        verify_voucher_for_image(
            self.verified, voucher, seed, img.pdq, confidence=img.confidence,
            variants=img.variants, commitment=commitment,
        )  # fmt: skip


def make_party(policy: Policy, synthetic_ppm: int = 0) -> Party:
    r = random.Random(f"opening-{policy.value}")
    listed = [r.randbytes(32) for _ in range(20)]
    lists = [
        HotlineList("HL-A", "GB", "a", "1", tuple((f"a{i}", p) for i, p in enumerate(listed))),
        HotlineList("HL-B", "US", "b", "1", tuple((f"b{i}", p) for i, p in enumerate(listed))),
    ]
    prep = prepare_table(
        lists, scheme=VariantProbeLSH(seed=r.randbytes(32)), policy=policy, threshold=2,
        synthetic_ppm=synthetic_ppm, evidence_bytes=128,
    )  # fmt: skip
    verified = verify_table(prep.table.to_bytes(), sign_all(prep, ["HL-A", "HL-B"]), trust())
    account = AccountSecret.generate()
    client = ClientSession(verified, account)
    return Party(verified, account, client, ServerSession(prep.server_secret, prep.table), listed)


@pytest.fixture(scope="module")
def block() -> Party:
    return make_party(Policy.BLOCK)


@pytest.fixture(scope="module")
def threshold() -> Party:
    return make_party(Policy.THRESHOLD, synthetic_ppm=100_000)


def forge(
    party: Party,
    voucher: bytes,
    seed: bytes,
    *,
    front: bytes | None = None,
    match_plain: bytes | None = None,
    big_r: bytes | None = None,
    c_share: bytes | None = None,
    c_ev: bytes | None = None,
) -> bytes:
    """What a modified client can do with its own seed: replace layers and re-seal ``C_mid``
    with a consistent AAD, so the server still accepts the voucher's outer structure."""
    table = party.verified.table
    lay = Layout.for_table(table)
    v = ParsedVoucher.from_bytes(voucher, table)
    rkey = opening_stream(seed, v.header, "rkey")(32)
    t = transcript(v.header, v.voucher_id)
    k_mid = hkdf_sha256(rkey, salt=t, info=INFO_MID)
    m = open_sealed(k_mid, v.mid, v.mid_aad())
    assert m is not None
    if match_plain is not None:  # a consistent lie: M and its commitment c both changed
        nonce = opening_stream(seed, v.header, "match-nonce")(32)
        sealed = seal(hkdf_sha256(rkey, salt=t, info=INFO_MATCH), nonce + match_plain)
        m = match_commitment(nonce, match_plain) + sealed
    head = (front or voucher[: lay.r_offset]) + (big_r or v.server_r) + (c_share or v.share)
    ev = c_ev or v.evidence
    c_mid = seal(k_mid, m, hashlib.sha256(head + ev).digest())
    return head + c_mid + ev


# --- the honest case -----------------------------------------------------------------------


def test_honest_vouchers_verify_on_the_recipient_side(block: Party) -> None:
    for pdq in (block.listed[0], rnd.randbytes(32)):  # a match and a non-match alike
        img, seed, com = Image.random(pdq), new_opening_seed(), rnd.randbytes(32)
        v = block.make(img, seed, com, evidence=b"thumb")
        block.check(v, seed, img, com)
        assert block.server.open(v, account=pdq.hex()).matched is (pdq == block.listed[0])
    # no confidence, no variants: the plain call works too
    seed, pdq = new_opening_seed(), rnd.randbytes(32)
    v = block.client.make_voucher(pdq, opening_seed=seed)
    verify_voucher_for_image(block.verified, v, seed, pdq, commitment=bytes(32))


def test_one_seed_and_image_fix_everything_but_r_share_and_evidence(block: Party) -> None:
    img, seed, com = Image.random(), new_opening_seed(), bytes(32)
    a = block.make(img, seed, com)
    with pytest.raises(ProtocolError, match="already used"):  # one voucher per seed
        block.make(img, seed, com)
    b = ClientSession(block.verified, block.account).make_voucher(
        img.pdq,
        confidence=img.confidence,
        variants=img.variants,
        commitment=com,
        opening_seed=seed,
    )  # fmt: skip  (another session of the same account: what a second device would do)
    lay = Layout.for_table(block.verified.table)
    assert a[: lay.r_offset] == b[: lay.r_offset]  # id and every pair: from the seed
    assert a[lay.r_offset : lay.mid_offset] != b[lay.r_offset : lay.mid_offset]  # fresh r
    # (so a seed must never be reused: make_voucher draws a fresh one unless given one)
    c = block.client.make_voucher(img.pdq, confidence=img.confidence, variants=img.variants)
    assert c[: lay.r_offset] != a[: lay.r_offset]


# --- property 6: every way of cheating the recipient fails ---------------------------------


def test_voucher_for_another_image_is_rejected(block: Party) -> None:
    img, seed, com = Image.random(block.listed[1]), new_opening_seed(), bytes(32)
    v = block.make(img, seed, com)
    others = [
        Image.random(),  # an unrelated picture
        Image(flip_bits(img.pdq, [200]), img.confidence, img.variants),  # one bit away
        Image(img.pdq, img.confidence, img.variants[:-1]),  # one variant fewer
        Image(img.pdq, img.confidence, [QueryHash(rnd.randbytes(32), conf(), 0.05)]),
    ]
    for other in others:
        with pytest.raises(InvalidVoucher, match="not made for this image"):
            block.check(v, seed, other, com)
    block.check(v, seed, img, com)


def test_a_voucher_with_one_pair_changed_is_rejected(block: Party) -> None:
    img, seed, com = Image.random(block.listed[2]), new_opening_seed(), bytes(32)
    v = block.make(img, seed, com)
    lay = Layout.for_table(block.verified.table)
    other = block.make(Image.random(), new_opening_seed(), com)
    for i in (0, 17, lay.n_pairs - 1):
        o = lay.pairs_offset + PAIR_BYTES * i
        bad = bytearray(v)
        bad[o + 5] ^= 1  # a byte of Q
        swapped = v[:o] + other[o : o + PAIR_BYTES] + v[o + PAIR_BYTES :]  # another voucher's pair
        for forged in (bytes(bad), swapped):
            # re-sealed by the sender, so that nothing but the pair differs
            with pytest.raises(InvalidVoucher):
                block.check(forge(block, v, seed, front=forged[: lay.r_offset]), seed, img, com)
    o1, o2 = lay.pairs_offset, lay.pairs_offset + PAIR_BYTES
    reordered = v[:o1] + v[o2 : o2 + PAIR_BYTES] + v[o1:o2] + v[o2 + PAIR_BYTES :]
    with pytest.raises(InvalidVoucher):
        block.check(forge(block, v, seed, front=reordered[: lay.r_offset]), seed, img, com)
    block.check(forge(block, v, seed, front=v[: lay.r_offset]), seed, img, com)


def test_a_voucher_from_another_seed_is_rejected(block: Party) -> None:
    img, com = Image.random(), bytes(32)
    v = block.make(img, new_opening_seed(), com)
    for seed in (new_opening_seed(), bytes(32)):
        with pytest.raises(InvalidVoucher):
            block.check(v, seed, img, com)


def test_a_voucher_with_the_match_layer_changed_is_rejected(block: Party) -> None:
    """A modified client keeps honest pairs (so the voucher still opens) but lies in M: another
    PDQ, a wrong flag, an emptied hint. The server accepts each; the recipient does not."""
    img, seed, com = Image.random(block.listed[3]), new_opening_seed(), bytes(32)
    v = block.make(img, seed, com)
    d = derive_opening(block.verified.table, seed, img.pdq, img.confidence, img.variants, com)
    plain = d.match_plain
    lies = {
        "other pdq": plain[:1] + rnd.randbytes(32) + plain[33:],
        "flag": b"\x01" + plain[1:],
        "no hint": plain[:65] + bytes(len(plain) - 65),
    }
    for name, lie in lies.items():
        forged = forge(block, v, seed, match_plain=lie)
        r = ServerSession(block.server._secret, block.verified.table).open(forged, account=name)
        # the lie hides the match from the server, or the server refuses it as tampered...
        assert not r.matched or r.tampered, name
        with pytest.raises(InvalidVoucher):  # ...and the recipient catches it either way
            block.check(forged, seed, img, com)
    block.check(forge(block, v, seed, match_plain=plain), seed, img, com)  # honest re-seal


def test_a_voucher_for_another_commitment_is_rejected(block: Party) -> None:
    img, seed = Image.random(), new_opening_seed()
    blob = rnd.randbytes(1000)
    v = block.make(img, seed, hashlib.sha256(blob).digest())
    block.check(v, seed, img, hashlib.sha256(blob).digest())
    with pytest.raises(InvalidVoucher):
        block.check(v, seed, img, hashlib.sha256(blob + b"x").digest())


def test_garbage_outer_layers_are_caught_by_the_recipient(block: Party) -> None:
    img, seed, com = Image.random(), new_opening_seed(), bytes(32)
    v = block.make(img, seed, com)
    lay = Layout.for_table(block.verified.table)
    bad_r = forge(block, v, seed, big_r=bytes(32))  # the identity
    with pytest.raises(InvalidVoucher):
        block.check(bad_r, seed, img, com)
    garbage_ev = forge(block, v, seed, c_ev=rnd.randbytes(lay.ev_bytes))
    with pytest.raises(InvalidVoucher):
        block.check(garbage_ev, seed, img, com)
    seed2 = new_opening_seed()  # the server refuses it too, as a match attempt, if it opens
    r = block.server.open(forge(block, block.make(Image.random(block.listed[6]), seed2, com),
                                seed2, c_ev=rnd.randbytes(lay.ev_bytes)), account="g")  # fmt: skip
    assert r.block and r.tampered == TAMPERED_EVIDENCE


def test_what_the_recipient_cannot_check_the_server_refuses(block: Party) -> None:
    """The share layer is sealed against the recipient, so a modified client can put garbage
    there unseen (docs/protocol.md §5); the server then refuses the match as a tampered
    voucher (and keeps no share), and an identity R is malformed on its face."""
    img, seed, com = Image.random(block.listed[4]), new_opening_seed(), bytes(32)
    v = block.make(img, seed, com)
    garbage = forge(block, v, seed, c_share=rnd.randbytes(48))
    block.check(garbage, seed, img, com)  # the recipient cannot tell
    server = ServerSession(block.server._secret, block.verified.table)
    r = server.open(garbage, account="cheat")
    assert r.block and r.matched and r.tampered == TAMPERED_SHARE
    with pytest.raises(InvalidVoucher):
        server.open(forge(block, v, seed, big_r=bytes(32)), account="cheat")
    assert server.account_state("cheat") == (0, False)
    assert server.open(v, account="cheat").matched


# --- the recipient never gets the share ---------------------------------------------------------


def test_the_recipient_cannot_open_the_share(block: Party) -> None:
    """Everything the recipient can derive (seed, image, table, voucher) fails to open C_share;
    the server's α·R opens it to the account's true share."""
    table = block.verified.table
    img, seed, com = Image.random(block.listed[5]), new_opening_seed(), bytes(32)
    v = block.make(img, seed, com)
    p = ParsedVoucher.from_bytes(v, table)
    header = p.header
    rkey = opening_stream(seed, header, "rkey")(32)
    t = transcript(header, p.voucher_id)
    # every point the recipient knows: G, L, R, each Q, each S = β·P + γ·L it can rebuild from
    # the seed, each slot and H(k) of the probes
    known = [group.GENERATOR, table.server_point, p.server_r] + [q for q, _ in p.pairs]
    probes = table.scheme.probe_variants(
        [QueryHash(img.pdq, img.confidence), *img.variants],
        opening_stream(seed, header, "probe-padding"),
    )
    betas = opening_stream(seed, header, "pairs")
    for key in probes.keys:
        hk = group.hash_to_group(KEY_DOMAIN, key)
        known.append(hk)
        for pos in slot_positions(table.cuckoo_seed, key, table.n_slots):
            beta, gamma = group.random_scalar(betas), group.random_scalar(betas)
            slot = table.slot(pos)
            known += [slot, group.add(group.mul(beta, slot), group.mul(gamma, table.server_point))]
    keys = [hkdf_sha256(rkey + x, salt=t, info=INFO_SHARE) for x in known]
    keys += [hkdf_sha256(rkey, salt=t, info=i) for i in (INFO_SHARE, INFO_MID, INFO_MATCH)]
    keys += [rkey, pair_key(known[-1], p.pairs[0][0], t)]
    assert len(keys) > 3 * len(p.pairs)
    assert all(open_sealed(k, p.share) is None for k in keys)

    rl = group.mul(block.server._secret.alpha, p.server_r)  # what only α (or r) gives
    y = open_sealed(share_key(rkey, rl, t), p.share)
    assert y is not None
    coefficients = block.account.coefficients(table.threshold)
    assert int.from_bytes(y, "little") == evaluate(
        coefficients, shamir_x(table.table_id, p.voucher_id)
    )


def test_the_evidence_key_alone_opens_no_voucher_that_did_not_open(block: Party) -> None:
    """Why C_ev has an outer layer under rkey: whoever learns the account's evidence key
    (a server colluding with a recipient, see docs) still cannot read the evidence of a
    voucher unless it also has that voucher's rkey, i.e. the voucher opened or its own
    recipient hands over the seed."""
    table = block.verified.table
    seed = new_opening_seed()
    v = block.make(Image.random(), seed, bytes(32), evidence=b"private thumbnail")
    assert not block.server.open(v, account="e").opened
    p = ParsedVoucher.from_bytes(v, table)
    t = transcript(p.header, p.voucher_id)
    ek = evidence_key(block.account.coefficients(table.threshold)[0])
    assert open_sealed(hkdf_sha256(ek, salt=t, info=INFO_EVIDENCE), p.evidence) is None
    rkey = opening_stream(seed, p.header, "rkey")(32)
    inner = open_sealed(hkdf_sha256(rkey, salt=t, info=INFO_EVIDENCE_OUTER), p.evidence)
    assert inner is not None
    ev = open_sealed(hkdf_sha256(ek, salt=t, info=INFO_EVIDENCE), inner)
    assert ev is not None and ev[4:21] == b"private thumbnail"


# --- threshold policy: exact for pairs, statistical for synthetic vouchers -----------------------


def seed_with_coin(party: Party, synthetic: bool) -> bytes:
    while True:
        s = new_opening_seed()
        if voucher_is_synthetic(party.verified, s) is synthetic:
            return s


def test_threshold_real_and_synthetic_vouchers_verify(threshold: Party) -> None:
    server = ServerSession(threshold.server._secret, threshold.verified.table)
    for synthetic in (False, True):
        img, seed, com = Image.random(), seed_with_coin(threshold, synthetic), bytes(32)
        v = threshold.make(img, seed, com)
        threshold.check(v, seed, img, com)
        assert server.open(v, account="t").opened is synthetic  # an unlisted image
        with pytest.raises(InvalidVoucher):
            threshold.check(v, new_opening_seed(), img, com)
        if not synthetic:  # a real voucher's pairs depend on the image...
            with pytest.raises(InvalidVoucher):
                threshold.check(v, seed, Image.random(), com)
        else:  # ...a synthetic one's do not: the recipient checks only that it is synthetic
            threshold.check(v, seed, Image.random(), com)


def test_threshold_client_that_ignores_the_coin_is_caught(threshold: Party) -> None:
    img, com = Image.random(threshold.listed[0]), bytes(32)
    c = threshold.client
    real_seed, fake_seed = seed_with_coin(threshold, False), seed_with_coin(threshold, True)
    forced_fake = c._build(img.pdq, img.confidence, b"", com, synthetic=True,
                           variants=img.variants, opening_seed=real_seed)  # fmt: skip
    forced_real = c._build(img.pdq, img.confidence, b"", com, synthetic=False,
                           variants=img.variants, opening_seed=fake_seed)  # fmt: skip
    with pytest.raises(InvalidVoucher):
        threshold.check(forced_fake, real_seed, img, com)
    with pytest.raises(InvalidVoucher):
        threshold.check(forced_real, fake_seed, img, com)


def test_a_real_match_sent_with_the_synthetic_flag_is_caught_on_both_sides(
    threshold: Party, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10, finding 2: a modified client sends real matches (real pairs, real shares)
    with the synthetic flag set in M, hoping the server drops them at t. The recipient's
    check covers M through its commitment c, and the server, once it holds the account's
    polynomial, sees a flag-1 voucher whose share lies on it."""
    from blindmatch.protocol import voucher as voucher_module
    from blindmatch.protocol.server import TAMPERED_FLAG

    com = bytes(32)
    client = ClientSession(threshold.verified, AccountSecret.generate())
    sent = []
    with monkeypatch.context() as m:
        m.setattr(voucher_module, "FLAG_REAL", voucher_module.FLAG_SYNTHETIC)  # the lie
        for k in range(threshold.verified.table.threshold):
            img, seed = Image.random(threshold.listed[10 + k]), seed_with_coin(threshold, False)
            sent.append((img, seed, threshold_make(client, img, seed, com)))
    for img, seed, v in sent:  # the recipient: the flag does not match what the seed says
        with pytest.raises(InvalidVoucher):
            threshold.check(v, seed, img, com)
    server = ServerSession(threshold.server._secret, threshold.verified.table)
    results = [server.open(v, account="liar") for _, _, v in sent]
    released = {rel.voucher_id: rel for r in results for rel in r.released}
    assert set(released) == {r.voucher_id for r in results}  # every lie is dealt with at t
    for rel in released.values():
        assert rel.tampered == TAMPERED_FLAG and rel.matches  # and counted as the match it is


def test_a_real_voucher_with_a_share_off_the_polynomial_is_caught_at_t(
    threshold: Party, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A modified client puts a wrong share in one real voucher (to keep its evidence closed):
    the recipient cannot see it (the share is sealed against it), the server can, once the
    other vouchers give it the account's polynomial."""
    from blindmatch.protocol import voucher as voucher_module
    from blindmatch.protocol.server import TAMPERED_OFF_POLYNOMIAL

    com = bytes(32)
    client = ClientSession(threshold.verified, AccountSecret.generate())
    server = ServerSession(threshold.server._secret, threshold.verified.table)
    with monkeypatch.context() as m:
        m.setattr(voucher_module, "evaluate", lambda coefficients, x: rnd.randrange(1, 2**252))
        img, seed = Image.random(threshold.listed[18]), seed_with_coin(threshold, False)
        bad = threshold_make(client, img, seed, com)
    threshold.check(bad, seed, img, com)  # the recipient cannot tell
    released = list(server.open(bad, account="cheat").released)
    for k in range(threshold.verified.table.threshold):
        img, seed = Image.random(threshold.listed[k]), seed_with_coin(threshold, False)
        released += server.open(threshold_make(client, img, seed, com), account="cheat").released
    by_id = {rel.voucher_id: rel for rel in released}
    bad_id = ParsedVoucher.from_bytes(bad, threshold.verified.table).voucher_id
    assert by_id[bad_id].tampered == TAMPERED_OFF_POLYNOMIAL and by_id[bad_id].matches
    assert sum(rel.tampered is None for rel in released) == threshold.verified.table.threshold


def test_a_key_stored_before_the_polynomial_was_kept_flags_nothing(threshold: Party) -> None:
    """Stores written by draft 1 hold ek alone (32 bytes): vouchers judged against it are
    never called lies (the polynomial is unknown), synthetic ones are dropped as before."""
    from blindmatch.protocol import MemoryThresholdStore

    store = MemoryThresholdStore()
    client = ClientSession(threshold.verified, threshold.account)
    server = ServerSession(threshold.server._secret, threshold.verified.table, store=store)
    ek = evidence_key(threshold.account.coefficients(threshold.verified.table.threshold)[0])
    store.set_evidence_key("old", ek)
    com = bytes(32)
    img, seed = Image.random(), seed_with_coin(threshold, True)
    assert server.open(threshold_make(client, img, seed, com), account="old").released == ()
    img, seed = Image.random(threshold.listed[19]), seed_with_coin(threshold, False)
    (rel,) = server.open(threshold_make(client, img, seed, com), account="old").released
    assert rel.tampered is None and rel.matches


def threshold_make(client: ClientSession, img: Image, seed: bytes, com: bytes) -> bytes:
    return client.make_voucher(img.pdq, confidence=img.confidence, variants=img.variants,
                               commitment=com, opening_seed=seed)  # fmt: skip


def test_honest_threshold_vouchers_release_without_lies(threshold: Party) -> None:
    com = bytes(32)
    client = ClientSession(threshold.verified, AccountSecret.generate())
    server = ServerSession(threshold.server._secret, threshold.verified.table)
    released = []
    for k in range(threshold.verified.table.threshold):
        img, seed = Image.random(threshold.listed[14 + k]), seed_with_coin(threshold, False)
        v = threshold_make(client, img, seed, com)
        threshold.check(v, seed, img, com)
        released += server.open(v, account="honest").released
    assert len(released) == threshold.verified.table.threshold
    assert all(rel.tampered is None and rel.matches for rel in released)


def test_block_policy_has_no_synthetic_coin(block: Party) -> None:
    assert not any(voucher_is_synthetic(block.verified, new_opening_seed()) for _ in range(2000))


# --- formats and hostile input ------------------------------------------------------------------


def test_version_1_vouchers_are_refused_clearly(block: Party) -> None:
    img, seed = Image.random(), new_opening_seed()
    v1 = bytearray(block.make(img, seed, bytes(32)))
    v1[4] = 1
    with pytest.raises(InvalidVoucher, match="version 1 is no longer accepted"):
        block.server.open(bytes(v1), account="old")
    with pytest.raises(InvalidVoucher, match="version 1"):
        block.check(bytes(v1), seed, img, bytes(32))


def test_hostile_inputs_to_the_recipient_check(block: Party) -> None:
    img, seed = Image.random(), new_opening_seed()
    v = block.make(img, seed, bytes(32))
    vt = block.verified
    cases: list[tuple[dict[str, object], type[Exception]]] = [
        ({"voucher": v[:-1]}, InvalidVoucher),
        ({"voucher": bytearray(v)}, InvalidVoucher),
        ({"voucher": "text"}, InvalidVoucher),
        ({"opening_seed": seed[:31]}, ProtocolError),
        ({"opening_seed": seed.hex()}, ProtocolError),
        ({"pdq": img.pdq[:31]}, ValueError),
        ({"pdq": None}, ValueError),
        ({"commitment": bytes(31)}, ProtocolError),
        ({"confidence": [0.0] * 3}, ValueError),
    ]
    base: dict[str, object] = {"voucher": v, "opening_seed": seed, "pdq": img.pdq,
                               "confidence": img.confidence, "commitment": bytes(32)}  # fmt: skip
    for change, error in cases:
        args = {**base, **change}
        with pytest.raises(error):
            verify_voucher_for_image(
                vt, args["voucher"], args["opening_seed"], args["pdq"],  # type: ignore[arg-type]
                confidence=args["confidence"], variants=img.variants,  # type: ignore[arg-type]
                commitment=args["commitment"],  # type: ignore[arg-type]
            )  # fmt: skip
    with pytest.raises(TypeError):
        verify_voucher_for_image(vt.table, v, seed, img.pdq, commitment=bytes(32))  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        block.client.make_voucher(img.pdq, opening_seed=b"short")
    with pytest.raises(ProtocolError):
        voucher_is_synthetic(vt, b"short")


def test_old_world_helpers_still_work(block_world: World) -> None:
    """The session-wide fixtures (bit-sampling LSH) verify too."""
    seed, pdq = new_opening_seed(), block_world.listed[0]
    v = block_world.client.make_voucher(pdq, opening_seed=seed)
    verified = verify_table(block_world.prep.table.to_bytes(), block_world.signed, trust())
    verify_voucher_for_image(verified, v, seed, pdq, commitment=bytes(32))
