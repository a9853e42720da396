"""Database tables. Change them only together with a new Alembic migration."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
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

    __table_args__ = (UniqueConstraint("key"),)
