"""portfolio history jobs: build a portfolio's snapshots back to its entry dates

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 10:00:00

``portfolio_history_jobs`` is the queue of ``POST /v1/portfolios/{id}/history`` (and of the
``build_history`` option of create and import): one row per portfolio, queued → running →
done | failed, with the sessions the last build valued (``first_date``, ``last_date``), the
snapshots it wrote, its error, and the claim of the process running it (host, pid,
start-time token, heartbeat) so that a job of a dead process is queued again.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'portfolio_history_jobs',
        sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column('portfolio_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('first_date', sa.Date(), nullable=True),
        sa.Column('last_date', sa.Date(), nullable=True),
        sa.Column('snapshots', sa.Integer(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('host', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column('pid', sa.Integer(), nullable=True),
        sa.Column('process_token', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['portfolio_id'], ['portfolios.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('portfolio_id'),
    )
    with op.batch_alter_table('portfolio_history_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_portfolio_history_jobs_status'), ['status'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('portfolio_history_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_portfolio_history_jobs_status'))
    op.drop_table('portfolio_history_jobs')
