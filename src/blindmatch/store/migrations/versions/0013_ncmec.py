"""NCMEC CyberTipline: encrypted evidence and the report outbox (issue 13, item 4)

``evidence`` keeps each evidence file AES-256-GCM encrypted (the key is outside the
database, ``$BLINDMATCH_HOME/evidence.key``; ``key_id`` names it) until its retention ends.
``ncmec_reports`` / ``ncmec_report_files`` are the durable outbox of CyberTipline reports:
each step's result is recorded before the next is taken (blindmatch.ncmec.outbox).

Revision ID: 0013
Revises: 0011 (the lead re-chains it after 0012_review when merging)
Create Date: 2026-12-08
"""

from alembic import op
import sqlalchemy as sa


revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    tz = sa.DateTime(timezone=True)
    op.create_table(
        "evidence",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("viewed_by_reviewer", sa.Boolean(), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("nonce", sa.LargeBinary(12), nullable=True),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", tz, nullable=False),
        sa.Column("expires_at", tz, nullable=False),
        sa.Column("purged_at", tz, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_evidence_case", "evidence", ["case_id"])
    op.create_index("ix_evidence_expires", "evidence", ["expires_at"])
    op.create_table(
        "ncmec_reports",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("category", sa.String(2), nullable=False),
        sa.Column("reviewer", sa.String(255), nullable=False),
        sa.Column("report_xml", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.String(255), nullable=True),
        sa.Column("ncmec_report_id", sa.BigInteger(), nullable=True),
        sa.Column("inflight", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", tz, nullable=True),
        sa.Column("possible_orphans", sa.Integer(), nullable=False),
        sa.Column("reopened", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("ncmec_files", sa.Text(), nullable=True),
        sa.Column("created_at", tz, nullable=False),
        sa.Column("updated_at", tz, nullable=False),
        sa.Column("submitted_at", tz, nullable=True),
        sa.Column("finished_at", tz, nullable=True),
        sa.Column("retracted_at", tz, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id"),
    )
    op.create_index("ix_ncmec_reports_state", "ncmec_reports", ["state", "next_attempt_at"])
    op.create_table(
        "ncmec_report_files",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("report_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("evidence_id", sa.String(32), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("md5", sa.String(32), nullable=False),
        sa.Column("viewed_by_esp", sa.Boolean(), nullable=False),
        sa.Column("file_id", sa.String(255), nullable=True),
        sa.Column("uploaded_at", tz, nullable=True),
        sa.Column("details_at", tz, nullable=True),
        sa.ForeignKeyConstraint(["report_id"], ["ncmec_reports.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("report_id", "seq", name="uq_ncmec_report_files_seq"),
    )


def downgrade() -> None:
    # Going back drops the outbox and the encrypted evidence: send or export first.
    op.drop_table("ncmec_report_files")
    op.drop_index("ix_ncmec_reports_state", table_name="ncmec_reports")
    op.drop_table("ncmec_reports")
    op.drop_index("ix_evidence_expires", table_name="evidence")
    op.drop_index("ix_evidence_case", table_name="evidence")
    op.drop_table("evidence")
