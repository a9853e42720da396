"""Every error blindmatch raises on purpose.

One root, a tree beneath it; each error also subclasses the builtin it
resembles, and carries a stable machine-readable ``code`` that the CLI's
``--json`` output and the HTTP service put in their error bodies::

    BlindmatchError
    ├── InputError (ValueError)             a file that cannot be hashed
    │   ├── NotFound (FileNotFoundError)        code "not_found"
    │   ├── PermissionDenied (PermissionError)  code "permission_denied"
    │   ├── SymlinkLoop                         code "symlink_loop"
    │   ├── NotAFile                            code "not_a_file"
    │   ├── EmptyFile                           code "empty_file"
    │   ├── FileTooLarge                        code "file_too_large"
    │   ├── UnsupportedFormat                   code "unsupported_format"
    │   ├── TruncatedFile                       code "truncated"
    │   ├── DecodeError                         code "decode_error"
    │   ├── TooManyPixels                       code "too_many_pixels"
    │   ├── BadDimensions                       code "bad_dimensions"
    │   ├── VideoError                          code "video_error"
    │   ├── LowQuality                          code "low_quality" (PDQ quality < 50)
    │   └── NotAnImage                          code "not_an_image" (e.g. a video)
    ├── InvalidArgument (ValueError)        code "invalid_argument" (a bad option value)
    ├── InvalidHash (ValueError)            code "invalid_hash"
    ├── ListFormatError (ValueError)        code "malformed_list" (with line number)
    ├── ListNotFound (KeyError)             code "list_not_found"
    ├── ListExists (ValueError)             code "list_exists"
    ├── InvalidField (ValueError)           code "invalid_field" (a list's name or a text field
    │                                           too long or with forbidden characters; names
    │                                           ``field`` and ``limit``)
    ├── IndexFormatError (ValueError)       code "bad_index_file"
    ├── ConfigError (RuntimeError)          code "bad_config"
    ├── OutputExists (FileExistsError)      code "output_exists"
    ├── GovernanceRefused (ValueError)      code "governance_refused" (too few hotlines)
    ├── IoFailed (OSError)                  code "io_error"
    ├── DatabaseError (RuntimeError)        code "database_error" (the store failed)
    │   └── DatabaseBusy                        code "database_busy" (locked; try again)
    ├── InternalError                       code "internal_error" (a bug; reported, never a crash)
    ├── ServiceBusy                         code "busy" (HTTP 503: the decode budget is spent)
    ├── EventRejected (ValueError)          code "event_rejected" (Matrix module; see ``reason``)
    ├── EnforcementFailed (RuntimeError)    code "enforcement_failed" (Synapse's admin API
    │                                           refused or failed; review/enforcement.py)
    ├── AppealRefused (ValueError)          code "appeal_refused" (see ``reason``;
    │                                           review/appeals.py)
    ├── NcmecError                          code "ncmec_error" (CyberTipline reporting)
    │   ├── NcmecInvalidXml (ValueError)        code "ncmec_invalid_xml" (refused before sending)
    │   ├── NcmecUnavailable                    code "ncmec_unavailable" (transient: 5xx, network)
    │   ├── NcmecRejected                       code "ncmec_rejected" (NCMEC's responseCode)
    │   │   └── NcmecAuthFailed                     code "ncmec_auth_failed" (credentials, rights)
    │   ├── ReportNotFound (KeyError)           code "report_not_found"
    │   └── ReportStateError (ValueError)       code "report_state" (e.g. retract a finished one)
    ├── EvidenceError                       code "evidence_error" (the encrypted evidence store)
    │   └── EvidenceKeyMismatch                 code "evidence_key_mismatch" (wrong key, tampered)
    └── ProtocolError (ValueError)          code "protocol_error" (private matching)
        ├── InvalidVoucher                      code "invalid_voucher"
        ├── InvalidTable                        code "invalid_table"
        ├── InvalidManifest                     code "invalid_manifest"
        ├── InvalidKey                          code "invalid_key"
        └── InvalidDistanceCheck                code "invalid_distance_check" (a message of
                                                    the second distance check, protocol/distance.py)

Protocol errors are deliberately opaque: a voucher, table or manifest that
fails any check raises one error with one message, so a caller cannot learn
which check failed.
"""

from __future__ import annotations


class BlindmatchError(Exception):
    """Root of every error blindmatch raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}


class InputError(BlindmatchError, ValueError):
    """A file could not be hashed."""

    code = "bad_input"


class NotFound(InputError, FileNotFoundError):
    code = "not_found"


class PermissionDenied(InputError, PermissionError):
    code = "permission_denied"


class SymlinkLoop(InputError):
    code = "symlink_loop"


class NotAFile(InputError):
    code = "not_a_file"


class EmptyFile(InputError):
    code = "empty_file"


class FileTooLarge(InputError):
    code = "file_too_large"


class UnsupportedFormat(InputError):
    code = "unsupported_format"


class TruncatedFile(InputError):
    code = "truncated"


class DecodeError(InputError):
    code = "decode_error"


class TooManyPixels(InputError):
    """A decompression bomb, or an image larger than the configured pixel limit."""

    code = "too_many_pixels"


class BadDimensions(InputError):
    code = "bad_dimensions"


class VideoError(InputError):
    code = "video_error"


class InvalidArgument(BlindmatchError, ValueError):
    """A command-line or request value that is out of range or unknown."""

    code = "invalid_argument"


class InvalidHash(BlindmatchError, ValueError):
    code = "invalid_hash"


class ListFormatError(BlindmatchError, ValueError):
    """A hash-list file is malformed. ``line`` is 1-based where known."""

    code = "malformed_list"

    def __init__(self, message: str, line: int | None = None) -> None:
        where = f"line {line}: " if line is not None else ""
        super().__init__(where + message)
        self.line = line

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "line": self.line}


class ListNotFound(BlindmatchError, KeyError):
    code = "list_not_found"

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class ListExists(BlindmatchError, ValueError):
    code = "list_exists"


class IndexFormatError(BlindmatchError, ValueError):
    code = "bad_index_file"


class ConfigError(BlindmatchError, RuntimeError):
    code = "bad_config"


class ProtocolError(BlindmatchError, ValueError):
    """A protocol message (voucher, table, manifest, key) failed to parse or verify."""

    code = "protocol_error"


class InvalidVoucher(ProtocolError):
    code = "invalid_voucher"


class InvalidTable(ProtocolError):
    code = "invalid_table"


class InvalidManifest(ProtocolError):
    """The table manifest's digest, signatures or log inclusion did not verify."""

    code = "invalid_manifest"


class InvalidKey(ProtocolError):
    code = "invalid_key"


class InvalidDistanceCheck(ProtocolError):
    """An encrypted-bits record or a response of the second distance check is malformed."""

    code = "invalid_distance_check"


class OutputExists(BlindmatchError, FileExistsError):
    code = "output_exists"


class GovernanceRefused(BlindmatchError, ValueError):
    """The lists do not meet the governance rule (too few hotlines or jurisdictions)."""

    code = "governance_refused"


class LowQuality(InputError):
    code = "low_quality"


class NotAnImage(InputError):
    code = "not_an_image"


class InternalError(BlindmatchError):
    code = "internal_error"


class IoFailed(BlindmatchError, OSError):
    """Reading or writing a table, key or voucher file failed (disk full, permissions...)."""

    code = "io_error"


class DatabaseError(BlindmatchError, RuntimeError):
    """The database failed a query: unreachable, or an error of its own.

    ``blindmatch.store.errors.database_error`` turns a driver's exception into one."""

    code = "database_error"


class DatabaseBusy(DatabaseError):
    """Another writer held the database's lock past the wait (SQLite ``database is
    locked``, a PostgreSQL lock or statement timeout); try again."""

    code = "database_busy"


class EventRejected(BlindmatchError, ValueError):
    """The Matrix module refused an event; ``reason`` is a code of docs/matrix.md,
    ``case_id`` the review case it opened (a match), if any."""

    code = "event_rejected"

    def __init__(self, reason: str, message: str, case_id: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.case_id = case_id

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"code": self.code, "reason": self.reason, "message": self.message}
        if self.case_id:
            d["case"] = self.case_id
        return d


class InvalidField(BlindmatchError, ValueError):
    """A list name or text field is refused: too long, or characters that could hide
    or impersonate (controls, bidi overrides, zero-width). ``field`` names it; ``limit``
    is its length limit when length was the reason."""

    code = "invalid_field"

    def __init__(self, field: str, message: str, limit: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.limit = limit

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"code": self.code, "message": self.message, "field": self.field}
        if self.limit is not None:
            d["limit"] = self.limit
        return d


class ServiceBusy(BlindmatchError):
    """The service has no room for this request now (e.g. its decode budget is in use);
    ``retry_after`` is a hint in seconds."""

    code = "busy"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# -- review (blindmatch.review) -------------------------------------------------------------
class CaseNotFound(BlindmatchError, KeyError):
    """No review case has this id."""

    code = "case_not_found"

    def __str__(self) -> str:
        return self.message


class NotAllowed(BlindmatchError, PermissionError):
    """The reviewer's role does not allow this (e.g. deciding an escalated case needs a
    senior reviewer; only an admin manages reviewers)."""

    code = "not_allowed"


class InvalidCaseState(BlindmatchError, ValueError):
    """The case is not in a state that allows this (e.g. deciding a case already decided:
    a decision changes only through an appeal)."""

    code = "invalid_case_state"


class ReviewerExists(BlindmatchError, ValueError):
    code = "reviewer_exists"


class ReviewerNotFound(BlindmatchError, KeyError):
    code = "reviewer_not_found"

    def __str__(self) -> str:
        return self.message


class EnforcementFailed(BlindmatchError, RuntimeError):
    """Synapse's admin API refused or failed a step of an enforcement (suspend, deactivate,
    a server notice, restoring media); ``status`` is the HTTP status when there was one.
    What was decided is recorded before the call: running the step again resumes it."""

    code = "enforcement_failed"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"code": self.code, "message": self.message}
        if self.status is not None:
            d["status"] = self.status
        return d


class AppealRefused(BlindmatchError, ValueError):
    """An appeal could not be opened, assigned or decided; ``reason`` says why
    (``unknown_case``, ``appeal_window_closed``, ``appeal_open``, ``appeal_decided``,
    ``malformed_appeal``, ``no_eligible_reviewer``, ``not_assigned``, ``own_decision``,
    ``unknown_appeal``, ``bad_outcome``)."""

    code = "appeal_refused"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "reason": self.reason, "message": self.message}


class NcmecError(BlindmatchError):
    """CyberTipline reporting (``blindmatch.ncmec``) failed."""

    code = "ncmec_error"


class NcmecInvalidXml(NcmecError, ValueError):
    """A report or fileDetails document is not valid against NCMEC's schema: refused
    before anything was sent. ``document`` is ``report`` or ``fileDetails``."""

    code = "ncmec_invalid_xml"

    def __init__(self, document: str, message: str) -> None:
        super().__init__(f"{document} XML is not valid against NCMEC's schema: {message}")
        self.document = document

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "document": self.document}


class NcmecUnavailable(NcmecError):
    """NCMEC could not be reached or answered a server error (HTTP 5xx, 429, a dropped
    connection, an unreadable answer); try again later. ``answered`` is True when NCMEC
    answered with a status or code that says it did not process the request, False when
    the request may or may not have been processed (a lost answer)."""

    code = "ncmec_unavailable"

    def __init__(self, message: str, *, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered


class NcmecRejected(NcmecError):
    """NCMEC answered a non-zero ``responseCode``: ``ncmec_code`` and ``description``
    are NCMEC's own."""

    code = "ncmec_rejected"

    def __init__(self, endpoint: str, ncmec_code: int, description: str) -> None:
        super().__init__(f"NCMEC refused /{endpoint}: {ncmec_code} {description}".strip())
        self.endpoint = endpoint
        self.ncmec_code = ncmec_code
        self.description = description

    def as_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "message": self.message,
            "endpoint": self.endpoint,
            "ncmec_code": self.ncmec_code,
            "description": self.description,
        }


class NcmecAuthFailed(NcmecRejected):
    """NCMEC refused the account (HTTP 401/403, or codes 2000-3999): the credentials or
    the account's rights are wrong. Nothing about the report is at fault."""

    code = "ncmec_auth_failed"


class ReportNotFound(NcmecError, KeyError):
    code = "report_not_found"

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class ReportStateError(NcmecError, ValueError):
    """The report is not in a state that allows this (e.g. retracting a finished one)."""

    code = "report_state"


class EvidenceError(BlindmatchError):
    """The encrypted evidence store failed (``blindmatch.review.evidence``)."""

    code = "evidence_error"


class EvidenceKeyMismatch(EvidenceError):
    """An evidence file does not decrypt with this key: another key, or a tampered row."""

    code = "evidence_key_mismatch"
