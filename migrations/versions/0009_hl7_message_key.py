"""HL7 messages: ``message_key`` (MSH-3|MSH-4|MSH-10) long enough for each part at the
longest the node keeps it (180, 180 and 199 characters), so a message whose header
fields each fit is never a database error.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('hl7_messages') as batch:
        batch.alter_column('message_key', existing_type=sa.String(length=400),
                           type_=sa.String(length=561), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('hl7_messages') as batch:
        batch.alter_column('message_key', existing_type=sa.String(length=561),
                           type_=sa.String(length=400), existing_nullable=False)
