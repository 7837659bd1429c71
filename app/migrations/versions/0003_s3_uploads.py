"""Resumable uploads into S3 keep their state in the database: the header,
the multipart upload and its committed parts, the tail object, the segments
in flight, and the lease of the request writing them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 07:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('upload') as batch_op:
        batch_op.add_column(sa.Column('header', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('part_segments', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('multipart_id', sa.String(length=1024), nullable=True))
        batch_op.add_column(sa.Column('tail_key', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('in_flight', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('busy_by', sa.String(length=32), nullable=True))
    op.create_table('upload_part',
    sa.Column('upload_id', sa.String(length=36), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('etag', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['upload_id'], ['upload.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('upload_id', 'number')
    )


def downgrade():
    op.drop_table('upload_part')
    with op.batch_alter_table('upload') as batch_op:
        for column in ('busy_by', 'in_flight', 'tail_key', 'multipart_id', 'part_segments', 'header'):
            batch_op.drop_column(column)
