"""The operator's side wired for one database: the review workflow, what acts on a
confirmed case, appeals, and the pictures a case holds (issue 13).

:class:`Operator` is what the review console (``blindmatch.service.console``) and the demo
drive. ``Operator.from_settings`` builds it from the environment:

* ``BLINDMATCH_SYNAPSE_URL`` (with ``BLINDMATCH_SYNAPSE_ADMIN_TOKEN_FILE``) set → a confirmed
  case is enforced through Synapse's admin API (:class:`~blindmatch.review.enforcement.Enforcer`,
  policy ``BLINDMATCH_ENFORCEMENT_POLICY``); unset → no enforcement (said on standard error);
* ``BLINDMATCH_SYNAPSE_MEDIA_PATH``: Synapse's ``media_store_path``, where a reported
  attachment's ciphertext is read (:class:`ReportMedia`);
* ``BLINDMATCH_NCMEC_REPORTER_EMAIL`` set (with the other ``BLINDMATCH_NCMEC_*`` settings,
  docs/ncmec.md) → a confirmed case is queued as a CyberTipline report in the durable
  outbox (:class:`~blindmatch.ncmec.outbox.Outbox`), after the enforcer, so the report says
  what was done to the account; unset → no reports (said on standard error).

A case decided a false positive banks its matched hashes (the negative bank,
:mod:`blindmatch.review.defences`).

What acts on a confirmed case is the list :attr:`Operator.on_confirmed` (the enforcer first;
the NCMEC outbox's ``enqueue`` is appended to it). An appeal decided in the console goes
through :meth:`Operator.decide_appeal`, which also records the outcome on the case.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from blindmatch.errors import NotAllowed, ProtocolError
from blindmatch.protocol.franking import EncryptedFile, decrypt_attachment
from blindmatch.review.appeals import Appeal, Appeals
from blindmatch.review.appeals import Reviewer as AppealReviewer
from blindmatch.review.audit import AuditLog
from blindmatch.review.cases import ConfirmedHook, MediaSource, Review
from blindmatch.review.enforcement import (
    EnforcementPolicy,
    Enforcer,
    Overturned,
    StatementConfig,
    SynapseAdmin,
)
from blindmatch.review.reviewers import Reviewer, Reviewers
from blindmatch.review.types import EvidenceFile
from blindmatch.store.models import Case

MEDIA_PATH_ENV = "BLINDMATCH_SYNAPSE_MEDIA_PATH"
SYNAPSE_URL_ENV = "BLINDMATCH_SYNAPSE_URL"
_MEDIA_ID = re.compile(r"^[A-Za-z0-9_-]{5,255}$")
_NO_KEY = ("the server holds no key to this case's picture: it is an end-to-end encrypted "
           "upload (only a report hands the key over)")  # fmt: skip
_PICTURE_TYPES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_type(data: bytes) -> str | None:
    """The picture or video type of ``data`` from its first bytes (None: neither)."""
    for magic, mime in _PICTURE_TYPES:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    return None


@dataclass(frozen=True)
class Picture:
    """One attachment of a case: its bytes and type, or why there are none."""

    media_id: str  # the Matrix media id (the part of the mxc:// URI after the server)
    filename: str
    mimetype: str | None = None
    data: bytes | None = field(default=None, repr=False)
    problem: str | None = None

    @property
    def is_video(self) -> bool:
        return bool(self.mimetype and self.mimetype.startswith("video/"))


@dataclass(frozen=True)
class CaseMedia:
    pictures: list[Picture]
    problem: str | None = None  # why the case has no picture at all


class ReportMedia:
    """The pictures of a case, decrypted from Synapse's media store.

    Only a **report** case has one: a verified report hands the server the reported
    message's ``file`` (a Matrix ``EncryptedFile``: url, AES key, IV, SHA-256 of the
    ciphertext). For it, :meth:`load` reads the ciphertext from Synapse's media store
    (``media_path/local_content/AB/CD/REST`` of the media id ``ABCDREST``: Synapse's
    ``MediaFilePaths.local_media_filepath``), checks its SHA-256 against the
    ``EncryptedFile``'s hash and decrypts it (AES-256-CTR,
    :func:`~blindmatch.protocol.franking.decrypt_attachment`).

    The franking was verified when the module accepted the report: the stored payload is
    the one the sender committed to, so the ``EncryptedFile`` in it — and through its hash
    the blob — are bound to the franked message; a blob whose hash differs (replaced in the
    media store) is not shown. A match or threshold case's picture is an end-to-end
    encrypted upload whose key the server never receives: no picture. Anything missing
    gives a picture with a ``problem`` (shown on the case page), never an exception.

    Called as a :data:`~blindmatch.review.cases.MediaSource` (case id → the files, handed to
    what acts on a confirmation), each file says whether a reviewer revealed it
    (``media.reveal`` in the audit log)."""

    def __init__(self, engine: Engine, media_path: str | Path | None, audit: AuditLog) -> None:
        self.engine = engine
        self.media_path = Path(media_path) if media_path else None
        self.audit = audit
        self._session = sessionmaker(engine)

    def load(self, case_id: str) -> CaseMedia:
        with self._session() as s:
            row = s.get(Case, case_id)
            if row is None:
                return CaseMedia([], "no such case")
            kind = row.kind
            evidence = bytes(row.evidence) if row.evidence is not None else None
        if kind != "report":
            return CaseMedia([], _NO_KEY)
        try:
            report = json.loads(evidence or b"")
        except ValueError:
            return CaseMedia([], "the stored report is not JSON")
        payload = report.get("payload") if isinstance(report, dict) else None
        if not isinstance(payload, dict) or report.get("format") != "blindmatch-report":
            return CaseMedia([], "the stored report has no message payload")
        if "file" not in payload:
            return CaseMedia([], "the reported message has no attachment")
        name = payload.get("body") if isinstance(payload.get("body"), str) else "attachment"
        return CaseMedia([self._picture(payload["file"], str(name)[:200])])

    def _picture(self, obj: Any, name: str) -> Picture:
        url = obj.get("url") if isinstance(obj, dict) else None
        media_id = url.rsplit("/", 1)[-1] if isinstance(url, str) else ""
        if (
            not isinstance(url, str)
            or not url.startswith("mxc://")
            or not _MEDIA_ID.match(media_id)
        ):
            return Picture(media_id or "-", name, problem="the attachment has no usable mxc:// URL")
        try:
            file = EncryptedFile.from_json(obj)
        except ProtocolError as e:
            return Picture(media_id, name, problem=f"the attachment's keys are malformed: {e}")
        if self.media_path is None:
            return Picture(media_id, name, problem=f"{MEDIA_PATH_ENV} is not set: the console "
                           "cannot read Synapse's media store")  # fmt: skip
        path = self.media_path / "local_content" / media_id[:2] / media_id[2:4] / media_id[4:]
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return Picture(media_id, name, problem="the attachment is not in the media store "
                           "(deleted, or uploaded to another server)")  # fmt: skip
        except OSError as e:
            return Picture(media_id, name, problem=f"cannot read the media store: {e.strerror}")
        try:
            data = decrypt_attachment(file, blob)
        except ProtocolError:
            return Picture(media_id, name, problem="the stored blob does not match the reported "
                           "message's hash (or is too large): not shown")  # fmt: skip
        mime = sniff_type(data)
        if mime is None:
            return Picture(media_id, name, problem="the attachment is not a picture or video "
                           "the console shows (JPEG, PNG, GIF, WebP, MP4, WebM)")  # fmt: skip
        return Picture(media_id, name, mime, data)

    def picture(self, case_id: str, media_id: str) -> Picture | None:
        return next((p for p in self.load(case_id).pictures if p.media_id == media_id), None)

    def __call__(self, case_id: str) -> list[EvidenceFile]:
        revealed = {
            e.detail.get("media")
            for e in self.audit.entries(subject=f"case:{case_id}", action="media.reveal")
        }
        return [
            EvidenceFile(p.filename, p.data, p.media_id in revealed)
            for p in self.load(case_id).pictures
            if p.data is not None
        ]


def _account_status(enforcer: Enforcer | None) -> Any:
    """case id → what the enforcer did to its account, for the NCMEC report (it runs
    before the outbox: :attr:`Operator.on_confirmed` lists the enforcer first)."""
    if enforcer is None:
        return None
    from blindmatch.ncmec.report import AccountStatus

    def status(case_id: str) -> AccountStatus | None:
        a = enforcer.action(case_id)
        if a is None:
            return None
        # The statement goes out as a server notice just before the restriction is applied
        # (Enforcer.on_confirmed): the time applied stands for both.
        notified = a.applied_at if a.notified else None
        return AccountStatus(a.action, a.applied_at, notified)

    return status


class Operator:
    """The operator's side on ``engine``: :attr:`review` (with :attr:`on_confirmed`),
    :attr:`reviewers`, :attr:`audit`, :attr:`appeals`, :attr:`enforcer` (None: decisions are
    recorded, nothing is enforced) and :attr:`media`."""

    def __init__(
        self,
        engine: Engine,
        *,
        enforcer: Enforcer | None,
        appeals: Appeals,
        media: MediaSource | None,
        audit: AuditLog | None = None,
        outbox: Any = None,
    ) -> None:
        self.engine = engine
        self.audit = audit or AuditLog(engine)
        self.reviewers = Reviewers(engine)
        self.enforcer = enforcer
        self.appeals = appeals
        self.media = media
        hooks: list[ConfirmedHook] = [enforcer.on_confirmed] if enforcer is not None else []
        if outbox is not None:
            hooks.append(outbox.enqueue)
        self.outbox = outbox  # the NCMEC outbox (None: no reports)
        from blindmatch.review.defences import Defences

        self.defences = Defences(engine)
        self.review = Review(engine, self.audit, on_confirmed=hooks, media=media,
                             on_false_positive=[self.defences.bank_false_positive])  # fmt: skip
        #: What acts on a confirmed case, in order (the enforcer first). The NCMEC outbox
        #: is appended here: ``operator.on_confirmed.append(outbox.enqueue)``. It is the
        #: review's own list: appending later takes effect at once.
        self.on_confirmed: list[ConfirmedHook] = self.review.on_confirmed

    @classmethod
    def from_settings(
        cls,
        settings: Any,
        *,
        engine: Engine | None = None,
        environ: Mapping[str, str] | None = None,
        say: Any = None,
    ) -> Operator:
        """Build it from ``settings`` (:class:`blindmatch.config.Settings`: the database) and
        the environment (see the module docstring). ``engine``: an open engine on that
        database (else the store is opened, migrated if needed)."""
        env = os.environ if environ is None else environ
        if engine is None:
            from blindmatch.store.db import open_store

            engine = open_store(settings.database_url).engine
        audit = AuditLog(engine)
        out = say or (lambda text: sys.stderr.write(f"blindmatch review: {text}\n"))
        enforcer = None
        if env.get(SYNAPSE_URL_ENV):
            enforcer = Enforcer(
                engine,
                EnforcementPolicy.from_env(env),
                SynapseAdmin.from_env(env),
                statement=StatementConfig.from_env(env),
                audit=audit.append,
            )
            out(f"enforcement on: {enforcer.policy} through {env[SYNAPSE_URL_ENV]}")
        else:
            out(f"enforcement off: {SYNAPSE_URL_ENV} is not set (decisions are recorded only)")
        media_path = env.get(MEDIA_PATH_ENV) or None
        if media_path is None:
            out(f"{MEDIA_PATH_ENV} is not set: reported pictures cannot be shown")
        appeals = Appeals(engine, enforcer=enforcer, audit=audit.append)
        outbox = None
        if env.get("BLINDMATCH_NCMEC_REPORTER_EMAIL", "").strip():
            from blindmatch.ncmec.config import load_ncmec_config
            from blindmatch.ncmec.outbox import Outbox

            config = load_ncmec_config(dict(env))
            outbox = Outbox(engine, config, audit=audit.append,
                            account_status=_account_status(enforcer))  # fmt: skip
            out(f"NCMEC reports on: confirmed cases go to the outbox for {config.base_url}")
        else:
            out("NCMEC reports off: BLINDMATCH_NCMEC_REPORTER_EMAIL is not set")
        return cls(engine, enforcer=enforcer, appeals=appeals,
                   media=ReportMedia(engine, media_path, audit), audit=audit,
                   outbox=outbox)  # fmt: skip

    # -- pictures ---------------------------------------------------------------------------
    def case_media(self, case_id: str) -> CaseMedia:
        if isinstance(self.media, ReportMedia):
            return self.media.load(case_id)
        if self.media is None:
            return CaseMedia([], "no media source is configured")
        files = self.media(case_id)
        return CaseMedia([Picture(f"file{i}", f.filename, sniff_type(f.data), f.data)
                          for i, f in enumerate(files)])  # fmt: skip

    def picture(self, case_id: str, media_id: str) -> Picture | None:
        return next((p for p in self.case_media(case_id).pictures if p.media_id == media_id), None)

    # -- appeals ----------------------------------------------------------------------------
    @staticmethod
    def _as_appeal_reviewer(r: Reviewer) -> AppealReviewer:
        return AppealReviewer(r.name, r.role)

    def assign_appeal(self, appeal_id: str, reviewer: Reviewer) -> Appeal:
        """Assign an open appeal to ``reviewer`` (a senior or admin who did not decide the
        case: the library refuses the decider)."""
        if not reviewer.can("senior"):
            raise NotAllowed("appeals are handled by senior reviewers and admins")
        appeal = self.appeals.get(appeal_id)
        with sessionmaker(self.engine)() as s:
            row = s.get(Case, appeal.case_id)
            decided_by = row.decided_by if row is not None else None
        return self.appeals.assign(appeal_id, [self._as_appeal_reviewer(reviewer)], decided_by)

    def decide_appeal(
        self, appeal_id: str, reviewer: Reviewer, outcome: str, reason: str
    ) -> tuple[Appeal, Overturned | None]:
        """Decide an appeal as its assigned senior reviewer; the case then shows the
        outcome (:meth:`Review.reopen_for_appeal`) when a reviewer had decided it."""
        if not reviewer.can("senior"):
            raise NotAllowed("appeals are handled by senior reviewers and admins")
        appeal, undone = self.appeals.decide(
            appeal_id, self._as_appeal_reviewer(reviewer), outcome, reason
        )
        if self.review.summary(appeal.case_id).status == "decided":
            self.review.reopen_for_appeal(appeal.case_id, reviewer, outcome)
        return appeal, undone


__all__ = [
    "MEDIA_PATH_ENV",
    "SYNAPSE_URL_ENV",
    "CaseMedia",
    "Operator",
    "Picture",
    "ReportMedia",
    "sniff_type",
]
