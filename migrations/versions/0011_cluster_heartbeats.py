"""Role heartbeats say enough to compare hosts: the node's version, the host clock's
offset from the database clock, the identity of the storage root the process sees and
the model bundle it runs.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('node_heartbeats') as batch:
        batch.add_column(sa.Column('version', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('clock_offset_ms', sa.Float(), nullable=True))
        batch.add_column(sa.Column('storage_id', sa.String(length=36), nullable=True))
        batch.add_column(sa.Column('bundle_digest', sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('node_heartbeats') as batch:
        batch.drop_column('bundle_digest')
        batch.drop_column('storage_id')
        batch.drop_column('clock_offset_ms')
        batch.drop_column('version')
