"""The test homeserver harness: starts on 127.0.0.1, stops completely."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

pytest.importorskip("synapse", reason="the matrix extra (matrix-synapse) is not installed")

from blindmatch.errors import InternalError  # noqa: E402
from blindmatch.integrations.matrix.homeserver import Homeserver  # noqa: E402


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_plain_homeserver_starts_registers_and_stops(tmp_path: Path) -> None:
    hs = Homeserver(tmp_path / "hs")
    with hs:
        assert hs.url.startswith("http://127.0.0.1:")
        cfg = hs.config()
        assert cfg["listeners"][0]["bind_addresses"] == ["127.0.0.1"]
        assert cfg["listeners"][0]["resources"] == [{"names": ["client"], "compress": False}]
        assert cfg["federation_domain_whitelist"] == [] and cfg["trusted_key_servers"] == []
        assert "modules" not in cfg
        u = hs.register_user("someone", secrets.token_hex(8))
        who = hs.http.request("GET", "/_matrix/client/v3/account/whoami", token=u.access_token)
        assert who.json()["user_id"] == u.user_id == "@someone:localhost"
        assert hs.http.request("GET", "/_blindmatch/v1/info").status == 404  # no module
        pid = hs.pid
        assert pid is not None and alive(pid) and os.getpgid(pid) == pid
    assert not hs.running
    assert not alive(pid)  # the whole process group is gone
    hs.stop()  # stopping twice is harmless


def test_a_homeserver_that_cannot_start_says_why(tmp_path: Path) -> None:
    hs = Homeserver(tmp_path / "hs", module_config={"table_dir": str(tmp_path / "nowhere")})
    with pytest.raises(InternalError) as e:
        hs.start()
    assert "blindmatch" in e.value.message or "table" in e.value.message
    assert not hs.running
