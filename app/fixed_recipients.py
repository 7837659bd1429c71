"""Drafts whose recipients the sender does not choose: sent through an
upload portal (the operator's permanent public link, ``/to/<slug>``,
``[[portals]]``) or by an upload request's personal link (a staff member,
app/upload_requests.py).

The draft keeps only where it came from (its portal's slug, or its
request's id); the recipients always come from there. They are written into
the draft when it is made, put back at every step (so an operator's change
of address applies to drafts under way), and once more when the transaction
starts, whatever the draft's row holds by then. No form of the wizard writes
them: ``drafts.save_recipients`` refuses to. A request fixes the sender's
address too: the one its link was mailed to.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from . import policy, upload_requests
from .models import Draft
from .settings import Settings, UploadPortal


class Source(policy.Tightening, Protocol):
    """An UploadPortal or an upload_requests.Source: whom the draft goes to, its
    limits (policy.tighten), the one sender it allows (None: any), and the
    texts its first step shows."""

    @property
    def addresses(self) -> list[str]: ...

    @property
    def sender(self) -> str | None: ...

    @property
    def recipient_language(self) -> str:
        """The language proposed for its recipients' mails; "": the sender's."""

    def text(self, key: str, language: str, default_language: str) -> str: ...

    def language(self, key: str, language: str, default_language: str) -> str | None: ...


class Gone(Exception):
    """The portal the draft was started at was removed, or its request is no
    longer open: it cannot be sent. ``kind``: "portal" or "request"."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def fixed(draft: Draft) -> bool:
    """The draft's recipients are not the sender's choice."""
    return draft.portal_slug is not None or draft.request_id is not None


def of(db: Session, settings: Settings, draft: Draft, now: datetime | None = None) -> Source | None:
    """Where the draft's recipients come from, as it is now; None for an ordinary draft."""
    if draft.portal_slug is not None:
        portal = settings.portal(draft.portal_slug)
        if portal is None:
            raise Gone("portal")
        return portal
    if draft.request_id is not None:
        request = upload_requests.source(db, settings, draft.request_id, now)
        if request is None:
            raise Gone("request")
        return request
    return None


def attach(draft: Draft, source: Source) -> None:
    """A new draft goes through ``source``, to its recipients and no one else."""
    if isinstance(source, UploadPortal):
        draft.portal_slug = source.slug
    else:
        assert isinstance(source, upload_requests.Source)
        draft.request_id = source.request.id
    bind(draft, source)


def bind(draft: Draft, source: Source) -> None:
    if (draft.to_addresses, draft.cc_addresses, draft.bcc_addresses) != (source.addresses, [], []):
        draft.to_addresses, draft.cc_addresses, draft.bcc_addresses = source.addresses, [], []
    if source.sender is not None and draft.sender_email != source.sender:
        draft.sender_email = source.sender


def refresh(db: Session, settings: Settings, draft: Draft, now: datetime | None = None) -> Source | None:
    """``of``, with the source's recipients (and sender) (back) in the draft."""
    source = of(db, settings, draft, now)
    if source is not None:
        bind(draft, source)
    return source
