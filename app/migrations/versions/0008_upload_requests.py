"""Upload requests: a staff member asks someone to send files through a
personal link; a draft opened by that link remembers the request.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 16:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('draft', sa.Column('request_id', sa.String(length=36), nullable=True))
    op.create_table('upload_request',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('staff_email', sa.String(length=320), nullable=False),
    sa.Column('external_name', sa.String(length=200), nullable=False),
    sa.Column('external_email', sa.String(length=320), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('max_total_bytes', sa.BigInteger(), nullable=True),
    sa.Column('allowed_extensions', sa.JSON(), nullable=True),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.Column('transfer_id', sa.String(length=36), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('upload_request') as batch_op:
        batch_op.create_index('ix_upload_request_expires_at', ['expires_at'], unique=False)
        batch_op.create_index('ix_upload_request_staff_email', ['staff_email'], unique=False)


def downgrade():
    op.drop_table('upload_request')
    op.drop_column('draft', 'request_id')
