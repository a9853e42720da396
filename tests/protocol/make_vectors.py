"""Regenerate the protocol known-answer vectors in ``tests/vectors/protocol/``.

Run from the repository root::

    .venv/bin/python -m tests.protocol.make_vectors

Everything is derived from fixed seeds through ``SeededRng`` and random
(benign) hashes; external vectors (RFC 5869, RFC 9496) are written as
literals and cross-checked here against the implementation, and the HKDF and
AEAD layers against ``cryptography``'s own implementations, so regenerating
fails loudly if anything disagrees.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from blindmatch.protocol.hazmat import group
from blindmatch.protocol.hazmat.aead import seal
from blindmatch.protocol.hazmat.cuckoo import cuckoo_place, slot_positions
from blindmatch.protocol.hazmat.kdf import hkdf_sha256
from blindmatch.protocol.hazmat.rng import SeededRng
from blindmatch.protocol.hazmat.shamir import make_shares
from blindmatch.protocol.lookup import BitSamplingLSH, QueryHash, VariantProbeLSH
from blindmatch.protocol.table import KEY_DOMAIN, Policy, blind_keys

OUT = Path(__file__).resolve().parent.parent / "vectors" / "protocol"
H = bytes.fromhex

#: RFC 9496 Appendix A.3, first vector: the one-way map of SHA-512 of this label.
RFC9496_LABEL = b"Ristretto is traditionally a short shot of espresso coffee"
RFC9496_POINT = "3066f82a1a747d45120d1740f14358531a8f04bbffe6a819f86dfe50f44a0a46"

#: RFC 5869 Appendix A.1 (test case 1).
RFC5869 = {
    "ikm": "0b" * 22,
    "salt": "000102030405060708090a0b0c",
    "info": "f0f1f2f3f4f5f6f7f8f9",
    "length": 42,
    "okm": "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
}


def _write(name: str, payload: dict[str, object]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / name).write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")


def group_vectors() -> None:
    rng = SeededRng(b"kat/group")
    h2g = [
        {
            "source": "RFC 9496 A.3 (vector 1)",
            "uniform": hashlib.sha512(RFC9496_LABEL).hexdigest(),
            "point": RFC9496_POINT,
        }
    ]
    assert group.hash_to_group(b"", RFC9496_LABEL).hex() == RFC9496_POINT
    hashes_ = []
    for i in range(6):
        msg = rng(i * 7)
        hashes_.append(
            {
                "domain": KEY_DOMAIN.hex(),
                "message": msg.hex(),
                "point": group.hash_to_group(KEY_DOMAIN, msg).hex(),
            }
        )
    mults = []
    for _ in range(4):
        s, p = group.random_scalar(rng), group.random_point(rng)
        mults.append(
            {
                "scalar": s.hex(),
                "point": p.hex(),
                "product": group.mul(s, p).hex(),
                "base_product": group.base_mul(s).hex(),
            }
        )
    invalid = [
        bytes(32).hex(),  # identity: valid encoding, refused by the protocol
        ("ff" * 32),  # not canonical
        ("01" + "00" * 31),  # odd ("negative") field element
    ]
    _write(
        "group.json",
        {"one_way_map": h2g, "hash_to_group": hashes_, "scalar_mult": mults, "invalid": invalid},
    )


def kdf_vectors() -> None:
    rng = SeededRng(b"kat/kdf")
    vecs: list[dict[str, object]] = [{"source": "RFC 5869 A.1", **RFC5869}]
    for info in [
        b"blindmatch/v1/pair",
        b"blindmatch/v1/mid",
        b"blindmatch/v1/match",
        b"blindmatch/v1/evidence",
        b"blindmatch/v1/evidence-key",
    ]:
        ikm, salt = rng(64), rng(32)
        okm = hkdf_sha256(ikm, salt=salt, info=info)
        ref = HKDF(hashes.SHA256(), 32, salt, info).derive(ikm)
        assert okm == ref
        vecs.append(
            {
                "source": "generated",
                "ikm": ikm.hex(),
                "salt": salt.hex(),
                "info": info.hex(),
                "length": 32,
                "okm": okm.hex(),
            }
        )
    r = RFC5869
    assert (
        hkdf_sha256(
            bytes.fromhex(r["ikm"]),
            salt=bytes.fromhex(r["salt"]),
            info=bytes.fromhex(r["info"]),
            length=42,
        ).hex()
        == r["okm"]
    )
    _write("kdf.json", {"hkdf_sha256": vecs})


def aead_vectors() -> None:
    rng = SeededRng(b"kat/aead")
    vecs = []
    for n, a in [(32, 0), (0, 0), (100, 32), (1028, 32)]:
        key, pt, aad = rng(32), rng(n), rng(a)
        sealed = seal(key, pt, aad)
        assert sealed == ChaCha20Poly1305(key).encrypt(bytes(12), pt, aad)
        vecs.append(
            {"key": key.hex(), "plaintext": pt.hex(), "aad": aad.hex(), "sealed": sealed.hex()}
        )
    _write("aead.json", {"chacha20poly1305_zero_nonce": vecs})


def shamir_vectors() -> None:
    rng = SeededRng(b"kat/shamir")
    vecs = []
    for t in (1, 2, 3, 5):
        coefs = [int.from_bytes(group.random_scalar(rng), "little") for _ in range(t)]
        xs = [int.from_bytes(rng(32), "little") % group.ORDER or 1 for _ in range(t + 2)]
        shares = make_shares(coefs, xs)
        vecs.append(
            {
                "t": t,
                "coefficients": [hex(c) for c in coefs],
                "shares": [[hex(s.x), hex(s.y)] for s in shares],
            }
        )
    _write("shamir.json", {"order": hex(group.ORDER), "vectors": vecs})


def table_vectors() -> None:
    rng = SeededRng(b"kat/table")
    positions = []
    for n in (16, 1000, 1 << 20):
        seed, key = rng(32), rng(10)
        positions.append(
            {
                "seed": seed.hex(),
                "key": key.hex(),
                "n_slots": n,
                "positions": list(slot_positions(seed, key, n)),
            }
        )
    keys = [rng(10) for _ in range(20)]
    seed = rng(32)
    placement = cuckoo_place(keys, 25, seed, rng=SeededRng(b"kat/table/kicks"))
    alpha = group.random_scalar(rng)
    slots = [
        {"key": k.hex(), "slot": s.hex()}
        for k, s in zip(keys[:5], blind_keys(alpha, keys[:5]), strict=True)
    ]
    _write(
        "table.json",
        {
            "positions": positions,
            "placement": {
                "keys": [k.hex() for k in keys],
                "n_slots": 25,
                "seed": seed.hex(),
                "kick_rng_seed": b"kat/table/kicks".hex(),
                "slots": placement,
            },
            "blinding": {"alpha": alpha.hex(), "slots": slots},
        },
    )


def lookup_vectors() -> None:
    rng = SeededRng(b"kat/lookup")
    seed = rng(32)
    scheme = BitSamplingLSH(k=64, tables=2, weak=4, max_flips=2, seed=seed)
    cases = []
    for _ in range(3):
        pdq = rng(32)
        conf = [int.from_bytes(rng(2), "big") / 65536 for _ in range(256)]
        pad_seed = rng(16)
        probes = scheme.probe(pdq, conf, SeededRng(pad_seed))
        cases.append(
            {
                "pdq": pdq.hex(),
                "confidence": conf,
                "list_keys": [k.hex() for k in scheme.list_keys(pdq)],
                "probe_keys": [k.hex() for k in probes.keys],
                "hint": probes.hint.hex(),
            }
        )
    _write(
        "lookup.json",
        {
            "scheme": {"k": 64, "tables": 2, "weak": 4, "max_flips": 2, "seed": seed.hex()},
            "params_bytes": scheme.params_bytes().hex(),
            "positions": [list(p) for p in scheme.positions],
            "cases": cases,
        },
    )


def variant_lookup_vectors() -> None:
    rng = SeededRng(b"kat/variant-lookup")
    seed = rng(32)
    scheme = VariantProbeLSH(
        k=64, tables=2, probes=12, weak=4, max_flips=2, max_variants=4, seed=seed
    )
    cases = []
    for n_variants in (1, 3, 5):  # 5 > max_variants: the lowest prior is dropped
        variants = []
        for j in range(n_variants):
            pdq = rng(32)
            conf = [int.from_bytes(rng(2), "big") / 65536 - 0.5 for _ in range(256)]
            variants.append(QueryHash(pdq, conf, 1.0 if j == 0 else (j + 1) / 10))
        pad_seed = rng(16)
        probes = scheme.probe_variants(variants, SeededRng(pad_seed))
        pdq0 = variants[0].pdq
        cases.append(
            {
                "variants": [
                    {"pdq": q.pdq.hex(), "confidence": q.confidence, "prior": q.prior}
                    for q in variants
                ],
                "pad_seed": pad_seed.hex(),
                "list_keys": [k.hex() for k in scheme.list_keys(pdq0)],
                "probe_keys": [k.hex() for k in probes.keys],
                "hint": probes.hint.hex(),
                "probe_hashes": [
                    [k.hex(), h.hex()] for k, h in scheme.probe_hashes(pdq0, probes.hint)
                ],
            }
        )
    _write(
        "lookup_variants.json",
        {
            "scheme": {
                "k": 64, "tables": 2, "probes": 12, "weak": 4, "max_flips": 2,
                "max_variants": 4, "seed": seed.hex(),
            },
            "params_bytes": scheme.params_bytes().hex(),
            "positions": [list(p) for p in scheme.positions],
            "cases": cases,
        },
    )  # fmt: skip


def voucher_vectors() -> None:
    from tests.protocol.kat_fixture import kat_scenario

    sc = kat_scenario()
    _write(
        "voucher.json",
        {
            "description": "table from kat_fixture.kat_scenario(); vouchers from SeededRng "
            "(r, the share's randomness) and a seeded opening seed (everything else)",
            "format_version": 2,
            "table_sha256": hashlib.sha256(sc.table_bytes).hexdigest(),
            "server_key_sha256": hashlib.sha256(sc.server_key).hexdigest(),
            "policy": Policy.BLOCK.value,
            "vouchers": [
                {
                    "name": name,
                    "rng_seed": seed.hex(),
                    "opening_seed": opening.hex(),
                    "commitment": commitment.hex(),
                    "pdq": pdq.hex(),
                    "evidence": ev.hex(),
                    "voucher": v.hex(),
                    "voucher_sha256": hashlib.sha256(v).hexdigest(),
                    "matched": matched,
                }
                for name, seed, pdq, ev, v, matched, opening, commitment in sc.vouchers
            ],
        },
    )


#: RFC 8439 Appendix A.1, test vectors 1 and 2 (ChaCha20 block function; key and nonce zero,
#: block counter 0 and 1). ``cryptography``'s 16-byte nonce is the LE counter then the nonce.
RFC8439_A1 = [
    ("00" * 16, "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
                "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"),
    ("01" + "00" * 15, "9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed"
                       "29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f"),
]  # fmt: skip


def drbg_vectors() -> None:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    from blindmatch.protocol.voucher import opening_stream

    chacha = []
    for nonce, stream in RFC8439_A1:
        enc = Cipher(algorithms.ChaCha20(bytes(32), H(nonce)), mode=None).encryptor()
        assert enc.update(bytes(64)).hex() == stream
        chacha.append({"source": "RFC 8439 A.1", "key": "00" * 32, "nonce": nonce,
                       "keystream": stream})  # fmt: skip
    rng = SeededRng(b"kat/drbg")
    streams = []
    for purpose in ("id", "rkey", "probe-padding", "pairs", "synthetic-coin",
                    "synthetic-pairs", "shuffle"):  # fmt: skip
        seed, header = rng(32), rng(24)
        draws = [16, 64, 1, 100]
        s = opening_stream(seed, header, purpose)
        out = b"".join(s(n) for n in draws)
        streams.append({"purpose": purpose, "seed": seed.hex(), "header": header.hex(),
                        "draws": draws, "output": out.hex()})  # fmt: skip
    _write("drbg.json", {"chacha20": chacha, "opening_streams": streams})


#: NIST SP 800-38A, F.5.5 (CTR-AES256.Encrypt).
SP800_38A_CTR_AES256 = {
    "key": "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
    "iv": "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
    "plaintext": "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
    "ciphertext": "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5"
    "2b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6",
}
#: RFC 4231 test case 2 (HMAC-SHA256 with a short key).
RFC4231_TC2 = {
    "key": b"Jefe".hex(),
    "message": b"what do ya want for nothing?".hex(),
    "mac": "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
}
#: Examples from the Matrix specification (appendix, "Canonical JSON").
MATRIX_CANONICAL_JSON = [
    ({}, "{}"),
    ({"one": 1, "two": "Two"}, '{"one":1,"two":"Two"}'),
    ({"b": "2", "a": "1"}, '{"a":"1","b":"2"}'),
    (
        {"auth": {"success": True, "mxid": "@john.doe:example.com", "profile": {
            "display_name": "John Doe", "three_pids": [
                {"medium": "email", "address": "john.doe@example.org"},
                {"medium": "msisdn", "address": "123456789"}]}}},
        '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe",'
        '"three_pids":[{"address":"john.doe@example.org","medium":"email"},'
        '{"address":"123456789","medium":"msisdn"}]},"success":true}}',
    ),
    ({"a": "日本語"}, '{"a":"日本語"}'),
    ({"本": 2, "日": 1}, '{"日":1,"本":2}'),
    ({"a": "\u65E5"}, '{"a":"日"}'),
    ({"a": None}, '{"a":null}'),
]  # fmt: skip


def franking_vectors() -> None:
    import hmac

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from blindmatch.protocol.franking import (
        FrankingContext,
        FrankingKeyring,
        canonical_json,
        commit,
        encrypt_attachment,
        frank,
    )

    canonical = []
    for value, text in MATRIX_CANONICAL_JSON:
        assert canonical_json(value) == text.encode(), (value, text)
        canonical.append({"source": "Matrix specification", "input": value, "canonical": text})
    nasty = {"z": [1, -(2**53) + 1, 2**53 - 1, True, False, None], "é": "\u0000\n\"\\/\u2028",
             "": {"A": "a", "a": "A", "\U0001F600": "emoji"}}  # fmt: skip
    canonical.append(
        {"source": "generated", "input": nasty, "canonical": canonical_json(nasty).decode()}
    )
    ctr = SP800_38A_CTR_AES256
    enc = Cipher(algorithms.AES(H(ctr["key"])), modes.CTR(H(ctr["iv"]))).encryptor()
    assert (enc.update(H(ctr["plaintext"])) + enc.finalize()).hex() == ctr["ciphertext"]
    tc = RFC4231_TC2
    assert hmac.digest(H(tc["key"]), H(tc["message"]), "sha256").hex() == tc["mac"]

    rng = SeededRng(b"kat/franking")
    keyring = FrankingKeyring({7: rng(32), 8: rng(32)}, 8)
    attachment = rng(100)
    ciphertext, file = encrypt_attachment(attachment, url="mxc://example.org/abc", rng=rng)
    payload = {
        "type": "m.room.message",
        "room_id": "!room:example.org",
        "content": {"msgtype": "m.image", "body": "a.png", "file": file.to_json()},
    }
    franked = frank(payload, rng=rng)
    contexts = [
        FrankingContext("@alice:example.org", "!room:example.org", 1_700_000_000_000),
        FrankingContext("@bob:example.org", "!room:example.org", 0),
    ]
    tags = []
    for key_id in (7, 8):
        ring = FrankingKeyring({7: keyring.key(7), 8: keyring.key(8)}, key_id)
        for ctx in contexts:
            tags.append(
                {
                    "key_id": key_id,
                    "sender": ctx.sender,
                    "room": ctx.room,
                    "timestamp_ms": ctx.timestamp_ms,
                    "tag": ring.tag(franked.commitment, ctx).hex(),
                }
            )
    _write(
        "franking.json",
        {
            "canonical_json": canonical,
            "hmac_sha256": [{"source": "RFC 4231 test case 2", **tc}],
            "aes256_ctr": [{"source": "NIST SP 800-38A F.5.5", **ctr}],
            "commitment": {
                "franking_key": franked.franking_key.hex(),
                "payload": franked.payload,
                "message": franked.message.decode(),
                "commitment": commit(franked.franking_key, franked.message).hex(),
            },
            "server_keys": {"7": keyring.key(7).hex(), "8": keyring.key(8).hex()},
            "tags": tags,
            "attachment": {
                "plaintext": attachment.hex(),
                "ciphertext": ciphertext.hex(),
                "file": file.to_json(),
            },
        },
    )


def main() -> None:
    group_vectors()
    kdf_vectors()
    aead_vectors()
    shamir_vectors()
    table_vectors()
    lookup_vectors()
    variant_lookup_vectors()
    voucher_vectors()
    franking_vectors()
    drbg_vectors()


if __name__ == "__main__":
    main()
