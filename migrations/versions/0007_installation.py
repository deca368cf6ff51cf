"""The installation's identity: one random UUID, the source of every result UID.

Result UIDs were derived from the UID root and the job number alone, so two nodes with
fresh databases issued the same UIDs for different patients' results. A database
upgraded to this revision gets its own identity now.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        'installation',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('uuid', sa.String(length=36), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_installation')))
    op.bulk_insert(table, [{"id": 1, "uuid": str(uuid.uuid4()),
                            "created_at": datetime.now(UTC)}])


def downgrade() -> None:
    op.drop_table('installation')
