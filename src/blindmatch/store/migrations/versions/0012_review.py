"""review: reviewers, their console sessions, case notes, the audit log, case decisions

Issue 13: a review console over the cases the Matrix module opens. Reviewers log in with a
password (argon2id) and hold sessions; cases gain who holds them and what was decided;
every view and decision is a line of the hash-chained audit log.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa


revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_CASE_COLUMNS = (
    ("assignee", sa.String(64)),
    ("decision", sa.String(16)),
    ("category", sa.String(8)),
    ("decided_by", sa.String(64)),
    ("decided_at", sa.DateTime(timezone=True)),
    ("closed_at", sa.DateTime(timezone=True)),
    ("close_reason", sa.Text()),
)


def upgrade() -> None:
    for name, type_ in _CASE_COLUMNS:
        op.add_column("cases", sa.Column(name, type_, nullable=True))
    op.create_table(
        "reviewers",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "reviewer_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "reviewer_id",
            sa.Integer(),
            sa.ForeignKey("reviewers.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_reviewer_sessions_reviewer", "reviewer_sessions", ["reviewer_id"])
    op.create_table(
        "case_notes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "case_id", sa.String(32), sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_case_notes_case", "case_notes", ["case_id"])
    op.create_table(
        "audit_log",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(300), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_log_subject", "audit_log", ["subject"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_subject", "audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_case_notes_case", "case_notes")
    op.drop_table("case_notes")
    op.drop_index("ix_reviewer_sessions_reviewer", "reviewer_sessions")
    op.drop_table("reviewer_sessions")
    op.drop_table("reviewers")
    # Plain ALTER TABLE ... DROP COLUMN, as 0010 and 0011.
    for name, _ in reversed(_CASE_COLUMNS):
        op.drop_column("cases", name)
