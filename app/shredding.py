"""Making a transfer unreadable, then gone.

Key slots and grants go first: without them the ciphertext that may linger
is noise. Rows follow in the same transaction; blobs are deleted only after
that transaction committed, so a rollback never leaves rows pointing at
missing files.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session

from . import audit, db as dbmod
from .models import CodeChallenge, DownloadGrant, Transfer
from .portal import Portal


def shred(db: Session, portal: Portal, transfer: Transfer, reason: str, ip: str = "") -> None:
    transfer.slots.clear()  # delete-orphan: the rows go at the flush
    db.execute(delete(DownloadGrant).where(DownloadGrant.transfer_id == transfer.id))
    db.execute(delete(CodeChallenge).where(CodeChallenge.transfer_id == transfer.id))
    db.flush()  # the slots are gone before anything else is touched
    blob_keys = [f.blob_key for f in transfer.files]
    audit.record(db, "transfer_deleted", transfer_id=transfer.id, actor=transfer.sender_email, ip=ip, reason=reason)
    db.delete(transfer)
    dbmod.after_commit(db, lambda: [portal.store.delete(key) for key in blob_keys])
