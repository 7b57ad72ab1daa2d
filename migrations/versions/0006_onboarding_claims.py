"""onboarding claims: the claiming process and its heartbeat

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 18:20:00

A job taken by an onboarding run records the run's process (host, pid, start-time token)
and a heartbeat, so a restarting API resets only jobs whose claimer is gone.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('onboarding_jobs') as batch:
        batch.add_column(sa.Column('host', sqlmodel.sql.sqltypes.AutoString(length=255),
                                   nullable=True))
        batch.add_column(sa.Column('pid', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('process_token', sqlmodel.sql.sqltypes.AutoString(length=64),
                                   nullable=True))
        batch.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('onboarding_jobs') as batch:
        for c in ('heartbeat_at', 'process_token', 'pid', 'host'):
            batch.drop_column(c)
