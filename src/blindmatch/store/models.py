"""Database tables. Change them only together with a new Alembic migration."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class HashList(Base):
    __tablename__ = "hash_lists"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    source: Mapped[str] = mapped_column(String(200), default="")
    version: Mapped[str] = mapped_column(String(100), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    pdq_threshold: Mapped[int] = mapped_column(Integer, default=31)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Entry(Base):
    """One listed item. Rows are never edited but to set ``removed_*``: a changed
    entry is a tombstone on the old row plus a new row, so indexes catch up by
    sequence number alone."""

    __tablename__ = "entries"
    __table_args__ = (
        Index("ix_entries_live", "list_id", "source_id", "removed_seq"),
        # One live row per (list, source id) (migration 0009).
        Index(
            "uq_entries_live_source",
            "list_id",
            "source_id",
            unique=True,
            sqlite_where=text("removed_seq IS NULL"),
            postgresql_where=text("removed_seq IS NULL"),
        ),
        Index("ix_entries_md5", "md5"),
        Index("ix_entries_sha256", "sha256"),
        Index("ix_entries_added_seq", "added_seq"),
        Index("ix_entries_removed_seq", "removed_seq"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("hash_lists.id", ondelete="CASCADE"))
    source_id: Mapped[str] = mapped_column(String(1024))
    pdq: Mapped[str | None] = mapped_column(String(64), nullable=True)
    md5: Mapped[str | None] = mapped_column(String(32), nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    vpdq: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list of frames
    category: Mapped[str | None] = mapped_column(String(8), nullable=True)
    # The picture's companion hash (ListEntry.pdq_companion; migration 0010).
    pdq_companion: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # A hot entry's hot companion hashes, hex separated by spaces (ListEntry.pdq_hot;
    # migration 0011); NULL when the entry is not hot.
    pdq_hot: Mapped[str | None] = mapped_column(Text, nullable=True)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    added_seq: Mapped[int] = mapped_column(BigInteger)
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    removed_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class KeypointRecord(Base):
    """The keypoint features of a listed picture (``lists add`` from an image):
    a versioned ``blindmatch.hashing.keypoints.ListedFeatures`` record. Lives
    and dies with its entry."""

    __tablename__ = "keypoints"
    entry_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("entries.id", ondelete="CASCADE"),
        primary_key=True,
    )
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ImportRecord(Base):
    __tablename__ = "imports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("hash_lists.id", ondelete="CASCADE"))
    file_sha256: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(20))
    added: Mapped[int] = mapped_column(Integer)
    changed: Mapped[int] = mapped_column(Integer)
    removed: Mapped[int] = mapped_column(Integer)
    unchanged: Mapped[int] = mapped_column(Integer)
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(10))  # "read" or "write"
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# -- the Matrix integration (blindmatch.integrations.matrix; migration 0003) ------------
_ID = String(255)  # Matrix user, room, event and media ids are at most 255 bytes


class MatrixBlob(Base):
    """A blob uploaded to the homeserver, as the module saw it at upload time.

    ``kind`` is what its first bytes look like: ``opaque`` (an encrypted
    attachment looks random) or a plaintext ``image``/``video``. The uploader is
    not known at upload time (Synapse records it after the spam check); the
    module reads it from Synapse's media table when an event binds the blob.
    """

    __tablename__ = "matrix_blobs"
    media_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    uploaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    quarantined_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    quarantine_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


class MatrixVoucher(Base):
    """A voucher the module accepted or blocked, and the blob it binds. A voucher binds
    once; a blob is bound by one event, with one voucher (a picture) or several (a video's
    frames: ``slot`` 0, 1, … within that event; migration 0006)."""

    __tablename__ = "matrix_vouchers"
    __table_args__ = (
        Index("ix_matrix_vouchers_account", "account"),
        UniqueConstraint("media_id", "slot", name="uq_matrix_vouchers_media_slot"),
    )
    voucher_id: Mapped[str] = mapped_column(String(32), primary_key=True)  # 16 bytes, hex
    media_id: Mapped[str] = mapped_column(_ID)
    slot: Mapped[int] = mapped_column(Integer, default=0)
    account: Mapped[str] = mapped_column(_ID)
    room: Mapped[str] = mapped_column(_ID)
    event_id: Mapped[str] = mapped_column(_ID)
    voucher_sha256: Mapped[str] = mapped_column(String(64))
    # "accepted" | "blocked" | "pending" (threshold: queued, not opened yet; migration 0008)
    outcome: Mapped[str] = mapped_column(String(16))
    case_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MatrixRejection(Base):
    """An event the module refused, and why (a reason code of docs/matrix.md)."""

    __tablename__ = "matrix_rejections"
    __table_args__ = (Index("ix_matrix_rejections_account", "account"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(_ID)
    room: Mapped[str] = mapped_column(_ID)
    event_id: Mapped[str] = mapped_column(_ID)
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Case(Base):
    """A review case: a blocked match, a threshold release, a user report, or (threshold
    policy) a forged voucher the server caught (``tampered``, never shown to the sender).

    ``voucher_ids``, ``blobs`` and ``entry_refs`` are JSON lists; ``evidence``
    holds the released review derivative under the threshold policy.
    """

    __tablename__ = "cases"
    __table_args__ = (Index("ix_cases_account", "account"), Index("ix_cases_created", "created_at"))
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "match" | "report" | "threshold" | "tampered"
    account: Mapped[str] = mapped_column(_ID)
    room: Mapped[str | None] = mapped_column(_ID, nullable=True)
    event_id: Mapped[str | None] = mapped_column(_ID, nullable=True)
    voucher_ids: Mapped[str] = mapped_column(Text, default="[]")
    blobs: Mapped[str] = mapped_column(Text, default="[]")
    entry_refs: Mapped[str] = mapped_column(Text, default="[]")
    evidence: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Review (migration 0012; blindmatch.review.cases): who holds the case, what was decided.
    # ``status``: open | escalated | decided | closed; ``decision``: confirmed |
    # false_positive (set when decided); ``category``: the confirmed category (A1, A2, …).
    assignee: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    category: Mapped[str | None] = mapped_column(String(8), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    close_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


# -- the server's per-account threshold state (protocol.ThresholdStore; migration 0003) ----
class ThresholdVoucher(Base):
    """One :class:`blindmatch.protocol.StoredVoucher`: a voucher whose share the server
    keeps for an account. Shares are 32 bytes little-endian; ``id`` keeps insertion order."""

    __tablename__ = "threshold_vouchers"
    __table_args__ = (UniqueConstraint("account", "voucher_id"),)
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    account: Mapped[str] = mapped_column(String(255))
    voucher_id: Mapped[bytes] = mapped_column(LargeBinary(16))
    transcript: Mapped[bytes] = mapped_column(LargeBinary(32))
    share_x: Mapped[bytes] = mapped_column(LargeBinary(32))
    share_y: Mapped[bytes] = mapped_column(LargeBinary(32))
    match_layer: Mapped[bytes] = mapped_column(LargeBinary)
    match_sealed: Mapped[bool] = mapped_column(Boolean)
    evidence: Mapped[bytes] = mapped_column(LargeBinary)
    released: Mapped[bool] = mapped_column(Boolean, default=False)


class ThresholdKey(Base):
    """An account's recovered evidence key (32 bytes)."""

    __tablename__ = "threshold_keys"
    account: Mapped[str] = mapped_column(String(255), primary_key=True)
    evidence_key: Mapped[bytes] = mapped_column(LargeBinary(32))


class MatrixFranking(Base):
    """The server's franking tag ``R`` of one relayed event (migration 0004): what it saw at
    send time (sender, room, timestamp, commitment ``C``), so a report verifies even after
    the event was redacted."""

    __tablename__ = "matrix_franking"
    event_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    room: Mapped[str] = mapped_column(_ID)
    sender: Mapped[str] = mapped_column(_ID)
    origin_ts: Mapped[int] = mapped_column(BigInteger)
    commitment: Mapped[bytes] = mapped_column(LargeBinary(32))
    tag: Mapped[bytes] = mapped_column(LargeBinary(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MatrixBlobUse(Base):
    """A blob accounted for without a voucher (migration 0005): declared by its uploader as
    a non-image file of an encrypted event (``use`` = ``file``), or referenced by a
    plaintext event (``plaintext``), whose content the server sees anyway."""

    __tablename__ = "matrix_blob_uses"
    media_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    use: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(_ID)
    room: Mapped[str] = mapped_column(_ID)
    event_id: Mapped[str] = mapped_column(_ID)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CaseVoucher(Base):
    """A voucher kept with a case for review (migration 0008): a forged one (``tampered``
    says which layer failed: ``blindmatch.protocol.server.TAMPERED_*``), with its bytes when
    the module still had them."""

    __tablename__ = "case_vouchers"
    case_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    voucher_id: Mapped[str] = mapped_column(String(32), primary_key=True)  # 16 bytes, hex
    tampered: Mapped[str | None] = mapped_column(String(100), nullable=True)
    voucher: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class MatrixVoucherQueue(Base):
    """A voucher accepted under the threshold policy and not opened yet (migration 0008).

    The send path never opens a threshold voucher: it binds it (outcome ``pending``) and
    queues it here in the same transaction; the module's worker opens it later and deletes
    the row in the transaction that records what opening it taught the server."""

    __tablename__ = "matrix_voucher_queue"
    __table_args__ = (Index("ix_matrix_voucher_queue_account", "account"),)
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    voucher_id: Mapped[str] = mapped_column(String(32), unique=True)  # 16 bytes, hex
    account: Mapped[str] = mapped_column(_ID)
    table_id: Mapped[str] = mapped_column(String(32))  # 16 bytes, hex
    voucher: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# -- review (issue 13; migration 0012): reviewers, their sessions, notes, the audit log -------
class Reviewer(Base):
    """A reviewer account of the console (``blindmatch reviewers``): an argon2id password
    hash, a role (reviewer < senior < admin), disabled rather than deleted (the audit log
    names reviewers)."""

    __tablename__ = "reviewers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReviewerSession(Base):
    """A console login: the SHA-256 of the session token (the cookie holds the token), the
    CSRF token its forms carry, and when it expires. Logout and disabling delete it."""

    __tablename__ = "reviewer_sessions"
    __table_args__ = (Index("ix_reviewer_sessions_reviewer", "reviewer_id"),)
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id", ondelete="CASCADE"))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CaseNote(Base):
    """A reviewer's note on a case (append-only)."""

    __tablename__ = "case_notes"
    __table_args__ = (Index("ix_case_notes_case", "case_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(String(32), ForeignKey("cases.id", ondelete="CASCADE"))
    author: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditRecord(Base):
    """One line of the append-only, hash-chained audit log (``blindmatch.review.audit``):
    ``hash`` = SHA-256 over the previous line's hash and this line's canonical JSON, so an
    edited, removed or reordered line breaks every hash after it (``blindmatch audit
    verify``). ``seq`` is dense: 1, 2, 3, … under the store's write lock."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_subject", "subject"),)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                     autoincrement=False)  # fmt: skip
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(300))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(300))
    detail: Mapped[str] = mapped_column(Text, default="{}")
    prev: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


# -- enforcement and appeals (blindmatch.review.enforcement/appeals; migration 0014) ------
class EnforcementActionRecord(Base):
    """What a confirmed case did to its account (one row per case): the policy's action,
    the account's how-manieth confirmed case it was, and each step as Synapse confirmed
    it (``notice_event_id``, ``applied_at``). ``lifted_*``: an overturned decision."""

    __tablename__ = "enforcement_actions"
    __table_args__ = (Index("ix_enforcement_actions_account", "account"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(String(32), unique=True)
    account: Mapped[str] = mapped_column(_ID)
    action: Mapped[str] = mapped_column(String(16))  # warn | suspend | deactivate
    offence: Mapped[int] = mapped_column(Integer)  # 1 = the account's first confirmed case
    category: Mapped[str] = mapped_column(String(8))
    reviewer: Mapped[str] = mapped_column(String(200))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    applied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    notice_event_id: Mapped[str | None] = mapped_column(_ID, nullable=True)
    notice_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    lifted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    lifted_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # "lifted" (suspension ended or nothing to lift) | "kept" (another active action still
    # restricts the account) | "reactivation_needed" (a deactivated account: not automatic)
    lift_outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)


class StatementOfReasons(Base):
    """The statement of reasons (EU DSA Art. 17) of an enforcement action: ``body`` is its
    JSON (every element, blindmatch's own shape), ``text`` what the user was sent."""

    __tablename__ = "statements_of_reasons"
    __table_args__ = (Index("ix_statements_of_reasons_created", "created_at"),)
    puid: Mapped[str] = mapped_column(String(64), primary_key=True)
    action_id: Mapped[int] = mapped_column(
        ForeignKey("enforcement_actions.id", ondelete="CASCADE"), unique=True
    )
    case_id: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(_ID)
    body: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AppealRecord(Base):
    """A user's appeal of a case (EU DSA Art. 20): at most one open per case (a partial
    unique index), assigned to a senior reviewer who did not decide the case."""

    __tablename__ = "appeals"
    __table_args__ = (
        Index("ix_appeals_case", "case_id"),
        Index(
            "uq_appeals_open_case",
            "case_id",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(_ID)
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # open | upheld | overturned
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    case_decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    assigned_to: Mapped[str | None] = mapped_column(String(200), nullable=True)
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)


# -- false-positive defences (issue 13, item 3; migration 0015) ---------------------------
class NegativeHash(Base):
    """The negative bank: the hash of a picture review found benign although it matched a
    listed entry (a confirmed false positive). A later match whose hash is this close to
    it does not block; the entries it matched are disputed with their source."""

    __tablename__ = "negative_bank"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pdq: Mapped[str] = mapped_column(String(64))
    case_id: Mapped[str] = mapped_column(String(32))
    entry_refs: Mapped[str] = mapped_column(Text, default="[]")  # what it falsely matched
    reviewer: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    disputed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class EntryHit(Base):
    """A blocked match on a listed entry (``entry_key``: SHA-256 of its hotline, list and
    id): what flood quarantine counts — distinct accounts per entry per window."""

    __tablename__ = "entry_hits"
    __table_args__ = (Index("ix_entry_hits_key_at", "entry_key", "at"),)
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    entry_key: Mapped[str] = mapped_column(String(64))
    account: Mapped[str] = mapped_column(_ID)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FloodQuarantine(Base):
    """A listed entry that matched more distinct accounts in a window than a listed picture
    plausibly does (a benign picture listed by mistake, or a colliding hash): it stops
    blocking until a reviewer lifts the quarantine; ``case_id`` is the high-priority case
    it opened."""

    __tablename__ = "flood_quarantine"
    entry_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    ref: Mapped[str] = mapped_column(Text)  # {"hotline", "list", "entry_id"}
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    accounts: Mapped[int] = mapped_column(Integer)
    case_id: Mapped[str] = mapped_column(String(32))
    lifted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    lifted_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Lifted after review found the entry right (a picture that really is re-shared widely):
    # it is never quarantined again.
    exempt: Mapped[bool] = mapped_column(Boolean, default=False)


# -- NCMEC CyberTipline: evidence and the report outbox (issue 13, item 4: helper "ncmec";
#    migration 0013; blindmatch.review.evidence, blindmatch.ncmec.outbox) ----------------
class EvidenceRecord(Base):
    """One evidence file, encrypted at rest (AES-256-GCM under ``$BLINDMATCH_HOME/evidence.key``;
    ``key_id`` names the key). ``nonce`` and ``ciphertext`` are NULL once purged."""

    __tablename__ = "evidence"
    __table_args__ = (
        Index("ix_evidence_case", "case_id"),
        Index("ix_evidence_expires", "expires_at"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # 16 random bytes, hex
    case_id: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))  # of the plaintext (reported to NCMEC)
    viewed_by_reviewer: Mapped[bool] = mapped_column(Boolean, default=False)
    key_id: Mapped[str] = mapped_column(String(16))
    nonce: Mapped[bytes | None] = mapped_column(LargeBinary(12), nullable=True)
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class NcmecReport(Base):
    """A CyberTipline report in the outbox: ``state`` pending → submitted → finished, or
    failed / retracted (docs/ncmec.md). ``inflight`` names the request sent and not yet
    answered (a crash leaves it set); ``possible_orphans`` counts submits whose answer was
    lost (an unfinished report NCMEC deletes after 24 h)."""

    __tablename__ = "ncmec_reports"
    __table_args__ = (Index("ix_ncmec_reports_state", "state", "next_attempt_at"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(32), unique=True)
    account: Mapped[str] = mapped_column(_ID)
    category: Mapped[str] = mapped_column(String(2))
    reviewer: Mapped[str] = mapped_column(String(255))
    report_xml: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    endpoint: Mapped[str | None] = mapped_column(String(255), nullable=True)
    ncmec_report_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    inflight: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    possible_orphans: Mapped[int] = mapped_column(Integer, default=0)
    reopened: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    ncmec_files: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON, from /finish
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    retracted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class NcmecReportFile(Base):
    """One file of a report: uploaded once (``file_id``), then described (``details_at``)."""

    __tablename__ = "ncmec_report_files"
    __table_args__ = (UniqueConstraint("report_id", "seq", name="uq_ncmec_report_files_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("ncmec_reports.id", ondelete="CASCADE")
    )
    seq: Mapped[int] = mapped_column(Integer)
    evidence_id: Mapped[str] = mapped_column(String(32), ForeignKey("evidence.id"))
    filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    md5: Mapped[str] = mapped_column(String(32))
    viewed_by_esp: Mapped[bool] = mapped_column(Boolean, default=False)
    file_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    uploaded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    details_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
