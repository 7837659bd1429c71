"""Upload portals: the operator's permanent public links (``/to/<slug>``,
``[[portals]]``), through which anyone sends to fixed recipients, such as a
department's mailbox.

The draft keeps only the portal's slug; its recipients always come from the
configuration. They are written into the draft when it is made, put back
at every step (so an operator's change of address applies to drafts under
way), and once more when the transaction starts, whatever the draft's row
holds by then. No form of the wizard writes a portal draft's recipients:
``drafts.save_recipients`` refuses to.
"""

from __future__ import annotations

from .models import Draft
from .settings import Settings, UploadPortal


class PortalGone(Exception):
    """The operator removed the portal the draft was started at; it cannot be sent."""


def of(settings: Settings, draft: Draft) -> UploadPortal | None:
    """The portal ``draft`` was started at, as configured now; None for an ordinary draft."""
    if draft.portal_slug is None:
        return None
    portal = settings.portal(draft.portal_slug)
    if portal is None:
        raise PortalGone(draft.portal_slug)
    return portal


def bind(draft: Draft, portal: UploadPortal) -> None:
    """The draft goes to the portal's recipients, and to no one else."""
    draft.portal_slug = portal.slug
    if (draft.to_addresses, draft.cc_addresses, draft.bcc_addresses) != (portal.addresses, [], []):
        draft.to_addresses, draft.cc_addresses, draft.bcc_addresses = portal.addresses, [], []


def refresh(settings: Settings, draft: Draft) -> UploadPortal | None:
    """``of``, with the portal's recipients (back) in the draft."""
    portal = of(settings, draft)
    if portal is not None:
        bind(draft, portal)
    return portal
