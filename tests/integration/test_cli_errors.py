"""A command that breaks exits 2 with a coded error, never 1 (the "match found"
code) and never with a traceback: a locked database, an output path that cannot
be written, an index that cannot be saved, a bug."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import blindmatch
from blindmatch.cli.main import main
from tests.conftest import run_cli

CSV = "id,pdq\n1,{}\n".format("a" * 64)


def _entry_point(*args: object) -> subprocess.CompletedProcess[str]:
    """``blindmatch ARGS`` in a process of its own, as a shell or a supervisor runs it."""
    src = str(Path(blindmatch.__file__).parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    code = "import sys; from blindmatch.cli.main import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_export_to_a_missing_folder_or_to_a_folder_is_a_coded_error(home, tmp_path) -> None:
    (tmp_path / "l.csv").write_text(CSV)
    assert run_cli("lists", "import", "hl", tmp_path / "l.csv").code == 0
    res = run_cli("lists", "export", "hl", "-o", tmp_path / "no-such-folder" / "out.csv")
    assert res.code == 2 and "[not_found]" in res.err and "no-such-folder" in res.err, res.err
    assert not (tmp_path / "no-such-folder").exists()
    res = run_cli("lists", "export", "hl", "-o", tmp_path)
    assert res.code == 2 and "[not_a_file]" in res.err and "folder" in res.err, res.err
    # and through the installed entry point: exit 2, one line, no traceback
    proc = _entry_point("lists", "export", "hl", "-o", tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("blindmatch: error [not_a_file]"), proc.stderr
    # the good path still writes
    assert run_cli("lists", "export", "hl", "-o", tmp_path / "out.csv").code == 0
    assert "a" * 64 in (tmp_path / "out.csv").read_text()


def test_a_locked_database_is_database_busy_with_exit_2(home, tmp_path, short_busy_wait) -> None:
    (tmp_path / "l.csv").write_text(CSV)
    assert run_cli("lists", "create", "hl").code == 0  # creates the database
    holder = sqlite3.connect(home / "blindmatch.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        res = run_cli("lists", "import", "hl", tmp_path / "l.csv")
        assert res.code == 2, res.err
        assert "[database_busy]" in res.err and "database is locked" in res.err, res.err
        res = run_cli("lists", "import", "hl", tmp_path / "l.csv", "--json")
        assert res.code == 2
        assert res.json_lines[0]["error"]["code"] == "database_busy"
    finally:
        holder.rollback()
        holder.close()
    res = run_cli("lists", "import", "hl", tmp_path / "l.csv", "--json")  # the lock is gone
    assert res.code == 0 and res.json_lines[0]["added"] == 1


def test_scan_goes_on_when_the_index_cannot_be_saved(home, photo_files) -> None:
    listed = photo_files([3], "listed")
    assert run_cli("lists", "add", "hl", *listed, "--no-keypoints").code == 0
    index = home / "index"
    if index.is_dir():
        for f in index.iterdir():
            f.unlink()
        index.rmdir()
    index.write_text("a file where the index folder should be")
    res = run_cli("scan", "--json", "--workers", 1, *listed, *listed)
    assert res.code == 1, res.err  # the match, as if the save had worked
    for x in res.json_lines:
        assert "pdq" in {m["hash_type"] for m in x["matches"] if m["list"] == "hl"}
    warnings = [line for line in res.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "cannot save the index" in warnings[0], res.err


def test_a_bug_is_internal_error_exit_2_and_debug_shows_the_traceback(
    home, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "l.csv").write_text(CSV)
    assert run_cli("lists", "import", "hl", tmp_path / "l.csv").code == 0

    def broken(*_a: object, **_k: object) -> bytes:
        raise RuntimeError("a bug in the writer")

    monkeypatch.setattr("blindmatch.cli.main.dump_list", broken)
    res = run_cli("lists", "export", "hl")
    assert res.code == 2
    assert "[internal_error]" in res.err and "a bug in the writer" in res.err, res.err

    monkeypatch.setenv("BLINDMATCH_DEBUG", "1")
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert main(["lists", "export", "hl"]) == 2
    assert "[internal_error]" in err.getvalue() and "Traceback" in err.getvalue()
