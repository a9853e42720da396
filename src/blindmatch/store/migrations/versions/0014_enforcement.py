"""enforcement actions, statements of reasons (EU DSA Art. 17), appeals (Art. 20)

Issue 13, item 2 (blindmatch.review.enforcement, blindmatch.review.appeals). New tables
only. ``down_revision`` is the newest revision on the ``enforce`` branch; the lead
re-chains 0012 → 0013 → 0014 when merging.

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-10
"""

from alembic import op
import sqlalchemy as sa


revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_ID = sa.String(255)


def upgrade() -> None:
    op.create_table(
        "enforcement_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("account", _ID, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("offence", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(8), nullable=False),
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notice_event_id", _ID, nullable=True),
        sa.Column("notice_error", sa.Text(), nullable=True),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(200), nullable=True),
        sa.Column("lift_outcome", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id"),
    )
    op.create_index("ix_enforcement_actions_account", "enforcement_actions", ["account"])
    op.create_table(
        "statements_of_reasons",
        sa.Column("puid", sa.String(64), nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("account", _ID, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["action_id"], ["enforcement_actions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("puid"),
        sa.UniqueConstraint("action_id"),
    )
    op.create_index("ix_statements_of_reasons_created", "statements_of_reasons", ["created_at"])
    op.create_table(
        "appeals",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("account", _ID, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("case_decided_by", sa.String(200), nullable=True),
        sa.Column("assigned_to", sa.String(200), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_appeals_case", "appeals", ["case_id"])
    op.create_index(
        "uq_appeals_open_case",
        "appeals",
        ["case_id"],
        unique=True,
        sqlite_where=sa.text("status = 'open'"),
        postgresql_where=sa.text("status = 'open'"),
    )


def downgrade() -> None:
    op.drop_index("uq_appeals_open_case", table_name="appeals")
    op.drop_index("ix_appeals_case", table_name="appeals")
    op.drop_table("appeals")
    op.drop_index("ix_statements_of_reasons_created", table_name="statements_of_reasons")
    op.drop_table("statements_of_reasons")
    op.drop_index("ix_enforcement_actions_account", table_name="enforcement_actions")
    op.drop_table("enforcement_actions")
