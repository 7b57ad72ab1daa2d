"""snapshot income: a snapshot's daily P&L split into price P&L and dividend income

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 10:00:00

``portfolio_snapshots`` gains ``price_pnl`` and ``income`` (exact money, nullable):
``daily_pnl = price_pnl + income``, where income is the cash dividends earned on their
ex-dates. A migration cannot run the valuation, so existing rows keep ``price_pnl`` and
``income`` NULL and their old ``daily_pnl`` (price only, no dividends) until
``factorflow snapshots recompute`` rewrites them with the current valuation.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

import core.db.types

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('portfolio_snapshots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('price_pnl', core.db.types.Money(precision=20, scale=4),
                                      nullable=True))
        batch_op.add_column(sa.Column('income', core.db.types.Money(precision=20, scale=4),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('portfolio_snapshots', schema=None) as batch_op:
        batch_op.drop_column('income')
        batch_op.drop_column('price_pnl')
