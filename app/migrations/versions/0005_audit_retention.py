"""The audit trail gets a term: the retention purge may delete events older
than its cutoff, and nothing else may delete or change any.

A DELETE on ``event`` passes the trigger only for rows older than the cutoff
of an ``audit_purge`` permit that the same transaction wrote (no other
transaction ever sees one: a permit cannot be committed, see
``app.models.AuditPurge``). An UPDATE fails always, and on PostgreSQL now a
TRUNCATE too, which passed the first revision's DELETE trigger.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

REFUSED = 'the audit trail is append-only'
REFUSED_DELETE = f'{REFUSED}: only the retention purge deletes, and only events older than its cutoff'
# Whether a row is covered by a permit; the same words in both dialects.
UNCOVERED = 'NOT EXISTS (SELECT 1 FROM audit_purge WHERE {row}.at < audit_purge.cutoff)'


def upgrade():
    op.create_table('audit_purge',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('cutoff', sa.DateTime(), nullable=False),
    sa.Column('pending', sa.Integer(), nullable=False),
    sa.CheckConstraint('id = 1', name='ck_audit_purge_one'),
    sa.CheckConstraint('pending = 0', name='ck_audit_purge_pending'),
    sa.ForeignKeyConstraint(['pending'], ['audit_purge.id'], deferrable=True, initially='DEFERRED'),
    sa.PrimaryKeyConstraint('id')
    )
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('DROP TRIGGER event_no_delete')
        op.execute(
            'CREATE TRIGGER event_no_delete BEFORE DELETE ON event '
            f"WHEN {UNCOVERED.format(row='old')} "
            f"BEGIN SELECT RAISE(ABORT, '{REFUSED_DELETE}'); END"
        )
    else:
        op.execute('DROP TRIGGER event_append_only ON event')
        op.execute(
            'CREATE TRIGGER event_append_only BEFORE UPDATE OR TRUNCATE ON event '
            'FOR EACH STATEMENT EXECUTE FUNCTION event_append_only()'
        )
        op.execute(
            'CREATE FUNCTION event_purge_only() RETURNS trigger LANGUAGE plpgsql AS '
            f"$$ BEGIN IF {UNCOVERED.format(row='OLD')} THEN RAISE EXCEPTION '{REFUSED_DELETE}'; END IF; "
            'RETURN OLD; END $$'
        )
        op.execute(
            'CREATE TRIGGER event_purge_only BEFORE DELETE ON event '
            'FOR EACH ROW EXECUTE FUNCTION event_purge_only()'
        )


def downgrade():
    """The first revision's triggers: nothing may delete an event."""
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('DROP TRIGGER event_no_delete')
        op.execute(
            'CREATE TRIGGER event_no_delete BEFORE DELETE ON event '
            f"BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END"
        )
    else:
        op.execute('DROP TRIGGER event_purge_only ON event')
        op.execute('DROP FUNCTION event_purge_only()')
        op.execute('DROP TRIGGER event_append_only ON event')
        op.execute(
            'CREATE TRIGGER event_append_only BEFORE UPDATE OR DELETE ON event '
            'FOR EACH STATEMENT EXECUTE FUNCTION event_append_only()'
        )
    op.drop_table('audit_purge')
