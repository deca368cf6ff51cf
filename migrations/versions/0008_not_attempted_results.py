"""Results: a not-attempted result, with no probability and the reason the model did not run.

A study with nothing analysable still gets a result for the reading workstation and
the RIS (a Mammography CAD SR saying "not attempted", and the ORU), recorded like any
other result so it is delivered, superseded and withdrawn the same way.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('results') as batch:
        batch.alter_column('probability', existing_type=sa.Float(), nullable=True)
        batch.add_column(sa.Column('not_attempted_reason', sa.Text(), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM results WHERE probability IS NULL")
    with op.batch_alter_table('results') as batch:
        batch.drop_column('not_attempted_reason')
        batch.alter_column('probability', existing_type=sa.Float(), nullable=False)
