"""What every wizard view needs first: the browser's draft, where it stands,
and the checks and messages that the form views and the tus endpoint share."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import flash, g, redirect, render_template, session, url_for
from flask_babel import get_locale, gettext
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import ValidationError as CSRFValidationError
from flask_wtf.csrf import validate_csrf

from app import dates, db, drafts, fixed_recipients, policy, ratelimit, transactions, verification
from app.models import Draft, Transfer
from app.true_types import extension
from app.web import human_size, portal, settings

from . import sender_cookie

TOO_MANY_UPLOADS = _l("Too many uploads or virus checks are running at the same time. Please wait a moment and try again.")
SHORT_OF_SPACE = _l("The portal is short of storage space right now. Please try again later.")
# A scanner that is down is mostly being restarted or updated.
SCANNER_RETRY_SECONDS = 60
PORTAL_GONE = _l(
    "The link this transfer was started at has been taken out of use, so the transfer cannot be sent. Nothing has been sent."
)
# Revoked, expired or used: which is not said, to whoever holds the link.
REQUEST_CLOSED = _l(
    "This request is no longer open. If you still need to send files, please contact the person who asked for them."
)


def current_draft() -> Draft | None:
    """This browser's draft, its key opened with the secret its session holds."""
    return drafts.find(db.session(), portal(), drafts.DraftTicket.from_session(session.get("draft")))


def sender_verified(draft: Draft) -> bool:
    """By a code, in this browser; or, for a request's draft, by its personal
    link, which came to the address the draft is bound to (``fixed_source``)."""
    if draft.request_id is not None:
        return True
    return bool(draft.sender_email) and sender_cookie.verified_email() == draft.sender_email


def decision(draft: Draft, recipients: list[str] | None = None) -> policy.Decision:
    addresses = drafts.recipients(draft) if recipients is None else recipients
    source = fixed_recipients.of(db.session(), settings(), draft)
    return policy.decide(settings(), draft.sender_email, addresses, str(get_locale()), source)


def fixed_source(draft: Draft) -> fixed_recipients.Source | None:
    """The upload portal or request the draft was started at, its recipients
    (and a request's sender) (back) in the draft, and for the pages' step
    indicator; fixed_recipients.Gone once it is no more."""
    g.fixed = fixed_recipients.refresh(db.session(), settings(), draft)
    return g.fixed


def gone(kind: str = "portal"):  # type: ignore[no-untyped-def]
    """The page of a draft whose portal was removed or whose request closed; also of a closed request's link."""
    return render_template("wizard/portal_gone.html", message=REQUEST_CLOSED if kind == "request" else PORTAL_GONE), 410


def around_recipients(draft: Draft, back: bool = False) -> str:
    """The recipients step, which a portal's or request's draft, its recipients
    fixed, passes by: to the files step, or going back, to the first one."""
    if not fixed_recipients.fixed(draft):
        return url_for("wizard.recipients")
    return url_for("wizard.personal" if back else "wizard.files")


def first_missing_step(draft: Draft) -> str | None:
    return transactions.first_missing_step(draft, sender_verified(draft))


def skips_ahead(draft: Draft, step: str) -> str | None:
    """The earlier step ``draft`` still lacks, if ``step`` comes after it."""
    return transactions.first_missing_step(draft, sender_verified(draft), before=step)


def to_summary_of(transfer_id: str):  # type: ignore[no-untyped-def]
    """To the summary of the transfer another click on "Start transaction" started."""
    session.pop("draft", None)
    session.setdefault("summary", {"transfer": transfer_id, "mail_failed": False})
    return redirect(url_for("wizard.done"))


def _started_meanwhile() -> str | None:
    """The transfer this browser's draft became, if it did."""
    if "summary" in session:
        return str(session["summary"].get("transfer", ""))
    ticket = drafts.DraftTicket.from_session(session.get("draft"))
    if ticket is None or not ticket.transfer_id:
        return None
    return ticket.transfer_id if db.session().get(Transfer, ticket.transfer_id) is not None else None


def wizard_step(step: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The view gets the browser's draft as its first argument. Without a
    draft, or with an earlier step still to do, the browser is sent there."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            draft = current_draft()
            if draft is None:
                if step == "notification" and (started := _started_meanwhile()) is not None:
                    # A second click on "Start transaction": the first one
                    # succeeded, perhaps while this request was on its way
                    # with the cookie from before.
                    return to_summary_of(started)
                # Expired only for a browser that had a draft; a first visit
                # by a deep link just starts at the beginning (and a session
                # that timed out has said so already, app/web.py).
                if session.pop("draft", None) is not None:
                    flash(gettext("Your session has expired. Please start again."), "error")
                return redirect(url_for("wizard.personal"))
            try:
                fixed_source(draft)
            except fixed_recipients.Gone as exc:
                return gone(exc.kind)
            if (missing := skips_ahead(draft, step)) is not None:
                if step == "notification" and db.session().get(Transfer, draft.transfer_id) is not None:
                    # The same, with the first click committed between this
                    # one's reading the draft and its files, which are the
                    # transfer's now: each statement reads what is committed
                    # when it runs (PostgreSQL; SQLite outside a write).
                    return to_summary_of(draft.transfer_id)
                return redirect(url_for(f"wizard.{missing}"))
            return view(draft, *args, **kwargs)

        return guarded

    return decorate


def browser_id() -> str:
    """This browser's id, to which its verification codes belong."""
    return session.setdefault("browser", verification.new_browser_id())


def code_message(exc: verification.CodeRejected) -> str:
    if exc.reason == "wrong":
        return gettext(
            "This code is not correct. You have %(left)d more attempts.", left=exc.attempts_left
        ) if exc.attempts_left != 1 else gettext("This code is not correct. You have 1 more attempt.")
    if exc.reason == "expired":
        return gettext("This code has expired. Please ask for a new code.")
    if exc.reason == "exhausted":
        return gettext("Too many wrong attempts. Please ask for a new code.")
    return gettext("There is no valid code for this address. Please ask for a new code.")


def retry_message(exc: ratelimit.RateLimited) -> str:
    return gettext("Too many attempts. Please try again after %(time)s.", time=dates.moment(exc.retry_at))


def csrf_token_ok(token: str) -> bool:
    """For requests that carry the form's token themselves (streamed bodies, scripts)."""
    try:
        validate_csrf(token)
    except CSRFValidationError:
        return False
    return True


def infected_message(name: str, signature: str, removed: bool = False) -> str:
    """A file the virus scanner refused, with what it found and what to do;
    ``removed``: it had been added before its scan."""
    if removed:
        return gettext(
            "“%(name)s” was removed: the virus scanner found malware in it (%(signature)s). Do not open it, and "
            "have the device it came from checked for viruses.", name=name, signature=signature,
        )
    return gettext(
        "“%(name)s” was not added: the virus scanner found malware in it (%(signature)s). Do not open it, and "
        "have the device it came from checked for viruses.", name=name, signature=signature,
    )


def file_problem(name: str, why: str, limits: policy.Limits) -> str:
    """Why a file was not added (or, where ``why`` says so, why it keeps the transfer back), as the sender reads it."""
    if why == "space":
        return str(SHORT_OF_SPACE)
    if why == "drafts":
        return gettext(
            "From your network, %(max)d unfinished transfers already hold files: the most allowed at once. "
            "Please finish one, or try again later.",
            max=settings().limits.open_drafts_per_ip,
        )
    if why == "quota":
        return gettext(
            "“%(name)s” was not added: your unfinished transfers would hold more than %(max)s.",
            name=name, max=human_size(settings().limits.draft_bytes_per_sender),
        )
    if why == "unfinished":
        return gettext(
            "“%(name)s” was not uploaded completely. Add the same file again to continue, or remove it.", name=name
        )
    if why == "extension":
        return gettext("“%(name)s” is not allowed: files of this type cannot be sent.", name=name)
    # A program or script under a document's name is how malware gets opened: say so.
    if why == "type_program":
        return gettext(
            "“%(name)s” was not added: it is a program, not the .%(extension)s file its name says. "
            "If you did not expect that, do not open it: it may be harmful.", name=name, extension=extension(name),
        )
    if why == "type_script":
        return gettext(
            "“%(name)s” was not added: it is a script, not the .%(extension)s file its name says. "
            "If you did not expect that, do not open it: it may be harmful.", name=name, extension=extension(name),
        )
    if why == "type_archive":
        return gettext(
            "“%(name)s” was not added: it is an archive (such as a ZIP file), not the .%(extension)s file its name "
            "says. Give it an archive's extension (such as .zip), or add the files in it.",
            name=name, extension=extension(name),
        )
    if why == "scanner":
        return gettext(
            "“%(name)s” was not added: the virus scanner is not available. Please try again later.", name=name
        )
    if why == "unscannable":
        return gettext(
            "“%(name)s” was not added: files larger than %(max)s cannot be checked for viruses.",
            name=name, max=human_size(settings().scan.max_stream_bytes),
        )
    if why == "incomplete":
        return gettext(
            "“%(name)s” was not added: the virus scanner could not check all of its content (it unpacks to more, "
            "or deeper, than the scanner checks). Please send the files in it separately or in smaller parts.",
            name=name,
        )
    if why == "incomplete_removed":
        return gettext(
            "“%(name)s” was removed: for these recipients files are checked for viruses, and the virus scanner "
            "could not check all of its content. Please send the files in it separately or in smaller parts.",
            name=name,
        )
    # A password keeps the scanner out, not malware in; and the transfer is encrypted anyway.
    if why == "encrypted":
        return gettext(
            "“%(name)s” was not added: it is protected with a password, so the virus scanner cannot check it. "
            "Please add it without the password: the transfer is encrypted anyway.", name=name,
        )
    if why == "encrypted_removed":
        return gettext(
            "“%(name)s” was removed: for these recipients files are checked for viruses, and it is protected with a "
            "password, so the virus scanner cannot check it. Please add it without the password: the transfer is "
            "encrypted anyway.", name=name,
        )
    if why == "unchecked":
        return gettext(
            "“%(name)s” has not been checked for viruses yet, and the virus scanner is not available. "
            "Please try again later.", name=name,
        )
    if why == "unscannable_removed":
        return gettext(
            "“%(name)s” was removed: for these recipients files are checked for viruses, and files larger than "
            "%(max)s cannot be checked.", name=name, max=human_size(settings().scan.max_stream_bytes),
        )
    if why == "count":
        return gettext("“%(name)s” was not added: a transfer can hold at most %(max)d files.", name=name, max=limits.max_files)
    if name:
        return gettext(
            "“%(name)s” was not added: the transfer would be larger than %(max)s.", name=name, max=human_size(limits.max_total_bytes)
        )
    return gettext("The files are larger than %(max)s in total. Please remove some.", max=human_size(limits.max_total_bytes))
