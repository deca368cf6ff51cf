"""HL7 results follow the order's lifecycle: what the ORU echoes, and what it says.

``orders`` keeps the PID segment and OBR-4 (every component) of the newest message, so
the ORU echoes the patient and the procedure code exactly as the RIS sent them;
``hl7_result_messages.result_status`` is each ORU's OBR-25: ``P`` preliminary, ``C``
a re-run's correction, ``X`` the cancellation of a withdrawn result. Messages stored
before this revision were all preliminary.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('orders') as batch:
        batch.add_column(sa.Column('procedure_code', sa.Text(), nullable=True))
        batch.add_column(sa.Column('patient_identification', sa.Text(), nullable=True))
    with op.batch_alter_table('hl7_result_messages') as batch:
        batch.add_column(sa.Column('result_status', sa.String(length=1), nullable=True))
    op.execute("UPDATE hl7_result_messages SET result_status = 'P'")
    with op.batch_alter_table('hl7_result_messages') as batch:
        batch.alter_column('result_status', existing_type=sa.String(length=1), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('hl7_result_messages') as batch:
        batch.drop_column('result_status')
    with op.batch_alter_table('orders') as batch:
        batch.drop_column('patient_identification')
        batch.drop_column('procedure_code')
