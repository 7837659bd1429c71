"""The sender's draft: every wizard step saves its part here.

A draft holds its own data key (DEK), which becomes the transfer's at the
commit. Files and the confidential message are encrypted under it from the
first byte, so an abandoned draft never left plaintext anywhere.

The DEK is wrapped under a random secret that only the sender's browser
keeps (in the session cookie), as download grants do. The server cannot
open a draft between requests, and a copy of the database, including the
bytes a deleted draft row leaves in SQLite's WAL or PostgreSQL's dead
tuples, together with the server's secret key, opens nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from . import db as dbmod
from . import fixed_recipients
from .clock import utcnow
from .crypto.keys import DecryptionError, new_key, open_text, seal_text, unwrap, wrap
from .ids import new_token
from .models import Draft, StoredFile
from .portal import Portal

MESSAGE_MAX_CHARS = 20_000
# Every request of the wizard loads its draft, every upload chunk too: built
# once, with its cache key, where ``Session.get`` builds its query each time.
_DRAFT = select(Draft).where(Draft.id == bindparam("draft_id"))


class DraftLocked(Exception):
    """The draft's key was not opened with the browser's secret in this request."""


@dataclass(frozen=True)
class DraftTicket:
    """What the sender's browser keeps: the draft id and the secret that opens
    its key, and the id its transfer will have (which finds the transfer once
    the draft is gone, for a second click on "Start transaction")."""

    draft_id: str
    secret: str
    transfer_id: str = ""

    def as_session(self) -> dict[str, str]:
        return {"id": self.draft_id, "secret": self.secret, "transfer": self.transfer_id}

    @classmethod
    def from_session(cls, raw: object) -> "DraftTicket | None":
        if not isinstance(raw, dict):
            return None
        return cls(str(raw.get("id", "")), str(raw.get("secret", "")), str(raw.get("transfer", "")))


def _dek_aad(draft_id: str) -> bytes:
    return f"koerier/draft/v2/{draft_id}".encode()


def create(db: Session, now: datetime | None = None) -> tuple[Draft, DraftTicket]:
    draft_id, secret, dek = new_token(), new_key(), new_key()
    draft = Draft(
        id=draft_id,
        transfer_id=str(uuid.uuid4()),
        wrapped_dek=wrap(secret, dek, _dek_aad(draft_id)),
        created_at=now or utcnow(),
        updated_at=now or utcnow(),
    )
    draft.dek = dek
    db.add(draft)
    return draft, DraftTicket(draft_id, secret.hex(), draft.transfer_id)


def find(db: Session, portal: Portal, ticket: DraftTicket | None, now: datetime | None = None) -> Draft | None:
    """The draft with its key opened, unless unknown, abandoned for longer
    than the configured time, or not opened by the ticket's secret."""
    if ticket is None or not ticket.draft_id:
        return None
    draft = db.scalar(_DRAFT, {"draft_id": ticket.draft_id})
    if draft is None:
        return None
    idle_limit = timedelta(hours=portal.settings.transfer.draft_ttl_hours)
    if (now or utcnow()) - draft.updated_at > idle_limit:
        return None
    try:
        draft.dek = unwrap(bytes.fromhex(ticket.secret), draft.wrapped_dek, _dek_aad(draft.id))
    except (DecryptionError, ValueError):
        return None
    return draft


def data_key(draft: Draft) -> bytes:
    if draft.dek is None:
        raise DraftLocked(draft.id)
    return draft.dek


def touch(draft: Draft, now: datetime | None = None) -> None:
    draft.updated_at = now or utcnow()


def save_personal(draft: Draft, name: str, phone: str, email: str) -> None:
    if email != draft.sender_email:
        # Another sender address changes who the password check uses as input.
        draft.pending_slot = None
    draft.sender_name, draft.sender_phone, draft.sender_email = name, phone, email
    touch(draft)


def prefill_reply(draft: Draft, email: str, reply_to_id: str, to: str, subject: str, language: str) -> None:
    """A reply: the original sender as recipient, "Re:" subject, in the sender's language."""
    draft.reply_to_id = reply_to_id
    draft.to_addresses = [to]
    draft.subject = subject[:200]
    draft.recipient_language = language
    draft.sender_email = email


def recipients(draft: Draft) -> list[str]:
    return [*draft.to_addresses, *draft.cc_addresses, *draft.bcc_addresses]


class RecipientsFixed(Exception):
    """The draft goes through an upload portal or request, to its recipients only (app/fixed_recipients.py)."""


def save_recipients(draft: Draft, to: list[str], cc: list[str], bcc: list[str]) -> None:
    if fixed_recipients.fixed(draft):
        raise RecipientsFixed(draft.id)
    draft.to_addresses, draft.cc_addresses, draft.bcc_addresses = to, cc, bcc
    touch(draft)


def save_mobiles(draft: Draft, mobiles: Mapping[str, str]) -> None:
    """The recipients' mobile numbers (E.164) by address, sealed under the DEK."""
    sealed = seal_text(data_key(draft), "mobiles", draft.transfer_id, json.dumps(dict(mobiles))) if mobiles else None
    draft.mobiles_ct = sealed
    touch(draft)


def mobiles(draft: Draft) -> dict[str, str]:
    """Each recipient's mobile number the sender entered, by address."""
    if draft.mobiles_ct is None:
        return {}
    return dict(json.loads(open_text(data_key(draft), "mobiles", draft.transfer_id, draft.mobiles_ct)))


def without_mobile(draft: Draft) -> list[str]:
    """The recipients the sender has entered no mobile number for."""
    known = mobiles(draft)
    return [address for address in recipients(draft) if address not in known]


def keep_sms_password(db: Session, draft: Draft, generate: Callable[[], str]) -> str | None:
    """The password this draft's transfer sends by SMS: the one an earlier try
    to start kept, else a new one from ``generate``, kept (sealed under the
    DEK) for every next try. Of two tries at once the one written first is
    kept, and both send it. None when the draft is gone: started meanwhile."""
    sealed = seal_text(data_key(draft), "sms-password", draft.transfer_id, generate())
    db.execute(
        update(Draft).where(Draft.id == draft.id, Draft.sms_password_ct.is_(None)).values(sms_password_ct=sealed)
        .execution_options(synchronize_session=False)
    )
    kept = db.scalar(select(Draft.sms_password_ct).where(Draft.id == draft.id))
    if kept is None:
        return None
    set_committed_value(draft, "sms_password_ct", kept)
    return sms_password(draft)


def sms_password(draft: Draft) -> str | None:
    """The password kept for the SMS by a try to start, if one was made."""
    if draft.sms_password_ct is None:
        return None
    return open_text(data_key(draft), "sms-password", draft.transfer_id, draft.sms_password_ct)


def save_message(draft: Draft, text: str) -> None:
    text = text.strip()
    draft.message_ct = seal_text(data_key(draft), "message", draft.transfer_id, text) if text else None
    touch(draft)


def message(draft: Draft) -> str:
    if draft.message_ct is None:
        return ""
    return open_text(data_key(draft), "message", draft.transfer_id, draft.message_ct)


@dataclass(frozen=True)
class FileView:
    id: str
    name: str
    size: int
    # StoredFile.scanned
    scanned: str


def files(draft: Draft) -> list[FileView]:
    dek = data_key(draft)
    return [FileView(f.id, open_text(dek, "name", f.id, f.name_ct), f.size, f.scanned) for f in draft.files]


@dataclass(frozen=True)
class UnfinishedView:
    id: str
    name: str
    stored: int
    size: int


def unfinished(draft: Draft) -> list[UnfinishedView]:
    """Resumable uploads not yet complete. A transfer does not start while
    it has any: the sender added those files, and would find them missing."""
    dek = data_key(draft)
    return [UnfinishedView(u.id, open_text(dek, "name", u.id, u.name_ct), u.offset, u.length) for u in draft.uploads]


def total_bytes(draft: Draft) -> int:
    return sum(f.size for f in draft.files)


def reserved_bytes(draft: Draft) -> int:
    """Stored files plus the declared length of resumable uploads still running."""
    return total_bytes(draft) + sum(u.length for u in draft.uploads)


def remove_file(db: Session, portal: Portal, draft: Draft, file_id: str) -> bool:
    """A file of the draft goes, stored or still being uploaded."""
    stored = db.scalar(select(StoredFile).where(StoredFile.id == file_id, StoredFile.draft_id == draft.id))
    if stored is not None:
        draft.files.remove(stored)
        db.delete(stored)
        blob_key = stored.blob_key
    elif (upload := next((u for u in draft.uploads if u.id == file_id), None)) is not None:
        draft.uploads.remove(upload)
        blob_key = upload.blob_key
    else:
        return False
    # The row goes with this request's commit; the blob is ciphertext whose
    # key dies with the draft, so deleting it first is safe either way.
    portal.store.delete(blob_key)
    touch(draft)
    return True


def drop_superseded(db: Session, portal: Portal, draft: Draft, added: list[StoredFile]) -> None:
    """Unfinished uploads of a file that has now been added whole (the same
    name and size) go: the sender added it again to complete it, as the
    files step says, where the page could not resume it (no script)."""
    dek = data_key(draft)
    whole = {(open_text(dek, "name", f.id, f.name_ct), f.size) for f in added}
    for upload in unfinished(draft):
        if (upload.name, upload.size) in whole:
            remove_file(db, portal, draft, upload.id)


@dataclass(frozen=True)
class Options:
    expires_on: date
    recipient_language: str
    notify_confirmation: bool
    notify_retrieval: bool
    expose_filenames: bool
    password_mode: str
    recipient_verification: str = "none"


def save_options(draft: Draft, options: Options, pending_slot: dict | None) -> None:
    draft.expires_on = options.expires_on
    draft.recipient_language = options.recipient_language
    draft.notify_confirmation = options.notify_confirmation
    draft.notify_retrieval = options.notify_retrieval
    draft.expose_filenames = options.expose_filenames
    draft.password_mode = options.password_mode
    draft.recipient_verification = options.recipient_verification
    draft.pending_slot = pending_slot
    draft.options_saved = True
    touch(draft)


def save_notification(draft: Draft, subject: str, body: str) -> None:
    draft.subject, draft.body = subject, body
    touch(draft)


def keep_notification(
    draft: Draft, subject: str, body: str, proposed: Mapping[str, str], written_for: str | None = None
) -> str | None:
    """The notification mail's text as the sender leaves the step without
    starting the transaction ("Back"), for when they come to it again;
    ``proposed`` is the text the portal proposes now ("subject", "body").

    Only what they changed is kept. Text left as the portal proposed it is
    proposed anew next time, written for the options chosen by then: the
    recipient language, the expiration date it names, the number of files.
    Text they changed is kept as they wrote it even when those options
    change afterwards: it is theirs, and the step shows it again, before
    "Start transaction", to check against what they chose.

    Returns the recipient language the kept text is written for, so that the
    step can say so once another one is chosen: ``written_for`` (what it
    was) while the kept text is left as it was, else the language chosen
    now; None when nothing is kept.
    """
    before = (draft.subject, draft.body)
    draft.subject = None if _same_text(subject, proposed["subject"]) else subject
    draft.body = None if _same_text(body, proposed["body"]) else body
    touch(draft)
    kept = (draft.subject, draft.body)
    if kept == (None, None):
        return None
    unchanged = all(
        (old is None and new is None) or (old is not None and new is not None and _same_text(old, new))
        for old, new in zip(before, kept)
    )
    return written_for if unchanged else draft.recipient_language


def _same_text(typed: str, proposed: str) -> bool:
    # A browser sends a textarea's line breaks as CRLF.
    return typed.replace("\r\n", "\n").strip() == proposed.replace("\r\n", "\n").strip()


def discard(db: Session, portal: Portal, draft: Draft) -> None:
    """The draft and its files go; the blobs once that is committed, so a
    transaction rolled back leaves the draft whole."""
    blob_keys = [stored.blob_key for stored in draft.files] + [upload.blob_key for upload in draft.uploads]
    for stored in list(draft.files):
        db.delete(stored)
    db.delete(draft)
    dbmod.after_commit(db, lambda: [portal.store.delete(key) for key in blob_keys])
