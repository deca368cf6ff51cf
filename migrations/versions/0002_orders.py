"""Orders: HL7 messages as received, orders, which message changed which order, and
study-order matches.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hl7_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_key', sa.String(length=400), nullable=False),
    sa.Column('control_id', sa.String(length=199), nullable=False),
    sa.Column('sending_application', sa.String(length=180), nullable=True),
    sa.Column('sending_facility', sa.String(length=180), nullable=True),
    sa.Column('message_type', sa.String(length=16), nullable=False),
    sa.Column('version', sa.String(length=8), nullable=False),
    sa.Column('charset', sa.String(length=32), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('ack_code', sa.String(length=2), nullable=False),
    sa.Column('peer_address', sa.String(length=64), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hl7_messages')),
    sa.UniqueConstraint('message_key', name=op.f('uq_hl7_messages_message_key'))
    )
    op.create_index(op.f('ix_hl7_messages_control_id'), 'hl7_messages', ['control_id'], unique=False)
    op.create_table('orders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('placer_number', sa.String(length=64), nullable=True),
    sa.Column('filler_number', sa.String(length=64), nullable=True),
    sa.Column('control', sa.String(length=2), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=True),
    sa.Column('accession_number', sa.String(length=64), nullable=True),
    sa.Column('issuer_of_accession', sa.String(length=64), nullable=True),
    sa.Column('study_uid', sa.String(length=64), nullable=True),
    sa.Column('requested_procedure_id', sa.String(length=64), nullable=True),
    sa.Column('patient_id', sa.String(length=64), nullable=True),
    sa.Column('issuer_of_patient_id', sa.String(length=64), nullable=True),
    sa.Column('procedure', sa.String(length=200), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('priority', sa.String(length=16), nullable=True),
    sa.Column('order_date', sa.String(length=8), nullable=True),
    sa.Column('history_text', sa.Text(), nullable=False),
    sa.Column('history_sources', sa.Text(), nullable=False),
    sa.Column('cancelled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orders'))
    )
    op.create_index(op.f('ix_orders_accession_number'), 'orders', ['accession_number'], unique=False)
    op.create_index(op.f('ix_orders_filler_number'), 'orders', ['filler_number'], unique=False)
    op.create_index(op.f('ix_orders_patient_id'), 'orders', ['patient_id'], unique=False)
    op.create_index(op.f('ix_orders_placer_number'), 'orders', ['placer_number'], unique=False)
    op.create_index(op.f('ix_orders_study_uid'), 'orders', ['study_uid'], unique=False)
    op.create_table('order_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('control', sa.String(length=2), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['hl7_messages.id'], name=op.f('fk_order_messages_message_id_hl7_messages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_order_messages_order_id_orders'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_messages'))
    )
    op.create_index(op.f('ix_order_messages_message_id'), 'order_messages', ['message_id'], unique=False)
    op.create_index(op.f('ix_order_messages_order_id'), 'order_messages', ['order_id'], unique=False)
    op.create_table('study_orders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('rule', sa.String(length=32), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('decided_by', sa.String(length=64), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_study_orders_order_id_orders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_study_orders_study_id_studies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_study_orders')),
    sa.UniqueConstraint('study_id', 'order_id', name='uq_study_orders_study_id_order_id')
    )
    op.create_index(op.f('ix_study_orders_order_id'), 'study_orders', ['order_id'], unique=False)
    op.create_index(op.f('ix_study_orders_state'), 'study_orders', ['state'], unique=False)
    op.create_index(op.f('ix_study_orders_study_id'), 'study_orders', ['study_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_study_orders_study_id'), table_name='study_orders')
    op.drop_index(op.f('ix_study_orders_state'), table_name='study_orders')
    op.drop_index(op.f('ix_study_orders_order_id'), table_name='study_orders')
    op.drop_table('study_orders')
    op.drop_index(op.f('ix_order_messages_order_id'), table_name='order_messages')
    op.drop_index(op.f('ix_order_messages_message_id'), table_name='order_messages')
    op.drop_table('order_messages')
    op.drop_index(op.f('ix_orders_study_uid'), table_name='orders')
    op.drop_index(op.f('ix_orders_placer_number'), table_name='orders')
    op.drop_index(op.f('ix_orders_patient_id'), table_name='orders')
    op.drop_index(op.f('ix_orders_filler_number'), table_name='orders')
    op.drop_index(op.f('ix_orders_accession_number'), table_name='orders')
    op.drop_table('orders')
    op.drop_index(op.f('ix_hl7_messages_control_id'), table_name='hl7_messages')
    op.drop_table('hl7_messages')
