"""A result records the breast operating threshold and one line saying whether its
probabilities are calibrated and where each level's flag is set.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('results') as batch:
        batch.add_column(sa.Column('breast_threshold', sa.Float(), nullable=True))
        batch.add_column(sa.Column('operating_point', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('results') as batch:
        batch.drop_column('operating_point')
        batch.drop_column('breast_threshold')
