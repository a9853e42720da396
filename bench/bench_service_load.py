"""Load on ``blindmatch serve`` (issue 11): throughput, p50/p99 and errors, measured with locust.

Everything runs on 127.0.0.1 and stops by itself. A scratch ``$BLINDMATCH_HOME`` gets a list of
``--entries`` random (benign) PDQ hashes; the server is started once per ``--workers`` value
(the first value is the baseline, measured in the same run); locust drives ``--users`` clients
back to back against

* ``/v1/match/hash`` (a random PDQ each),
* ``/v1/match/upload`` (benign generated 640×480 JPEGs),
* and, with ``--import-rows N``, ``/v1/match/hash`` from ``--import-users`` clients plus one writer
  adding an entry a second to another list while ``blindmatch lists import`` loads N rows into
  the big list (the review saw p99 2,971 ms and one ``database is locked``).

    .venv/bin/python bench/bench_service_load.py                    # ~4 min
    .venv/bin/python bench/bench_service_load.py --workers 1,2 --seconds 30 --import-rows 500000

Prints one line per (workers, scenario): requests/s, p50, p99, max, failures.
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LOCUSTFILE = ROOT / "bench" / "locustfile_service.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([str(BIN / "blindmatch"), *args], env=env, check=True,
                         capture_output=True, text=True)  # fmt: skip
    return out.stdout


def write_rows(path: Path, n: int, prefix: str) -> None:
    rng = np.random.default_rng(abs(hash(prefix)) % 2**32)
    digests = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    with path.open("w") as f:
        f.write("id,pdq\n")
        for i, row in enumerate(digests):
            f.write(f"{prefix}{i},{row.tobytes().hex()}\n")


def make_images(folder: Path, n: int = 16) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(n):
        y, x = np.mgrid[0:480, 0:640]
        base = np.stack([(x * (i + 1)) % 256, (y * (i + 2)) % 256, (x + y) % 256], axis=-1)
        noise = rng.integers(0, 40, size=base.shape)
        Image.fromarray(((base + noise) % 256).astype(np.uint8)).save(folder / f"p{i}.jpg",
                                                                        quality=85)  # fmt: skip


def start_server(env: dict[str, str], port: int, workers: int) -> subprocess.Popen[bytes]:
    args = [str(BIN / "blindmatch"), "serve", "--port", str(port)]
    if workers > 1:
        args += ["--workers", str(workers)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited with {proc.returncode} (workers={workers})")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("serve did not come up within 120 s")


def run_locust(env: dict[str, str], port: int, users: int, seconds: int, classes: list[str],
               prefix: Path) -> list[dict[str, str]]:  # fmt: skip
    cmd = [str(BIN / "locust"), "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
           "-r", str(users), "-t", f"{seconds}s", "--host", f"http://127.0.0.1:{port}",
           "--csv", str(prefix), "--only-summary", "--stop-timeout", "10", *classes]  # fmt: skip
    subprocess.run(cmd, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=seconds + 120)  # fmt: skip
    with open(f"{prefix}_stats.csv") as f:
        return [r for r in csv.DictReader(f) if r["Name"] != "Aggregated"]


def show(workers: int, scenario: str, rows: list[dict[str, str]]) -> None:
    for r in rows:
        print(f"workers={workers} {scenario:18s} {r['Name']:26s} "
              f"{float(r['Requests/s']):7.1f} req/s  p50 {r['50%']:>5} ms  p99 {r['99%']:>6} ms  "
              f"max {float(r['Max Response Time']):7.0f} ms  "
              f"requests {r['Request Count']:>6}  failures {r['Failure Count']}",
              flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=200_000)
    ap.add_argument("--users", type=int, default=32)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--workers", default=f"1,{os.cpu_count() or 1}")
    ap.add_argument("--import-rows", type=int, default=200_000)
    ap.add_argument("--import-users", type=int, default=50)
    ap.add_argument(
        "--import-seconds", type=int, default=60, help="how long to load during the import"
    )
    args = ap.parse_args()
    workers_list = [int(w) for w in args.workers.split(",")]

    with tempfile.TemporaryDirectory(prefix="bm-load-") as tmp:
        home = Path(tmp)
        env = {**os.environ, "BLINDMATCH_HOME": str(home / "home"), "BLINDMATCH_ENV": "dev"}
        rows = home / "big.csv"
        write_rows(rows, args.entries, "e")
        t0 = time.perf_counter()
        cli(env, "lists", "import", "big", str(rows))
        took = time.perf_counter() - t0
        print(f"# {args.entries:,} entries imported in {took:.1f} s; {args.users} users, "
              f"{args.seconds} s per scenario; cpus {os.cpu_count()}")  # fmt: skip
        cli(env, "lists", "create", "writes")
        env["BM_KEY"] = cli(env, "keys", "create", f"r{secrets.token_hex(2)}").strip()
        env["BM_WRITE_KEY"] = cli(env, "keys", "create", f"w{secrets.token_hex(2)}",
                                  "--scope", "write").strip()  # fmt: skip
        make_images(home / "images")
        env["BM_IMAGES"] = str(home / "images")
        env["BM_LIST"] = "writes"
        more = home / "more.csv"
        if args.import_rows:
            write_rows(more, args.import_rows, "m")
        for workers in workers_list:
            port = free_port()
            server = start_server(env, port, workers)
            try:
                for scenario, classes in (("hash", ["HashUser"]), ("upload", ["UploadUser"])):
                    out = run_locust(env, port, args.users, args.seconds, classes,
                                     home / f"{scenario}-{workers}")  # fmt: skip
                    show(workers, scenario, out)
                if args.import_rows:
                    importer = subprocess.Popen(
                        [str(BIN / "blindmatch"), "lists", "import", "big", str(more)], env=env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                    )  # fmt: skip
                    t0 = time.perf_counter()
                    out = run_locust(env, port, args.import_users + 1, args.import_seconds,
                                     ["HashUser", "WriterUser"],
                                     home / f"import-{workers}")  # fmt: skip
                    _, err = importer.communicate(timeout=900)
                    took = time.perf_counter() - t0
                    show(workers, "during import", out)
                    print(f"workers={workers} import of {args.import_rows:,} rows: exit "
                          f"{importer.returncode} after {took:.1f} s"
                          + (f" ({err.decode().strip()[-200:]})" if importer.returncode else ""),
                          flush=True)  # fmt: skip
                    more_rows = home / f"more-{workers}.csv"  # next round imports fresh ids
                    write_rows(more_rows, args.import_rows, f"m{workers}-")
                    more = more_rows
            finally:
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()


if __name__ == "__main__":
    main()
