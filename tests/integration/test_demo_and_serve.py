"""The README's main job, and the real server process on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

from blindmatch.config import DEV_ADMIN_KEY


def test_demo_runs_and_reports_each_file(cli, home: Path) -> None:
    res = cli("demo", "scan", "--json")
    assert res.code == 0, res.out
    lines = res.json_lines
    matched = {Path(x["path"]).name for x in lines if x.get("matches")}
    failed = {Path(x["path"]).name for x in lines if "error" in x}
    assert matched == {
        "resent-cropped-tilted.jpg",
        "resent-exact-copy.jpg",
        "resent-greyscale.webp",
        "resent-half-size.png",
        "resent-mirrored.jpg",
        "resent-recompressed.jpg",
    }
    by = {Path(x["path"]).name: x["matches"][0] for x in lines if x.get("matches")}
    assert by["resent-cropped-tilted.jpg"]["hash_type"] == "keypoints"
    assert by["resent-mirrored.jpg"]["variant"] == "flipx"
    assert failed == {"broken.jpg"}
    assert cli("demo", "scan").code == 0  # runs again on the same home


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_listens_on_loopback_and_answers(home: Path, tmp_path: Path) -> None:
    port = _free_port()
    env = dict(os.environ, BLINDMATCH_HOME=str(home), BLINDMATCH_ENV="dev")
    proc = subprocess.Popen(
        [sys.executable, "-m", "blindmatch.cli.main", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(base + "/health", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert r.json()["status"] == "ok"
        r = httpx.get(base + "/v1/lists", headers={"X-API-Key": DEV_ADMIN_KEY})
        assert r.status_code == 200 and r.json() == {"lists": []}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_prod_serve_refuses_default_secret(home: Path) -> None:
    env = dict(os.environ, BLINDMATCH_HOME=str(home), BLINDMATCH_ENV="prod")
    env.pop("BLINDMATCH_ADMIN_KEY", None)
    res = subprocess.run(
        [sys.executable, "-m", "blindmatch.cli.main", "serve", "--port", str(_free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert "bad_config" in res.stderr and "BLINDMATCH_ADMIN_KEY" in res.stderr
