"""meta: drop the UNIQUE(key) that duplicated the primary key

0001 declared ``meta.key`` both PRIMARY KEY and UNIQUE. PostgreSQL never creates a unique
constraint identical to the primary key, so there the database never matched the models;
SQLite kept a second index. The models no longer declare it; this makes SQLite agree.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa


revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _recreate(unique: bool) -> None:
    # SQLite cannot drop an unnamed constraint: copy the table. PostgreSQL has nothing to do.
    if op.get_bind().dialect.name != "sqlite":
        return
    op.create_table(
        "meta_new",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
        *([sa.UniqueConstraint("key")] if unique else []),
    )
    op.execute("INSERT INTO meta_new (key, value) SELECT key, value FROM meta")
    op.drop_table("meta")
    op.rename_table("meta_new", "meta")


def upgrade() -> None:
    _recreate(unique=False)


def downgrade() -> None:
    _recreate(unique=True)
