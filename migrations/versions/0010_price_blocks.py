"""price blocks: a columnar copy of the prices, one row per symbol and month

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 03:00:00

``price_blocks`` holds, per symbol and calendar month, the closes and adjusted closes as
float64 arrays over the month's sessions, with the row count and sums the database gave
when the block was built. A read of a price window trusts a block only while those
aggregates are unchanged (any write to ``prices`` changes them), so the table is a cache
that starts empty: the first read of each month rebuilds its blocks from the rows.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'price_blocks',
        sa.Column('symbol', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('month', sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column('n_rows', sa.Integer(), nullable=False),
        sa.Column('sum_close', sa.Float(), nullable=False),
        sa.Column('sum_adj_close', sa.Float(), nullable=False),
        sa.Column('weighted_sum', sa.Float(), nullable=False),
        sa.Column('close', sa.LargeBinary(), nullable=False),
        sa.Column('adj_close', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('symbol', 'month'),
    )


def downgrade() -> None:
    op.drop_table('price_blocks')
