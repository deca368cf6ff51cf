"""Operations: role heartbeats, audit-forwarding cursors and scheduled runs.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'node_heartbeats',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('role', sa.String(length=32), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('beat_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('status', sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_node_heartbeats')),
        sa.UniqueConstraint('role', 'host', 'pid', name='uq_node_heartbeats_role_host_pid'),
    )
    with op.batch_alter_table('node_heartbeats', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_node_heartbeats_role'), ['role'], unique=False)

    op.create_table(
        'audit_forward_cursors',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('last_event_id', sa.Integer(), nullable=False),
        sa.Column('forwarded_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('lease_owner', sa.String(length=128), nullable=True),
        sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_audit_forward_cursors')),
    )
    op.create_table(
        'scheduled_runs',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_scheduled_runs')),
    )


def downgrade() -> None:
    op.drop_table('scheduled_runs')
    op.drop_table('audit_forward_cursors')
    with op.batch_alter_table('node_heartbeats', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_node_heartbeats_role'))
    op.drop_table('node_heartbeats')
