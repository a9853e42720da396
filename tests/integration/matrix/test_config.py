"""The module's config parsing and the event field's client-side builder (no homeserver)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("synapse", reason="the matrix extra (matrix-synapse) is not installed")

from blindmatch.errors import ConfigError, EventRejected  # noqa: E402
from blindmatch.integrations.matrix.events import (  # noqa: E402
    parse_voucher_field,
    voucher_field,
)
from blindmatch.integrations.matrix.module import parse_config  # noqa: E402


def test_config_defaults_and_paths(tmp_path: Path) -> None:
    c = parse_config({"table_dir": str(tmp_path), "database_url": "sqlite://"})
    assert c.table == tmp_path / "table.bin" and c.server_key == tmp_path / "server.key"
    assert c.require_voucher and c.quarantine_unbound and c.bind_window_seconds == 600
    c = parse_config({"table_dir": "/t", "trust": "/pinned/trust.json", "policy": "threshold"})
    assert c.trust == Path("/pinned/trust.json") and c.policy == "threshold"


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"table_dir": "/t", "polcy": "block"},
        {"table_dir": "/t", "policy": "warn"},
        {"table_dir": "/t", "require_voucher": "yes"},
        {"table_dir": "/t", "bind_window_seconds": 0},
        {"table_dir": "/t", "bind_window_seconds": True},
        {"table_dir": "/t", "database_url": ""},
        {"table_dir": "/t", "appeal": 3},
        {"table": "/t/table.bin"},
    ],
)
def test_bad_config_is_a_config_error(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        parse_config(bad)


def test_the_field_round_trips() -> None:
    table_id = bytes(range(16))
    voucher = b"BMVC\x01\x00\x00\x03" + table_id + bytes(range(16)) + b"x" * 60
    field = voucher_field([(voucher, "mxc://hs.example/abcDEF_-1", b"\x01" * 32)])
    [a] = parse_voucher_field(
        {"org.blindmatch.voucher": field},
        server_name="hs.example",
        tables={table_id: len(voucher)},
    ) or [None]
    assert a is not None
    assert (a.voucher, a.mxc, a.blob_sha256) == (voucher, field["blob"], "01" * 32)  # type: ignore[index]
    assert a.voucher_id == bytes(range(16))
    assert parse_voucher_field({}, server_name="x", tables={}) is None
    with pytest.raises(EventRejected) as e:
        parse_voucher_field({"org.blindmatch.voucher": field}, server_name="other.example",
                            tables={table_id: len(voucher)})  # fmt: skip
    assert e.value.reason == "blob_unknown"
    with pytest.raises(ValueError):
        voucher_field([])
