"""Composing the portal's mails: multipart text + HTML, in a chosen language.

No header value is taken from user input as is: control characters are
removed first (so no CR/LF can start a new header), and the stdlib's
``email`` package refuses any that would still slip through.
"""

from __future__ import annotations

import re
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import formatdate, make_msgid

from flask import current_app, render_template
from flask_babel import force_locale

from .settings import Settings, localized

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def header_safe(value: str) -> str:
    return _CONTROL.sub(" ", value).strip()


class _EncodedSubject(str):
    """A Subject header encoded (RFC 2047) and folded by ``email.header``.

    Where the ``email.policy`` folder breaks a line before an encoded word
    or in a long word, it loses or doubles a space ("files of  “Dossier”",
    "“Dossier42”"). A value with a ``name`` is a header object to the
    policy, which then calls its ``fold``.
    """

    name = "Subject"

    def fold(self, *, policy: Policy) -> str:
        encoded = Header(str(self), "utf-8", header_name=self.name).encode(linesep=policy.linesep)
        return f"{self.name}: {encoded}{policy.linesep}"


def _subject(value: str) -> str:
    """Plain when it fits on the header's line unchanged; otherwise encoded, so
    that no folding of the policy's touches it. What looks like an encoded
    word is encoded too, so that it reads as typed."""
    fits = len(f"Subject: {value}") <= SMTP.max_line_length
    return value if fits and value.isascii() and "=?" not in value else _EncodedSubject(value)


def render(name: str, language: str, **context: object) -> tuple[str, str]:
    """The text and HTML parts of mail ``name``; both end with the operator's disclaimer, if any."""
    disclaimer = localized(current_app.config["KOERIER"].site.mail_disclaimer, language)
    with force_locale(language):
        text = render_template(f"mail/{name}.txt", **context)
        html = render_template(f"mail/{name}.html", disclaimer=disclaimer, **context)
    return (f"{text.rstrip()}\n\n{disclaimer}\n" if disclaimer else text), html


def compose(
    settings: Settings, to: str, subject: str, text: str, html: str,
    reply_to: tuple[str, str] | None = None,
) -> EmailMessage:
    message = EmailMessage(policy=SMTP)
    message["From"] = Address(display_name=header_safe(settings.site.name), addr_spec=settings.mail.from_address)
    message["To"] = Address(addr_spec=to)
    if reply_to is not None:
        message["Reply-To"] = Address(display_name=header_safe(reply_to[0]), addr_spec=reply_to[1])
    message["Subject"] = _subject(header_safe(subject))
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=settings.mail.from_address.rpartition("@")[2])
    # Keeps out-of-office replies from answering the portal.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message
