"""First revision: the schema as ``create_all`` made it before migrations.

Reviewed by hand: ``app.db.UTCDateTime`` stores naive UTC, so it is a plain
``DateTime`` here (TIMESTAMP WITHOUT TIME ZONE on PostgreSQL); defaults are
the models' Python-side ones, so no server defaults; the audit trail's
append-only triggers, which autogenerate does not see, are written out.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 05:01:06.221278
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('access_throttle',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('lockouts', sa.Integer(), nullable=False),
    sa.Column('locked_until', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('draft',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('transfer_id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('wrapped_dek', sa.LargeBinary(), nullable=False),
    sa.Column('sender_name', sa.String(length=200), nullable=False),
    sa.Column('sender_phone', sa.String(length=40), nullable=False),
    sa.Column('sender_email', sa.String(length=320), nullable=False),
    sa.Column('to_addresses', sa.JSON(), nullable=False),
    sa.Column('cc_addresses', sa.JSON(), nullable=False),
    sa.Column('bcc_addresses', sa.JSON(), nullable=False),
    sa.Column('message_ct', sa.LargeBinary(), nullable=True),
    sa.Column('refusal_ct', sa.LargeBinary(), nullable=True),
    sa.Column('options_saved', sa.Boolean(), nullable=False),
    sa.Column('expires_on', sa.Date(), nullable=True),
    sa.Column('recipient_language', sa.String(length=8), nullable=False),
    sa.Column('notify_confirmation', sa.Boolean(), nullable=False),
    sa.Column('notify_retrieval', sa.Boolean(), nullable=False),
    sa.Column('expose_filenames', sa.Boolean(), nullable=False),
    sa.Column('password_mode', sa.String(length=16), nullable=False),
    sa.Column('pending_slot', sa.JSON(), nullable=True),
    sa.Column('subject', sa.String(length=300), nullable=True),
    sa.Column('body', sa.Text(), nullable=True),
    sa.Column('reply_to_id', sa.String(length=36), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('transfer_id')
    )
    op.create_table('event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('transfer_id', sa.String(length=36), nullable=True),
    sa.Column('actor', sa.String(length=320), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_event_at', 'event', ['at'])
    op.create_index(op.f('ix_event_transfer_id'), 'event', ['transfer_id'])
    _audit_trail_append_only()

    op.create_table('lease',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('holder', sa.String(length=200), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('rate_counter',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('window_start', sa.DateTime(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key', 'window_start')
    )
    op.create_table('space_claim',
    sa.Column('holder', sa.String(length=32), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('holder')
    )
    op.create_index(op.f('ix_space_claim_expires_at'), 'space_claim', ['expires_at'])

    op.create_table('transfer',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('sender_name', sa.String(length=200), nullable=False),
    sa.Column('sender_phone', sa.String(length=40), nullable=False),
    sa.Column('sender_email', sa.String(length=320), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('sender_language', sa.String(length=8), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('message_ct', sa.LargeBinary(), nullable=True),
    sa.Column('password_mode', sa.String(length=16), nullable=False),
    sa.Column('notify_confirmation', sa.Boolean(), nullable=False),
    sa.Column('notify_retrieval', sa.Boolean(), nullable=False),
    sa.Column('expose_filenames', sa.Boolean(), nullable=False),
    sa.Column('file_count', sa.Integer(), nullable=False),
    sa.Column('total_bytes', sa.BigInteger(), nullable=False),
    sa.Column('status_token_hash', sa.String(length=64), nullable=False),
    sa.Column('manifest_ct', sa.LargeBinary(), nullable=False),
    sa.Column('reply_to_id', sa.String(length=36), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('status_token_hash')
    )
    op.create_index(op.f('ix_transfer_expires_at'), 'transfer', ['expires_at'])

    op.create_table('upload_lease',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('slot', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('holder', sa.String(length=32), nullable=False),
    sa.Column('draft_id', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key', 'slot')
    )
    op.create_index(op.f('ix_upload_lease_holder'), 'upload_lease', ['holder'])

    op.create_table('verification_code',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('browser', sa.String(length=64), nullable=False),
    sa.Column('code_hash', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_verification_code_email_browser', 'verification_code', ['email', 'browser'])

    op.create_table('draft_owner',
    sa.Column('draft_id', sa.String(length=64), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['draft_id'], ['draft.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('draft_id')
    )
    op.create_index(op.f('ix_draft_owner_owner'), 'draft_owner', ['owner'])

    op.create_table('draft_seat',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('slot', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('draft_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['draft_id'], ['draft.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('key', 'slot'),
    sa.UniqueConstraint('draft_id')
    )
    op.create_table('exposed_names',
    sa.Column('transfer_id', sa.String(length=36), nullable=False),
    sa.Column('names_ct', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['transfer_id'], ['transfer.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('transfer_id')
    )
    op.create_table('recipient',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('transfer_id', sa.String(length=36), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('kind', sa.String(length=3), nullable=False),
    sa.Column('access_id', sa.String(length=32), nullable=False),
    sa.Column('reminded_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['transfer_id'], ['transfer.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('access_id')
    )
    op.create_index(op.f('ix_recipient_transfer_id'), 'recipient', ['transfer_id'])

    op.create_table('stored_file',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('draft_id', sa.String(length=64), nullable=True),
    sa.Column('transfer_id', sa.String(length=36), nullable=True),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('blob_key', sa.String(length=32), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('name_ct', sa.LargeBinary(), nullable=False),
    sa.Column('type_ct', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['draft_id'], ['draft.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['transfer_id'], ['transfer.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('blob_key')
    )
    op.create_index(op.f('ix_stored_file_draft_id'), 'stored_file', ['draft_id'])
    op.create_index(op.f('ix_stored_file_transfer_id'), 'stored_file', ['transfer_id'])

    op.create_table('upload',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('draft_id', sa.String(length=64), nullable=False),
    sa.Column('blob_key', sa.String(length=32), nullable=False),
    sa.Column('length', sa.BigInteger(), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('reserved_segments', sa.BigInteger(), nullable=False),
    sa.Column('name_ct', sa.LargeBinary(), nullable=False),
    sa.Column('type_ct', sa.LargeBinary(), nullable=False),
    sa.Column('busy_until', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['draft_id'], ['draft.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('blob_key')
    )
    op.create_index(op.f('ix_upload_draft_id'), 'upload', ['draft_id'])

    op.create_table('download_grant',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('transfer_id', sa.String(length=36), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=False),
    sa.Column('wrapped_dek', sa.LargeBinary(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['recipient_id'], ['recipient.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['transfer_id'], ['transfer.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_download_grant_transfer_id'), 'download_grant', ['transfer_id'])

    op.create_table('key_slot',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('transfer_id', sa.String(length=36), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('kdf', sa.JSON(), nullable=False),
    sa.Column('salt', sa.LargeBinary(), nullable=False),
    sa.Column('wrapped_dek', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['recipient_id'], ['recipient.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['transfer_id'], ['transfer.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_key_slot_transfer_id'), 'key_slot', ['transfer_id'])

    op.create_table('retrieval',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('transfer_id', sa.String(length=36), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=False),
    sa.Column('file_id', sa.String(length=36), nullable=False),
    sa.Column('grant_id', sa.String(length=36), nullable=False),
    sa.Column('how', sa.String(length=16), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('name_ct', sa.LargeBinary(), nullable=True),
    sa.Column('notified_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['recipient_id'], ['recipient.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['transfer_id'], ['transfer.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('grant_id', 'file_id', 'how')
    )
    op.create_index(op.f('ix_retrieval_grant_id'), 'retrieval', ['grant_id'])
    op.create_index(op.f('ix_retrieval_transfer_id'), 'retrieval', ['transfer_id'])



def _audit_trail_append_only():
    """An UPDATE or DELETE on the audit trail fails, whoever issues it (as in app/models.py)."""
    if op.get_bind().dialect.name == 'sqlite':
        for verb in ('UPDATE', 'DELETE'):
            op.execute(
                f'CREATE TRIGGER event_no_{verb.lower()} BEFORE {verb} ON event '
                "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END"
            )
    else:
        op.execute(
            'CREATE FUNCTION event_append_only() RETURNS trigger LANGUAGE plpgsql AS '
            "$$ BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$"
        )
        op.execute(
            'CREATE TRIGGER event_append_only BEFORE UPDATE OR DELETE ON event '
            'FOR EACH STATEMENT EXECUTE FUNCTION event_append_only()'
        )


def downgrade():
    op.drop_index(op.f('ix_retrieval_transfer_id'), table_name='retrieval')
    op.drop_index(op.f('ix_retrieval_grant_id'), table_name='retrieval')

    op.drop_table('retrieval')
    op.drop_index(op.f('ix_key_slot_transfer_id'), table_name='key_slot')

    op.drop_table('key_slot')
    op.drop_index(op.f('ix_download_grant_transfer_id'), table_name='download_grant')

    op.drop_table('download_grant')
    op.drop_index(op.f('ix_upload_draft_id'), table_name='upload')

    op.drop_table('upload')
    op.drop_index(op.f('ix_stored_file_transfer_id'), table_name='stored_file')
    op.drop_index(op.f('ix_stored_file_draft_id'), table_name='stored_file')

    op.drop_table('stored_file')
    op.drop_index(op.f('ix_recipient_transfer_id'), table_name='recipient')

    op.drop_table('recipient')
    op.drop_table('exposed_names')
    op.drop_table('draft_seat')
    op.drop_index(op.f('ix_draft_owner_owner'), table_name='draft_owner')

    op.drop_table('draft_owner')
    op.drop_index('ix_verification_code_email_browser', table_name='verification_code')

    op.drop_table('verification_code')
    op.drop_index(op.f('ix_upload_lease_holder'), table_name='upload_lease')

    op.drop_table('upload_lease')
    op.drop_index(op.f('ix_transfer_expires_at'), table_name='transfer')

    op.drop_table('transfer')
    op.drop_index(op.f('ix_space_claim_expires_at'), table_name='space_claim')

    op.drop_table('space_claim')
    op.drop_table('rate_counter')
    op.drop_table('lease')
    op.drop_index(op.f('ix_event_transfer_id'), table_name='event')
    op.drop_index('ix_event_at', table_name='event')

    op.drop_table('event')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP FUNCTION event_append_only()')
    op.drop_table('draft')
    op.drop_table('access_throttle')
