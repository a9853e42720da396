"""The Synapse module: serve the table, bind vouchers to uploads, open them at send time.

Load it from ``homeserver.yaml``::

    modules:
      - module: blindmatch.integrations.matrix.module.BlindmatchModule
        config:
          table_dir: /etc/blindmatch/table      # table.bin, manifest.json, trust.json, server.key
          database_url: sqlite:////var/lib/blindmatch/blindmatch.db

What it does (docs/matrix.md has the event format and the exact rules):

* serves ``/_blindmatch/v1/{table,manifest,trust,info}`` with ETags;
* ``POST /_blindmatch/v1/challenge``: under a distance-checked table (docs/protocol.md
  §11) the challenge for a voucher — a function of the voucher and the server's key, so
  the sender and later the recipient get the same bytes (:meth:`handle_challenge_request`);
* ``check_media_file_for_spam``: records the SHA-256, size and kind (opaque =
  encrypted-looking, or a plaintext image/video) of every local upload;
* ``check_event_for_spam``: for ``m.room.encrypted`` events of local users,
  parses ``org.blindmatch.voucher``, checks each blob (uploaded by the sender,
  hash, not quarantined, not bound elsewhere), refuses an event when the sender
  has uploaded opaque blobs in the last ``bind_window_seconds`` that the event
  does not bind (``require_voucher``). Block policy: opens the vouchers with the
  table's :class:`~blindmatch.protocol.ServerSession` (a distance-checked table's with
  the answer beside each voucher: ``finish_voucher``; state in SQL through
  :class:`~blindmatch.store.threshold.SqlThresholdStore`) and refuses a match, or a
  forged voucher whose pair opened, with ``M_FORBIDDEN``, a case id and an appeal
  note, quarantining the event's blobs. Threshold policy: opens nothing at send time
  (the answer must not depend on the outcome): binds the vouchers as ``pending`` and
  queues them in the same transaction;
* a background worker (every ``open_interval_seconds``, and kicked after an accepted
  threshold event without the send waiting for it) opens queued vouchers one account at a
  time and records threshold releases and forged vouchers as cases the sender never sees;
* stores the server's franking tag of every relayed franked event, and serves
  ``POST /_blindmatch/v1/report``: a member's report is verified against it and opens a
  ``report`` case;
* serves ``POST /_blindmatch/v1/appeal`` ``{"case_id", "text"}``: the user appeals one of
  their cases (:class:`blindmatch.review.appeals.Appeals`; docs/enforcement.md);
* reloads the table files when they change (the previous table's vouchers stay valid for
  a grace period);
* a background sweep quarantines opaque uploads left unbound past the window.

Every failure inside the module refuses the event (fail closed) and is logged;
blocking work (SQL, voucher opening) runs in Synapse's thread pool.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import os
import subprocess
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from synapse.api.errors import Codes
from synapse.http.servlet import parse_json_object_from_request
from synapse.module_api import NOT_SPAM, DirectServeJsonResource, ModuleApi
from twisted.web.resource import Resource
from twisted.web.server import Request

from blindmatch.errors import (
    AppealRefused,
    BlindmatchError,
    ConfigError,
    EventRejected,
    InvalidDistanceCheck,
    InvalidVoucher,
    ProtocolError,
)
from blindmatch.hashing.sniff import sniff
from blindmatch.integrations.matrix.events import (
    APPEAL_FIELD,
    CASE_FIELD,
    FIELD_VERSION,
    MAX_ATTACHMENTS,
    MESSAGE_FIELD,
    REASON_FIELD,
    VOUCHER_FIELD,
    Attachment,
    DeclaredFile,
    Reason,
    parse_challenge_request,
    parse_files_field,
    parse_franking_field,
    parse_voucher_field,
    rejected,
)
from blindmatch.integrations.matrix.state import (
    Binding,
    BindingConflict,
    FrankingRecord,
    KeptVoucher,
    MatrixState,
    Queued,
    Use,
    cutoff,
    new_case_id,
)
from blindmatch.protocol import (
    EncryptedFile,
    FrankingKeyring,
    MemoryTableHistory,
    OpenResult,
    Policy,
    Release,
    ServerSession,
    Table,
    TableHistory,
)
from blindmatch.protocol.challenge import answer_bytes, challenge_bytes, parse_answer
from blindmatch.protocol.hazmat.group import is_valid_point
from blindmatch.protocol.voucher import ParsedVoucher
from blindmatch.review.appeals import Appeals
from blindmatch.review.defences import Defences
from blindmatch.store.threshold import SqlThresholdStore

logger = logging.getLogger(__name__)

TABLE_PATH = "/_blindmatch/v1/table"
MANIFEST_PATH = "/_blindmatch/v1/manifest"
TRUST_PATH = "/_blindmatch/v1/trust"
INFO_PATH = "/_blindmatch/v1/info"
STATS_PATH = "/_blindmatch/v1/stats"
REPORT_PATH = "/_blindmatch/v1/report"
CHALLENGE_PATH = "/_blindmatch/v1/challenge"
APPEAL_PATH = "/_blindmatch/v1/appeal"
MAX_REPORT_CONTEXT = 20
MAX_REPORT_REASON = 2000
LOCK_STRIPES = 256
DEFAULT_APPEAL = (
    "If you think this is a mistake, appeal to this server's operators and quote the case id."
)
_CONFIG_KEYS = {
    "table_dir", "table", "manifest", "trust", "server_key", "database_url", "policy",
    "require_voucher", "bind_window_seconds", "quarantine_unbound", "sweep_interval_seconds",
    "appeal", "expose_stats", "reload_interval_seconds", "table_grace_seconds",
    "franking_keys", "require_franking", "max_reports_per_hour", "open_interval_seconds",
    "max_vouchers_per_hour", "records", "max_challenges_per_hour", "appeal_window_days",
    "max_appeals_per_hour", "negative_radius", "flood_accounts", "flood_window_seconds",
}  # fmt: skip
QUEUE_BATCH = 50  # queued vouchers read per thread hop of the worker


@dataclass(frozen=True)
class ModuleConfig:
    table: Path
    manifest: Path
    trust: Path
    server_key: Path
    database_url: str
    policy: str | None = None
    #: A distance-checked table's committed records (``records.bin``); absent: recomputed
    #: from the server key at load (~12 ms a record).
    records: Path | None = None
    require_voucher: bool = True
    bind_window_seconds: float = 600.0
    quarantine_unbound: bool = True
    sweep_interval_seconds: float = 60.0
    appeal: str = DEFAULT_APPEAL
    expose_stats: bool = False
    reload_interval_seconds: float = 60.0
    table_grace_seconds: float = 3600.0
    franking_keys: Path | None = None  # default: beside server_key
    require_franking: bool = False
    max_reports_per_hour: int = 30
    open_interval_seconds: float = 5.0  # 0: this process never opens queued vouchers
    max_vouchers_per_hour: int = 600  # threshold: vouchers one account may queue per hour
    max_challenges_per_hour: int = 3600  # challenges one account may ask for per hour
    appeal_window_days: int = 183  # appeals stay open this long (>= six months: DSA Art. 20)
    max_appeals_per_hour: int = 10  # appeals one account may file per hour
    # False-positive defences (blindmatch.review.defences): a match this close (bits) to a
    # hash review found benign does not block; an entry blocking more distinct accounts
    # than ``flood_accounts`` within ``flood_window_seconds`` stops blocking (a flood case).
    negative_radius: int = 10
    flood_accounts: int = 20
    flood_window_seconds: float = 3600.0


def parse_config(config: dict[str, Any]) -> ModuleConfig:
    """Check the module's ``config:`` block; raises :class:`~blindmatch.errors.ConfigError`."""
    if not isinstance(config, dict):
        raise ConfigError("blindmatch module config must be a mapping")
    unknown = sorted(set(config) - _CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"blindmatch module: unknown config key {unknown[0]!r}")
    base = config.get("table_dir")
    paths: dict[str, Path] = {}
    for key, name in (("table", "table.bin"), ("manifest", "manifest.json"),
                      ("trust", "trust.json"), ("server_key", "server.key"),
                      ("records", "records.bin")):  # fmt: skip
        value = config.get(key, None if base is None else str(Path(base) / name))
        if not isinstance(value, str) or not value:
            raise ConfigError(f"blindmatch module: set table_dir, or {key} (a path)")
        paths[key] = Path(value)
    url = config.get("database_url")
    if url is None:
        from blindmatch.config import load_settings

        url = load_settings().database_url
    if not isinstance(url, str) or not url:
        raise ConfigError("blindmatch module: database_url must be an SQLAlchemy URL")
    policy = config.get("policy")
    if policy not in (None, "block", "threshold"):
        raise ConfigError("blindmatch module: policy must be 'block' or 'threshold'")
    flags: dict[str, Any] = {}
    for key in ("require_voucher", "quarantine_unbound", "expose_stats", "require_franking"):
        v = config.get(key, getattr(ModuleConfig, key))
        if not isinstance(v, bool):
            raise ConfigError(f"blindmatch module: {key} must be true or false")
        flags[key] = v
    numbers: dict[str, Any] = {}
    positive = ("bind_window_seconds", "sweep_interval_seconds", "flood_window_seconds")
    for key in (*positive, "reload_interval_seconds", "table_grace_seconds",
                "open_interval_seconds"):  # fmt: skip
        v = config.get(key, getattr(ModuleConfig, key))
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise ConfigError(f"blindmatch module: {key} must be a number of seconds")
        if v == 0 and key in positive:
            raise ConfigError(f"blindmatch module: {key} must be positive")
        numbers[key] = float(v)
    limits: dict[str, Any] = {}
    for key in ("max_reports_per_hour", "max_vouchers_per_hour", "max_challenges_per_hour",
                "appeal_window_days", "max_appeals_per_hour", "flood_accounts"):  # fmt: skip
        v = config.get(key, getattr(ModuleConfig, key))
        if type(v) is not int or v < 1:
            raise ConfigError(f"blindmatch module: {key} must be a positive integer")
        limits[key] = v
    radius = config.get("negative_radius", ModuleConfig.negative_radius)
    if type(radius) is not int or not 0 <= radius <= 32:
        raise ConfigError("blindmatch module: negative_radius must be an integer from 0 to 32")
    limits["negative_radius"] = radius
    if limits["appeal_window_days"] < 183:
        raise ConfigError("blindmatch module: appeal_window_days must be at least 183 (six months)")
    franking_keys = config.get("franking_keys", str(paths["server_key"].parent / "franking.keys"))
    if not isinstance(franking_keys, str) or not franking_keys:
        raise ConfigError("blindmatch module: franking_keys must be a path")
    appeal = config.get("appeal", DEFAULT_APPEAL)
    if not isinstance(appeal, str):
        raise ConfigError("blindmatch module: appeal must be a string")
    return ModuleConfig(
        table=paths["table"],
        manifest=paths["manifest"],
        trust=paths["trust"],
        server_key=paths["server_key"],
        records=paths["records"],
        database_url=url,
        policy=policy,
        appeal=appeal,
        franking_keys=Path(franking_keys),
        **limits,
        **flags,
        **numbers,
    )


class _Static(Resource):
    """One immutable document with a strong ETag; ``If-None-Match`` gets a 304."""

    isLeaf = True

    def __init__(self, body: bytes, content_type: str) -> None:
        super().__init__()
        self.content_type = content_type.encode()
        self.update(body)

    def update(self, body: bytes) -> None:
        """Serve ``body`` from now on (a new table); one assignment, so a request
        sees either the old pair or the new one."""
        etag = b'"' + hashlib.sha256(body).hexdigest().encode() + b'"'
        self._current = (body, etag)

    @property
    def body(self) -> bytes:
        return self._current[0]

    @property
    def etag(self) -> bytes:
        return self._current[1]

    def render_GET(self, request: Request) -> bytes:
        body, etag = self._current
        request.setHeader(b"ETag", etag)
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"Access-Control-Allow-Origin", b"*")
        inm = request.getHeader(b"If-None-Match")
        if inm is not None:
            tags = [t.strip() for t in inm.split(b",")]
            if etag in tags or b"*" in tags:
                request.setResponseCode(304)
                return b""
        request.setHeader(b"Content-Type", self.content_type)
        return body


class _Stats(Resource):
    isLeaf = True

    def __init__(self, module: BlindmatchModule) -> None:
        super().__init__()
        self.module = module

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        return json.dumps(self.module.stats.to_json()).encode()


class _JsonPost(DirectServeJsonResource):
    """A JSON ``POST`` endpoint answered by one of the module's handlers:
    ``/_blindmatch/v1/report`` (a member reports a message; the franking is verified and a
    ``report`` case opened), ``/challenge`` (the distance-check challenge for a voucher),
    ``/appeal`` (a user appeals one of their cases)."""

    def __init__(self, handler: Callable[[Any], Awaitable[tuple[int, Any]]]) -> None:
        super().__init__()
        self._handler = handler

    async def _async_render_POST(self, request: Any) -> tuple[int, Any]:
        return await self._handler(request)


@dataclass
class Stats:
    """Counters of the module's own work (``expose_stats`` serves them)."""

    events_checked: int = 0
    events_rejected: int = 0
    vouchers_opened: int = 0
    open_seconds: float = 0.0
    check_seconds: float = 0.0
    uploads_recorded: int = 0
    challenges: int = 0  # distance-check challenges served
    reasons: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # wall seconds per step of the check: Synapse's media table, blindmatch's state (read),
    # opening and binding (in one thread hop), quarantining
    phases: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases[phase] += time.perf_counter() - start

    def to_json(self) -> dict[str, Any]:
        return {
            "events_checked": self.events_checked,
            "events_rejected": self.events_rejected,
            "vouchers_opened": self.vouchers_opened,
            "open_seconds": self.open_seconds,
            "check_seconds": self.check_seconds,
            "uploads_recorded": self.uploads_recorded,
            "challenges": self.challenges,
            "reasons": dict(self.reasons),
            "phase_seconds": dict(self.phases),
        }


@dataclass(frozen=True)
class _Decision:
    case_id: str | None = None  # a match under the block policy: refuse, with this case
    quarantine: list[str] = field(default_factory=list)  # media ids
    franking_stored: bool = False
    queued: bool = False  # threshold: vouchers queued for the worker


@dataclass(frozen=True)
class _SynapseMedia:
    user_id: str | None
    sha256: str | None
    quarantined: bool


def _files(config: ModuleConfig) -> tuple[Path, ...]:
    records = () if config.records is None else (config.records,)
    return (config.table, config.manifest, config.trust, config.server_key, *records)


def table_signature(config: ModuleConfig) -> tuple[tuple[int, int], ...]:
    """(mtime, size) of the table's files: a change means a new table to load."""
    out = []
    for p in _files(config):
        try:
            st = p.stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((-1, -1))
    return tuple(out)


@dataclass(frozen=True)
class LoadedTable:
    """One verified table, the session that opens its vouchers, what is served for it."""

    table: Table
    session: ServerSession
    store: SqlThresholdStore
    voucher_bytes: int
    table_bytes: bytes
    manifest: bytes
    trust: bytes
    signature: tuple[tuple[int, int], ...]

    @property
    def table_id(self) -> bytes:
        return self.table.table_id

    @property
    def answer_bytes(self) -> int | None:
        """The size of every answer under a distance-checked table; None without the check."""
        d = self.table.distance
        return None if d is None else answer_bytes(d)


def load_table(
    config: ModuleConfig, engine: Any, history: TableHistory | None = None
) -> LoadedTable:
    """Read and verify the table files; raises a :class:`~blindmatch.errors.BlindmatchError`.

    The server checks its own table as a client will: a table clients would refuse (its
    signatures, the trust file's parameter floors and maximum age, and — with the
    ``history`` of the tables this process served — an older sequence than the one
    served) is a configuration error, not something to serve. The threshold state
    lives in one namespace per ``t`` (shares of different ``t`` lie on different polynomials), so an
    account's shares keep counting across table updates that keep ``t``.
    """
    from blindmatch.private import load_records, load_trust_file
    from blindmatch.protocol import AccountSecret, ClientSession, ServerSecret, verify_table

    signature = table_signature(config)
    try:
        table_bytes = config.table.read_bytes()
        manifest = config.manifest.read_bytes().rstrip(b"\n")
        trust_bytes = config.trust.read_bytes()
        key_bytes = config.server_key.read_bytes()
    except OSError as e:
        raise ConfigError(f"blindmatch module: cannot read {e.filename}: {e.strerror}") from e
    verified = verify_table(
        table_bytes, manifest, load_trust_file(str(config.trust)), history=history
    )
    table = verified.table
    if config.policy is not None and config.policy != table.policy.value:
        raise ConfigError(
            f"blindmatch module: policy {config.policy!r} but the table's policy is "
            f"{table.policy.value!r}"
        )
    store = SqlThresholdStore(engine, namespace=f"t{table.threshold}:")
    records = None if config.records is None else load_records(config.records, table)
    session = ServerSession(ServerSecret.from_bytes(key_bytes), table, store=store, records=records)
    voucher_bytes = ClientSession(verified, AccountSecret.generate()).voucher_bytes
    return LoadedTable(table, session, store, voucher_bytes, table_bytes, manifest, trust_bytes,
                       signature)  # fmt: skip


FRANKING_KEYS_FORMAT = "blindmatch-franking-keys"


def load_franking_keyring(path: Path) -> FrankingKeyring:
    """The server's franking keys from ``path`` (JSON, mode 0600), made on first use::

        {"format": "blindmatch-franking-keys", "version": 1, "current": 0,
         "keys": {"0": "<64 hex>"}}

    To rotate, add a key and make it current; drop a key only once reports of messages
    tagged with it are no longer accepted."""
    from blindmatch.protocol import FrankingKeyring

    if not path.exists():
        ring = FrankingKeyring.generate()
        doc = {"format": FRANKING_KEYS_FORMAT, "version": 1, "current": ring.current,
               "keys": {str(k): ring.key(k).hex() for k in ring.key_ids}}  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # made meanwhile by another process: read that one
            return load_franking_keyring(path)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(doc, indent=1) + "\n")
        logger.warning("blindmatch: created franking keys %s (keep them: a server secret)", path)
        return ring
    try:
        doc = json.loads(path.read_bytes())
        if doc.get("format") != FRANKING_KEYS_FORMAT or doc.get("version") != 1:
            raise ValueError
        keys = {int(k): bytes.fromhex(v) for k, v in doc["keys"].items()}
        return FrankingKeyring(keys, doc["current"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError, ProtocolError):
        raise ConfigError(f"blindmatch module: {path} is not a franking key file") from None


class BlindmatchModule:
    """Loaded by Synapse from ``modules:`` (see the module docstring)."""

    @staticmethod
    def parse_config(config: dict[str, Any]) -> ModuleConfig:
        return parse_config(config)

    def __init__(self, config: ModuleConfig, api: ModuleApi) -> None:
        self.config = config
        self.api = api
        self.server_name = api.server_name
        self.state = MatrixState.open(config.database_url)
        self._history = MemoryTableHistory()  # a reload must not go back to an older table
        self.current = load_table(config, self.state.engine, self._history)
        assert config.franking_keys is not None
        self.keyring = load_franking_keyring(config.franking_keys)
        self.previous: LoadedTable | None = None  # accepted until previous_until
        self.previous_until = 0.0
        # Tables replaced while vouchers made for them were still queued: the worker opens
        # those with the session that made them valid, however long ago the table changed.
        self._retired: dict[bytes, LoadedTable] = {}
        self._opening = False  # the worker runs (one runner at a time)
        self._open_again = False  # kicked while it ran: take another round
        self._unknown_tables: set[str] = set()  # queued for tables no longer held (logged)
        self._bad_signature: tuple[tuple[int, int], ...] | None = None
        self.stats = Stats()
        # Striped per-account locks: one account's vouchers are opened one at a time (the
        # ThresholdStore port requires it); a fixed number of locks, however many accounts.
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]
        # Held only around ServerSession.open (send path under block, the worker): a send
        # never waits for the worker opening that account's earlier vouchers.
        self._open_locks = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self._reports: dict[str, deque[float]] = defaultdict(deque)  # reporter -> times
        self._challenges: dict[str, deque[float]] = defaultdict(deque)  # account -> times
        self._appeal_times: dict[str, deque[float]] = defaultdict(deque)  # account -> times
        self.appeals = Appeals(self.state.engine, window_days=config.appeal_window_days)
        self.defences = Defences(
            self.state.engine,
            negative_radius=config.negative_radius,
            flood_accounts=config.flood_accounts,
            flood_window=config.flood_window_seconds,
        )
        self._static = {
            TABLE_PATH: _Static(b"", "application/octet-stream"),
            MANIFEST_PATH: _Static(b"", "application/json"),
            TRUST_PATH: _Static(b"", "application/json"),
            INFO_PATH: _Static(b"", "application/json"),
        }
        self._publish(self.current)
        resources: dict[str, Resource] = dict(self._static)
        resources[REPORT_PATH] = _JsonPost(self.handle_report_request)
        resources[CHALLENGE_PATH] = _JsonPost(self.handle_challenge_request)
        resources[APPEAL_PATH] = _JsonPost(self.handle_appeal_request)
        if config.expose_stats:
            resources[STATS_PATH] = _Stats(self)
        for path, res in resources.items():
            api.register_web_resource(path, res)
        api.register_spam_checker_callbacks(
            check_event_for_spam=self.check_event_for_spam,
            check_media_file_for_spam=self.check_media_file_for_spam,
        )
        if config.quarantine_unbound:
            api.looping_background_call(
                self.sweep_unbound, config.sweep_interval_seconds * 1000, desc="blindmatch_sweep"
            )
        if config.reload_interval_seconds:
            api.looping_background_call(
                self.reload_table, config.reload_interval_seconds * 1000, desc="blindmatch_reload"
            )
        if config.open_interval_seconds:
            api.looping_background_call(
                self.open_queued, config.open_interval_seconds * 1000, desc="blindmatch_open"
            )
        logger.info(
            "blindmatch: table %s (%s policy, %d-byte vouchers), database %s",
            self.current.table.digest.hex()[:16],
            self.current.table.policy.value,
            self.current.voucher_bytes,
            self.state.engine.url.render_as_string(hide_password=True),
        )

    # -- the table -----------------------------------------------------------------
    @property
    def table(self) -> Table:
        return self.current.table

    def _publish(self, t: LoadedTable) -> None:
        info = {
            "format": "blindmatch-matrix-info",
            "version": 1,
            "table_digest": t.table.digest.hex(),
            "table_bytes": len(t.table_bytes),
            "voucher_bytes": t.voucher_bytes,
            "policy": t.table.policy.value,
            "voucher_field": VOUCHER_FIELD,
            "field_version": FIELD_VERSION,
            "max_attachments": MAX_ATTACHMENTS,
            "require_voucher": self.config.require_voucher,
            "bind_window_seconds": self.config.bind_window_seconds,
            "distance_check": t.table.distance is not None,
        }
        self._static[TABLE_PATH].update(t.table_bytes)
        self._static[MANIFEST_PATH].update(t.manifest)
        self._static[TRUST_PATH].update(t.trust)
        self._static[INFO_PATH].update(json.dumps(info, sort_keys=True).encode())

    def _tables(self) -> dict[bytes, LoadedTable]:
        """The tables whose vouchers are accepted now: the current one, and the previous
        one until ``table_grace_seconds`` after it was replaced."""
        out = {self.current.table_id: self.current}
        prev = self.previous
        if prev is not None and time.time() < self.previous_until:
            out.setdefault(prev.table_id, prev)
        return out

    async def reload_table(self) -> None:
        """Load the table files again if they changed; swap only a table that verifies."""
        sig = None
        try:
            sig = await self.api.defer_to_thread(table_signature, self.config)
            if sig in (self.current.signature, self._bad_signature):
                return
            loaded = await self.api.defer_to_thread(
                load_table, self.config, self.state.engine, self._history
            )
        except Exception:
            # Half-written files (a copy in progress) fail here too: the next round retries.
            logger.exception("blindmatch: the new table files do not load; keeping the old")
            self._bad_signature = sig
            return
        if loaded.table.digest == self.current.table.digest:
            self.current = loaded
            return
        if loaded.table.policy is not self.current.table.policy:
            logger.error("blindmatch: the new table changes the policy; restart to do that")
            self._bad_signature = loaded.signature
            return
        if self.previous is not None:
            self._retired[self.previous.table_id] = self.previous
        self.previous, self.previous_until = (
            self.current,
            time.time() + (self.config.table_grace_seconds),
        )
        self.current = loaded
        self._bad_signature = None
        self._publish(loaded)
        logger.info(
            "blindmatch: now serving table %s; vouchers for %s accepted for %.0f s",
            loaded.table.digest.hex()[:16],
            self.previous.table.digest.hex()[:16],
            self.config.table_grace_seconds,
        )

    # -- uploads -----------------------------------------------------------------
    async def check_media_file_for_spam(self, file_wrapper: Any, file_info: Any) -> Any:
        """Record what every local upload hashes to; never refuses an upload."""
        if file_info.server_name is not None or file_info.url_cache or file_info.thumbnail:
            return NOT_SPAM
        try:
            await self.api.defer_to_thread(
                self._record_upload, file_wrapper.path, file_info.file_id
            )
        except Exception:  # an unrecorded blob cannot be bound later: it fails closed there
            logger.exception("blindmatch: could not record upload %s", file_info.file_id)
        return NOT_SPAM

    def _record_upload(self, path: str, media_id: str) -> None:
        h = hashlib.sha256()
        size = 0
        head = b""
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                if len(head) < 512:
                    head += chunk[: 512 - len(head)]
                h.update(chunk)
                size += len(chunk)
        kind = classify_upload(path, head, size)
        self.state.record_upload(media_id, h.hexdigest(), size, kind)
        self.stats.uploads_recorded += 1

    # -- events --------------------------------------------------------------------
    async def check_event_for_spam(self, event: Any) -> Literal["NOT_SPAM"] | tuple[Codes, dict]:
        if not self.api.is_mine(event.sender):
            return NOT_SPAM
        if event.type != "m.room.encrypted":
            await self._note_plaintext(event)
            return NOT_SPAM
        start = time.perf_counter()
        self.stats.events_checked += 1
        try:
            await self._check(event)
            return NOT_SPAM
        except EventRejected as e:
            return await self._refuse(event, e)
        except Exception:
            logger.exception("blindmatch: failed to check %s; refusing it", event.event_id)
            return await self._refuse(event, rejected(Reason.INTERNAL_ERROR))
        finally:
            self.stats.check_seconds += time.perf_counter() - start

    async def _refuse(self, event: Any, e: EventRejected) -> tuple[Codes, dict]:
        self.stats.events_rejected += 1
        self.stats.reasons[e.reason] += 1
        # "error" replaces Synapse's generic text, so that clients that keep only errcode
        # and error (matrix-nio's RoomSendError, Element) still show why.
        body: dict[str, Any] = {
            "error": e.message,
            REASON_FIELD: e.reason,
            MESSAGE_FIELD: e.message,
        }
        case = e.case_id
        if case:
            body[CASE_FIELD] = case
            body[APPEAL_FIELD] = {"case": case, "how": self.config.appeal}
        logger.info("blindmatch: refused %s from %s: %s", event.event_id, event.sender, e.reason)
        try:
            await self.api.defer_to_thread(
                self.state.add_rejection, event.sender, event.room_id, event.event_id, e.reason,
                e.message,
            )  # fmt: skip
        except Exception:
            logger.exception("blindmatch: could not record the refusal of %s", event.event_id)
        return Codes.FORBIDDEN, body

    async def _check(self, event: Any) -> None:
        """One query of Synapse's media table, one thread hop for blindmatch's state,
        opening and binding: the rest is in memory."""
        tables = self._tables()
        atts = (
            parse_voucher_field(
                event.content,
                server_name=self.server_name,
                tables={t: lt.voucher_bytes for t, lt in tables.items()},
                answers={t: n for t, lt in tables.items() if (n := lt.answer_bytes) is not None},
            )
            or []
        )
        files = parse_files_field(event.content, server_name=self.server_name)
        if {a.media_id for a in atts} & {f.media_id for f in files}:
            raise rejected(Reason.BLOB_ALREADY_BOUND, "a blob both vouched for and declared")
        commitment = parse_franking_field(event.content)
        if commitment is None and self.config.require_franking:
            raise rejected(Reason.FRANKING_REQUIRED)
        franking = self._franking_record(event, commitment) if commitment else None
        stored = await self._check_attachments(event, atts, files, tables, franking)
        if franking is not None and not stored:
            with self.stats.timed("franking_write"):
                await self.api.defer_to_thread(self.state.record_franking, franking)

    def _franking_record(self, event: Any, commitment: bytes) -> FrankingRecord:
        """The server's tag ``R`` over ``C`` and what it sees: sender, room, its timestamp."""
        from blindmatch.protocol import FrankingContext

        try:
            ctx = FrankingContext(event.sender, event.room_id, int(event.origin_server_ts))
        except ProtocolError as e:
            raise rejected(Reason.MALFORMED_FRANKING, e.message) from None
        tag = self.keyring.tag(commitment, ctx)
        return FrankingRecord(event.event_id, event.room_id, event.sender,
                              ctx.timestamp_ms, commitment, tag)  # fmt: skip

    async def _check_attachments(
        self,
        event: Any,
        atts: Sequence[Attachment],
        files: Sequence[DeclaredFile],
        tables: dict[bytes, LoadedTable],
        franking: FrankingRecord | None,
    ) -> bool:
        """Vouchers, declared files and pending uploads; True if the franking record was
        written with the bindings."""
        sender = event.sender
        if not atts and not files and not self.config.require_voucher:
            return False
        named = [a.media_id for a in atts] + [f.media_id for f in files]
        with self.stats.timed("synapse_media"):
            media, recent = await self._synapse_media(sender, named)
        if not named and not recent:
            return False  # e.g. a text message, nothing uploaded lately: no state to read
        with self.stats.timed("decide"):
            decision = await self.api.defer_to_thread(
                self._decide, event, atts, files, media, recent, tables, franking
            )
        if decision.case_id is not None:  # a match under the block policy
            with self.stats.timed("quarantine"):
                for media_id in decision.quarantine:
                    await self._quarantine(media_id, "match")
            raise rejected(Reason.LISTED_IMAGE, f"case {decision.case_id}", decision.case_id)
        if decision.queued:
            self._kick()
        return decision.franking_stored

    def _decide(
        self,
        event: Any,
        atts: Sequence[Attachment],
        files: Sequence[DeclaredFile],
        media: dict[str, _SynapseMedia],
        recent: Sequence[str],
        tables: dict[bytes, LoadedTable],
        franking: FrankingRecord | None,
    ) -> _Decision:
        """In a thread, under the sender's lock: read the state, check the blobs and the
        pending uploads, open the vouchers and record the outcome.

        A match under the block policy comes back as a decision with a case id; any other
        refusal raises :class:`~blindmatch.errors.EventRejected`. Under the threshold policy
        nothing here depends on the list: the vouchers are queued, not opened.
        """
        sender = event.sender
        with self._lock(sender):
            snap = self.state.snapshot(
                [a.voucher_id.hex() for a in atts],
                [a.media_id for a in atts] + [f.media_id for f in files],
                recent,
            )
            # A retry of an event already decided is answered as before (its blob may be
            # quarantined by now); any other re-use of a voucher or blob is refused.
            fresh = self._not_yet_bound(event, atts, snap.bindings)
            if any(a.media_id in snap.uses for a in fresh):
                raise rejected(Reason.BLOB_ALREADY_BOUND, "declared or used without a voucher")
            new_files = []
            for f in files:
                u = snap.uses.get(f.media_id)
                if u is None:
                    new_files.append(f)
                elif not (u.use == "file" and u.account == sender and u.room == event.room_id):
                    raise rejected(Reason.BLOB_ALREADY_BOUND, f.mxc)  # else: a retry
            checked: list[Attachment | DeclaredFile] = [*fresh, *new_files]
            for a in checked:
                m = media.get(a.media_id)
                if m is None:
                    raise rejected(Reason.BLOB_UNKNOWN, a.mxc)
                if m.user_id != sender:
                    raise rejected(Reason.BLOB_NOT_YOURS, a.mxc)
                rec = snap.blobs.get(a.media_id)
                if m.quarantined or (rec is not None and rec.quarantined):
                    raise rejected(Reason.BLOB_QUARANTINED, a.mxc)
                digest = rec.sha256 if rec is not None else m.sha256
                if digest != a.blob_sha256:
                    raise rejected(Reason.BLOB_HASH_MISMATCH, a.mxc)
            if self.config.require_voucher:
                named = {a.media_id for a in atts} | {f.media_id for f in files}
                missing = sorted(
                    m
                    for m in recent
                    if m not in named
                    and m not in snap.bound
                    # an upload the module failed to record counts as opaque: fail closed
                    and ((b := snap.blobs.get(m)) is None or b.kind == "opaque")
                    and not (b is not None and b.quarantined)
                )
                if missing:
                    shown = ", ".join(f"mxc://{self.server_name}/{m}" for m in missing[:4])
                    raise rejected(Reason.VOUCHER_REQUIRED, "unbound: " + shown)
            uses = [Use(f.media_id, "file", sender, event.room_id, event.event_id)
                    for f in new_files]  # fmt: skip
            for a in fresh:  # before anything is opened: never half an event's vouchers
                _check_form(a, tables)
            if fresh and self.current.table.policy is Policy.THRESHOLD:
                return self._queue_and_bind(event, fresh, tables, franking, uses)
            if fresh:
                return self._open_and_bind(event, fresh, tables, franking, uses)
            if uses:
                try:
                    self.state.bind([], (), franking, uses)
                except BindingConflict:
                    raise rejected(Reason.BLOB_ALREADY_BOUND, "bound meanwhile") from None
                return _Decision(franking_stored=franking is not None)
            return _Decision()

    def _not_yet_bound(
        self, event: Any, atts: Sequence[Attachment], existing: Sequence[Binding]
    ) -> list[Attachment]:
        """The attachments not bound yet; a retry of the same event is answered as before."""
        vids = [a.voucher_id.hex() for a in atts]
        done: set[str] = set()
        for b in existing:
            a = next((x for x in atts if x.voucher_id.hex() == b.voucher_id), None)
            retry = (
                a is not None
                and b.media_id == a.media_id
                and b.account == event.sender
                and b.room == event.room_id
                and b.voucher_sha256 == hashlib.sha256(a.voucher).hexdigest()
            )
            if not retry:
                replay = b.voucher_id in vids
                raise rejected(Reason.VOUCHER_REPLAYED if replay else Reason.BLOB_ALREADY_BOUND)
            if b.outcome == "blocked":
                raise rejected(Reason.LISTED_IMAGE, f"case {b.case_id}", b.case_id)
            done.add(b.voucher_id)
        return [a for a in atts if a.voucher_id.hex() not in done]

    def _screen(self, sender: str, matched: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        """The false-positive defences (:mod:`blindmatch.review.defences`) on the blocked
        results of one event: a match near a hash review found benign, or on an entry in
        flood quarantine, no longer blocks (a result left with no match is accepted);
        replays and forged vouchers are left as they are."""
        idx = [i for i, (_, r) in enumerate(matched)
               if r.matches and not r.tampered and not r.replayed]  # fmt: skip
        if not idx:
            return matched
        got = self.defences.screen(sender, [[_refs_json(m) for m in matched[i][1].matches]
                                            for i in idx])  # fmt: skip
        for case_id in got.flood_cases:
            logger.warning("blindmatch: a list entry is in flood quarantine: case %s", case_id)
        kept = dict(zip(idx, got.kept, strict=True))
        out = []
        for i, (a, r) in enumerate(matched):
            if i not in kept:
                out.append((a, r))
                continue
            left = tuple(m for m in r.matches if _refs_json(m) in kept[i])
            if left:
                out.append((a, dataclasses.replace(r, matches=left)))
        return out

    def _lock(self, account: str, *, opening: bool = False) -> threading.Lock:
        digest = hashlib.blake2b(account.encode(), digest_size=4).digest()
        stripes = self._open_locks if opening else self._locks
        return stripes[int.from_bytes(digest, "big") % LOCK_STRIPES]

    def _open_and_bind(
        self,
        event: Any,
        atts: Sequence[Attachment],
        tables: dict[bytes, LoadedTable],
        franking: FrankingRecord | None,
        uses: Sequence[Use] = (),
    ) -> _Decision:
        """Block policy: open every voucher; record the bindings, cases and (for an event
        that will be relayed) the declared files and the franking tag in one transaction.

        ``r.block`` is the one thing of an :class:`~blindmatch.protocol.OpenResult` the
        sender may learn: a confirmed match, or a match attempt with a forged voucher (its
        pair opened, an inner layer did not) — refused alike, with one ``match`` case that
        keeps the forged vouchers' bytes and says which layer failed."""
        sender, room, event_id = event.sender, event.room_id, event.event_id
        results = []
        for a in atts:
            start = time.perf_counter()
            try:
                session = tables[a.table_id].session
                with self._lock(sender, opening=True):
                    if session.table.distance is None:
                        result = session.open(a.voucher, account=sender)
                    elif a.answer is None:  # the parser requires it: fail closed regardless
                        raise rejected(Reason.MALFORMED_VOUCHER, a.mxc)
                    else:  # both rounds at once: the challenge is a function of the voucher
                        result = session.finish_voucher(a.voucher, a.answer, account=sender)
                    results.append((a, result))
            except (InvalidVoucher, InvalidDistanceCheck):  # malformed on its face
                raise rejected(Reason.INVALID_VOUCHER, a.mxc) from None
            finally:
                self.stats.vouchers_opened += 1
                self.stats.open_seconds += time.perf_counter() - start
        matched = self._screen(sender, [(a, r) for a, r in results if r.block])
        block = bool(matched)
        case_id = new_case_id() if block else None
        cases: list[dict[str, Any]] = []
        if block:
            cases.append(
                {
                    "id": case_id,
                    "kind": "match",
                    "account": sender,
                    "room": room,
                    "event_id": event_id,
                    "voucher_ids": [a.voucher_id.hex() for a, _ in matched],
                    "blobs": list(dict.fromkeys(a.mxc for a in atts)),  # a video: once
                    "entry_refs": [_refs_json(m) for _, r in matched for m in r.matches],
                    "kept": [
                        KeptVoucher(a.voucher_id.hex(), r.tampered, a.voucher)
                        for a, r in matched
                        if r.tampered
                    ],  # fmt: skip
                }
            )
        here = {a.voucher_id.hex(): (a.media_id, room, event_id) for a in atts}
        raw = {a.voucher_id.hex(): a.voucher for a in atts}
        released = [rel for _, r in results for rel in r.released]
        cases += self._release_cases(sender, released, here, raw)
        bindings = [
            Binding(
                a.voucher_id.hex(),
                a.media_id,
                sender,
                room,
                event_id,
                hashlib.sha256(a.voucher).hexdigest(),
                "blocked" if block else "accepted",
                case_id,
            )  # fmt: skip
            for a in atts
        ]
        try:
            with self.stats.timed("bind_write"):
                ids = (
                    self.state.bind(bindings, cases)
                    if block
                    else self.state.bind(bindings, cases, franking, uses)
                )
        except BindingConflict:
            raise rejected(Reason.VOUCHER_REPLAYED, "bound by a concurrent event") from None
        self._log_cases(sender, cases, ids)
        if block:
            assert case_id is not None
            logger.warning("blindmatch: blocked %s from %s: case %s", event_id, sender, case_id)
            blobs = [a.media_id for a in atts] + [u.media_id for u in uses]
            return _Decision(case_id, list(dict.fromkeys(blobs)))
        return _Decision(franking_stored=franking is not None)

    def _release_cases(
        self,
        account: str,
        released: Sequence[Release],
        here: dict[str, tuple[str, str, str]],
        raw: dict[str, bytes],
    ) -> list[dict[str, Any]]:
        """One case per voucher dealt with at the threshold: ``threshold`` for a confirmed
        match (with its evidence), ``tampered`` for a voucher caught lying (with its bytes
        if in ``raw``: the vouchers in hand). ``here``: voucher id → (media id, room, event
        id) of vouchers not bound yet; the others are found through their bindings."""
        if not released:
            return []
        where = {
            b.voucher_id: (b.media_id, b.room, b.event_id)
            for b in self.state.bindings(voucher_ids=[x.voucher_id.hex() for x in released])
        }
        where.update(here)
        out = []
        for rel in released:
            vid = rel.voucher_id.hex()
            media_id, room, event_id = where.get(vid, (None, None, None))
            case: dict[str, Any] = {
                "kind": "tampered" if rel.tampered else "threshold",
                "account": account,
                "room": room,
                "event_id": event_id,
                "voucher_ids": [vid],
                "blobs": [f"mxc://{self.server_name}/{media_id}"] if media_id else [],
                "entry_refs": [_refs_json(m) for m in rel.matches],
                "evidence": rel.evidence,
            }
            if rel.tampered:
                case["kept"] = [KeptVoucher(vid, rel.tampered, raw.get(vid))]
            out.append(case)
        return out

    @staticmethod
    def _log_cases(account: str, cases: Sequence[dict[str, Any]], ids: Sequence[str]) -> None:
        for c, cid in zip(cases, ids, strict=True):
            if c["kind"] == "threshold":
                logger.warning("blindmatch: %s reached the threshold: case %s", account, cid)
            elif c["kind"] == "tampered":
                logger.warning("blindmatch: %s sent a forged voucher: case %s", account, cid)

    # -- the threshold policy: queue at send time, open in the background --------------
    def _queue_and_bind(
        self,
        event: Any,
        atts: Sequence[Attachment],
        tables: dict[bytes, LoadedTable],
        franking: FrankingRecord | None,
        uses: Sequence[Use] = (),
    ) -> _Decision:
        """Threshold policy: bind the vouchers (``pending``) and queue them, with the
        declared files and the franking tag, in one transaction. Only checks that need no
        secret run here — the voucher's form (:func:`_check_form`, done by the caller) and
        the account's hourly budget — so neither the answer nor its time depends on
        whether a voucher opens."""
        sender = event.sender
        recent = self.state.vouchers_bound_since(sender, cutoff(3600))
        if recent + len(atts) > self.config.max_vouchers_per_hour:
            raise rejected(Reason.TOO_MANY_VOUCHERS, f"{recent} in the last hour")
        bindings = [
            Binding(
                a.voucher_id.hex(),
                a.media_id,
                sender,
                event.room_id,
                event.event_id,
                hashlib.sha256(a.voucher).hexdigest(),
                "pending",
                None,
            )  # fmt: skip
            for a in atts
        ]
        queue = [(sender, a.table_id, a.voucher) for a in atts]
        try:
            with self.stats.timed("bind_write"):
                self.state.bind(bindings, (), franking, uses, queue)
        except BindingConflict:
            raise rejected(Reason.VOUCHER_REPLAYED, "bound by a concurrent event") from None
        return _Decision(franking_stored=franking is not None, queued=True)

    def _kick(self) -> None:
        """Start the worker now, in the background: the send path does not wait for it."""
        if self.config.open_interval_seconds:
            self.api.run_as_background_process("blindmatch_open_kick", self.open_queued)

    async def open_queued(self) -> None:
        """Open queued vouchers until the queue is empty (one runner at a time; a kick
        while it runs makes it take another round)."""
        if self._opening:
            self._open_again = True
            return
        self._opening = True
        try:
            while True:
                self._open_again = False
                done = await self.api.defer_to_thread(self._open_batch)
                if not done and not self._open_again:
                    break
        except Exception:
            logger.exception("blindmatch: opening queued vouchers failed; retried later")
        finally:
            self._opening = False

    def _openers(self) -> dict[str, LoadedTable]:
        """Every table whose queued vouchers can be opened (by table id, hex): the current
        one, the previous one and any retired since start whose vouchers were still queued."""
        out = {t.table_id.hex(): t for t in list(self._retired.values())}
        if self.previous is not None:
            out[self.previous.table_id.hex()] = self.previous
        out[self.current.table_id.hex()] = self.current
        return out

    def _open_batch(self) -> int:
        """In a thread: open up to QUEUE_BATCH queued vouchers, oldest first; how many."""
        openers = self._openers()
        waiting = self.state.queue_tables()
        unknown = waiting - set(openers)
        if unknown != self._unknown_tables:  # logged once per change, not every round
            self._unknown_tables = unknown
            if unknown:
                logger.warning(
                    "blindmatch: vouchers are queued for tables this process no longer holds "
                    "(%s); they stay queued: restore those tables' files to open them",
                    ", ".join(sorted(unknown)),
                )
        for tid in [t for t in list(self._retired) if t.hex() not in waiting]:
            self._retired.pop(tid, None)  # nothing of it left to open
        items = [q for q in self.state.queued(QUEUE_BATCH * 4) if q.table_id in openers]
        items = items[:QUEUE_BATCH]
        for item in items:
            with self._lock(item.account, opening=True):
                self._open_one(openers[item.table_id], item)
        return len(items)

    def _open_one(self, lt: LoadedTable, item: Queued) -> None:
        """Open one queued voucher under its account's lock; its threshold-store writes,
        the cases it gives and the removal of its queue row commit in one transaction."""
        start = time.perf_counter()
        result: OpenResult | None = None
        with lt.store.deferred() as writes:
            try:
                result = lt.session.open(item.voucher, account=item.account)
            except InvalidVoucher:  # the send path checked its form: not expected
                logger.warning("blindmatch: queued voucher %s does not parse", item.voucher_id)
        self.stats.vouchers_opened += 1
        self.stats.open_seconds += time.perf_counter() - start
        cases: list[dict[str, Any]] = []
        if result is not None and result.tampered:
            found = self.state.bindings(voucher_ids=[item.voucher_id])
            b = found[0] if found else None
            cases.append(
                {
                    "kind": "tampered",
                    "account": item.account,
                    "room": b.room if b else None,
                    "event_id": b.event_id if b else None,
                    "voucher_ids": [item.voucher_id],
                    "blobs": [f"mxc://{self.server_name}/{b.media_id}"] if b else [],
                    "entry_refs": [_refs_json(m) for m in result.matches],
                    "kept": [KeptVoucher(item.voucher_id, result.tampered, item.voucher)],
                }
            )
        if result is not None:
            raw = {item.voucher_id: item.voucher}
            cases += self._release_cases(item.account, result.released, {}, raw)
        ids = self.state.finish_queued(item, cases, lambda s: lt.store.write(s, writes))
        self._log_cases(item.account, cases, ids)

    async def _note_plaintext(self, event: Any) -> None:
        """A plaintext event that references the sender's uploads accounts for them: their
        use is visible to the server, so they are neither pending nor swept. Best effort:
        a failure here is logged, and never refuses a plaintext event."""
        try:
            ids = _plaintext_media(event.content, self.server_name)
            if not ids:
                return
            media, _ = await self._synapse_media(event.sender, ids, recent=False)
            uses = [Use(m, "plaintext", event.sender, event.room_id, event.event_id)
                    for m in ids if m in media and media[m].user_id == event.sender]  # fmt: skip
            if uses:
                await self.api.defer_to_thread(self.state.record_plaintext_uses, uses)
        except Exception:
            logger.exception("blindmatch: could not note the media of %s", event.event_id)

    # -- the distance check's challenge -----------------------------------------------------
    async def handle_challenge_request(self, request: Any) -> tuple[int, dict[str, Any]]:
        """``POST /_blindmatch/v1/challenge`` ``{"voucher": base64}`` → ``{"challenge":
        base64}`` (docs/matrix.md). Any authenticated local user may ask (the sender before
        sending, a recipient to check the answer it received): the challenge is a function
        of the voucher and the table's key, so every caller gets the same bytes, of the
        same size for every voucher of a table whether or not it is a candidate. A
        voucher malformed on its face (what :func:`_check_form` checks, needing no
        secret) gets a 400 with the event path's reason; nothing else is refused but the
        hourly budget (429). Nothing escapes as a crash (500 ``internal_error``)."""
        requester = await self.api.get_user_by_req(request)  # 401 without a valid token
        account = requester.user.to_string()
        wait = self._budget(self._challenges, account, self.config.max_challenges_per_hour)
        if wait is not None:
            return _limit_exceeded(Reason.TOO_MANY_CHALLENGES, wait)
        body = parse_json_object_from_request(request)  # 400 M_NOT_JSON
        try:
            challenge = await self._challenge(body)
        except EventRejected as e:
            return _refusal(400, "M_BAD_JSON", e)
        except Exception:
            logger.exception("blindmatch: failed to make a challenge for %s", account)
            return _refusal(500, "M_UNKNOWN", rejected(Reason.INTERNAL_ERROR))
        return 200, {"challenge": base64.b64encode(challenge).decode("ascii")}

    async def _challenge(self, body: dict[str, Any]) -> bytes:
        tables = self._tables()
        voucher, table_id = parse_challenge_request(
            body, tables={t: lt.voucher_bytes for t, lt in tables.items()}
        )
        lt = tables[table_id]
        params = lt.table.distance
        if params is None:
            raise rejected(Reason.MALFORMED_VOUCHER, "this table's vouchers need no challenge")
        try:
            v = ParsedVoucher.from_bytes(voucher, lt.table)
        except InvalidVoucher:
            raise rejected(Reason.INVALID_VOUCHER) from None
        if not all(is_valid_point(q) for q, _ in v.pairs):
            raise rejected(Reason.INVALID_VOUCHER)
        with self.stats.timed("challenge"):
            try:
                pending = await self.api.defer_to_thread(lt.session.begin, voucher)
            except InvalidVoucher:
                raise rejected(Reason.INVALID_VOUCHER) from None
        self.stats.challenges += 1
        challenge = pending.challenge
        if len(challenge) != challenge_bytes(params):  # never: begin pads to m slots
            raise ProtocolError("challenge of the wrong size")
        return challenge

    # -- reports -------------------------------------------------------------------------
    async def handle_report_request(self, request: Any) -> tuple[int, dict[str, Any]]:
        """Authenticate the reporter, verify the report, open a case. Every refusal is a
        JSON answer with ``org.blindmatch.reason``; nothing escapes as a crash."""
        requester = await self.api.get_user_by_req(request)  # 401 without a valid token
        reporter = requester.user.to_string()
        wait = self._budget(self._reports, reporter, self.config.max_reports_per_hour)
        if wait is not None:  # every attempt counts, verified or not: no free probing
            return _limit_exceeded(Reason.TOO_MANY_REPORTS, wait)
        body = parse_json_object_from_request(request)  # 400 M_NOT_JSON
        try:
            case_id, context = await self._report(reporter, body)
        except EventRejected as e:
            status, errcode = {
                Reason.NOT_A_MEMBER.value: (403, "M_FORBIDDEN"),
                Reason.REPORT_NOT_VERIFIED.value: (403, "M_FORBIDDEN"),
                Reason.UNVERIFIABLE_ATTACHMENT.value: (403, "M_FORBIDDEN"),
                Reason.NOT_FRANKED.value: (404, "M_NOT_FOUND"),
            }.get(e.reason, (400, "M_BAD_JSON"))
            logger.info("blindmatch: refused a report by %s: %s", reporter, e.reason)
            return _refusal(status, errcode, e)
        except Exception:
            logger.exception("blindmatch: failed to handle a report by %s", reporter)
            return _refusal(500, "M_UNKNOWN", rejected(Reason.INTERNAL_ERROR))
        logger.warning("blindmatch: report by %s opened case %s", reporter, case_id)
        return 200, {CASE_FIELD: case_id, "case": case_id, "verified": True,
                     "context_verified": context}  # fmt: skip

    # -- appeals --------------------------------------------------------------------------
    async def handle_appeal_request(self, request: Any) -> tuple[int, dict[str, Any]]:
        """``POST /_blindmatch/v1/appeal`` ``{"case_id": str, "text": str}`` → ``{"appeal":
        id, "case": id, "status": "open"}``. Only the case's own account; someone else's
        case and no such case get the same 404 (``unknown_case``)."""
        requester = await self.api.get_user_by_req(request)  # 401 without a valid token
        account = requester.user.to_string()
        wait = self._budget(self._appeal_times, account, self.config.max_appeals_per_hour)
        if wait is not None:
            return _limit_exceeded(Reason.TOO_MANY_APPEALS, wait)
        body = parse_json_object_from_request(request)  # 400 M_NOT_JSON
        case_id, text = body.get("case_id"), body.get("text")
        if (
            set(body) - {"case_id", "text"}
            or not isinstance(case_id, str)
            or not isinstance(text, str)
        ):
            return _refusal(400, "M_BAD_JSON", rejected(Reason.MALFORMED_APPEAL))
        try:
            appeal = await self.api.defer_to_thread(self.appeals.open, case_id, account, text)
        except AppealRefused as e:
            status, errcode = {
                Reason.UNKNOWN_CASE.value: (404, "M_NOT_FOUND"),
                Reason.APPEAL_WINDOW_CLOSED.value: (403, "M_FORBIDDEN"),
                Reason.APPEAL_DECIDED.value: (403, "M_FORBIDDEN"),
                Reason.APPEAL_OPEN.value: (409, "M_UNKNOWN"),
            }.get(e.reason, (400, "M_BAD_JSON"))
            logger.info("blindmatch: refused an appeal by %s: %s", account, e.reason)
            return _refusal(status, errcode, EventRejected(e.reason, e.message))
        except Exception:
            logger.exception("blindmatch: failed to open an appeal by %s", account)
            return _refusal(500, "M_UNKNOWN", rejected(Reason.INTERNAL_ERROR))
        logger.warning("blindmatch: %s appealed case %s (%s)", account, case_id, appeal.id)
        return 200, {"appeal": appeal.id, "case": appeal.case_id, "status": appeal.status}

    @staticmethod
    def _budget(attempts: dict[str, deque[float]], account: str, limit: int) -> int | None:
        """Count one attempt (a report, a challenge) by ``account`` in ``attempts``; None
        if allowed, else milliseconds to wait."""
        now = time.monotonic()
        if len(attempts) > 10_000:  # forget accounts with no attempt in the last hour
            for k in [k for k, v in attempts.items() if not v or v[-1] <= now - 3600]:
                del attempts[k]
        recent = attempts[account]
        while recent and recent[0] <= now - 3600:
            recent.popleft()
        if len(recent) >= limit:
            return int((recent[0] + 3600 - now) * 1000) + 1
        recent.append(now)
        return None

    async def _report(self, reporter: str, body: dict[str, Any]) -> tuple[str, list[bool]]:
        event_id, room_id = body.get("event_id"), body.get("room_id")
        payload, reason = body.get("payload"), body.get("reason", "")
        context = body.get("context", [])
        if (
            set(body) - {"event_id", "room_id", "payload", "reason", "context"}
            or not _short_str(event_id)
            or not _short_str(room_id)
            or not isinstance(payload, dict)
            or not isinstance(reason, str)
            or len(reason) > MAX_REPORT_REASON
            or not isinstance(context, list)
            or len(context) > MAX_REPORT_CONTEXT
            or not all(
                isinstance(c, dict)
                and set(c) == {"event_id", "payload"}
                and _short_str(c["event_id"])
                and isinstance(c["payload"], dict)
                for c in context
            )
        ):
            raise rejected(
                Reason.MALFORMED_REPORT,
                "expected {event_id, room_id, payload, reason, context: "
                f"[≤ {MAX_REPORT_CONTEXT} {{event_id, payload}}]}}",
            )
        assert isinstance(event_id, str) and isinstance(room_id, str)
        try:
            state = await self.api.get_room_state(room_id, [("m.room.member", reporter)])
        except Exception:  # e.g. an unknown or malformed room id
            state = {}
        member = state.get(("m.room.member", reporter))
        if member is None or member.content.get("membership") != "join":
            raise rejected(Reason.NOT_A_MEMBER)
        ids = [event_id] + [c["event_id"] for c in context]
        records = await self.api.defer_to_thread(self.state.franking, ids)
        rec = records.get(event_id)
        if rec is None or rec.room != room_id:
            raise rejected(Reason.NOT_FRANKED, event_id)
        try:
            self._verify_report(rec, payload)
        except ProtocolError as e:
            raise rejected(Reason.REPORT_NOT_VERIFIED, e.message) from None
        try:
            _payload_files(payload)
        except ProtocolError as e:
            raise rejected(Reason.UNVERIFIABLE_ATTACHMENT, e.message) from None
        verified = []
        for c in context:
            r = records.get(c["event_id"])
            try:
                if r is None or r.room != room_id:
                    raise ProtocolError("no franking record in this room")
                self._verify_report(r, c["payload"])
                _payload_files(c["payload"])
                verified.append(True)
            except ProtocolError:
                verified.append(False)
        evidence = {
            "format": "blindmatch-report",
            "version": 1,
            "reporter": reporter,
            "reason": reason,
            "event_id": event_id,
            "room_id": room_id,
            "sender": rec.sender,
            "origin_server_ts": rec.origin_ts,
            "commitment": rec.commitment.hex(),
            "tag": rec.tag.hex(),
            "payload": payload,
            "context": [
                {"event_id": c["event_id"], "verified": ok, "payload": c["payload"]}
                for c, ok in zip(context, verified, strict=True)
            ],
        }
        case_id = await self.api.defer_to_thread(
            self.state.add_case,
            kind="report",
            account=rec.sender,
            room=room_id,
            event_id=event_id,
            blobs=_payload_blobs(payload),
            evidence=json.dumps(evidence, sort_keys=True, separators=(",", ":")).encode(),
        )
        return str(case_id), verified

    def _verify_report(self, rec: FrankingRecord, payload: dict[str, Any]) -> None:
        from blindmatch.protocol import FrankingContext, FrankingReport

        ctx = FrankingContext(rec.sender, rec.room, rec.origin_ts)
        self.keyring.verify_report(
            FrankingReport.from_payload(payload, rec.commitment, rec.tag, ctx)
        )

    # -- Synapse's media table -----------------------------------------------------
    async def _synapse_media(
        self, sender: str, media_ids: Sequence[str], *, recent: bool = True
    ) -> tuple[dict[str, _SynapseMedia], list[str]]:
        """The named blobs' rows, and (with ``require_voucher``) the media ids ``sender``
        uploaded within the window and not quarantined, in one database interaction."""
        since_ms = int((time.time() - self.config.bind_window_seconds) * 1000)
        want_recent = recent and self.config.require_voucher

        def txn(cur: Any) -> tuple[dict[str, _SynapseMedia], list[str]]:
            out = {}
            for mid in media_ids:
                cur.execute(
                    "SELECT user_id, sha256, quarantined_by FROM local_media_repository "
                    "WHERE media_id = ?",
                    (mid,),
                )
                row = cur.fetchone()
                if row is not None:
                    out[mid] = _SynapseMedia(row[0], row[1], row[2] is not None)
            recent: list[str] = []
            if want_recent:
                cur.execute(
                    "SELECT media_id FROM local_media_repository WHERE user_id = ? "
                    "AND created_ts >= ? AND quarantined_by IS NULL AND url_cache IS NULL",
                    (sender, since_ms),
                )
                recent = [r[0] for r in cur.fetchall()]
            return out, recent

        return await self.api.run_db_interaction("blindmatch_media", txn)

    async def _quarantine(self, media_id: str, reason: str) -> None:
        """Refuse downloads of a blob (Synapse's own quarantine: by media id and by hash,
        so a re-upload of the same bytes is quarantined on arrival)."""
        by = f"@blindmatch:{self.server_name}"

        def txn(cur: Any) -> None:
            cur.execute("SELECT sha256 FROM local_media_repository WHERE media_id = ?", (media_id,))
            row = cur.fetchone()
            cur.execute(
                "UPDATE local_media_repository SET quarantined_by = ? WHERE media_id = ? "
                "AND safe_from_quarantine = ?",
                (by, media_id, False),
            )
            if row is not None and row[0]:
                cur.execute(
                    "UPDATE local_media_repository SET quarantined_by = ? WHERE sha256 = ? "
                    "AND quarantined_by IS NULL AND safe_from_quarantine = ?",
                    (by, row[0], False),
                )

        await self.api.run_db_interaction("blindmatch_quarantine", txn)
        await self.api.defer_to_thread(self.state.mark_quarantined, media_id, reason)
        logger.info("blindmatch: quarantined mxc://%s/%s (%s)", self.server_name, media_id, reason)

    async def sweep_unbound(self) -> None:
        """Quarantine opaque uploads nobody bound within the window."""
        try:
            stale = await self.api.defer_to_thread(
                self.state.unbound_opaque_before, cutoff(self.config.bind_window_seconds)
            )
            for media_id in stale:
                await self._quarantine(media_id, "unbound")
        except BlindmatchError:
            logger.exception("blindmatch: sweep failed")
        except Exception:
            logger.exception("blindmatch: sweep failed")


MAX_PLAINTEXT_IMAGE_BYTES = 64 << 20


def _refusal(
    status: int, errcode: str, err: EventRejected, **extra: Any
) -> tuple[int, dict[str, Any]]:
    """A JSON refusal of the report and challenge endpoints: the Matrix error code and
    message beside blindmatch's reason and message."""
    return status, {"errcode": errcode, "error": err.message, REASON_FIELD: err.reason,
                    MESSAGE_FIELD: err.message, **extra}  # fmt: skip


def _limit_exceeded(reason: Reason, wait: int) -> tuple[int, dict[str, Any]]:
    """The 429 answer of a rate-limited endpoint (reports, challenges)."""
    return _refusal(429, "M_LIMIT_EXCEEDED", rejected(reason), retry_after_ms=wait)


def _check_form(a: Attachment, tables: dict[bytes, LoadedTable]) -> None:
    """What the server can check of a voucher without its secret — size, header, table,
    ``R`` and every pair's ``Q`` decode as points — so a refusal here (``invalid_voucher``)
    says nothing about the list. Run on all of an event's vouchers before any is opened."""
    try:
        v = ParsedVoucher.from_bytes(a.voucher, tables[a.table_id].table)
    except InvalidVoucher:
        raise rejected(Reason.INVALID_VOUCHER, a.mxc) from None
    if not all(is_valid_point(q) for q, _ in v.pairs):
        raise rejected(Reason.INVALID_VOUCHER, a.mxc)
    params = tables[a.table_id].table.distance
    if params is not None:  # the answer's form: its size and that every point decodes
        if a.answer is None:
            raise rejected(Reason.MALFORMED_VOUCHER, f"{a.mxc}: no distance-check answer")
        try:
            parse_answer(a.answer, params)
        except InvalidDistanceCheck:
            raise rejected(Reason.INVALID_VOUCHER, a.mxc) from None


def classify_upload(path: str, head: bytes, size: int) -> str:
    """``image`` or ``video`` for a plaintext picture or video that really decodes, else
    ``opaque`` (an encrypted attachment). Magic bytes alone are not enough: a client can
    re-encrypt until its ciphertext starts with ``BM`` or ``FLV`` in a few thousand tries."""
    found = sniff(head)
    if found is None:
        return "opaque"
    if found[0] == "image":
        if size > MAX_PLAINTEXT_IMAGE_BYTES:
            return "opaque"
        from blindmatch.hashing.image import open_image

        try:
            with open(path, "rb") as f:
                open_image(f.read()).load()
        except Exception:  # anything that does not decode is not a plaintext image
            return "opaque"
        return "image"
    try:  # a video: ffprobe must find a video stream in it
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
             "stream=codec_type", "-of", "json", path],
            capture_output=True, timeout=20, check=False,
        )  # fmt: skip
        streams = json.loads(out.stdout or b"{}").get("streams") or []
    except (OSError, subprocess.SubprocessError, ValueError):
        return "opaque"  # no ffprobe: a plaintext video is treated as an encrypted blob
    return "video" if out.returncode == 0 and streams else "opaque"


def _as_dict(value: Any) -> dict[str, Any] | None:
    """A JSON object as a dict: Synapse hands modules its own (Rust) ``JsonObject`` type for
    event content, which is a mapping but not a ``dict``."""
    if isinstance(value, dict):
        return value
    try:
        return dict(value) if value is not None and hasattr(value, "keys") else None
    except (TypeError, ValueError):
        return None


def _plaintext_media(content: Any, server_name: str) -> list[str]:
    """Local media ids a plaintext event points at: ``url`` (files, images, stickers, room
    avatars), ``info.thumbnail_url``, ``avatar_url`` (membership)."""
    content, info = _as_dict(content), None
    if content is None:
        return []
    info = _as_dict(content.get("info"))
    urls = [content.get("url"), content.get("avatar_url"),
            info.get("thumbnail_url") if info is not None else None]  # fmt: skip
    prefix = f"mxc://{server_name}/"
    out = []
    for u in urls:
        if isinstance(u, str) and u.startswith(prefix) and 0 < len(u) - len(prefix) <= 255:
            out.append(u[len(prefix) :])
    return list(dict.fromkeys(out))


def _short_str(x: object) -> bool:
    return isinstance(x, str) and 0 < len(x.encode("utf-8", "replace")) <= 255


def _payload_blobs(payload: dict[str, Any]) -> list[str]:
    """The ``mxc://`` URIs of the encrypted files a decrypted message names."""
    out = []
    info = payload.get("info")
    for f in (payload.get("file"), info.get("thumbnail_file") if isinstance(info, dict) else None):
        if isinstance(f, dict) and isinstance(f.get("url"), str) and f["url"].startswith("mxc://"):
            out.append(f["url"])
    return out


def _payload_files(payload: dict[str, Any]) -> list[EncryptedFile]:
    """The ``EncryptedFile`` objects of a reported message, parsed as the reviewer will
    decrypt them (:class:`~blindmatch.protocol.franking.EncryptedFile`): ProtocolError for a
    malformed one or an IV whose 64-bit counter half is not zero, which Matrix clients
    decrypt with a wrapping counter and the server would not (docs/protocol.md §12)."""
    info = payload.get("info")
    found = [payload["file"]] if "file" in payload else []
    if isinstance(info, dict) and "thumbnail_file" in info:
        found.append(info["thumbnail_file"])
    return [EncryptedFile.from_json(f) for f in found]


def _refs_json(m: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "distance": m.distance,
        "refs": [
            {"hotline": r.hotline, "list": r.list_name, "entry_id": r.entry_id} for r in m.refs
        ],
    }
    if getattr(m, "probe", b""):  # the hash that matched: what the negative bank keeps
        out["probe"] = m.probe.hex()
        # whether it was the picture's own hash or one of its variants (a mirrored, turned,
        # shrunk or frame-trimmed look): what a reviewer reads as "how it matched"
        out["variant"] = "a variant of the picture" if m.variant else "the picture's own hash"
    return out


__all__ = ["BlindmatchModule", "ModuleConfig", "Stats", "parse_config"]
