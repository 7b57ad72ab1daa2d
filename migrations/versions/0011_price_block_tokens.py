"""price blocks checked by count, last rowid and an edit counter instead of sums

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 08:00:00

The blocks' check summed a year of ``prices`` rows on every read (the largest part of a
night's reads). A block is now trusted while its month's ``count(*)`` and ``max(rowid)``
(read from the primary-key index alone: no table row is visited) and its
``price_month_edits`` counter are those it was built with. Inserts change the count or
bring a rowid above the block's (``INSERT OR REPLACE`` deletes and inserts: a new rowid);
updates and deletes, by whatever path, move the counter through the two SQLite triggers
created here (an insert fires none: a first load's millions of rows cost nothing more).

``price_blocks`` is a cache: it is dropped and created again empty, so the first read of
each month after the upgrade rebuilds its blocks. PostgreSQL gets the tables but no
triggers (it reads its windows without blocks).
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BUMP = """
    INSERT INTO price_month_edits (symbol, month, edits)
    VALUES ({row}.symbol, substr({row}.date, 1, 7), 1)
    ON CONFLICT (symbol, month) DO UPDATE SET edits = edits + 1;"""
TRIGGERS = {
    "prices_updated_edits": "AFTER UPDATE ON prices BEGIN" + _BUMP.format(row="OLD")
    + _BUMP.format(row="NEW") + "\nEND",
    "prices_deleted_edits": "AFTER DELETE ON prices BEGIN" + _BUMP.format(row="OLD") + "\nEND",
}


def _blocks(*token: sa.Column) -> None:
    op.create_table(
        'price_blocks',
        sa.Column('symbol', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('month', sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column('n_rows', sa.Integer(), nullable=False),
        *token,
        sa.Column('close', sa.LargeBinary(), nullable=False),
        sa.Column('adj_close', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('symbol', 'month'),
    )


def upgrade() -> None:
    op.drop_table('price_blocks')
    _blocks(sa.Column('max_rowid', sa.Integer(), nullable=False),
            sa.Column('edits', sa.Integer(), nullable=False))
    op.create_table(
        'price_month_edits',
        sa.Column('symbol', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('month', sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column('edits', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('symbol', 'month'),
    )
    if op.get_bind().dialect.name == 'sqlite':
        for name, body in TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        for name in TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table('price_month_edits')
    op.drop_table('price_blocks')
    _blocks(sa.Column('sum_close', sa.Float(), nullable=False),
            sa.Column('sum_adj_close', sa.Float(), nullable=False),
            sa.Column('weighted_sum', sa.Float(), nullable=False))
