"""false-positive defences: the negative bank, entry hits, flood quarantine

Issue 13, item 3: a false positive confirmed by review puts the picture's hash in a
per-platform negative bank (it never blocks again; the entries it matched are disputed
with their source); an entry matching more distinct accounts in an hour than a listed
picture plausibly does is put in flood quarantine (stops blocking, opens a case).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa


revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "negative_bank",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("pdq", sa.String(64), nullable=False),
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("entry_refs", sa.Text(), nullable=False),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disputed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "entry_hits",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("entry_key", sa.String(64), nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_entry_hits_key_at", "entry_hits", ["entry_key", "at"])
    op.create_table(
        "flood_quarantine",
        sa.Column("entry_key", sa.String(64), primary_key=True),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accounts", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(64), nullable=True),
        sa.Column("exempt", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("flood_quarantine")
    op.drop_index("ix_entry_hits_key_at", "entry_hits")
    op.drop_table("entry_hits")
    op.drop_table("negative_bank")
