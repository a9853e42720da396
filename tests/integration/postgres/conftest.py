"""A throwaway PostgreSQL server for the store's tests.

One server per test session: ``initdb`` into a temporary folder, listening only on a
unix socket in that folder (no TCP port at all), started with ``pg_ctl`` and always
stopped (``pg_ctl stop -m immediate``) and removed afterwards. Each test gets a fresh
database on it. Without PostgreSQL's server binaries the tests are skipped, except in CI
(``CI=true``), where they fail: CI must run them (``scripts/setup --dev`` installs them).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def _bin_dir() -> Path | None:
    found = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        if Path(d, "initdb").exists() and Path(d, "pg_ctl").exists():
            try:
                found.append((int(Path(d).parent.name), Path(d)))
            except ValueError:
                continue
    if found:
        return max(found)[1]
    initdb = shutil.which("initdb")  # e.g. a distribution that puts them on PATH
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


@dataclass
class PgServer:
    bin_dir: Path
    socket_dir: Path
    run_as: list[str]

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@/{dbname}?host={self.socket_dir}"

    def psql_run(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host=str(self.socket_dir), user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql)  # type: ignore[arg-type]  # a test helper: trusted SQL


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        msg = "PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install postgresql"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " (CI must run the PostgreSQL tests)")
        pytest.skip(msg)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        msg = "the psycopg driver is not installed (pip install -e '.[dev]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    # PostgreSQL refuses to run as root: run it as the postgres user then, which must own
    # the folder (a short path: a unix socket path is at most 107 bytes).
    run_as: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="bm-pg-"))
    if os.geteuid() == 0:
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres", "postgres")
    data, sock = root / "data", root / "sock"
    server = PgServer(bin_dir, sock, run_as)
    started = False
    try:
        _run([*run_as, "mkdir", str(sock)])
        _run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
              "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"])  # fmt: skip
        opts = (f"-c listen_addresses='' -c unix_socket_directories={sock} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off")  # fmt: skip
        started = True  # from here on, stop it whatever happens
        _run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"),
              "-w", "-t", "30", "-o", opts, "start"])  # fmt: skip
        yield server
    finally:
        if started:
            stop = [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
            subprocess.run(stop, capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer, request: pytest.FixtureRequest) -> str:
    """A SQLAlchemy URL to a new, empty database on the throwaway server."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    pg_server.psql_run(f'DROP DATABASE IF EXISTS "{name}"')
    pg_server.psql_run(f'CREATE DATABASE "{name}"')
    return pg_server.url(name)
