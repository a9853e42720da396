"""A confirmed case as NCMEC CyberTipline XML, validated against NCMEC's schema.

:func:`build_report` writes the ``report`` document (``POST /submit``) and
:func:`build_file_details` the ``fileDetails`` document of one uploaded file
(``POST /fileinfo``), each child in the order NCMEC's schema fixes (NCMEC rejects an
element out of order with code 4100). :func:`validate` checks a document against the
packaged copy of the schema (``cyber_tipline.xsd``; its origin in ``XSD_ORIGIN.md``)
with ``xmlschema``; both builders validate what they return, so an invalid document
raises :class:`~blindmatch.errors.NcmecInvalidXml` and is never sent.

The report says: incident type "Child Pornography (possession, manufacture, and
distribution)", when it happened, that it happened in a chat (``chatImIncident``: the
client, the room, the Matrix event), who reports (the platform's reporting person), the
reported user (``espIdentifier`` and ``screenName``: the Matrix user id), and in
``additionalInfo`` how it was found (the matched list entries and the reviewer's
confirmation). Each file carries its SHA-256 and MD5 (``originalFileHash``), the
reviewer's industry classification (``industryClassification`` A1/A2/B1/B2) and whether
the platform viewed it (``fileViewedByEsp``).
"""

from __future__ import annotations

import functools
import hashlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from blindmatch.errors import NcmecInvalidXml
from blindmatch.ncmec.config import NcmecConfig
from blindmatch.review.types import ConfirmedCase

INCIDENT_TYPE = "Child Pornography (possession, manufacture, and distribution)"
CATEGORIES = ("A1", "A2", "B1", "B2")  # the schema's fileClassification
XSD_NAME = "cyber_tipline.xsd"
XSD_SHA256 = "aee4c88099409b8a27d1403a5bc9bf0809bdc4819c079081abc1e2275efb392b"
DOCUMENTS = ("report", "fileDetails")

# Characters XML 1.0 cannot carry: a report never fails on a stray control character
# in a room name or a file name.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xsd_bytes() -> bytes:
    """The packaged schema, byte for byte."""
    return resources.files("blindmatch.ncmec").joinpath(XSD_NAME).read_bytes()


@functools.lru_cache(maxsize=1)
def schema() -> Any:
    """NCMEC's schema as an ``xmlschema.XMLSchema`` (loaded once per process)."""
    import xmlschema

    with resources.as_file(resources.files("blindmatch.ncmec").joinpath(XSD_NAME)) as path:
        return xmlschema.XMLSchema(str(path))


def validate(xml: bytes, document: str) -> None:
    """Raise :class:`NcmecInvalidXml` unless ``xml`` is a ``document`` (``report`` or
    ``fileDetails``) valid against NCMEC's schema."""
    import xmlschema

    if document not in DOCUMENTS:
        raise ValueError(f"unknown document {document!r}")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise NcmecInvalidXml(document, f"not well-formed XML ({e})") from None
    if root.tag != document:
        raise NcmecInvalidXml(document, f"the root element is <{root.tag}>, not <{document}>")
    try:
        schema().validate(xml.decode("utf-8"))
    except xmlschema.XMLSchemaValidationError as e:
        where = f" at {e.path}" if getattr(e, "path", None) else ""
        raise NcmecInvalidXml(document, f"{e.reason}{where}") from None
    except UnicodeDecodeError:
        raise NcmecInvalidXml(document, "not UTF-8") from None


def xml_datetime(t: datetime) -> str:
    """``xs:dateTime`` in UTC, e.g. ``2026-12-03T10:15:00Z`` (a naive time is UTC)."""
    t = t if t.tzinfo else t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = _clean(text)
    return el


def _serialize(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def entry_lines(entries: list[dict[str, Any]]) -> list[str]:
    """The matched list entries as lines: ``hotline/list/entry distance=d``.

    Accepts the cases table's shape (``{"distance", "refs": [{"hotline", "list",
    "entry_id"}]}``) and a flat one (``{"hotline", "list", "entry_id", "distance"}``)."""
    out = []
    for e in entries:
        got = e.get("refs")
        refs: list[dict[str, Any]] = got if isinstance(got, list) else [e]
        for r in refs:
            name = "/".join(str(r[k]) for k in ("hotline", "list", "entry_id") if r.get(k))
            dist = e.get("distance", r.get("distance"))
            out.append(f"{name or 'entry'}" + (f" distance={dist}" if dist is not None else ""))
    return out


@dataclass(frozen=True)
class AccountStatus:
    """What the platform did to the reported account (``review.enforcement``): ``action``
    ``suspend`` (temporarily disabled) or ``deactivate`` (permanently); a ``warn`` is not
    reported as disabled. ``notified_at``: when the statement of reasons reached the user."""

    action: str
    disabled_at: datetime | None
    notified_at: datetime | None = None


def build_report(
    case: ConfirmedCase,
    config: NcmecConfig,
    incident_at: datetime | None = None,
    account: AccountStatus | None = None,
) -> bytes:
    """The ``report`` document for ``case`` (validated). ``incident_at`` is when the user
    sent the picture (the case's creation time); without it, the confirmation time is
    used and ``incidentDateTimeDescription`` says so. ``account``: whether the account was
    disabled (``accountTemporarilyDisabled`` / ``accountPermanentlyDisabled``)."""
    if case.category not in CATEGORIES:
        raise NcmecInvalidXml(
            "report", f"category {case.category!r} is not one of {', '.join(CATEGORIES)}"
        )
    root = ET.Element("report")
    summary = _sub(root, "incidentSummary")
    _sub(summary, "incidentType", INCIDENT_TYPE)
    _sub(summary, "incidentDateTime", xml_datetime(incident_at or case.decided_at))
    if incident_at is None:
        _sub(
            summary,
            "incidentDateTimeDescription",
            "The time a reviewer confirmed the case; the send time was not recorded.",
        )
    else:
        _sub(
            summary,
            "incidentDateTimeDescription",
            "The time the user sent the picture, when the platform blocked or received it.",
        )
    chat = _sub(_sub(root, "internetDetails"), "chatImIncident")
    _sub(chat, "chatClient", config.chat_client)
    if case.room:
        _sub(chat, "chatRoomName", case.room)
    chat_info = [f"Matrix event {case.event_id}"] if case.event_id else []
    chat_info.append(
        {
            "match": "The sender's device matched the picture against known-image hash lists "
            "before end-to-end encryption; the platform blocked delivery.",
            "report": "A recipient reported the message with a verified franking tag.",
            "threshold": "Released for review after the account crossed the match threshold.",
        }.get(case.kind, f"Case kind: {case.kind}.")
    )
    _sub(chat, "additionalInfo", " ".join(chat_info))
    reporter = _sub(root, "reporter")
    person = _sub(reporter, "reportingPerson")
    r = config.reporter
    if r.first_name:
        _sub(person, "firstName", r.first_name)
    if r.last_name:
        _sub(person, "lastName", r.last_name)
    if r.phone:
        _sub(person, "phone", r.phone)
    _sub(person, "email", r.email)
    if r.company_template:
        _sub(reporter, "companyTemplate", r.company_template)
    if r.terms_of_service:
        _sub(reporter, "termsOfService", r.terms_of_service)
    if r.legal_url:
        _sub(reporter, "legalURL", r.legal_url)
    user = _sub(root, "personOrUserReported")
    _sub(user, "espIdentifier", case.account)
    _sub(user, "espService", config.esp_service)
    _sub(user, "screenName", case.account)
    if account is not None and account.action in ("suspend", "deactivate"):
        name = "accountTemporarilyDisabled" if account.action == "suspend" else (
            "accountPermanentlyDisabled")  # fmt: skip
        attrs = {"userNotified": "true" if account.notified_at else "false"}
        if account.disabled_at is not None:
            attrs["disabledDate"] = xml_datetime(account.disabled_at)
        if account.notified_at is not None:
            attrs["userNotifiedDate"] = xml_datetime(account.notified_at)
        _sub(user, name, "true" if account.disabled_at is not None else "false", **attrs)
    lines = entry_lines(case.entries)
    info = [
        f"Platform case {case.case_id} ({case.kind}), confirmed by a human reviewer on "
        f"{xml_datetime(case.decided_at)}; industry classification {case.category}.",
    ]
    if lines:
        info.append("Matched hash-list entries: " + "; ".join(lines) + ".")
    info.append(f"Files attached: {len(case.media)}.")
    _sub(root, "additionalInfo", " ".join(info))
    xml = _serialize(root)
    validate(xml, "report")
    return xml


def file_hashes(data: bytes) -> dict[str, str]:
    """The ``originalFileHash`` values of a file: SHA256 and MD5, lower-case hex."""
    return {"SHA256": hashlib.sha256(data).hexdigest(), "MD5": hashlib.md5(data).hexdigest()}


def build_file_details(
    report_id: int,
    file_id: str,
    *,
    filename: str,
    hashes: dict[str, str],
    classification: str,
    viewed_by_esp: bool,
) -> bytes:
    """The ``fileDetails`` document of one uploaded file (validated)."""
    root = ET.Element("fileDetails")
    _sub(root, "reportId", str(report_id))
    _sub(root, "fileId", file_id)
    _sub(root, "originalFileName", filename)
    _sub(root, "fileViewedByEsp", "true" if viewed_by_esp else "false")
    _sub(root, "publiclyAvailable", "false")  # end-to-end encrypted chat
    _sub(root, "industryClassification", classification)
    for kind, value in hashes.items():
        _sub(root, "originalFileHash", value, hashType=kind)
    xml = _serialize(root)
    validate(xml, "fileDetails")
    return xml
