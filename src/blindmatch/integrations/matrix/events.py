"""The voucher field of an ``m.room.encrypted`` event: build it (client) and parse it (server).

Pure: no Synapse, no I/O. The format (docs/matrix.md has the full account)::

    "org.blindmatch.voucher": {
        "v": 1,
        "voucher": "<standard base64 of the voucher bytes, padded>",
        "blob": "mxc://<server>/<media id>",
        "blob_sha256": "<lowercase hex SHA-256 of the uploaded (encrypted) bytes>",
        "answer": "<standard base64 of the distance-check answer>"   # checked tables only
    }

or a list of 1..4 such objects when one event carries several attachments (an
image and its encrypted thumbnail) or a video (one voucher per chosen frame, all
naming the same blob). The field sits beside ``algorithm``,
``ciphertext``, ``sender_key``, ``session_id`` and ``device_id`` in the
*outer* (unencrypted) content, so the homeserver sees it.

``answer`` is present exactly when the voucher's table is distance-checked (table format 2,
docs/protocol.md §11): the client's answer (:func:`~blindmatch.protocol.answer_for_image`,
exactly :func:`~blindmatch.protocol.challenge.answer_bytes` bytes) to the challenge the
module gave for that voucher (``POST /_blindmatch/v1/challenge`` with ``{"voucher":
base64}`` → ``{"challenge": base64}``, :func:`parse_challenge_request`; the same bytes for
the same voucher every time, so the recipient fetches the one the sender answered).

A refusal from the server is a 403 ``M_FORBIDDEN`` whose body carries
``org.blindmatch.reason`` (one of :class:`Reason`), ``org.blindmatch.message``,
and for a match ``org.blindmatch.case`` and ``org.blindmatch.appeal``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from blindmatch.errors import EventRejected, ProtocolError

VOUCHER_FIELD = "org.blindmatch.voucher"
FRANKING_FIELD = "org.blindmatch.franking"  # outer: {"v": 1, "commitment": base64 of C}
#: Inside the encrypted content: one opening seed per uploaded blob (property 6).
OPENING_FIELD = "org.blindmatch.opening"
FILES_FIELD = "org.blindmatch.files"  # outer: [{"v": 1, "blob", "blob_sha256"}]: not images
REASON_FIELD = "org.blindmatch.reason"
MESSAGE_FIELD = "org.blindmatch.message"
CASE_FIELD = "org.blindmatch.case"
APPEAL_FIELD = "org.blindmatch.appeal"
FIELD_VERSION = 1
MAX_ATTACHMENTS = 4
_KEYS = frozenset({"v", "voucher", "blob", "blob_sha256"})
ANSWER_KEY = "answer"  # beside the voucher, for a distance-checked table's voucher
_MXC = re.compile(r"mxc://([A-Za-z0-9.\-:\[\]]{1,255})/([A-Za-z0-9_\-]{1,255})")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_VOUCHER_MAGIC = b"BMVC"
_TABLE_ID = slice(8, 24)  # where a voucher names its table (docs/protocol.md §5)


class Reason(StrEnum):
    """Why the module refused an event (``org.blindmatch.reason``)."""

    LISTED_IMAGE = "listed_image"  # block policy: the voucher matched a listed image
    VOUCHER_REQUIRED = "voucher_required"  # encrypted event after an upload, no voucher for it
    MALFORMED_VOUCHER = "malformed_voucher"  # not the documented JSON / base64 / voucher layout
    UNSUPPORTED_VERSION = "unsupported_version"  # "v" is not 1
    VOUCHER_OVERSIZED = "voucher_oversized"  # larger than this table's vouchers
    WRONG_TABLE = "wrong_table"  # made against another table (e.g. before a table update)
    INVALID_VOUCHER = "invalid_voucher"  # right size and table, but a point does not decode
    VOUCHER_REPLAYED = "voucher_replayed"  # this voucher id was already used
    TOO_MANY_VOUCHERS = "too_many_vouchers"  # threshold: max_vouchers_per_hour reached
    BLOB_UNKNOWN = "blob_unknown"  # no such upload on this server
    BLOB_NOT_YOURS = "blob_not_yours"  # the blob was uploaded by another account
    BLOB_HASH_MISMATCH = "blob_hash_mismatch"  # blob_sha256 is not the uploaded bytes' hash
    BLOB_ALREADY_BOUND = "blob_already_bound"  # the blob is bound to another voucher/event
    BLOB_QUARANTINED = "blob_quarantined"  # the blob was quarantined (match, or left unbound)
    MALFORMED_FRANKING = "malformed_franking"  # org.blindmatch.franking is not {"v": 1, ...}
    FRANKING_REQUIRED = "franking_required"  # require_franking and no franking commitment
    INTERNAL_ERROR = "internal_error"  # the module failed: it refuses rather than lets through
    # reports (POST /_blindmatch/v1/report)
    MALFORMED_REPORT = "malformed_report"  # not the documented JSON
    NOT_A_MEMBER = "not_a_member"  # the reporter is not in the room
    NOT_FRANKED = "not_franked"  # this server relayed no franked event with that id there
    REPORT_NOT_VERIFIED = "report_not_verified"  # the payload is not what the sender sent
    # an attachment's EncryptedFile is malformed or breaks Matrix's rules (a non-zero IV
    # counter half): the server cannot review the bytes the recipient was shown
    UNVERIFIABLE_ATTACHMENT = "unverifiable_attachment"
    TOO_MANY_REPORTS = "too_many_reports"  # max_reports_per_hour reached
    # distance-check challenges (POST /_blindmatch/v1/challenge)
    TOO_MANY_CHALLENGES = "too_many_challenges"  # max_challenges_per_hour reached
    # appeals (POST /_blindmatch/v1/appeal; blindmatch.review.appeals)
    MALFORMED_APPEAL = "malformed_appeal"  # not {"case_id": str, "text": str}
    UNKNOWN_CASE = "unknown_case"  # no such case, or not this account's: one answer
    APPEAL_WINDOW_CLOSED = "appeal_window_closed"  # past the appeal window
    APPEAL_OPEN = "appeal_open"  # the case already has an open appeal
    APPEAL_DECIDED = "appeal_decided"  # the case's appeal was decided
    TOO_MANY_APPEALS = "too_many_appeals"  # max_appeals_per_hour reached


MESSAGES: dict[Reason, str] = {
    Reason.LISTED_IMAGE: "this image matches a known abuse image and was not sent",
    Reason.VOUCHER_REQUIRED: "an encrypted message after an upload must carry a voucher "
    "binding every blob you uploaded and have not sent yet",
    Reason.MALFORMED_VOUCHER: "the voucher field is malformed",
    Reason.UNSUPPORTED_VERSION: "unsupported voucher field version",
    Reason.VOUCHER_OVERSIZED: "the voucher is larger than this table's vouchers",
    Reason.WRONG_TABLE: "the voucher was made for another table; fetch the current one",
    Reason.INVALID_VOUCHER: "the voucher did not verify",
    Reason.VOUCHER_REPLAYED: "this voucher was already used",
    Reason.TOO_MANY_VOUCHERS: "too many attachments from this account in the last hour; "
    "try again later",
    Reason.BLOB_UNKNOWN: "the attachment was not uploaded to this server",
    Reason.BLOB_NOT_YOURS: "the attachment was uploaded by another account",
    Reason.BLOB_HASH_MISMATCH: "blob_sha256 does not match the uploaded attachment",
    Reason.BLOB_ALREADY_BOUND: "this attachment was already sent with another voucher",
    Reason.BLOB_QUARANTINED: "this attachment is quarantined",
    Reason.MALFORMED_FRANKING: "the franking field is malformed",
    Reason.FRANKING_REQUIRED: "encrypted messages on this server must carry a franking "
    "commitment (org.blindmatch.franking)",
    Reason.INTERNAL_ERROR: "the server could not check this message; try again later",
    Reason.MALFORMED_REPORT: "the report is malformed",
    Reason.NOT_A_MEMBER: "only members of the room can report its messages",
    Reason.NOT_FRANKED: "this server has no franking record of that event in that room",
    Reason.REPORT_NOT_VERIFIED: "the reported message is not what its sender sent",
    Reason.UNVERIFIABLE_ATTACHMENT: "an attachment of the reported message cannot be "
    "verified: its EncryptedFile is malformed or breaks Matrix's rules (e.g. a non-zero IV "
    "counter)",
    Reason.TOO_MANY_REPORTS: "too many reports from this account; try again later",
    Reason.TOO_MANY_CHALLENGES: "too many distance-check challenges for this account; "
    "try again later",
    Reason.MALFORMED_APPEAL: "the appeal is malformed",
    Reason.UNKNOWN_CASE: "no case with this id can be appealed from your account",
    Reason.APPEAL_WINDOW_CLOSED: "the appeal window of this case has closed",
    Reason.APPEAL_OPEN: "this case already has an open appeal",
    Reason.APPEAL_DECIDED: "this case's appeal was already decided",
    Reason.TOO_MANY_APPEALS: "too many appeals from this account; try again later",
}


def rejected(reason: Reason, detail: str = "", case_id: str | None = None) -> EventRejected:
    msg = MESSAGES[reason] + (f" ({detail})" if detail else "")
    return EventRejected(reason.value, msg, case_id)


@dataclass(frozen=True)
class Attachment:
    """One parsed ``org.blindmatch.voucher`` object."""

    voucher: bytes
    server_name: str
    media_id: str
    blob_sha256: str
    table_id: bytes
    #: The distance-check answer (a distance-checked table's voucher), else None.
    answer: bytes | None = field(default=None, repr=False)

    @property
    def mxc(self) -> str:
        return f"mxc://{self.server_name}/{self.media_id}"

    @property
    def voucher_id(self) -> bytes:
        return self.voucher[24:40]  # docs/protocol.md §5: 16 bytes after the header


def b64_len(n: int) -> int:
    """Length of the padded standard base64 of ``n`` bytes."""
    return 4 * ((n + 2) // 3)


def voucher_field(
    attachments: Sequence[tuple[bytes, str, bytes | str]],
    answers: Sequence[bytes | None] | None = None,
) -> dict[str, Any] | list[dict[str, Any]]:
    """The field's value for ``(voucher, mxc URI, blob SHA-256)`` triples (client side),
    with each voucher's distance-check answer (``answers``, in the same order; None for a
    voucher of a table without the check).

    One attachment gives an object, several a list, as the server expects.
    """
    if not 1 <= len(attachments) <= MAX_ATTACHMENTS:
        raise ValueError(f"an event carries 1 to {MAX_ATTACHMENTS} vouchers")
    answers = [None] * len(attachments) if answers is None else list(answers)
    if len(answers) != len(attachments):
        raise ValueError("one answer (or None) per voucher")
    out = []
    for (voucher, mxc, digest), answer in zip(attachments, answers, strict=True):
        hexdigest = digest.hex() if isinstance(digest, bytes) else digest.lower()
        if not _MXC.fullmatch(mxc) or not _HEX64.fullmatch(hexdigest):
            raise ValueError("blob must be an mxc:// URI and blob_sha256 a SHA-256")
        item: dict[str, Any] = {
            "v": FIELD_VERSION,
            "voucher": base64.b64encode(voucher).decode("ascii"),
            "blob": mxc,
            "blob_sha256": hexdigest,
        }
        if answer is not None:
            item[ANSWER_KEY] = base64.b64encode(answer).decode("ascii")
        out.append(item)
    return out[0] if len(out) == 1 else out


@dataclass(frozen=True)
class DeclaredFile:
    """One ``org.blindmatch.files`` item: an encrypted blob its sender says is no picture."""

    server_name: str
    media_id: str
    blob_sha256: str

    @property
    def mxc(self) -> str:
        return f"mxc://{self.server_name}/{self.media_id}"


def parse_files_field(content: Mapping[str, Any], *, server_name: str) -> list[DeclaredFile]:
    """The blobs an event declares as non-image files (``[]`` when the field is absent).

    ``[{"v": 1, "blob": "mxc://…", "blob_sha256": "<hex>"}, …]`` (1 to 4); anything else
    raises :class:`~blindmatch.errors.EventRejected` (``malformed_voucher``).
    """
    if FILES_FIELD not in content:
        return []
    raw = content[FILES_FIELD]
    if not isinstance(raw, list | tuple) or not 1 <= len(raw) <= MAX_ATTACHMENTS:
        raise rejected(Reason.MALFORMED_VOUCHER, f"{FILES_FIELD} is a list of 1 to 4 objects")
    out = []
    for item in raw:
        if not isinstance(item, Mapping) or set(item) != {"v", "blob", "blob_sha256"}:
            raise rejected(Reason.MALFORMED_VOUCHER, "a file is {v, blob, blob_sha256}")
        if type(item["v"]) is not int or item["v"] != FIELD_VERSION:
            raise rejected(Reason.UNSUPPORTED_VERSION, "files: this server reads v=1")
        blob, digest = item["blob"], item["blob_sha256"]
        m = _MXC.fullmatch(blob) if isinstance(blob, str) else None
        if m is None:
            raise rejected(Reason.MALFORMED_VOUCHER, "blob must be mxc://server/media_id")
        if m.group(1) != server_name:
            raise rejected(Reason.BLOB_UNKNOWN, f"{blob} is not on {server_name}")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise rejected(Reason.MALFORMED_VOUCHER, "blob_sha256 must be 64 lowercase hex digits")
        out.append(DeclaredFile(m.group(1), m.group(2), digest))
    if len({f.media_id for f in out}) != len(out):
        raise rejected(Reason.BLOB_ALREADY_BOUND, "the same blob twice in one event")
    return out


def files_field(files: Sequence[tuple[str, bytes | str]]) -> list[dict[str, Any]]:
    """The ``org.blindmatch.files`` value for ``(mxc URI, blob SHA-256)`` pairs (client side)."""
    if not 1 <= len(files) <= MAX_ATTACHMENTS:
        raise ValueError(f"an event declares 1 to {MAX_ATTACHMENTS} files")
    out = []
    for mxc, digest in files:
        hexdigest = digest.hex() if isinstance(digest, bytes) else digest.lower()
        if not _MXC.fullmatch(mxc) or not _HEX64.fullmatch(hexdigest):
            raise ValueError("blob must be an mxc:// URI and blob_sha256 a SHA-256")
        out.append({"v": FIELD_VERSION, "blob": mxc, "blob_sha256": hexdigest})
    return out


def parse_franking_field(content: Mapping[str, Any]) -> bytes | None:
    """The franking commitment ``C`` (32 bytes) in an event's outer content, or None.

    ``{"v": 1, "commitment": "<standard base64 of C, padded or not>"}``; anything else
    raises :class:`~blindmatch.errors.EventRejected` (``malformed_franking``).
    """
    if FRANKING_FIELD not in content:
        return None
    f = content[FRANKING_FIELD]
    if not isinstance(f, Mapping) or set(f) != {"v", "commitment"}:
        raise rejected(Reason.MALFORMED_FRANKING, 'expected {"v": 1, "commitment": base64}')
    if type(f["v"]) is not int or f["v"] != 1:
        raise rejected(Reason.MALFORMED_FRANKING, "v must be 1")
    text = f["commitment"]
    if not isinstance(text, str) or len(text) > 44:
        raise rejected(Reason.MALFORMED_FRANKING, "commitment is 32 bytes of base64")
    try:
        raw = base64.b64decode((text + "=" * (-len(text) % 4)).encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise rejected(Reason.MALFORMED_FRANKING, "commitment is 32 bytes of base64") from None
    if len(raw) != 32:
        raise rejected(Reason.MALFORMED_FRANKING, "commitment is 32 bytes of base64")
    return raw


def parse_voucher_field(
    content: Mapping[str, Any],
    *,
    server_name: str,
    tables: Mapping[bytes, int],
    answers: Mapping[bytes, int] | None = None,
) -> list[Attachment] | None:
    """The attachments an event's outer content binds, or None when it has no voucher field.

    ``tables`` maps the id of every table the server accepts vouchers for (the
    current one, and the previous one for a grace period after an update) to
    its voucher size; ``answers`` maps the ids of those that are distance-checked to
    their answer size (:func:`~blindmatch.protocol.challenge.answer_bytes`): a voucher of
    such a table must carry ``answer`` of exactly that size, any other must not. Checks
    everything that needs no database and no key: the JSON shape, the version, base64,
    the table, the exact voucher (and answer) size, the blob URI (on ``server_name``) and
    hash syntax, and that no blob or voucher appears twice. Raises
    :class:`~blindmatch.errors.EventRejected` with the reason.
    """
    if VOUCHER_FIELD not in content:
        return None
    raw = content[VOUCHER_FIELD]
    items = list(raw) if isinstance(raw, list | tuple) else [raw]
    if not 1 <= len(items) <= MAX_ATTACHMENTS:
        raise rejected(Reason.MALFORMED_VOUCHER, f"1 to {MAX_ATTACHMENTS} vouchers per event")
    out = [_parse_one(x, server_name, tables, answers or {}) for x in items]
    # Several vouchers may bind one blob (a video: one per chosen frame), all in this event
    # and all naming the same ciphertext hash; another event binding it is refused later.
    digests: dict[str, str] = {}
    for a in out:
        if digests.setdefault(a.media_id, a.blob_sha256) != a.blob_sha256:
            raise rejected(Reason.MALFORMED_VOUCHER, "one blob with two different blob_sha256")
    if len({a.voucher_id for a in out}) != len(out):
        raise rejected(Reason.VOUCHER_REPLAYED, "the same voucher twice in one event")
    return out


def _parse_one(
    item: Any, server_name: str, tables: Mapping[bytes, int], answers: Mapping[bytes, int]
) -> Attachment:
    if not isinstance(item, Mapping):  # Synapse may hand over its own mapping type
        raise rejected(Reason.MALFORMED_VOUCHER, "expected an object")
    v = item.get("v")
    if type(v) is not int:
        raise rejected(Reason.MALFORMED_VOUCHER, '"v" must be an integer')
    if v != FIELD_VERSION:
        raise rejected(Reason.UNSUPPORTED_VERSION, f"v={v}; this server reads v=1")
    if set(item) - {ANSWER_KEY} != _KEYS:
        raise rejected(
            Reason.MALFORMED_VOUCHER, "expected exactly v, voucher, blob, blob_sha256 (, answer)"
        )
    text, blob, digest = item["voucher"], item["blob"], item["blob_sha256"]
    if not isinstance(text, str) or not isinstance(blob, str) or not isinstance(digest, str):
        raise rejected(Reason.MALFORMED_VOUCHER, "voucher, blob and blob_sha256 are strings")
    voucher, table_id = _voucher_bytes(text, tables)
    answer = None
    answer_size = answers.get(table_id)
    if answer_size is not None or ANSWER_KEY in item:
        answer = _answer_bytes(item.get(ANSWER_KEY), answer_size)
    m = _MXC.fullmatch(blob)
    if m is None:
        raise rejected(Reason.MALFORMED_VOUCHER, "blob must be mxc://server/media_id")
    if m.group(1) != server_name:
        raise rejected(Reason.BLOB_UNKNOWN, f"{blob} is not on {server_name}")
    if not _HEX64.fullmatch(digest):
        raise rejected(Reason.MALFORMED_VOUCHER, "blob_sha256 must be 64 lowercase hex digits")
    return Attachment(voucher, m.group(1), m.group(2), digest, table_id, answer)


def _voucher_bytes(text: str, tables: Mapping[bytes, int]) -> tuple[bytes, bytes]:
    """A voucher's bytes and table id from its base64: checks the size, base64, magic,
    that the table is one of ``tables`` and the exact size of that table's vouchers."""
    largest = max(tables.values(), default=0)
    if len(text) > b64_len(largest):
        raise rejected(Reason.VOUCHER_OVERSIZED, f"this server's vouchers are {largest} B")
    try:
        voucher = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise rejected(Reason.MALFORMED_VOUCHER, "voucher is not standard base64") from None
    if len(voucher) < _TABLE_ID.stop or voucher[:4] != _VOUCHER_MAGIC:
        raise rejected(Reason.MALFORMED_VOUCHER, "not a voucher")
    table_id = voucher[_TABLE_ID]
    size = tables.get(table_id)
    if size is None:
        raise rejected(Reason.WRONG_TABLE)
    if len(voucher) != size:
        raise rejected(Reason.MALFORMED_VOUCHER, f"this table's vouchers are {size} B")
    return voucher, table_id


def _answer_bytes(text: object, size: int | None) -> bytes:
    """The ``answer`` beside a voucher: required (and exactly ``size`` bytes of standard
    base64) for a distance-checked table's voucher, refused for any other (``size`` None)."""
    if size is None:
        raise rejected(Reason.MALFORMED_VOUCHER, "this table's vouchers take no answer")
    if text is None:
        raise rejected(
            Reason.MALFORMED_VOUCHER, "a distance-checked table's voucher needs its answer"
        )
    if not isinstance(text, str) or len(text) != b64_len(size):
        raise rejected(Reason.MALFORMED_VOUCHER, f"the answer is {size} B of base64")
    try:
        answer = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise rejected(Reason.MALFORMED_VOUCHER, "the answer is not standard base64") from None
    if len(answer) != size:
        raise rejected(Reason.MALFORMED_VOUCHER, f"the answer is {size} B of base64")
    return answer


def parse_challenge_request(
    body: Mapping[str, Any], *, tables: Mapping[bytes, int]
) -> tuple[bytes, bytes]:
    """``{"voucher": "<standard base64>"}`` (``POST /_blindmatch/v1/challenge``): the
    voucher's bytes and table id, with the checks :func:`parse_voucher_field` makes of a
    voucher (``tables``: id → voucher size of every table the server accepts). Raises
    :class:`~blindmatch.errors.EventRejected` (``malformed_voucher``, ``voucher_oversized``,
    ``wrong_table``): none of them depends on anything secret."""
    if not isinstance(body, Mapping) or set(body) != {"voucher"}:
        raise rejected(Reason.MALFORMED_VOUCHER, 'expected {"voucher": base64}')
    text = body["voucher"]
    if not isinstance(text, str):
        raise rejected(Reason.MALFORMED_VOUCHER, "voucher is a base64 string")
    return _voucher_bytes(text, tables)


__all__ = [
    "ANSWER_KEY",
    "OPENING_FIELD",
    "b64",
    "unb64",
    "APPEAL_FIELD",
    "CASE_FIELD",
    "FIELD_VERSION",
    "FILES_FIELD",
    "FRANKING_FIELD",
    "MAX_ATTACHMENTS",
    "MESSAGE_FIELD",
    "REASON_FIELD",
    "VOUCHER_FIELD",
    "Attachment",
    "DeclaredFile",
    "Reason",
    "b64_len",
    "files_field",
    "parse_challenge_request",
    "parse_files_field",
    "parse_franking_field",
    "parse_voucher_field",
    "rejected",
    "voucher_field",
]


def b64(raw: bytes) -> str:
    """Standard base64 with padding (the outer fields' encoding, as the voucher's)."""
    return base64.b64encode(raw).decode("ascii")


def unb64(text: object, size: int | None = None) -> bytes:
    """Strict standard base64 (padded or Matrix's unpadded); raises ``ProtocolError``."""
    if not isinstance(text, str):
        raise ProtocolError("expected a base64 string")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:
        raise ProtocolError("not standard base64") from None
    if size is not None and len(raw) != size:
        raise ProtocolError(f"expected {size} bytes of base64")
    return raw
