"""Mails that tell a sender something happened to their transfer."""

from __future__ import annotations

import logging
from datetime import datetime

from flask_babel import force_locale, gettext

from . import mails
from .mailer import MailError
from .models import Transfer
from .portal import Portal

log = logging.getLogger(__name__)


def lockout(
    portal: Portal, transfer: Transfer, recipient_email: str, until: datetime, deleted: bool, codes: bool = False,
) -> None:
    """Tell the sender that somebody kept guessing the password of their
    transfer; or, with ``codes``, the one-time code after a right password
    (or link): then the password is known to someone without the recipient's
    mailbox or phone.

    Best effort: a mail server hiccup must not turn the lockout itself into
    an error page for the person guessing.
    """
    language = transfer.sender_language
    attempts = portal.settings.recipient_codes.max_attempts if codes else portal.settings.download.max_attempts
    text, html = mails.render(
        "lockout", language, transfer=transfer, recipient_email=recipient_email, until=until, deleted=deleted,
        attempts=attempts, site=portal.settings.site, codes=codes,
    )
    with force_locale(language):
        if codes:
            subject = gettext("Wrong codes for your transfer “%(subject)s”", subject=transfer.subject)
        elif deleted:
            subject = gettext("Your transfer “%(subject)s” was deleted after wrong passwords", subject=transfer.subject)
        else:
            subject = gettext("Wrong passwords for your transfer “%(subject)s”", subject=transfer.subject)
    try:
        portal.mailer.send([mails.compose(portal.settings, transfer.sender_email, subject, text, html)])
    except MailError:
        log.error("could not tell %s about the lockout of transfer %s", transfer.sender_email, transfer.id)
