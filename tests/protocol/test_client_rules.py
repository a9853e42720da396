"""The client's rules on a signed table (issue 10, findings 4 and 5): parameter floors,
freshness of ``issued``, and no rollback of ``sequence`` under one platform key.

Every table here is correctly signed by trusted keys: what is refused is refused for its
parameters, its age or its sequence, never for a signature.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from blindmatch.errors import InvalidManifest
from blindmatch.protocol import (
    BitSamplingLSH,
    HotlineList,
    LookupKeyScheme,
    Policy,
    PreparedTable,
    TrustPolicy,
    VariantProbeLSH,
    accept_without_log,
    prepare_table,
    verify_table,
)
from tests.protocol.kat_fixture import SIGNERS, public_key, sign_all, trust

NOW = datetime(2026, 12, 3, 8, 0, 0, tzinfo=UTC)


def rfc3339(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def default_trust() -> TrustPolicy:
    """A client's trust with nothing but keys: every floor and the maximum age at their
    defaults."""
    from blindmatch.protocol import TrustedHotline

    return TrustPolicy(
        platform_key=public_key("platform"),
        hotlines={h: TrustedHotline(public_key(h), j) for h, j in SIGNERS.items() if j},
        log_check=accept_without_log,
    )


def lists(n: int = 6, seed: str = "rules") -> list[HotlineList]:
    rnd = random.Random(seed)
    pdqs = [rnd.randbytes(32) for _ in range(n)]
    return [
        HotlineList("HL-A", "GB", "a", "1", tuple((f"a{i}", p) for i, p in enumerate(pdqs))),
        HotlineList("HL-B", "US", "b", "1", tuple((f"b{i}", p) for i, p in enumerate(pdqs))),
    ]


def table(
    *,
    scheme: LookupKeyScheme | None = None,
    policy: Policy = Policy.BLOCK,
    threshold: int = 30,
    synthetic_ppm: int = 0,
    sequence: int = 0,
    issued: datetime = NOW - timedelta(days=1),
    seed: str = "rules",
) -> tuple[bytes, bytes]:
    prep: PreparedTable = prepare_table(
        lists(seed=seed),
        scheme=scheme,
        policy=policy,
        threshold=threshold,
        synthetic_ppm=synthetic_ppm,
        evidence_bytes=64,
        sequence=sequence,
        issued=rfc3339(issued),
    )
    return prep.table.to_bytes(), sign_all(prep, ["HL-A", "HL-B"])


def refused(table_and_manifest: tuple[bytes, bytes], policy: TrustPolicy, **kw: object) -> str:
    with pytest.raises(InvalidManifest) as e:
        verify_table(*table_and_manifest, policy, **kw)  # type: ignore[arg-type]
    return e.value.message


# -- finding 5: parameter floors -------------------------------------------------------


def test_the_default_parameters_pass_the_default_floors() -> None:
    verify_table(*table(), default_trust(), now=NOW)  # VariantProbeLSH k=72, 37 probes, t=30
    verify_table(*table(scheme=BitSamplingLSH()), default_trust(), now=NOW)  # k=64, 37, f=2
    threshold = table(policy=Policy.THRESHOLD, threshold=30, synthetic_ppm=1_000)
    verify_table(*threshold, default_trust(), now=NOW)


def test_a_k8_table_is_refused_by_default() -> None:
    """The review's table: k = 8, where random unlisted images open (60/60)."""
    weak = table(scheme=BitSamplingLSH(k=8, weak=8, max_flips=2))
    message = refused(weak, default_trust(), now=NOW)
    assert "k = 8" in message and "64" in message


def test_a_threshold_table_with_t1_is_refused() -> None:
    t1 = table(policy=Policy.THRESHOLD, threshold=1, synthetic_ppm=50_000)
    message = refused(t1, default_trust(), now=NOW)
    assert "t = 1" in message and "10" in message
    # block too: t gates the release of evidence there
    assert "t = 9" in refused(table(threshold=9), default_trust(), now=NOW)


@pytest.mark.parametrize("ppm", [0, 999, 200_001, 1_000_000])
def test_a_threshold_table_outside_the_synthetic_rate_range_is_refused(ppm: int) -> None:
    bad = table(policy=Policy.THRESHOLD, threshold=30, synthetic_ppm=ppm)
    message = refused(bad, default_trust(), now=NOW)
    assert f"{ppm} ppm" in message and "[1,000, 200,000]" in message


def test_the_synthetic_rate_range_is_inclusive() -> None:
    top = table(policy=Policy.THRESHOLD, threshold=30, synthetic_ppm=200_000)
    verify_table(*top, default_trust(), now=NOW)


def test_too_many_probes_or_flips_are_refused() -> None:
    many = table(scheme=VariantProbeLSH(probes=65))
    assert "65 probes" in refused(many, default_trust(), now=NOW)
    verify_table(*table(scheme=VariantProbeLSH(probes=64)), default_trust(), now=NOW)
    flips = table(scheme=VariantProbeLSH(max_flips=4))
    assert "4 flipped bits" in refused(flips, default_trust(), now=NOW)


def test_the_unrelated_opening_bound_holds_when_the_key_floor_is_lowered() -> None:
    from blindmatch.protocol import Floors

    short = table(scheme=BitSamplingLSH(k=32))  # 37 probes x 16 slots x 2^-32 = 1.4e-7
    lowered = trust(floors=Floors(min_key_bits=8))
    message = refused(short, lowered)
    assert "pairs on average" in message and "2^-32" in message
    # the bound, not the key floor, refused it: relaxing the bound admits it
    verify_table(*short, trust(floors=Floors(min_key_bits=8, max_unrelated_openings=1e-6)))


def test_lowered_floors_are_explicit_and_the_defaults_stay() -> None:
    from blindmatch.protocol import Floors

    t3 = table(policy=Policy.THRESHOLD, threshold=3, synthetic_ppm=0)
    verify_table(*t3, trust(floors=Floors(min_threshold=3, min_synthetic_ppm=0)))
    assert "t = 3" in refused(t3, trust(floors=Floors()))
    assert Floors() == Floors(64, 64, 3, 1e-9, 10, 1_000, 200_000)
    assert default_trust().floors == Floors()


# -- finding 4: freshness -----------------------------------------------------------------


def test_an_old_table_is_refused() -> None:
    old = table(issued=NOW - timedelta(days=31))
    message = refused(old, default_trust(), now=NOW)
    assert "31.0 days ago" in message and "maximum age of 30 days" in message
    verify_table(*table(issued=NOW - timedelta(days=29)), default_trust(), now=NOW)


def test_a_table_issued_in_the_future_is_refused() -> None:
    ahead = table(issued=NOW + timedelta(hours=2))
    assert "2.0 hours in the future" in refused(ahead, default_trust(), now=NOW)
    verify_table(*table(issued=NOW + timedelta(minutes=30)), default_trust(), now=NOW)


def test_issued_must_be_rfc3339_utc_when_freshness_is_checked() -> None:
    for text in ("", "2026-12-03", "2026-12-03T08:00:00+00:00", "2026-12-03T08:00:00.5Z"):
        prep = prepare_table(lists(), evidence_bytes=64, issued=text)
        pair = (prep.table.to_bytes(), sign_all(prep, ["HL-A", "HL-B"]))
        assert "RFC 3339" in refused(pair, default_trust(), now=NOW)
        verify_table(*pair, trust(floors=default_trust().floors, max_age_seconds=None))


def test_the_maximum_age_comes_from_the_trust_policy() -> None:
    from dataclasses import replace

    week_old = table(issued=NOW - timedelta(days=7))
    verify_table(*week_old, default_trust(), now=NOW)
    assert "maximum age of 1 days" in refused(
        week_old, replace(default_trust(), max_age_seconds=86400), now=NOW
    )


# -- finding 4: rollback and equivocation ------------------------------------------------


def test_an_older_sequence_is_refused_after_a_newer_one() -> None:
    from blindmatch.protocol import MemoryTableHistory

    history = MemoryTableHistory()
    seven = table(sequence=7, seed="seven")
    verify_table(*seven, default_trust(), now=NOW, history=history)
    one = table(sequence=1, seed="one")
    message = refused(one, default_trust(), now=NOW, history=history)
    assert message == (
        "table sequence 1 is older than sequence 7 already seen for this platform (a rollback)"
    )
    verify_table(*seven, default_trust(), now=NOW, history=history)  # a re-fetch is fine
    eight = table(sequence=8, seed="eight")
    verify_table(*eight, default_trust(), now=NOW, history=history)
    assert "sequence 7 is older than sequence 8" in refused(
        seven, default_trust(), now=NOW, history=history
    )


def test_another_table_under_a_seen_sequence_is_equivocation() -> None:
    from blindmatch.protocol import MemoryTableHistory

    history = MemoryTableHistory()
    verify_table(*table(sequence=7, seed="first"), default_trust(), now=NOW, history=history)
    message = refused(table(sequence=7, seed="second"), default_trust(), now=NOW,
                      history=history)  # fmt: skip
    assert "sequence 7 was already seen for this platform with another table" in message


def test_a_refused_table_is_not_recorded() -> None:
    from blindmatch.protocol import MemoryTableHistory

    history = MemoryTableHistory()
    verify_table(*table(sequence=3, seed="three"), default_trust(), now=NOW, history=history)
    stale = table(sequence=9, seed="nine", issued=NOW - timedelta(days=60))
    refused(stale, default_trust(), now=NOW, history=history)  # too old: not remembered
    weak = table(sequence=9, seed="nine", scheme=BitSamplingLSH(k=8))
    refused(weak, default_trust(), now=NOW, history=history)  # below a floor: neither
    assert history.last(default_trust().platform_key)[0] == 3  # type: ignore[index]
    verify_table(*table(sequence=4, seed="four"), default_trust(), now=NOW, history=history)


def test_the_history_is_kept_per_platform_key() -> None:
    from blindmatch.protocol import MemoryTableHistory

    history = MemoryTableHistory()
    history.record(b"A" * 32, 7, b"\x01" * 32)
    assert history.last(b"B" * 32) is None
    history.record(b"A" * 32, 5, b"\x02" * 32)  # never goes back
    assert history.last(b"A" * 32) == (7, b"\x01" * 32)
