"""A fully deterministic table, manifest and set of vouchers for known-answer tests.

Every hash is random bytes from a fixed seed (benign by construction).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from blindmatch.protocol import (
    AccountSecret,
    BitSamplingLSH,
    ClientSession,
    Floors,
    HotlineList,
    Policy,
    PreparedTable,
    SignedManifest,
    TrustedHotline,
    TrustPolicy,
    VerifiedTable,
    accept_without_log,
    prepare_table,
    sign_manifest,
    verify_table,
)
from blindmatch.protocol.hazmat.rng import SeededRng

SIGNERS = {"platform": "", "HL-A": "GB", "HL-B": "US", "HL-C": "DE"}


def signing_key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(SeededRng(b"kat/ed25519/" + name.encode())(32))


def public_key(name: str) -> bytes:
    return (
        signing_key(name)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


#: The test tables use t = 2 and 3 (a threshold reached in a few vouchers) and no synthetic
#: vouchers in some threshold tables (deterministic counts): below the default floors, so
#: the test trust lowers exactly those two, explicitly. Never in a deployment.
TEST_FLOORS = Floors(min_threshold=2, min_synthetic_ppm=0)
#: The known-answer table's fixed issue time (its manifest is not a vector; the time is).
KAT_ISSUED = "2026-01-01T00:00:00Z"


def trust(
    min_hotlines: int = 2,
    *,
    floors: Floors = TEST_FLOORS,
    max_age_seconds: int | None = None,
) -> TrustPolicy:
    """The test trust: fixed keys, ``floors`` lowered for the test tables, and no maximum
    age (the fixtures' tables carry fixed or no issue times; freshness is tested apart,
    with an injected clock)."""
    return TrustPolicy(
        platform_key=public_key("platform"),
        hotlines={h: TrustedHotline(public_key(h), j) for h, j in SIGNERS.items() if j},
        log_check=accept_without_log,
        min_hotlines=min_hotlines,
        floors=floors,
        max_age_seconds=max_age_seconds,
    )


def sign_all(prep: PreparedTable, hotlines: list[str]) -> bytes:
    sigs = [
        sign_manifest(
            prep.manifest, role="platform", signer="platform", key=signing_key("platform")
        )
    ]
    sigs += [
        sign_manifest(prep.manifest, role="hotline", signer=h, key=signing_key(h)) for h in hotlines
    ]
    return SignedManifest(prep.manifest, tuple(sigs)).to_bytes()


@dataclass
class KatScenario:
    table_bytes: bytes
    manifest: bytes
    server_key: bytes
    #: (name, rng seed, pdq, evidence, voucher, matched, opening seed, commitment)
    vouchers: list[tuple[str, bytes, bytes, bytes, bytes, bool, bytes, bytes]]
    verified: VerifiedTable


def kat_lists() -> list[HotlineList]:
    rng = SeededRng(b"kat/voucher/lists")
    pdqs = [rng(32) for _ in range(8)]
    return [
        HotlineList("HL-A", "GB", "a", "1", tuple((f"a{i}", p) for i, p in enumerate(pdqs))),
        HotlineList("HL-B", "US", "b", "1", tuple((f"b{i}", p) for i, p in enumerate(pdqs[:6]))),
    ]


def kat_scenario() -> KatScenario:
    lists = kat_lists()
    prep = prepare_table(
        lists,
        scheme=BitSamplingLSH(k=64, tables=1, weak=4, max_flips=1, seed=bytes(range(32))),
        policy=Policy.BLOCK,
        threshold=2,
        evidence_bytes=64,
        issued=KAT_ISSUED,
        rng=SeededRng(b"kat/voucher/table"),
    )
    signed = sign_all(prep, ["HL-A", "HL-B"])
    verified = verify_table(prep.table.to_bytes(), signed, trust())
    account = AccountSecret(SeededRng(b"kat/voucher/account")(32))
    vouchers = []
    listed = lists[0].entries[0][1]
    unlisted = SeededRng(b"kat/voucher/unlisted")(32)
    for name, pdq, matched in [("listed", listed, True), ("unlisted", unlisted, False)]:
        seed = b"kat/voucher/" + name.encode()
        session = ClientSession(verified, account, rng=SeededRng(seed))
        ev = name.encode()
        opening = SeededRng(seed + b"/opening")(32)
        commitment = SeededRng(seed + b"/commitment")(32)
        v = session.make_voucher(pdq, evidence=ev, commitment=commitment, opening_seed=opening)
        vouchers.append((name, seed, pdq, ev, v, matched, opening, commitment))
    return KatScenario(
        prep.table.to_bytes(), signed, prep.server_secret.to_bytes(), vouchers, verified
    )
