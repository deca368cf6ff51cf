"""Studies: ``state_reason``, and the ``not_analysable`` state.

A study none of whose images the model can take (tomosynthesis only, For Processing
only, no standard view) ends ``not_analysable`` with the reason in ``state_reason``; a
failed study keeps its job's error there too. Studies that failed before this revision
because no mammogram could be processed move to ``not_analysable``.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_NO_MAMMOGRAMS = "%has no stored mammograms to process%"


def upgrade() -> None:
    with op.batch_alter_table('studies') as batch:
        batch.add_column(sa.Column('state_reason', sa.Text(), nullable=True))
    op.execute(
        "UPDATE studies SET state = 'not_analysable', state_reason = "
        "'nothing analysable: no mammogram is stored for the study' "
        "WHERE state = 'failed' AND id IN (SELECT study_id FROM jobs WHERE state = 'failed' "
        f"AND error LIKE '{_NO_MAMMOGRAMS}')")
    op.execute(
        "UPDATE studies SET state_reason = (SELECT j.error FROM jobs j WHERE "
        "j.study_id = studies.id AND j.state = 'failed' ORDER BY j.id DESC LIMIT 1) "
        "WHERE state = 'failed'")


def downgrade() -> None:
    op.execute("UPDATE studies SET state = 'failed' WHERE state = 'not_analysable'")
    with op.batch_alter_table('studies') as batch:
        batch.drop_column('state_reason')
