"""data trust: price provenance and revisions, known-missing sessions, lock owners

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 11:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRICE = sa.Numeric(18, 6)


def upgrade() -> None:
    with op.batch_alter_table('prices') as batch:
        batch.add_column(sa.Column('provider', sqlmodel.sql.sqltypes.AutoString(length=64),
                                   nullable=True))
    op.create_table(
        'price_revisions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('symbol', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('date', sa.Date(), nullable=False),
        sa.Column('as_of', sa.Date(), nullable=False),
        sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('provider', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column('stored_provider', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        *[sa.Column(f'stored_{c}', PRICE, nullable=True)
          for c in ('open', 'high', 'low', 'close', 'adj_close')],
        sa.Column('stored_volume', sa.Float(), nullable=True),
        *[sa.Column(f'offered_{c}', PRICE, nullable=True)
          for c in ('open', 'high', 'low', 'close', 'adj_close')],
        sa.Column('offered_volume', sa.Float(), nullable=True),
        sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_price_revisions_symbol_date', 'price_revisions', ['symbol', 'date'])
    op.create_table(
        'known_missing_prices',
        sa.Column('symbol', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('date', sa.Date(), nullable=False),
        sa.Column('marked_as_of', sa.Date(), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('symbol', 'date'),
    )
    for table in ('run_locks', 'batch_runs'):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('host', sqlmodel.sql.sqltypes.AutoString(length=255),
                                       nullable=True))
            batch.add_column(sa.Column('pid', sa.Integer(), nullable=True))
            batch.add_column(sa.Column('process_token',
                                       sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    with op.batch_alter_table('run_locks') as batch:
        batch.add_column(sa.Column('flow_run_id', sqlmodel.sql.sqltypes.AutoString(length=36),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('run_locks') as batch:
        for c in ('flow_run_id', 'process_token', 'pid', 'host'):
            batch.drop_column(c)
    with op.batch_alter_table('batch_runs') as batch:
        for c in ('process_token', 'pid', 'host'):
            batch.drop_column(c)
    op.drop_table('known_missing_prices')
    op.drop_index('ix_price_revisions_symbol_date', table_name='price_revisions')
    op.drop_table('price_revisions')
    with op.batch_alter_table('prices') as batch:
        batch.drop_column('provider')
