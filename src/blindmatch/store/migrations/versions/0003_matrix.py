"""Matrix integration (blobs, bound vouchers, rejections, review cases) and threshold state

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa


revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.String(255)


def upgrade() -> None:
    op.create_table(
        "matrix_blobs",
        sa.Column("media_id", _ID, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("quarantine_reason", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("media_id"),
    )
    op.create_table(
        "matrix_vouchers",
        sa.Column("voucher_id", sa.String(32), nullable=False),
        sa.Column("media_id", _ID, nullable=False),
        sa.Column("account", _ID, nullable=False),
        sa.Column("room", _ID, nullable=False),
        sa.Column("event_id", _ID, nullable=False),
        sa.Column("voucher_sha256", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("case_id", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("voucher_id"),
        sa.UniqueConstraint("media_id"),
    )
    op.create_index("ix_matrix_vouchers_account", "matrix_vouchers", ["account"])
    op.create_table(
        "matrix_rejections",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account", _ID, nullable=False),
        sa.Column("room", _ID, nullable=False),
        sa.Column("event_id", _ID, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_matrix_rejections_account", "matrix_rejections", ["account"])
    op.create_table(
        "cases",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("account", _ID, nullable=False),
        sa.Column("room", _ID, nullable=True),
        sa.Column("event_id", _ID, nullable=True),
        sa.Column("voucher_ids", sa.Text(), nullable=False),
        sa.Column("blobs", sa.Text(), nullable=False),
        sa.Column("entry_refs", sa.Text(), nullable=False),
        sa.Column("evidence", sa.LargeBinary(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_cases_account", "cases", ["account"])
    op.create_index("ix_cases_created", "cases", ["created_at"])
    op.create_table(
        "threshold_vouchers",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("voucher_id", sa.LargeBinary(16), nullable=False),
        sa.Column("transcript", sa.LargeBinary(32), nullable=False),
        sa.Column("share_x", sa.LargeBinary(32), nullable=False),
        sa.Column("share_y", sa.LargeBinary(32), nullable=False),
        sa.Column("match_layer", sa.LargeBinary(), nullable=False),
        sa.Column("match_sealed", sa.Boolean(), nullable=False),
        sa.Column("evidence", sa.LargeBinary(), nullable=False),
        sa.Column("released", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account", "voucher_id"),
    )
    op.create_table(
        "threshold_keys",
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("evidence_key", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("account"),
    )


def downgrade() -> None:
    op.drop_table("threshold_keys")
    op.drop_table("threshold_vouchers")
    op.drop_index("ix_cases_created", table_name="cases")
    op.drop_index("ix_cases_account", table_name="cases")
    op.drop_table("cases")
    op.drop_index("ix_matrix_rejections_account", table_name="matrix_rejections")
    op.drop_table("matrix_rejections")
    op.drop_index("ix_matrix_vouchers_account", table_name="matrix_vouchers")
    op.drop_table("matrix_vouchers")
    op.drop_table("matrix_blobs")
