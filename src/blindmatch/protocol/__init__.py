"""Private matching: blinded tables, vouchers, and the server that opens them.

The safe recipes (the ``hazmat`` subpackage holds the primitives beneath them)::

    from blindmatch.protocol import (
        VariantProbeLSH, QueryHash, HotlineList, Policy, prepare_table, sign_manifest,
        SignedManifest, TrustPolicy, TrustedHotline, accept_without_log,
        verify_table, ClientSession, AccountSecret, ServerSession,
    )

    # platform + hotlines: build, then everyone signs the same manifest
    prep = prepare_table(lists, scheme=VariantProbeLSH(), policy=Policy.BLOCK)
    sigs = [sign_manifest(prep.manifest, role="platform", signer="platform", key=pk), ...]
    signed = SignedManifest(prep.manifest, tuple(sigs)).to_bytes()

    # client: verify, then make one voucher per image
    session = ClientSession(verify_table(prep.table.to_bytes(), signed, trust),
                            AccountSecret.generate())
    seed = new_opening_seed()   # goes to the recipient inside the E2EE payload only
    voucher = session.make_voucher(pdq_bytes, confidence=floats, evidence=thumb,
                                   variants=[QueryHash(v_pdq, v_floats, prior), ...],
                                   commitment=sha256_of_encrypted_blob, opening_seed=seed)

    # recipient (property 6): the voucher was made for this very image
    verify_voucher_for_image(verified, voucher, seed, pdq_bytes, confidence=floats,
                             variants=[...], commitment=sha256_of_encrypted_blob)

    # message franking (property 5): sender, server tag, recipient check, verified report
    franked = frank(payload)      # encrypt franked.payload; send franked.commitment outside
    tag = keyring.tag(franked.commitment, FrankingContext(sender, room, ts))
    open_franked(decrypted_payload, commitment)   # recipient
    keyring.verify_report(FrankingReport.from_payload(decrypted_payload, commitment, tag, ctx))

    # server (per-account threshold state in a ThresholdStore: in memory by default)
    server = ServerSession(prep.server_secret, prep.table, store=my_sql_store)
    result = server.open(voucher, account="alice")

Everything here is pure: no files, sockets, databases or logging. The wire
formats (table, server key, manifest, voucher) are documented in the
docstrings of :mod:`~blindmatch.protocol.table`,
:mod:`~blindmatch.protocol.manifest` and :mod:`~blindmatch.protocol.voucher`,
and in ``docs/protocol.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from blindmatch.protocol.franking import (
    EncryptedFile,
    Franked,
    FrankingContext,
    FrankingKeyring,
    FrankingReport,
    canonical_json,
    decrypt_attachment,
    encrypt_attachment,
    frank,
    open_franked,
    verify_attachment,
)
from blindmatch.protocol.hazmat.rng import Rng, system_rng
from blindmatch.protocol.lookup import (
    BitSamplingLSH,
    LookupKeyScheme,
    ProbeSet,
    QueryHash,
    VariantProbeLSH,
    register_scheme,
)
from blindmatch.protocol.manifest import (
    DEFAULT_MAX_AGE_SECONDS,
    MAX_CLOCK_SKEW_SECONDS,
    Floors,
    LogInclusionCheck,
    Manifest,
    ManifestSignature,
    MemoryTableHistory,
    SignedManifest,
    TableHistory,
    TrustedHotline,
    TrustPolicy,
    accept_without_log,
    checked_key_bits,
    format_issued,
    make_manifest,
    parse_issued,
    sign_manifest,
    verify_manifest,
)
from blindmatch.protocol.server import (
    MATCH_DISTANCE,
    AccountState,
    Match,
    MemoryThresholdStore,
    OpenResult,
    PendingOpen,
    Release,
    ServerSession,
    StoredVoucher,
    ThresholdStore,
)
from blindmatch.protocol.table import (
    BlindFn,
    DistanceParams,
    EntryRef,
    HotlineList,
    ListedEntry,
    Policy,
    RecordFn,
    ServerSecret,
    Table,
    blind_keys,
    build_table,
    make_records,
    select_entries,
)
from blindmatch.protocol.voucher import (
    AccountSecret,
    ClientSession,
    VerifiedTable,
    answer_for_image,
    new_opening_seed,
    variants_for_table,
    verify_table,
    verify_voucher_for_image,
    voucher_is_synthetic,
)

__all__ = [
    "DEFAULT_MAX_AGE_SECONDS",
    "MATCH_DISTANCE",
    "MAX_CLOCK_SKEW_SECONDS",
    "AccountSecret",
    "AccountState",
    "BitSamplingLSH",
    "BlindFn",
    "ClientSession",
    "DistanceParams",
    "EncryptedFile",
    "EntryRef",
    "Floors",
    "Franked",
    "FrankingContext",
    "FrankingKeyring",
    "FrankingReport",
    "HotlineList",
    "ListedEntry",
    "LogInclusionCheck",
    "LookupKeyScheme",
    "Manifest",
    "ManifestSignature",
    "Match",
    "MemoryTableHistory",
    "MemoryThresholdStore",
    "OpenResult",
    "PendingOpen",
    "Policy",
    "PreparedTable",
    "ProbeSet",
    "QueryHash",
    "Release",
    "ServerSecret",
    "ServerSession",
    "SignedManifest",
    "StoredVoucher",
    "Table",
    "TableHistory",
    "ThresholdStore",
    "TrustPolicy",
    "TrustedHotline",
    "VariantProbeLSH",
    "VerifiedTable",
    "accept_without_log",
    "blind_keys",
    "build_table",
    "canonical_json",
    "decrypt_attachment",
    "encrypt_attachment",
    "format_issued",
    "frank",
    "make_manifest",
    "answer_for_image",
    "checked_key_bits",
    "new_opening_seed",
    "open_franked",
    "parse_issued",
    "prepare_table",
    "register_scheme",
    "select_entries",
    "sign_manifest",
    "verify_attachment",
    "verify_manifest",
    "verify_table",
    "variants_for_table",
    "verify_voucher_for_image",
    "voucher_is_synthetic",
]


@dataclass(frozen=True)
class PreparedTable:
    """A built table, its unsigned manifest, and the server's secret."""

    table: Table
    manifest: Manifest
    server_secret: ServerSecret
    #: A distance-checked table's committed records (give them to ``ServerSession``).
    records: tuple[bytes, ...] = ()

    def __repr__(self) -> str:
        return f"PreparedTable({self.table!r}, <secret hidden>)"


def prepare_table(
    lists: Sequence[HotlineList],
    *,
    scheme: LookupKeyScheme | None = None,
    policy: Policy = Policy.BLOCK,
    threshold: int = 30,
    synthetic_ppm: int = 0,
    evidence_bytes: int = 1024,
    min_hotlines: int = 2,
    distinct_jurisdictions: bool = True,
    sequence: int = 0,
    issued: str = "",
    rng: Rng = system_rng,
    blind: BlindFn = blind_keys,
    distance_radius: int | None = None,
    distance_slots: int = 1,
    records: RecordFn = make_records,
) -> PreparedTable:
    """Governance, blinding and the manifest in one step (signing is separate).

    Only hashes present in lists of at least ``min_hotlines`` distinct hotlines
    (in as many jurisdictions, with ``distinct_jurisdictions``) are included.
    ``issued`` is the build time, ``format_issued(datetime.now(UTC))`` (pure: the caller
    reads the clock): a client with a maximum age (the default) refuses a table without
    one. ``sequence`` must grow with every table the platform key signs.
    ``distance_radius`` makes the table distance-checked (docs/protocol.md §11); ``records``
    may be a parallel version of :func:`~blindmatch.protocol.table.make_records`.
    """
    scheme = scheme if scheme is not None else VariantProbeLSH()
    entries = select_entries(
        lists, min_hotlines=min_hotlines, distinct_jurisdictions=distinct_jurisdictions
    )
    built = build_table(
        entries,
        scheme=scheme,
        policy=policy,
        threshold=threshold,
        synthetic_ppm=synthetic_ppm,
        evidence_bytes=evidence_bytes,
        rng=rng,
        blind=blind,
        distance_radius=distance_radius,
        distance_slots=distance_slots,
        records=records,
    )
    manifest = make_manifest(
        built.table,
        lists,
        n_keys=built.n_keys,
        n_entries=len(entries),
        min_hotlines=min_hotlines,
        distinct_jurisdictions=distinct_jurisdictions,
        sequence=sequence,
        issued=issued,
    )
    return PreparedTable(built.table, manifest, built.server_secret, built.records)
