"""entries: the companion hash of a listed picture

``lists add`` computes each picture's companion hash (its canonical-pose 64-px PDQ,
``blindmatch.hashing.canonical``) and ``table build`` adds lookup keys for it beside
the PDQ's, so private matching finds mirrored, rotated and shrunk copies (issue 12).
A nullable column: rows already stored, and entries imported from files without
companions, have none. Re-running ``lists add`` on the same pictures fills it in (the
entries then count as changed).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa


revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("entries", sa.Column("pdq_companion", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35 has it): a batch copy of the
    # table would have to rebuild its partial unique index (0009) by hand.
    op.drop_column("entries", "pdq_companion")
