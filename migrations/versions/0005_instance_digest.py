"""Instances: ``sha256`` becomes ``digest``, written ``<algorithm>:<hex>``.

New objects are digested with BLAKE3; the SHA-256 digests of rows already stored are
kept, prefixed ``sha256:``.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('instances') as batch:
        batch.add_column(sa.Column('digest', sa.String(length=80), nullable=True))
    op.execute("UPDATE instances SET digest = 'sha256:' || sha256")
    with op.batch_alter_table('instances') as batch:
        batch.alter_column('digest', existing_type=sa.String(length=80), nullable=False)
        batch.drop_column('sha256')


def downgrade() -> None:
    # A BLAKE3 digest cannot be turned back into SHA-256: those rows get an empty one.
    with op.batch_alter_table('instances') as batch:
        batch.add_column(sa.Column('sha256', sa.String(length=64), nullable=True))
    op.execute("UPDATE instances SET sha256 = substr(digest, 8) "
               "WHERE digest LIKE 'sha256:%'")
    op.execute("UPDATE instances SET sha256 = '' WHERE sha256 IS NULL")
    with op.batch_alter_table('instances') as batch:
        batch.alter_column('sha256', existing_type=sa.String(length=64), nullable=False)
        batch.drop_column('digest')
