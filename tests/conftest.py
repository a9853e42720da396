"""Shared fixtures. Every image here is benign: the PDQ reference photos or
synthetic abstract pictures standing in for listed images."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from blindmatch.demo.synthetic import synthetic_photo

VECTORS = Path(__file__).parent / "vectors"
PDQ_REF = VECTORS / "pdq-reference"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh BLINDMATCH_HOME (SQLite database and index) for one test."""
    h = tmp_path / "home"
    monkeypatch.setenv("BLINDMATCH_HOME", str(h))
    monkeypatch.delenv("BLINDMATCH_DATABASE_URL", raising=False)
    monkeypatch.setenv("BLINDMATCH_ENV", "dev")
    return h


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    @property
    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


def run_cli(*args: object) -> CliResult:
    """Run ``blindmatch ARGS...`` in-process and capture its output; a
    traceback on stderr fails the test whatever the exit code."""
    from blindmatch.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = main([str(a) for a in args])
    finally:
        sys.stdout, sys.stderr = saved
    res = CliResult(code, out.getvalue(), err.getvalue())
    assert "Traceback" not in res.err, res.err
    return res


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    """``run_cli`` as a fixture."""
    return run_cli


@pytest.fixture
def photo_files(tmp_path: Path) -> Callable[..., list[Path]]:
    """Write synthetic benign photos as JPEG files; returns their paths."""

    def make(seeds: list[int], folder: str = "photos", size=(640, 480)) -> list[Path]:
        d = tmp_path / folder
        d.mkdir(parents=True, exist_ok=True)
        paths = []
        for s in seeds:
            p = d / f"photo-{s}.jpg"
            synthetic_photo(s, size).save(p, quality=92)
            paths.append(p)
        return paths

    return make


@pytest.fixture
def short_busy_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime's SQLite connections (the CLI's, the service's) wait 0.2 s for a lock
    instead of the store's default, so a held lock fails the command quickly."""
    import blindmatch.runtime as runtime

    real = runtime.open_store

    def quick(url: str) -> Any:
        store = real(url)

        @event.listens_for(store.engine, "connect")
        def _short(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA busy_timeout=200")

        store.engine.dispose()  # connections opened from here on get the short wait
        return store

    monkeypatch.setattr(runtime, "open_store", quick)
