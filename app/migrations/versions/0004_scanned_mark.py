"""Stored files record what the virus scanner made of them, so that a draft
whose recipients now fall under a rule that requires a scan has its files
scanned before the transfer starts. Files stored before were not scanned:
"not_required".

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('stored_file') as batch_op:
        batch_op.add_column(sa.Column('scanned', sa.String(length=16), server_default='not_required', nullable=False))


def downgrade():
    with op.batch_alter_table('stored_file') as batch_op:
        batch_op.drop_column('scanned')
