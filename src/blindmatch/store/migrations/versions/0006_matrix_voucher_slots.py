"""Matrix integration: several vouchers may bind one blob in one event (video frames)

A video is vouchered frame by frame: up to MAX_ATTACHMENTS vouchers of one event bind the
same blob. The unique constraint on ``media_id`` becomes one on ``(media_id, slot)``, where
``slot`` numbers an event's vouchers for one blob from 0: every event that binds a blob has
a slot 0, so two events still cannot both bind it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.String(255)
_COLUMNS = (
    "voucher_id, media_id, account, room, event_id, voucher_sha256, outcome, case_id, created_at"
)


def _table(name: str, *, slots: bool) -> None:
    op.create_table(
        name,
        sa.Column("voucher_id", sa.String(32), nullable=False),
        sa.Column("media_id", _ID, nullable=False),
        *([sa.Column("slot", sa.Integer(), nullable=False)] if slots else []),
        sa.Column("account", _ID, nullable=False),
        sa.Column("room", _ID, nullable=False),
        sa.Column("event_id", _ID, nullable=False),
        sa.Column("voucher_sha256", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("case_id", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("voucher_id"),
        sa.UniqueConstraint("media_id", "slot", name="uq_matrix_vouchers_media_slot")
        if slots
        else sa.UniqueConstraint("media_id"),
    )


def upgrade() -> None:
    # Recreate the table (SQLite cannot drop an unnamed constraint); rows keep slot 0.
    _table("matrix_vouchers_new", slots=True)
    op.execute(
        f"INSERT INTO matrix_vouchers_new ({_COLUMNS}, slot) "
        f"SELECT {_COLUMNS}, 0 FROM matrix_vouchers"
    )
    op.drop_index("ix_matrix_vouchers_account", table_name="matrix_vouchers")
    op.drop_table("matrix_vouchers")
    op.rename_table("matrix_vouchers_new", "matrix_vouchers")
    op.create_index("ix_matrix_vouchers_account", "matrix_vouchers", ["account"])


def downgrade() -> None:
    # Only slot 0 can go back under a unique media_id: the other frames' vouchers are lost.
    _table("matrix_vouchers_old", slots=False)
    op.execute(
        f"INSERT INTO matrix_vouchers_old ({_COLUMNS}) "
        f"SELECT {_COLUMNS} FROM matrix_vouchers WHERE slot = 0"
    )
    op.drop_index("ix_matrix_vouchers_account", table_name="matrix_vouchers")
    op.drop_table("matrix_vouchers")
    op.rename_table("matrix_vouchers_old", "matrix_vouchers")
    op.create_index("ix_matrix_vouchers_account", "matrix_vouchers", ["account"])
