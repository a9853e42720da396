"""Known-answer tests over tests/vectors/protocol/*.json (see the README there)."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from blindmatch.protocol import ServerSecret, ServerSession, Table
from blindmatch.protocol.hazmat import group
from blindmatch.protocol.hazmat.aead import open_sealed, seal
from blindmatch.protocol.hazmat.cuckoo import cuckoo_place, slot_positions
from blindmatch.protocol.hazmat.drbg import Drbg
from blindmatch.protocol.hazmat.kdf import hkdf_sha256
from blindmatch.protocol.hazmat.rng import SeededRng
from blindmatch.protocol.hazmat.shamir import Share, make_shares, recover_secret
from blindmatch.protocol.lookup import BitSamplingLSH
from blindmatch.protocol.table import blind_keys
from blindmatch.protocol.voucher import OPENING_LABEL, opening_stream, verify_voucher_for_image
from tests.protocol.kat_fixture import kat_scenario

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "protocol"


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


H = bytes.fromhex


@pytest.mark.parametrize("v", load("group.json")["one_way_map"])
def test_one_way_map(v: dict[str, str]) -> None:
    import rbcl

    assert bytes(rbcl.crypto_core_ristretto255_from_hash(H(v["uniform"]))).hex() == v["point"]


@pytest.mark.parametrize("v", load("group.json")["hash_to_group"])
def test_hash_to_group(v: dict[str, str]) -> None:
    assert group.hash_to_group(H(v["domain"]), H(v["message"])).hex() == v["point"]


@pytest.mark.parametrize("v", load("group.json")["scalar_mult"])
def test_scalar_mult(v: dict[str, str]) -> None:
    assert group.mul(H(v["scalar"]), H(v["point"])).hex() == v["product"]
    assert group.base_mul(H(v["scalar"])).hex() == v["base_product"]


@pytest.mark.parametrize("p", load("group.json")["invalid"])
def test_invalid_points(p: str) -> None:
    assert not group.is_valid_point(H(p))
    with pytest.raises(ValueError):
        group.mul(group.random_scalar(), H(p))


@pytest.mark.parametrize("v", load("kdf.json")["hkdf_sha256"])
def test_hkdf(v: dict[str, Any]) -> None:
    okm = hkdf_sha256(H(v["ikm"]), salt=H(v["salt"]), info=H(v["info"]), length=v["length"])
    assert okm.hex() == v["okm"]


@pytest.mark.parametrize("v", load("aead.json")["chacha20poly1305_zero_nonce"])
def test_aead(v: dict[str, str]) -> None:
    key, pt, aad = H(v["key"]), H(v["plaintext"]), H(v["aad"])
    assert seal(key, pt, aad).hex() == v["sealed"]
    assert open_sealed(key, H(v["sealed"]), aad) == pt
    assert open_sealed(key, H(v["sealed"]), aad + b"x") is None


@pytest.mark.parametrize("v", load("shamir.json")["vectors"])
def test_shamir(v: dict[str, Any]) -> None:
    coefs = [int(c, 16) for c in v["coefficients"]]
    expected = [Share(int(x, 16), int(y, 16)) for x, y in v["shares"]]
    assert make_shares(coefs, [s.x for s in expected]) == expected
    for subset in itertools.combinations(expected, v["t"]):
        assert recover_secret(subset) == coefs[0]


@pytest.mark.parametrize("v", load("table.json")["positions"])
def test_slot_positions(v: dict[str, Any]) -> None:
    assert list(slot_positions(H(v["seed"]), H(v["key"]), v["n_slots"])) == v["positions"]


def test_cuckoo_placement() -> None:
    v = load("table.json")["placement"]
    keys = [H(k) for k in v["keys"]]
    rng = SeededRng(H(v["kick_rng_seed"]))
    assert cuckoo_place(keys, v["n_slots"], H(v["seed"]), rng=rng) == v["slots"]


def test_slot_blinding() -> None:
    v = load("table.json")["blinding"]
    keys = [H(s["key"]) for s in v["slots"]]
    assert [b.hex() for b in blind_keys(H(v["alpha"]), keys)] == [s["slot"] for s in v["slots"]]


def test_lookup_keys() -> None:
    v = load("lookup.json")
    s = v["scheme"]
    scheme = BitSamplingLSH(
        k=s["k"], tables=s["tables"], weak=s["weak"], max_flips=s["max_flips"], seed=H(s["seed"])
    )
    assert scheme.params_bytes().hex() == v["params_bytes"]
    assert [list(p) for p in scheme.positions] == v["positions"]
    for case in v["cases"]:
        pdq = H(case["pdq"])
        assert [k.hex() for k in scheme.list_keys(pdq)] == case["list_keys"]
        probes = scheme.probe(pdq, case["confidence"], SeededRng(b"unused: no padding"))
        assert [k.hex() for k in probes.keys] == case["probe_keys"]
        assert probes.hint.hex() == case["hint"]
        assert [k.hex() for k in scheme.probes_from_hint(pdq, probes.hint)] == case["probe_keys"]


def test_voucher_known_answer() -> None:
    v = load("voucher.json")
    sc = kat_scenario()
    assert v["format_version"] == 2
    assert hashlib.sha256(sc.table_bytes).hexdigest() == v["table_sha256"]
    assert hashlib.sha256(sc.server_key).hexdigest() == v["server_key_sha256"]
    server = ServerSession(ServerSecret.from_bytes(sc.server_key), Table.from_bytes(sc.table_bytes))
    for stored, (name, _seed, pdq, _ev, voucher, matched, opening, commitment) in zip(
        v["vouchers"], sc.vouchers, strict=True
    ):
        assert stored["name"] == name and stored["pdq"] == pdq.hex()
        assert stored["opening_seed"] == opening.hex() and stored["commitment"] == commitment.hex()
        assert voucher.hex() == stored["voucher"]
        assert server.open(H(stored["voucher"]), account="kat").matched is stored["matched"]
        assert matched is stored["matched"]
        verify_voucher_for_image(
            sc.verified, H(stored["voucher"]), H(stored["opening_seed"]), pdq,
            commitment=H(stored["commitment"]),
        )  # fmt: skip


@pytest.mark.parametrize("v", load("drbg.json")["chacha20"])
def test_chacha20_keystream(v: dict[str, str]) -> None:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    enc = Cipher(algorithms.ChaCha20(H(v["key"]), H(v["nonce"])), mode=None).encryptor()
    assert enc.update(bytes(len(H(v["keystream"])))).hex() == v["keystream"]


@pytest.mark.parametrize("v", load("drbg.json")["opening_streams"])
def test_opening_streams(v: dict[str, Any]) -> None:
    stream = opening_stream(H(v["seed"]), H(v["header"]), v["purpose"])
    assert b"".join(stream(n) for n in v["draws"]).hex() == v["output"]
    drbg = Drbg(H(v["seed"]), salt=H(v["header"]), label=OPENING_LABEL + v["purpose"].encode())
    assert drbg(sum(v["draws"])).hex() == v["output"]  # one stream, however it is drawn
