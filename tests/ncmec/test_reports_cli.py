"""``blindmatch reports list/show/send/retract`` against the conformance server."""

from __future__ import annotations

from pathlib import Path

import pytest

from blindmatch.config import load_settings
from blindmatch.ncmec import outbox as outbox_mod
from blindmatch.ncmec.conformance import ConformanceServer
from blindmatch.ncmec.outbox import Outbox
from blindmatch.store.db import open_store
from tests.ncmec.helpers import make_case, make_config


@pytest.fixture
def env(home: Path, ncmec: ConformanceServer, monkeypatch: pytest.MonkeyPatch) -> ConformanceServer:
    pw = home.parent / "ncmec.pw"
    pw.write_text("secret\n")
    monkeypatch.setenv("BLINDMATCH_NCMEC_URL", ncmec.base_url)
    monkeypatch.setenv("BLINDMATCH_NCMEC_USER", "esp")
    monkeypatch.setenv("BLINDMATCH_NCMEC_PASSWORD_FILE", str(pw))
    monkeypatch.setenv("BLINDMATCH_NCMEC_REPORTER_EMAIL", "trust@example.org")
    return ncmec


def _enqueue(*cases: object) -> list[str]:
    box = Outbox(open_store(load_settings().database_url).engine, make_config())
    return [box.enqueue(c) for c in cases]  # type: ignore[arg-type]


def test_list_show_send(env: ConformanceServer, cli) -> None:  # type: ignore[no-untyped-def]
    [rid] = _enqueue(make_case(files=1))
    res = cli("reports", "list", "--json")
    assert res.code == 0
    [row] = res.json_lines
    assert (row["id"], row["state"], row["case_id"]) == (rid, "pending", "BM-ABCD-EFGH-JKLM")
    res = cli("reports", "send")
    assert res.code == 0, res.err
    assert "finish" in res.out and "0 failed" in res.err
    res = cli("reports", "show", rid, "--json")
    [shown] = res.json_lines
    assert shown["state"] == "finished" and shown["ncmec_report_id"] in env.reports
    assert shown["files"][0]["file_id"] and shown["files"][0]["details_at"]
    text = cli("reports", "show", rid)
    assert rid in text.out and "fileId=" in text.out
    assert cli("reports", "list", "--state", "pending", "--json").json_lines == []


def test_send_exits_2_naming_a_failed_report(env: ConformanceServer, cli) -> None:  # type: ignore[no-untyped-def]
    [rid] = _enqueue(make_case(files=1))
    env.reject_next("submit", 4100, "Validation failed")
    res = cli("reports", "send")
    assert res.code == 2
    assert rid in res.err and "4100" in res.err
    assert cli("reports", "show", rid, "--json").json_lines[0]["state"] == "failed"


def test_retract_and_unknown_id(env: ConformanceServer, cli) -> None:  # type: ignore[no-untyped-def]
    [rid] = _enqueue(make_case(files=1))
    res = cli("reports", "retract", rid)
    assert res.code == 0 and "retracted" in res.out
    again = cli("reports", "retract", rid, "--json")
    assert again.code == 2 and again.json_lines[0]["error"]["code"] == "report_state"
    missing = cli("reports", "show", "NR-NOPE")
    assert missing.code == 2 and "report_not_found" in missing.err


def test_help_shows_defaults(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit):
        from blindmatch.cli.main import main

        main(["reports", "list", "--help"])
    out = capsys.readouterr().out
    assert "(default: None)" in out and "--state" in out


def test_states_match(env: ConformanceServer) -> None:
    from blindmatch.cli.reports_cmds import STATES

    assert STATES == outbox_mod.STATES


def test_purge_erases_evidence_past_retention_once_the_report_is_done(  # type: ignore[no-untyped-def]
    env: ConformanceServer, cli
) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from blindmatch.store.models import EvidenceRecord

    _enqueue(make_case(files=1))
    engine = open_store(load_settings().database_url).engine

    def expire() -> None:  # as if the retention period had passed
        with engine.begin() as c:
            c.execute(update(EvidenceRecord).values(expires_at=datetime.now(UTC) - timedelta(1)))

    expire()
    kept = cli("reports", "purge", "--json")  # the report is still in the outbox: kept
    assert kept.code == 0 and kept.json_lines == [{"purged": []}]
    assert cli("reports", "send").code == 0
    expire()  # finishing extended it; let that pass too
    gone = cli("reports", "purge", "--json").json_lines[0]["purged"]
    assert len(gone) == 1
    assert cli("reports", "purge", "--json").json_lines == [{"purged": []}]
