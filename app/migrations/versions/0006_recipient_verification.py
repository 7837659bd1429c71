"""Recipients' second factor: a one-time code by mail or SMS after the
password or link. The transfer says which, each recipient may have a
mobile number (sealed under the transfer's key), a draft keeps the choice
and the numbers (sealed under its key), and a code challenge holds an
opened transfer's key for the browser until the code comes back.

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-27 08:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('draft') as batch_op:
        batch_op.add_column(sa.Column('recipient_verification', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('mobiles_ct', sa.LargeBinary(), nullable=True))
    with op.batch_alter_table('transfer') as batch_op:
        batch_op.add_column(sa.Column('recipient_verification', sa.String(length=8), server_default='none', nullable=False))
        batch_op.add_column(sa.Column('password_by_sms', sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table('recipient') as batch_op:
        batch_op.add_column(sa.Column('mobile_ct', sa.LargeBinary(), nullable=True))
    op.create_table('code_challenge',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('transfer_id', sa.String(length=36), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=False),
    sa.Column('wrapped_dek', sa.LargeBinary(), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('code_hash', sa.LargeBinary(), nullable=True),
    sa.Column('code_sent_at', sa.DateTime(), nullable=True),
    sa.Column('code_expires_at', sa.DateTime(), nullable=True),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['recipient_id'], ['recipient.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['transfer_id'], ['transfer.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('code_challenge') as batch_op:
        batch_op.create_index('ix_code_challenge_expires_at', ['expires_at'], unique=False)
        batch_op.create_index('ix_code_challenge_recipient_id', ['recipient_id'], unique=False)
        batch_op.create_index('ix_code_challenge_transfer_id', ['transfer_id'], unique=False)


def downgrade():
    op.drop_table('code_challenge')
    with op.batch_alter_table('recipient') as batch_op:
        batch_op.drop_column('mobile_ct')
    with op.batch_alter_table('transfer') as batch_op:
        batch_op.drop_column('password_by_sms')
        batch_op.drop_column('recipient_verification')
    with op.batch_alter_table('draft') as batch_op:
        batch_op.drop_column('mobiles_ct')
        batch_op.drop_column('recipient_verification')
