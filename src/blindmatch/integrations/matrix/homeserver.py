"""Run a real Synapse for tests and demos: 127.0.0.1 only, SQLite, no federation.

::

    from blindmatch.integrations.matrix.homeserver import Homeserver

    with Homeserver(tmp_dir, module_config={...}) as hs:   # starts, waits until ready
        alice = hs.register_user("alice", "secret-password")
        status, body = hs.http.request("GET", "/_matrix/client/v3/account/whoami",
                                       token=alice.access_token)
    # stopped: the whole process group is gone

The homeserver listens on a free port of 127.0.0.1 with the client API only
(no federation listener, no key servers, no federation whitelist entries), keeps
its database (SQLite) and media in ``root``, and loads the blindmatch module
from ``modules:`` when ``module_config`` is given. Users are registered through
the shared-secret admin API (what ``register_new_matrix_user`` does), without a
second process.

The server runs in its own process group. :meth:`Homeserver.stop` sends it
SIGTERM, then SIGKILL after a grace period; the same happens at interpreter
exit, and on Linux the kernel sends SIGTERM if the process that started it
dies (``PR_SET_PDEATHSIG``), so nothing is left running.

Only the standard library is used for HTTP, so the harness has no client
dependency of its own.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from blindmatch.errors import ConfigError, InternalError

if TYPE_CHECKING:
    from blindmatch.protocol import Floors

MODULE_CLASS = "blindmatch.integrations.matrix.module.BlindmatchModule"
_LIVE: set[Homeserver] = set()


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class MatrixHttp:
    """A minimal blocking HTTP client for a homeserver (JSON or raw bytes)."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        hdrs = dict(headers or {})
        body = data
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base_url + path, data=body, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return Response(r.status, dict(r.headers.items()), r.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, dict(e.headers.items()), e.read())


@dataclass(frozen=True)
class User:
    user_id: str
    access_token: str
    device_id: str


def _pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: die with the parent
    except OSError:
        pass


class Homeserver:
    """A Synapse process in ``root`` (created if missing) on 127.0.0.1."""

    def __init__(
        self,
        root: Path | str,
        *,
        module_config: Mapping[str, Any] | None = None,
        server_name: str = "localhost",
        port: int | None = None,
        extra_config: Mapping[str, Any] | None = None,
        start_timeout: float = 120.0,
        server_notices: bool = False,
    ) -> None:
        self.root = Path(root).resolve()
        self.server_name = server_name
        self.port = port or free_port()
        self.module_config = dict(module_config) if module_config is not None else None
        self.extra_config = dict(extra_config or {})
        #: ``server_notices`` in homeserver.yaml (enforcement's statements of reasons), with
        #: ``auto_join``: a suspended user cannot accept the notice room's invitation.
        self.server_notices = server_notices
        self.start_timeout = start_timeout
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = MatrixHttp(self.url)
        self.config_path = self.root / "homeserver.yaml"
        self.log_path = self.root / "homeserver.log"
        self._shared_secret = secrets.token_hex(32)
        self._proc: subprocess.Popen[bytes] | None = None

    # -- configuration ------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The homeserver configuration (written as JSON, which YAML reads)."""
        r = self.root
        high = {"per_second": 1000, "burst_count": 1000}
        cfg: dict[str, Any] = {
            "server_name": self.server_name,
            "public_baseurl": self.url + "/",
            "pid_file": str(r / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(r / "homeserver.db")}},
            "media_store_path": str(r / "media"),
            "signing_key_path": str(r / "signing.key"),
            "log_config": str(r / "log.config.yaml"),
            "registration_shared_secret": self._shared_secret,
            "macaroon_secret_key": secrets.token_hex(32),
            "form_secret": secrets.token_hex(32),
            "report_stats": False,
            "enable_registration": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "allow_public_rooms_over_federation": False,
            "url_preview_enabled": False,
            "presence": {"enabled": False},
            "enable_metrics": False,
            "max_upload_size": "50M",
            "rc_message": high,
            "rc_registration": high,
            "rc_joins": {"local": high, "remote": high},
            "rc_invites": {"per_room": high, "per_user": high, "per_issuer": high},
            "rc_login": {"address": high, "account": high, "failed_attempts": high},
            "rc_media_create": high,
        }
        if self.server_notices:
            cfg["server_notices"] = {
                "system_mxid_localpart": "notices",
                "system_mxid_display_name": "Server notices",
                "room_name": "Server notices",
                "auto_join": True,
            }
        if self.module_config is not None:
            cfg["modules"] = [{"module": MODULE_CLASS, "config": self.module_config}]
        cfg.update(self.extra_config)
        return cfg

    def _write_files(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "media").mkdir(exist_ok=True)
        key = self.root / "signing.key"
        if not key.exists():
            from signedjson.key import generate_signing_key, write_signing_keys

            with key.open("w") as f:
                write_signing_keys(f, [generate_signing_key("a_bm")])
        log_cfg = {
            "version": 1,
            "formatters": {"precise": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "formatter": "precise",
                    "filename": str(self.log_path),
                }
            },
            "loggers": {"synapse.storage.SQL": {"level": "WARNING"}},
            "root": {"level": "INFO", "handlers": ["file"]},
            "disable_existing_loggers": False,
        }
        (self.root / "log.config.yaml").write_text(json.dumps(log_cfg, indent=1) + "\n")
        self.config_path.write_text(json.dumps(self.config(), indent=1) + "\n")

    # -- lifecycle ------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The server's process id (its process group id too) while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Homeserver:
        if self.running:
            return self
        self._write_files()
        out = (self.root / "stdout.log").open("ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() kills all of it
            preexec_fn=_pdeathsig if sys.platform.startswith("linux") else None,
        )
        out.close()
        _LIVE.add(self)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.stop()
                raise InternalError(f"homeserver exited at start:\n{self.log_tail()}")
            try:
                if self.http.request("GET", "/health").body == b"OK":
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise InternalError(
            f"homeserver not ready after {self.start_timeout:.0f} s:\n{self.log_tail()}"
        )

    def stop(self, grace: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        _LIVE.discard(self)
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything the server started, in its group

    def __enter__(self) -> Homeserver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        text = ""
        for p in (self.root / "stdout.log", self.log_path):
            if p.exists():
                text += "\n".join(p.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text

    # -- users ----------------------------------------------------------------
    def register_user(self, name: str, password: str, *, admin: bool = False) -> User:
        """Register ``@name:server_name`` with the shared secret; returns its login."""
        nonce = self.http.request("GET", "/_synapse/admin/v1/register").json()["nonce"]
        mac = hmac.new(self._shared_secret.encode(), digestmod=hashlib.sha1)
        for part in (nonce, name, password):
            mac.update(part.encode() + b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        body = {
            "nonce": nonce,
            "username": name,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        r = self.http.request("POST", "/_synapse/admin/v1/register", json_body=body)
        if r.status != 200:
            raise ConfigError(f"registering {name!r} failed: {r.status} {r.body[:200]!r}")
        d = r.json()
        return User(d["user_id"], d["access_token"], d["device_id"])


@atexit.register
def _stop_all() -> None:
    for hs in list(_LIVE):
        hs.stop(grace=5.0)


ENCRYPTED_ROOM = [{"type": "m.room.encryption", "state_key": "",
                   "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]  # fmt: skip


async def encrypted_room(owner: Any, guest: Any) -> str:
    """A new end-to-end-encrypted room: ``owner`` (a matrix-nio ``AsyncClient``) creates it
    and invites ``guest``, who joins; both then sync, so each knows the other's devices."""
    room = await owner.room_create(invite=[guest.user_id], initial_state=ENCRYPTED_ROOM)
    await guest.sync(timeout=0)
    await guest.join(room.room_id)
    await owner.sync(timeout=0)
    await guest.sync(timeout=0)
    return str(room.room_id)


# What ``build_table_dir`` lists per entry id: a PDQ, (PDQ, companion hashes), or
# (PDQ, companion hashes, hot companion hashes).
Listed = (
    bytes | tuple[bytes, tuple[bytes, ...]] | tuple[bytes, tuple[bytes, ...], tuple[bytes, ...]]
)


def build_table_dir(
    out: Path | str,
    listed: Mapping[str, Listed],
    *,
    hotlines: tuple[tuple[str, str], ...] = (("demo-hotline-a", "GB"), ("demo-hotline-b", "US")),
    policy: str = "block",
    threshold: int = 30,
    seed: bytes | None = None,
    floors: Floors | None = None,
    distance_radius: int | None = None,
    distance_slots: int = 1,
) -> Path:
    """A signed table directory (``table.bin``, ``manifest.json``, ``trust.json``,
    ``server.key``) whose every hotline lists every hash in ``listed`` (entry id → PDQ,
    → ``(PDQ, companion hashes)`` for a list built from the pictures, or → ``(PDQ,
    companion hashes, hot companion hashes)`` for a hot entry), signed with fresh
    throwaway keys: for tests and demos, never production. A table
    below the default floors (``threshold`` < 10; a threshold table has no synthetic
    vouchers here) needs ``floors`` lowered for it, written into its ``trust.json``.
    ``distance_radius``: a distance-checked table (k = 40 keys, the second check at that
    radius with ``distance_slots`` slots; block policy; docs/protocol.md §11), with its
    ``records.bin``."""
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from blindmatch.private import write_table_dir
    from blindmatch.protocol import (
        HotlineList,
        Policy,
        VariantProbeLSH,
        format_issued,
        prepare_table,
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    def entry(k: str, v: Listed) -> Any:
        if isinstance(v, bytes):
            return (k, v)
        if len(v) == 2:
            return (k, v[0], tuple(v[1]))
        return (k, v[0], tuple(v[1]), tuple(v[2]))

    entries = tuple(entry(k, v) for k, v in listed.items())
    lists = [HotlineList(h, j, f"{h}-list", "1", entries) for h, j in hotlines]
    key_bits = {} if distance_radius is None else {"k": 40}
    prep = prepare_table(
        lists,
        scheme=VariantProbeLSH(seed=seed or secrets.token_bytes(32), **key_bits),
        policy=Policy(policy),
        threshold=threshold,
        issued=format_issued(datetime.now(UTC)),
        distance_radius=distance_radius,
        distance_slots=distance_slots,
    )
    keys = {h: (Ed25519PrivateKey.generate(), j) for h, j in hotlines}
    write_table_dir(out, prep, Ed25519PrivateKey.generate(), keys, len(hotlines), floors)
    return out


__all__ = [
    "MODULE_CLASS",
    "Homeserver",
    "MatrixHttp",
    "Response",
    "User",
    "build_table_dir",
    "free_port",
]
