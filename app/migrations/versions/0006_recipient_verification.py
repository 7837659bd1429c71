"""Recipients' second factor: a one-time code by mail or SMS after the
password or link. The transfer says which, each recipient may have a
mobile number (sealed under the transfer's key), a draft keeps the choice,
the numbers and a password that goes by SMS (sealed under its key), and a
code challenge holds an opened transfer's key for the browser until the
code comes back.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 08:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


# Columns are added and dropped in place (ALTER TABLE; SQLite has both
# since 3.35), never by batch mode's copy of the table: on SQLite, with
# foreign keys on, dropping the old transfer or recipient table would
# cascade to every recipient, key slot and file.
def upgrade():
    op.add_column('draft', sa.Column('recipient_verification', sa.String(length=8), nullable=True))
    op.add_column('draft', sa.Column('mobiles_ct', sa.LargeBinary(), nullable=True))
    op.add_column('draft', sa.Column('sms_password_ct', sa.LargeBinary(), nullable=True))
    op.add_column(
        'transfer', sa.Column('recipient_verification', sa.String(length=8), server_default='none', nullable=False)
    )
    op.add_column('transfer', sa.Column('password_by_sms', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('recipient', sa.Column('mobile_ct', sa.LargeBinary(), nullable=True))
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
    op.drop_column('recipient', 'mobile_ct')
    op.drop_column('transfer', 'password_by_sms')
    op.drop_column('transfer', 'recipient_verification')
    op.drop_column('draft', 'sms_password_ct')
    op.drop_column('draft', 'mobiles_ct')
    op.drop_column('draft', 'recipient_verification')
