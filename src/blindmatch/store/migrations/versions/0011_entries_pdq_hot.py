"""entries: the hot companion hashes of a hot listed picture

``lists add --hot`` computes, for a picture a hotline knows is re-shared a lot, the
companion hashes of the picture cropped and turned by a fixed grid
(``blindmatch.hashing.hot``: at most 91), and ``table build`` adds a lookup key for each
that two hotlines in two jurisdictions carry, so private matching finds cropped and
slightly rotated copies (issue 12, item 4). Stored as hex separated by spaces; a nullable
column: rows already stored, and entries that are not hot, have none.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa


revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("entries", sa.Column("pdq_hot", sa.Text(), nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE ... DROP COLUMN, as 0010 (a batch copy would have to rebuild
    # 0009's partial unique index by hand).
    op.drop_column("entries", "pdq_hot")
