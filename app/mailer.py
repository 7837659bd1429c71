"""Mail delivery: an outbox folder for development, SMTP for production."""

from __future__ import annotations

import logging
import re
import secrets
import smtplib
import ssl
from collections.abc import Sequence
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from . import metrics, private_files
from .settings import Mail

log = logging.getLogger(__name__)
# A link in a mail's text part, without the punctuation that closes a sentence.
_LINK = re.compile(r"https?://[^\s<>\"]+[^\s<>\".,;:!?)]")


class MailError(Exception):
    """The mail could not be handed over."""


class Mailer(Protocol):
    def send(self, messages: Sequence[EmailMessage]) -> None: ...


class OutboxMailer:
    """Writes each message as an .eml file a developer can open.

    The file is the mail as it would be sent, so its long lines are
    quoted-printable: a link copied from it in an editor is broken. Each
    mail's links are logged for a developer to click, but not their secrets
    (a no-password link's key, a status or reply token): logs travel
    further than the outbox folder, which only the portal's user may read.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        # The mails carry download links and, without a password, link keys.
        private_files.make_dir(folder)
        private_files.tighten(folder)

    def send(self, messages: Sequence[EmailMessage]) -> None:
        for message in messages:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%f")
            path = self.folder / f"{stamp}-{secrets.token_hex(4)}.eml"
            with private_files.create(path) as fh:
                fh.write(bytes(message))
            text = message.get_body(preferencelist=("plain",))
            links = dict.fromkeys(_without_secrets(link) for link in _LINK.findall(text.get_content())) if text is not None else {}
            log.info(
                "mail to %s, subject “%s”, written to %s; links: %s",
                message["To"], message["Subject"], path, " ".join(links) or "none",
            )


# A link's secret: its fragment, or a path segment long enough to be a token.
_SECRET_PARTS = re.compile(r"#.*$|(?<=/)[A-Za-z0-9_-]{32,}(?=/|$)")


def _without_secrets(link: str) -> str:
    return _SECRET_PARTS.sub(lambda m: "#…" if m.group().startswith("#") else "…", link)


class SMTPMailer:
    def __init__(self, config: Mail) -> None:
        self.config = config

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        context = ssl.create_default_context()
        if c.smtp_security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(c.smtp_host, c.smtp_port, timeout=c.smtp_timeout_seconds, context=context)
        else:
            smtp = smtplib.SMTP(c.smtp_host, c.smtp_port, timeout=c.smtp_timeout_seconds)
            if c.smtp_security == "starttls":
                smtp.starttls(context=context)
        if c.smtp_username:
            smtp.login(c.smtp_username, c.smtp_password)
        return smtp

    def send(self, messages: Sequence[EmailMessage]) -> None:
        sent = 0
        try:
            with self._connect() as smtp:
                for message in messages:
                    smtp.send_message(message)
                    sent += 1
        except (OSError, smtplib.SMTPException) as exc:
            metrics.MAILS_FAILED.inc(len(messages) - sent)
            log.error("SMTP delivery via %s:%s failed: %s", self.config.smtp_host, self.config.smtp_port, exc)
            raise MailError(str(exc)) from exc


def make_mailer(config: Mail, instance_path: Path) -> Mailer:
    if config.backend == "smtp":
        return SMTPMailer(config)
    folder = instance_path / config.outbox_dir
    log.warning("mail is not sent but written to %s", folder)
    return OutboxMailer(folder)
