"""Killing `scan`, `hash` or `lists add` with SIGKILL takes its pool workers with it:
they hold its stdout, and a supervisor reading that pipe to EOF must not hang."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import blindmatch
from blindmatch.demo.synthetic import synthetic_photo

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

BOUND = 20.0  # seconds: far beyond what dying takes; only a guard against a hang


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")  # a zombie has let go of its files


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _workers(parent: int) -> list[int]:
    """Live children of ``parent`` running its own command line (forked pool workers)."""
    mine = _cmdline(parent)
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st and st[1] == parent and _alive(int(entry)) and _cmdline(int(entry)) == mine:
                out.append(int(entry))
    return out


@pytest.mark.parametrize(
    "command",
    [("scan", "--no-progress"), ("hash", "--no-progress"), ("lists", "add", "hl")],
    ids=["scan", "hash", "lists-add"],
)
def test_workers_die_with_their_parent(home, tmp_path, command: tuple[str, ...]) -> None:
    folder = tmp_path / "pictures"
    folder.mkdir()
    synthetic_photo(1, (640, 480)).save(folder / "p0.jpg", quality=90)
    for i in range(1, 400):  # enough work that the run is still going when it is killed
        shutil.copyfile(folder / "p0.jpg", folder / f"p{i}.jpg")
    src = str(Path(blindmatch.__file__).parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    code = "import sys; from blindmatch.cli.main import main; sys.exit(main())"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *command, "--workers", "2", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
            workers = _workers(proc.pid)
            time.sleep(0.05)
        assert len(workers) == 2 and proc.poll() is None, "the workers were never seen running"
        proc.kill()  # SIGKILL: the parent runs no cleanup at all
        proc.wait(timeout=BOUND)

        done = threading.Event()
        threading.Thread(target=lambda: (proc.stdout.read(), done.set()), daemon=True).start()
        assert done.wait(BOUND), "stdout never reached EOF: something still holds it"
        deadline = time.monotonic() + BOUND
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p for p in workers if _alive(p)] == [], "workers outlived their parent"
    finally:
        for p in workers:  # never leave a process behind, whatever happened
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
