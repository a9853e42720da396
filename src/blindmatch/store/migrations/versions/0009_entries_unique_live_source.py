"""entries: at most one live row per (list, source id)

Two imports into one list that ran at once could both find an id absent and add it
twice (issue 11): two live rows, one tombstone removing only one of them, an export
refused for a duplicate id. Imports now take the write lock before they read; this
unique partial index makes a second live row impossible whatever a writer does.

A database that already holds such duplicates keeps the newest row (the highest id,
the last one written) of each (list, source id); the older ones are tombstoned under
a new sequence number, so a running index drops them when it catches up.

Revision ID: 0009
Revises: 0007 (the lead re-chains this after 0008 at merge)
Create Date: 2026-11-30
"""

from datetime import UTC, datetime

from alembic import op
import sqlalchemy as sa


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_LIVE = sa.text("removed_seq IS NULL")


def _tombstone_duplicates() -> None:
    bind = op.get_bind()
    older = (
        bind.execute(
            sa.text(
                "SELECT e.id FROM entries e WHERE e.removed_seq IS NULL AND EXISTS ("
                "SELECT 1 FROM entries n WHERE n.list_id = e.list_id AND n.source_id = e.source_id "
                "AND n.removed_seq IS NULL AND n.id > e.id)"
            )
        )
        .scalars()
        .all()
    )
    if not older:
        return
    row = bind.execute(sa.text("SELECT value FROM meta WHERE key = 'change_seq'")).first()
    seq = int(row[0]) + 1 if row else 1
    if row:
        bind.execute(
            sa.text("UPDATE meta SET value = :v WHERE key = 'change_seq'"), {"v": str(seq)}
        )
    else:
        bind.execute(sa.text("INSERT INTO meta (key, value) VALUES ('change_seq', :v)"),
                     {"v": str(seq)})  # fmt: skip
    now = datetime.now(UTC)
    for i in range(0, len(older), 500):
        bind.execute(
            sa.text(
                "UPDATE entries SET removed_seq = :s, removed_at = :t WHERE id IN :ids"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"s": seq, "t": now, "ids": list(older[i : i + 500])},
        )


def upgrade() -> None:
    _tombstone_duplicates()
    op.create_index(
        "uq_entries_live_source",
        "entries",
        ["list_id", "source_id"],
        unique=True,
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )


def downgrade() -> None:
    op.drop_index("uq_entries_live_source", table_name="entries")
