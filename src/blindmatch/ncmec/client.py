"""The CyberTipline reporting API over HTTP (NCMEC's "ISP web services").

Every call is a ``POST`` under the base URL with HTTP Basic auth, and every answer is XML:

- ``/submit``   the ``report`` document (``text/xml``) → ``reportResponse`` with ``reportId``
- ``/upload``   multipart form ``id`` (the report id) and ``file`` → ``fileId`` (and ``hash``,
  the MD5 NCMEC computed)
- ``/fileinfo`` the ``fileDetails`` document of an uploaded file → ``reportResponse``
- ``/finish``   form ``id`` → ``reportDoneResponse`` (``reportId``, ``files/fileId``…)
- ``/retract``  form ``id`` → ``reportResponse`` (only before ``/finish``)

``responseCode`` 0 is success; anything else is NCMEC's error code with
``responseDescription`` (1000-1999 server-side failures, 2000-3999 the account, 4000-4999
the request, 5001 no such report, 5002 no such file, 5101 already retracted, 5102 already
finished). The base URLs are :data:`~blindmatch.ncmec.config.TEST_URL` (default) and
:data:`~blindmatch.ncmec.config.PRODUCTION_URL`.

Errors: a transport failure, HTTP 5xx/429, a dropped or unreadable answer raise
:class:`~blindmatch.errors.NcmecUnavailable` (transient: the request may or may not have
been processed); HTTP 401/403 and codes 2000-3999 :class:`~blindmatch.errors.NcmecAuthFailed`;
any other non-zero code :class:`~blindmatch.errors.NcmecRejected` — except 1000-1999
(NCMEC's own save or upload failed), which are transient too. The report and fileDetails
documents are validated against the schema before they are sent (``validate=False`` is
for the conformance tests only).
"""

from __future__ import annotations

import base64
import http.client
import secrets
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from blindmatch.errors import NcmecAuthFailed, NcmecRejected, NcmecUnavailable
from blindmatch.ncmec import report as rpt

MAX_RESPONSE_BYTES = 1 << 20  # NCMEC's answers are a few hundred bytes
TRANSIENT_CODES = range(1000, 2000)  # server error, save failed, upload failed, update failed
AUTH_CODES = range(2000, 4000)  # authentication required, not authorized (for submissions…)
REPORT_NOT_FOUND = 5001
FILE_NOT_FOUND = 5002
ALREADY_RETRACTED = 5101
ALREADY_FINISHED = 5102


@dataclass(frozen=True)
class Response:
    """A parsed ``reportResponse`` or ``reportDoneResponse`` (response code 0)."""

    endpoint: str
    code: int
    description: str
    report_id: int | None = None
    file_id: str | None = None
    hash: str | None = None
    files: list[str] = field(default_factory=list)  # reportDoneResponse/files/fileId


def parse_response(endpoint: str, body: bytes) -> Response:
    """NCMEC's XML answer; an unreadable one raises NcmecUnavailable (we cannot tell what
    happened), a non-zero code NcmecRejected / NcmecAuthFailed / NcmecUnavailable."""
    if len(body) > MAX_RESPONSE_BYTES or b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise NcmecUnavailable(f"NCMEC's answer to /{endpoint} is not a CyberTipline response")
    try:
        root = ET.fromstring(body)
        code = int((root.findtext("responseCode") or "").strip())
    except (ET.ParseError, ValueError):
        raise NcmecUnavailable(
            f"NCMEC's answer to /{endpoint} is unreadable (no responseCode)"
        ) from None
    if root.tag not in ("reportResponse", "reportDoneResponse"):
        raise NcmecUnavailable(f"NCMEC's answer to /{endpoint} is a <{root.tag}>")
    desc = (root.findtext("responseDescription") or "").strip()
    if code != 0:
        if code in TRANSIENT_CODES:
            raise NcmecUnavailable(
                f"NCMEC could not process /{endpoint}: {code} {desc}", answered=True
            )
        cls = NcmecAuthFailed if code in AUTH_CODES else NcmecRejected
        raise cls(endpoint, code, desc)
    rid = (root.findtext("reportId") or "").strip()
    return Response(
        endpoint=endpoint,
        code=0,
        description=desc,
        report_id=int(rid) if rid.isdigit() else None,
        file_id=(root.findtext("fileId") or "").strip() or None,
        hash=(root.findtext("hash") or "").strip() or None,
        files=[(f.text or "").strip() for f in root.findall("files/fileId")],
    )


def _multipart(fields: dict[str, str], file: tuple[str, bytes] | None) -> tuple[bytes, str]:
    boundary = "blindmatch-" + secrets.token_hex(16)
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    if file is not None:
        filename, data = file
        safe = urllib.parse.quote(filename, safe=" ._-")
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{safe}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class NcmecClient:
    """One CyberTipline account at one base URL."""

    def __init__(
        self, base_url: str, username: str, password: str, *, timeout: float = 30.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self._auth = f"Basic {token}"

    # -- the five endpoints ---------------------------------------------------------
    def submit(self, report_xml: bytes, *, validate: bool = True) -> Response:
        if validate:
            rpt.validate(report_xml, "report")
        r = self._post("submit", report_xml, "text/xml; charset=utf-8")
        if r.report_id is None:
            raise NcmecUnavailable("NCMEC accepted /submit without a reportId")
        return r

    def upload(self, report_id: int, filename: str, data: bytes) -> Response:
        body, ctype = _multipart({"id": str(report_id)}, (filename, data))
        r = self._post("upload", body, ctype)
        if r.file_id is None:
            raise NcmecUnavailable("NCMEC accepted /upload without a fileId")
        return r

    def fileinfo(self, details_xml: bytes, *, validate: bool = True) -> Response:
        if validate:
            rpt.validate(details_xml, "fileDetails")
        return self._post("fileinfo", details_xml, "text/xml; charset=utf-8")

    def finish(self, report_id: int) -> Response:
        body, ctype = _multipart({"id": str(report_id)}, None)
        return self._post("finish", body, ctype)

    def retract(self, report_id: int) -> Response:
        body, ctype = _multipart({"id": str(report_id)}, None)
        return self._post("retract", body, ctype)

    # -- transport ------------------------------------------------------------------
    def _post(self, endpoint: str, body: bytes, content_type: str) -> Response:
        req = urllib.request.Request(
            f"{self.base_url}/{endpoint}",
            data=body,
            method="POST",
            headers={"Authorization": self._auth, "Content-Type": content_type},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                answer = resp.read(MAX_RESPONSE_BYTES + 1)
                if getattr(resp, "length", None):  # bytes promised and never sent
                    raise NcmecUnavailable(
                        f"the connection dropped during NCMEC's answer to /{endpoint}"
                    )
        except urllib.error.HTTPError as e:
            status = e.code
            text = e.read(MAX_RESPONSE_BYTES + 1) if e.fp is not None else b""
            e.close()
            if status in (401, 403):
                why = f"HTTP {status}: the account was refused"
                raise NcmecAuthFailed(endpoint, 2000 if status == 401 else 3000, why) from None
            if status >= 500 or status == 429:
                raise NcmecUnavailable(
                    f"NCMEC answered HTTP {status} to /{endpoint}", answered=True
                ) from None
            return parse_response(endpoint, text)  # a 4xx with a coded XML answer
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise NcmecUnavailable(f"NCMEC /{endpoint} failed: {reason}") from None
        return parse_response(endpoint, answer)
