"""A local CyberTipline conformance server: NCMEC's reporting API as NCMEC would answer it.

Tests (and ``blindmatch demo``) never contact NCMEC; they run this server on 127.0.0.1 and
point the client at it. It checks every request as NCMEC would and answers in NCMEC's
response format (``reportResponse`` / ``reportDoneResponse``), refusing with the documented
code anything NCMEC would refuse:

- HTTP Basic auth against its accounts (HTTP 401 otherwise);
- ``/submit`` and ``/fileinfo``: an XML content type (4000), well-formed XML (4110), the
  right root and valid against the packaged schema, element order included (4100);
- ``/upload``, ``/fileinfo``, ``/finish``, ``/retract`` only on a report this account opened
  (5001 otherwise, also for another account's report), never after ``/finish`` (5102) or
  ``/retract`` (5101); ``/fileinfo`` only for a file uploaded to that report (5002) and
  with the matching ``reportId``; an upload needs ``id`` and a non-empty ``file`` (4200).

Every request is recorded (:attr:`ConformanceServer.requests`) so tests can assert on the
exact sequence. Faults for tests: :meth:`fail_next` (answer HTTP 503 without processing),
:meth:`drop_next` (process the request, then drop the connection before the answer),
:meth:`reject_next` (answer a given NCMEC code without processing) and :meth:`expire`
(delete an open report, as NCMEC does 24 h after opening).

:func:`running` starts it with uvicorn on a free port in a background thread::

    with running() as server:
        client = NcmecClient(server.base_url, "esp", "secret")
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import socket
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from fastapi import FastAPI, Request
from fastapi.responses import Response

from blindmatch.errors import NcmecInvalidXml
from blindmatch.ncmec import report as rpt

ENDPOINTS = ("submit", "upload", "fileinfo", "finish", "retract")
DESCRIPTIONS = {
    0: "Success",
    4000: "Invalid request",
    4100: "Validation failed",
    4110: "Malformed XML submittal",
    4200: "Malformed file submittal",
    5001: "Report does not exist",
    5002: "File does not exist",
    5101: "Report already retracted",
    5102: "Report already finished",
}


@dataclass
class ServerFile:
    file_id: str
    filename: str
    size: int
    md5: str
    details: bytes | None = None


@dataclass
class ServerReport:
    report_id: int
    account: str
    xml: bytes
    state: str = "open"  # open | finished | retracted | expired
    files: dict[str, ServerFile] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedRequest:
    endpoint: str
    account: str | None
    http_status: int
    response_code: int | None  # NCMEC's responseCode, None when no XML answer was given
    report_id: int | None = None
    file_id: str | None = None
    fault: str | None = None  # "fail" | "drop" | "reject" when a fault was injected


class _Fault:
    def __init__(self, kind: str, n: int, status: int = 503, code: int = 0, desc: str = ""):
        self.kind, self.n, self.status, self.code, self.desc = kind, n, status, code, desc


class ConformanceServer:
    """The server's state and its FastAPI app (:attr:`app`)."""

    def __init__(self, accounts: dict[str, str] | None = None) -> None:
        self.accounts = dict(accounts or {"esp": "secret"})
        self._lock = threading.Lock()
        self._reports: dict[int, ServerReport] = {}
        self._requests: list[RecordedRequest] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._report_ids = itertools.count(10_000_001)
        self._file_ids = itertools.count(1)
        self.base_url = ""
        self.app = self._build_app()

    # -- for tests ----------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def reports(self) -> dict[int, ServerReport]:
        with self._lock:
            return dict(self._reports)

    def calls(self, endpoint: str, *, ok: bool | None = None) -> list[RecordedRequest]:
        """The recorded requests to ``endpoint`` (only successful ones with ``ok=True``)."""
        out = [r for r in self.requests if r.endpoint == endpoint]
        if ok is not None:
            out = [r for r in out if (r.response_code == 0) == ok]
        return out

    def fail_next(self, endpoint: str, n: int = 1, status: int = 503) -> None:
        self._add_fault(endpoint, _Fault("fail", n, status=status))

    def drop_next(self, endpoint: str, n: int = 1) -> None:
        self._add_fault(endpoint, _Fault("drop", n))

    def reject_next(self, endpoint: str, code: int, description: str = "", n: int = 1) -> None:
        self._add_fault(endpoint, _Fault("reject", n, code=code, desc=description))

    def expire(self, report_id: int) -> None:
        with self._lock:
            rep = self._reports[report_id]
            if rep.state != "open":
                raise ValueError("only an open report expires")
            rep.state = "expired"

    def _add_fault(self, endpoint: str, fault: _Fault) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        with self._lock:
            self._faults.setdefault(endpoint, []).append(fault)

    def _take_fault(self, endpoint: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(endpoint) or []
            if not queue:
                return None
            f = queue[0]
            f.n -= 1
            if f.n <= 0:
                queue.pop(0)
            return f

    def _record(self, r: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(r)

    # -- the app ------------------------------------------------------------------------
    def _build_app(self) -> Any:
        app = FastAPI(title="CyberTipline conformance server", docs_url=None, redoc_url=None)
        server = self

        @app.post("/ispws/{endpoint}")
        async def handle(endpoint: str, request: Request) -> Any:
            if endpoint not in ENDPOINTS:
                server._record(RecordedRequest(endpoint, None, 404, None))
                return Response(status_code=404)
            account = server._authenticate(request.headers.get("authorization", ""))
            if account is None:
                server._record(RecordedRequest(endpoint, None, 401, None))
                return Response(
                    status_code=401, headers={"WWW-Authenticate": 'Basic realm="ispws"'}
                )
            fault = server._take_fault(endpoint)
            if fault is not None and fault.kind == "fail":
                server._record(RecordedRequest(endpoint, account, fault.status, None, fault="fail"))
                return Response(status_code=fault.status)
            if fault is not None and fault.kind == "reject":
                desc = fault.desc or DESCRIPTIONS.get(fault.code, "Error")
                server._record(RecordedRequest(endpoint, account, 200, fault.code, fault="reject"))
                return _xml(Response, _response(fault.code, desc))
            body, rec = await server._dispatch(endpoint, account, request)
            if fault is not None and fault.kind == "drop":
                server._record(_replace_fault(rec, "drop"))
                return _Dropped()
            server._record(rec)
            return _xml(Response, body)

        return app

    def _authenticate(self, header: str) -> str | None:
        if not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        expected = self.accounts.get(user)
        if expected is None or not _same(expected, password):
            return None
        return user

    async def _dispatch(
        self, endpoint: str, account: str, request: Any
    ) -> tuple[bytes, RecordedRequest]:
        def answer(code: int, rid: int | None = None, fid: str | None = None,
                   extra: str = "") -> tuple[bytes, RecordedRequest]:  # fmt: skip
            body = _response(code, DESCRIPTIONS.get(code, "Error"), rid, fid, extra)
            return body, RecordedRequest(endpoint, account, 200, code, rid, fid)

        if endpoint in ("submit", "fileinfo"):
            ctype = request.headers.get("content-type", "").lower()
            if "xml" not in ctype:
                return answer(4000)
            body = await request.body()
            document = "report" if endpoint == "submit" else "fileDetails"
            try:
                ET.fromstring(body)
            except ET.ParseError:
                return answer(4110)
            try:
                rpt.validate(body, document)
            except NcmecInvalidXml:
                return answer(4100)
            if endpoint == "submit":
                with self._lock:
                    rid = next(self._report_ids)
                    self._reports[rid] = ServerReport(rid, account, body)
                return answer(0, rid)
            root = ET.fromstring(body)
            rid_text = (root.findtext("reportId") or "").strip()
            fid = (root.findtext("fileId") or "").strip()
            with self._lock:
                rep, code = self._open_report(account, rid_text)
                if rep is None:
                    return answer(code)
                f = rep.files.get(fid)
                if f is None:
                    return answer(5002, rep.report_id)
                f.details = body
                return answer(0, rep.report_id, fid)
        form = await request.form()
        rid_text = str(form.get("id") or "").strip()
        with self._lock:
            rep, code = self._open_report(account, rid_text)
            if rep is None:
                return answer(code)
            rid = rep.report_id
        if endpoint == "upload":
            upload = form.get("file")
            data = await upload.read() if hasattr(upload, "read") else b""
            if not data:
                return answer(4200, rid)
            name = getattr(upload, "filename", None) or "upload.bin"
            md5 = hashlib.md5(data).hexdigest()
            with self._lock:
                fid = f"{next(self._file_ids):08x}" + hashlib.sha256(data).hexdigest()[:24]
                rep.files[fid] = ServerFile(fid, name, len(data), md5)
            return answer(0, rid, fid, f"<hash>{md5}</hash>")
        with self._lock:
            rep.state = "finished" if endpoint == "finish" else "retracted"
            files = list(rep.files)
        if endpoint == "finish":
            ids = "".join(f"<fileId>{escape(f)}</fileId>" for f in files)
            body = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<reportDoneResponse><responseCode>0'
                f"</responseCode><reportId>{rid}</reportId><files>{ids}</files>"
                f"</reportDoneResponse>"
            ).encode()
            return body, RecordedRequest(endpoint, account, 200, 0, rid)
        return answer(0, rid)

    def _open_report(self, account: str, rid_text: str) -> tuple[ServerReport | None, int]:
        """The open report ``rid_text`` of ``account``, or None and NCMEC's code."""
        if not rid_text.isdigit():
            return None, 4000
        rep = self._reports.get(int(rid_text))
        if rep is None or rep.account != account or rep.state == "expired":
            return None, 5001
        if rep.state == "finished":
            return None, 5102
        if rep.state == "retracted":
            return None, 5101
        return rep, 0


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


def _response(code: int, desc: str, rid: int | None = None, fid: str | None = None,
              extra: str = "") -> bytes:  # fmt: skip
    parts = [f"<responseCode>{code}</responseCode>",
             f"<responseDescription>{escape(desc)}</responseDescription>"]  # fmt: skip
    if rid is not None:
        parts.append(f"<reportId>{rid}</reportId>")
    if fid is not None:
        parts.append(f"<fileId>{escape(fid)}</fileId>")
    parts.append(extra)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<reportResponse>'
        + "".join(parts)
        + "</reportResponse>"
    ).encode()


def _xml(response_cls: Any, body: bytes) -> Any:
    return response_cls(content=body, media_type="application/xml")


def _replace_fault(r: RecordedRequest, fault: str) -> RecordedRequest:
    return RecordedRequest(r.endpoint, r.account, 0, r.response_code, r.report_id, r.file_id, fault)


class _DropConnection(Exception):
    """Raised after the status line: uvicorn then closes the connection mid-answer."""


class _Dropped(Response):
    """An ASGI response that promises a body and hangs up instead."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/xml"), (b"content-length", b"4096")],
            }
        )
        raise _DropConnection("dropped on purpose (conformance fault)")


@contextmanager
def running(accounts: dict[str, str] | None = None) -> Iterator[ConformanceServer]:
    """A :class:`ConformanceServer` served by uvicorn on 127.0.0.1 (a free port) in a
    background thread; stopped on exit. ``server.base_url`` ends in ``/ispws``."""
    import uvicorn

    server = ConformanceServer(accounts)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(server.app, log_level="critical", access_log=False, lifespan="off")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not uv.started:
            if not thread.is_alive():
                raise RuntimeError("the conformance server did not start")
            threading.Event().wait(0.01)
        server.base_url = f"http://127.0.0.1:{port}/ispws"
        yield server
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        sock.close()
