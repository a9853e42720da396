"""The Matrix client's table rules without a homeserver: an older table (rollback), another
table under a seen sequence and a table below the floors are refused; the client keeps the
table it has and says why; what it saw survives a restart (its store folder).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytest.importorskip("nio", reason="the matrix extra (matrix-nio) is not installed")

from blindmatch.errors import InvalidManifest  # noqa: E402
from blindmatch.integrations.matrix.client import (  # noqa: E402
    MANIFEST_PATH,
    TABLE_PATH,
    BlindmatchClient,
)
from blindmatch.protocol import (  # noqa: E402
    DEFAULT_MAX_AGE_SECONDS,
    Floors,
    HotlineList,
    Policy,
    format_issued,
    prepare_table,
)
from tests.protocol.kat_fixture import sign_all, trust  # noqa: E402

#: A client's trust as deployed: default floors, default maximum age (fixed test keys).
CLIENT_TRUST = trust(floors=Floors(), max_age_seconds=DEFAULT_MAX_AGE_SECONDS)


def signed_table(sequence: int, seed: str, **kw: object) -> tuple[bytes, bytes]:
    rnd = random.Random(seed)
    pdqs = [rnd.randbytes(32) for _ in range(4)]
    lists = [HotlineList(h, j, h, "1", tuple((f"{h}{i}", p) for i, p in enumerate(pdqs)))
             for h, j in (("HL-A", "GB"), ("HL-B", "US"))]  # fmt: skip
    prep = prepare_table(lists, evidence_bytes=64, sequence=sequence,
                         issued=format_issued(datetime.now(UTC)), **kw)  # type: ignore[arg-type]  # fmt: skip
    return prep.table.to_bytes(), sign_all(prep, ["HL-A", "HL-B"])


def client(store: Path) -> BlindmatchClient:
    # Nothing listens there: these tests install tables directly or fake the two GETs.
    return BlindmatchClient("http://127.0.0.1:9", "@alice:test", "DEVICE", str(store),
                            trust=CLIENT_TRUST)  # fmt: skip


def test_an_older_table_is_refused_and_the_current_one_kept_across_restarts(
    tmp_path: Path,
) -> None:
    seven, one, other_seven = signed_table(7, "a"), signed_table(1, "b"), signed_table(7, "c")

    async def first_run() -> None:
        alice = client(tmp_path / "store")
        try:
            assert await alice.install_table(*seven)
            with pytest.raises(InvalidManifest, match="sequence 1 is older than sequence 7"):
                await alice.install_table(*one)
            with pytest.raises(InvalidManifest, match="already seen .* with another table"):
                await alice.install_table(*other_seven)
            current = alice.verified_table
            assert current is not None and current.manifest.sequence == 7
            assert alice.session.table.digest == current.table.digest
            assert isinstance(alice.table_error, InvalidManifest)
            assert not await alice.install_table(*seven)  # the same table: nothing changes
        finally:
            await alice.close()

    async def after_restart() -> None:
        alice = client(tmp_path / "store")  # the same store: it remembers sequence 7
        try:
            with pytest.raises(InvalidManifest, match="older than sequence 7"):
                await alice.install_table(*one)
            assert alice.verified_table is None
        finally:
            await alice.close()

    asyncio.run(first_run())
    asyncio.run(after_restart())
    assert (tmp_path / "store" / "blindmatch-table-history.json").stat().st_mode & 0o777 == 0o600


def test_a_refresh_that_fetches_an_older_table_keeps_the_current_one(tmp_path: Path) -> None:
    eight, three = signed_table(8, "d"), signed_table(3, "e")
    served = {MANIFEST_PATH: eight[1], TABLE_PATH: eight[0]}

    async def fake_request(method: str, path: str, **_: object
                           ) -> tuple[int, Mapping[str, str], bytes]:  # fmt: skip
        return 200, {}, served[path]

    async def body() -> None:
        alice = client(tmp_path / "store")
        alice._request = fake_request  # type: ignore[method-assign]
        try:
            assert await alice.refresh_table()
            served.update({MANIFEST_PATH: three[1], TABLE_PATH: three[0]})  # rolled back
            with pytest.raises(InvalidManifest, match="sequence 3 is older than sequence 8"):
                await alice.refresh_table()
            assert alice.verified_table is not None
            assert alice.verified_table.manifest.sequence == 8
        finally:
            await alice.close()

    asyncio.run(body())


def test_a_table_below_the_floors_is_refused(tmp_path: Path) -> None:
    weak = signed_table(1, "f", policy=Policy.THRESHOLD, threshold=1, synthetic_ppm=50_000)

    async def body() -> None:
        alice = client(tmp_path / "store")
        try:
            with pytest.raises(InvalidManifest, match="t = 1 is below the floor of 10"):
                await alice.install_table(*weak)
            assert alice.verified_table is None
        finally:
            await alice.close()

    asyncio.run(body())
