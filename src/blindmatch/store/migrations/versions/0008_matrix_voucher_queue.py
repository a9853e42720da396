"""Matrix integration: the threshold policy's voucher queue; vouchers kept with cases

Under the threshold policy the send path no longer opens vouchers (its answer must not
depend on whether one opened): it queues them in ``matrix_voucher_queue`` and a background
worker opens them. ``case_vouchers`` keeps, for review, the vouchers of a case that were
forged (a pair opened, an inner layer did not), with the failing layer and the bytes.
The case kind ``tampered`` and the binding outcome ``pending`` need no schema change.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from alembic import op
import sqlalchemy as sa


revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "matrix_voucher_queue",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("voucher_id", sa.String(32), nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("table_id", sa.String(32), nullable=False),
        sa.Column("voucher", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("voucher_id"),
    )
    op.create_index("ix_matrix_voucher_queue_account", "matrix_voucher_queue", ["account"])
    op.create_table(
        "case_vouchers",
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("voucher_id", sa.String(32), nullable=False),
        sa.Column("tampered", sa.String(100), nullable=True),
        sa.Column("voucher", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("case_id", "voucher_id"),
    )


def downgrade() -> None:
    # Queued vouchers were never opened: going back loses them (their bindings stay
    # "pending"). Run the module until the queue is empty before downgrading.
    op.drop_table("case_vouchers")
    op.drop_index("ix_matrix_voucher_queue_account", table_name="matrix_voucher_queue")
    op.drop_table("matrix_voucher_queue")
