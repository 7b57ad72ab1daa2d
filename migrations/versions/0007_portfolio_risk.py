"""portfolio risk: the nightly risk answer of each portfolio and date

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:00:00

``portfolio_risk`` holds the risk answer (``GET /v1/portfolios/{id}/risk``) the nightly
portfolio refresh computes for each portfolio at the date it refreshes, with the positions
hash it was computed for and three of its figures as columns (daily volatility as a
fraction of equity, parametric 99 % 1-session VaR and ES in currency).
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'portfolio_risk',
        sa.Column('portfolio_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column('date', sa.Date(), nullable=False),
        sa.Column('positions_hash', sqlmodel.sql.sqltypes.AutoString(length=64),
                  nullable=False),
        sa.Column('volatility_daily', sa.Float(), nullable=True),
        sa.Column('var_99_1d', sa.Float(), nullable=True),
        sa.Column('es_99_1d', sa.Float(), nullable=True),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['portfolio_id'], ['portfolios.id'], ),
        sa.PrimaryKeyConstraint('portfolio_id', 'date'),
    )


def downgrade() -> None:
    op.drop_table('portfolio_risk')
