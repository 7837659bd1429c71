"""Index recipient_id where deleting a recipient cascades.

Purging a transfer deletes its recipients, and each deletion looks up the
key slots, download grants and retrievals that refer to it; neither
PostgreSQL nor SQLite indexes a referencing column by itself.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 05:03:04.405164
"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

TABLES = ('key_slot', 'download_grant', 'retrieval')


def upgrade():
    for table in TABLES:
        op.create_index(op.f(f'ix_{table}_recipient_id'), table, ['recipient_id'])


def downgrade():
    for table in TABLES:
        op.drop_index(op.f(f'ix_{table}_recipient_id'), table_name=table)
