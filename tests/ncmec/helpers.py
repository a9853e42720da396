"""A real-looking confirmed case (benign synthetic pictures) and a reporter config."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.ncmec.config import NcmecConfig, Reporter
from blindmatch.review.types import ConfirmedCase, EvidenceFile

DECIDED = datetime(2026, 12, 3, 10, 15, tzinfo=UTC)


def jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    synthetic_photo(seed, size=(96, 72)).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def make_case(
    case_id: str = "BM-ABCD-EFGH-JKLM",
    *,
    files: int = 2,
    category: str = "A1",
    account: str = "@mallory:example.org",
) -> ConfirmedCase:
    return ConfirmedCase(
        case_id=case_id,
        kind="match",
        account=account,
        room="!room:example.org",
        event_id="$event1:example.org",
        category=category,
        entries=[
            {"distance": 4, "refs": [{"hotline": "ncmec", "list": "demo", "entry_id": "e-17"}]}
        ],
        reviewer="reviewer:ann",
        decided_at=DECIDED,
        media=[
            EvidenceFile(f"picture-{i}.jpg", jpeg(100 + i + sum(map(ord, case_id))), i == 0)
            for i in range(files)
        ],
    )


def make_config(
    base_url: str = "http://127.0.0.1:1/ispws",
    user: str = "esp",
    password: str = "secret",
    **kw: object,
) -> NcmecConfig:
    return NcmecConfig(
        reporter=Reporter(email="trust@example.org", first_name="Trust", last_name="Safety"),
        base_url=base_url,
        username=user,
        password=password,
        **kw,  # type: ignore[arg-type]
    )
