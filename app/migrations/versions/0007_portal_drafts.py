"""A draft remembers the upload portal it was started at, whose recipients
are fixed by the configuration (``[[portals]]``).

A nullable column without a default: added in place on SQLite and
PostgreSQL alike, without copying the table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 12:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('draft', sa.Column('portal_slug', sa.String(length=64), nullable=True))


def downgrade():
    op.drop_column('draft', 'portal_slug')
