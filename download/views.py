"""Download views: unlock, show the transfer, stream files."""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable, Iterator
from urllib.parse import quote

from flask import abort, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext, ngettext
from werkzeug.wrappers import Response

from app import access, dates, db, delivery, ratelimit, recipient_codes, refused_posts, retrievals, transactions
from app.argon2_gate import Argon2Busy
from app.clock import utcnow
from app.forms import ButtonForm
from app.uploads import clean_filename
from app.crypto.keys import DecryptionError
from app.ids import group, normalize_access_id
from app.models import StoredFile
from app.web import client_ip, portal

from . import bp
from .forms import CodeForm, UnlockForm

log = logging.getLogger(__name__)


def _seconds_until(moment) -> str:  # type: ignore[no-untyped-def]
    return str(max(1, int((moment - utcnow()).total_seconds())))


def _ticket() -> access.GrantTicket | None:
    raw = session.get("grant")
    if not isinstance(raw, dict):
        return None
    return access.GrantTicket(str(raw.get("id", "")), str(raw.get("secret", "")))


class GrantLapsed(Exception):
    """The browser's download session is over (or never began)."""


def _opened() -> access.Opened:
    opened = access.open_grant(db.session(), _ticket())
    if opened is None:
        raise GrantLapsed()
    return opened


@bp.errorhandler(GrantLapsed)
def ask_again(_: GrantLapsed):  # type: ignore[no-untyped-def]
    """A file asked for after the download session ended: the recipient
    unlocks again, with the transaction ID filled in, and then gets that file."""
    raw = session.get("grant")
    typed_id = str(raw.get("for", "")) if isinstance(raw, dict) else ""
    if request.endpoint in CONTINUABLE:
        session["after_unlock"] = {"how": request.endpoint, "file": (request.view_args or {}).get("file_id", "")}
    flash(gettext("Your download session has ended. Please enter the password again to continue."), "info")
    return redirect(url_for("download.start", id=typed_id or None))


@bp.route("/", methods=["GET", "POST"])
def start():  # type: ignore[no-untyped-def]
    if request.method == "GET" and request.args.get("key"):
        # A link from before keys moved into the fragment: it still opens.
        old_link = UnlockForm(data={"transaction_id": request.args.get("id", ""), "key": request.args["key"]})
        return render_template("download/open_link.html", form=old_link)
    form = UnlockForm(data={"transaction_id": request.args.get("id", "")} if request.method == "GET" else None)
    template = "download/start.html"
    if request.method == "GET":
        refusal = refused_posts.restore(form)
        return render_template(template, form=form, error=" ".join(refusal.notes)), *refusal.answer()
    if not form.validate_on_submit():
        return _refuse(form)
    by_link = bool(form.key.data)
    secret = form.key.data if by_link else (form.password.data or "")
    try:
        ticket = access.unlock(
            db.session(), portal(), form.transaction_id.data, secret, by_link=by_link, ip=client_ip()
        )
    except ratelimit.RateLimited as exc:
        error = gettext("Too many attempts. Please try again after %(time)s.", time=dates.moment(exc.retry_at))
        return _refuse(form, error, 429, {"Retry-After": _seconds_until(exc.retry_at)})
    except access.AccessLocked as exc:
        error = gettext(
            "Too many wrong attempts for this transaction ID. Please try again after %(time)s.",
            time=dates.moment(exc.until),
        )
        return _refuse(form, error, 429, {"Retry-After": _seconds_until(exc.until)})
    except Argon2Busy:
        # Answered in place, with the password shown again: it was never tried.
        form.keep_password()
        error = gettext("The portal is very busy right now. Please try again in a moment.")
        return render_template(template, form=form, error=error), 503, {"Retry-After": "10"}
    except access.AccessDenied as exc:
        return _refuse(form, _denied_message(exc, by_link), 403)
    typed_id = group(normalize_access_id(form.transaction_id.data))
    if isinstance(ticket, recipient_codes.ChallengeTicket):
        session["challenge"] = {"id": ticket.challenge_id, "secret": ticket.secret, "for": typed_id}
        # Committed before its code goes out (recipient_codes.send_code): no write lock waits on the gateway.
        db.session().commit()
        opened = recipient_codes.find(db.session(), ticket, utcnow())
        return _send_code(opened, first=True)
    session["grant"] = {"id": ticket.grant_id, "secret": ticket.secret, "for": typed_id}
    return redirect(_after_unlock())


def _challenge() -> recipient_codes.ChallengeTicket | None:
    raw = session.get("challenge")
    if not isinstance(raw, dict):
        return None
    return recipient_codes.ChallengeTicket(str(raw.get("id", "")), str(raw.get("secret", "")))


@bp.errorhandler(recipient_codes.ChallengeLapsed)
def challenge_lapsed(_: recipient_codes.ChallengeLapsed):  # type: ignore[no-untyped-def]
    raw = session.pop("challenge", None)
    flash(gettext("Please enter the transaction ID and password again."), "info")
    return redirect(url_for("download.start", id=str(raw.get("for", "")) or None if isinstance(raw, dict) else None))


def _locked_message(until) -> str:  # type: ignore[no-untyped-def]
    return gettext("Too many wrong codes. Please try again after %(time)s with a new code.", time=dates.moment(until))


def _send_code(opened: recipient_codes.Opened, first: bool = False):  # type: ignore[no-untyped-def]
    """A code to the recipient; how that went is said on the code page."""
    where = recipient_codes.shown_destination(opened)
    try:
        recipient_codes.send_code(db.session(), portal(), opened, ip=client_ip())
        if not first:
            flash(gettext("A new code has been sent to %(email)s.", email=where), "info")
    except recipient_codes.ResendTooSoon as exc:
        flash(gettext("Please wait %(seconds)d seconds before asking for a new code.", seconds=exc.seconds), "error")
    except access.AccessLocked:
        pass  # the code page says until when
    except ratelimit.RateLimited as exc:
        flash(gettext(
            "Too many codes were sent for this transaction ID today. Please try again after %(time)s.",
            time=dates.moment(exc.retry_at),
        ), "error")
    except recipient_codes.CodeNotSent:
        flash(gettext("We could not send the code. Please try again later."), "error")
    return redirect(url_for("download.code"))


@bp.route("/code", methods=["GET", "POST"])
def code():  # type: ignore[no-untyped-def]
    """The one-time code after the password, where the transfer asks for one."""
    form = CodeForm()
    if request.method == "GET":
        opened = recipient_codes.find(db.session(), _challenge(), utcnow())
        refusal = refused_posts.restore(form)
        locked = recipient_codes.locked_until(db.session(), opened, utcnow())
        return render_template(
            "download/code.html", form=form, resend=ButtonForm(), challenge=opened.challenge,
            where=recipient_codes.shown_destination(opened), error=" ".join(refusal.notes),
            locked=_locked_message(locked) if locked is not None else "",
            minutes=portal().settings.recipient_codes.code_ttl_minutes,
        ), *refusal.answer()
    if not form.validate_on_submit():
        return refused_posts.refuse(form, forget=("code",))
    try:
        ticket = access.pass_code(db.session(), portal(), _challenge(), form.code.data, ip=client_ip())
    except recipient_codes.CodeRejected as exc:
        if exc.locked_until is not None:
            # The page then shows no field, only until when.
            return refused_posts.refuse(form, notes=[_locked_message(exc.locked_until)], forget=("code",))
        # On the field, as the sender's code step has it: marked invalid, the reason read with it.
        form.code.errors.append(_code_message(exc))
        return refused_posts.refuse(form, forget=("code",))
    except access.AccessLocked as exc:
        return refused_posts.refuse(
            form, notes=[_locked_message(exc.until)], status=429, headers={"Retry-After": _seconds_until(exc.until)},
            forget=("code",),
        )
    raw = session.pop("challenge")
    session["grant"] = {"id": ticket.grant_id, "secret": ticket.secret, "for": raw.get("for", "")}
    return redirect(_after_unlock())


def _code_message(exc: recipient_codes.CodeRejected) -> str:
    if exc.reason == "wrong":
        if exc.attempts_left == 1:
            return gettext("This code is not correct. You have 1 more attempt.")
        return gettext("This code is not correct. You have %(left)d more attempts.", left=exc.attempts_left)
    if exc.reason == "expired":
        return gettext("This code has expired. Please ask for a new code.")
    return gettext("No valid code was sent for this transfer. Please ask for a new code.")


@bp.post("/code/resend")
def resend_code():  # type: ignore[no-untyped-def]
    if not ButtonForm().validate_on_submit():
        abort(400)
    return _send_code(recipient_codes.find(db.session(), _challenge(), utcnow()))


def _refuse(form: UnlockForm, error: str | None = None, status: int = 422, headers: dict[str, str] | None = None) -> Response:
    # The access key is a secret, like the password: typed (or taken from the link) again.
    return refused_posts.refuse(form, notes=[error] if error else [], status=status, headers=headers, forget=("key",))


def _denied_message(exc: access.AccessDenied, by_link: bool) -> str:
    """Said the same of an unknown ID as of a wrong password, so the
    count of tries left is that of the typed ID, which both have."""
    if exc.locked_until is not None:
        return gettext(
            "Too many wrong attempts for this transaction ID. Please try again after %(time)s.",
            time=dates.moment(exc.locked_until),
        )
    if by_link:
        mismatch = gettext(
            "This transaction ID and access key do not match an available transfer. "
            "Check both, or ask the sender whether the transfer has expired."
        )
    else:
        mismatch = gettext(
            "This transaction ID and password do not match an available transfer. "
            "Check both, or ask the sender whether the transfer has expired."
        )
    left = ngettext(
        "You have %(num)d more attempt before this transaction ID is locked for a while.",
        "You have %(num)d more attempts before this transaction ID is locked for a while.",
        exc.attempts_left,
    )
    if by_link:
        return f"{mismatch} {left}"
    # Last, for the few who typed the ID of a transfer sent without a password.
    link_hint = gettext(
        "If the email says the transfer was sent without a password, open the link in it, "
        "or enter its access key under “Sent without a password?”."
    )
    return f"{mismatch} {left} {link_hint}"


# Where a recipient whose download session ended is taken once they unlock again.
CONTINUABLE = ("download.file", "download.preview", "download.download_all")


def _after_unlock() -> str:
    wanted = session.pop("after_unlock", None)
    if not isinstance(wanted, dict) or wanted.get("how") not in CONTINUABLE:
        return url_for("download.transfer")
    if wanted["how"] == "download.preview":
        return url_for("download.preview", file_id=str(wanted.get("file", "")))
    # The transfer page starts the download itself, so the recipient is not
    # left on the page where they typed the password.
    return url_for("download.transfer", get=str(wanted.get("file", "")) if wanted["how"] == "download.file" else "all")


@bp.get("/transfer")
def transfer():  # type: ignore[no-untyped-def]
    opened = access.open_grant(db.session(), _ticket())
    if opened is None:
        flash(gettext("Please enter the transaction ID and password again."), "info")
        return redirect(url_for("download.start"))
    files = [delivery.describe(opened.dek, f) for f in opened.transfer.files]
    wanted = request.args.get("get", "")
    resumed = next((f for f in files if f.id == wanted), None)
    resume_url = (
        url_for("download.download_all") if wanted == "all" and files
        else url_for("download.file", file_id=resumed.id) if resumed else None
    )
    return render_template(
        "download/transfer.html",
        resume_url=resume_url,
        resume_name=resumed.name if resumed else None,
        transfer=opened.transfer,
        recipient=opened.recipient,
        access_id=group(opened.recipient.access_id),
        message=delivery.message(opened.dek, opened.transfer),
        files=files,
        finish=ButtonForm(),
        reply_link=transactions.reply_link(portal(), opened.transfer, opened.recipient).removeprefix(
            portal().settings.site.base_url.rstrip("/")
        ),
    )


@bp.post("/finish")
def finish():  # type: ignore[no-untyped-def]
    if not ButtonForm().validate_on_submit():
        abort(400)
    opened = access.open_grant(db.session(), _ticket())
    if opened is not None:
        db.session().delete(opened.grant)
    session.pop("grant", None)
    flash(gettext("You have closed the transfer."), "info")
    return redirect(url_for("download.start"))


def _served(opened: access.Opened) -> retrievals.Served:
    return retrievals.Served(opened.transfer, opened.recipient.id, opened.recipient.email, opened.grant.id, client_ip())


def _file(opened: access.Opened, file_id: str) -> StoredFile:
    for stored in opened.transfer.files:
        if stored.id == file_id:
            return stored
    abort(404)


def content_disposition(kind: str, name: str) -> str:
    """RFC 6266: an ASCII fallback for old clients plus the exact UTF-8 name."""
    fallback = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    fallback = "".join(ch for ch in fallback if ch not in '"\\;' and 32 <= ord(ch) < 127).strip() or "download"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _guarded(chunks: Iterable[bytes], what: str) -> Iterator[bytes]:
    """Logs an authentication failure; re-raising aborts the connection, so
    the client sees a broken download rather than wrong bytes."""
    try:
        yield from chunks
    except DecryptionError:
        log.error("integrity check failed while sending %s; download aborted", what)
        raise


def _send(opened: access.Opened, file_id: str, inline: bool) -> Response:
    stored = _file(opened, file_id)
    info = delivery.describe(opened.dek, stored)
    if inline and not info.previewable:
        abort(404)
    headers = {
        "Content-Disposition": content_disposition("inline" if inline else "attachment", info.name),
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",
    }
    if inline:
        # A previewed file runs in a sandbox: no scripts, no same-origin
        # access. Chrome's PDF viewer will not start in a sandboxed
        # document; a PDF's own scripts run inside the viewer, never in our
        # origin, so a PDF gets a policy that allows nothing else instead.
        pdf = info.content_type == "application/pdf"
        headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'" if pdf else "sandbox"
    mimetype = info.content_type if inline else "application/octet-stream"
    start, end, status = 0, stored.size - 1, 200
    if request.range is not None:
        window = request.range.range_for_length(stored.size)
        if window is None:
            return Response(status=416, headers={"Content-Range": f"bytes */{stored.size}"})
        start, end, status = window[0], window[1] - 1, 206
        headers["Content-Range"] = f"bytes {start}-{end}/{stored.size}"
    if request.method != "HEAD":
        # Whatever range is asked for, a byte served is a retrieval.
        retrievals.record(db.session(), portal(), _served(opened), "preview" if inline else "download", [(stored, info.name)])
    body = _guarded(delivery.stream(portal(), opened.dek, stored, start, end), f"file {stored.id}")
    response = Response(body, status=status, mimetype=mimetype, headers=headers, direct_passthrough=True)
    response.content_length = end - start + 1 if stored.size else 0
    return response


@bp.get("/file/<file_id>")
def file(file_id: str) -> Response:
    return _send(_opened(), file_id, inline=False)


@bp.get("/file/<file_id>/preview")
def preview(file_id: str) -> Response:
    return _send(_opened(), file_id, inline=True)


@bp.get("/all")
def download_all() -> Response:
    opened = _opened()
    archive = delivery.zip_all(portal(), opened.dek, list(opened.transfer.files))
    if request.method != "HEAD":
        files = [(f, delivery.describe(opened.dek, f).name) for f in opened.transfer.files]
        retrievals.record(db.session(), portal(), _served(opened), "archive", files)
    name = clean_filename(opened.transfer.subject) + ".zip"
    response = Response(
        _guarded(archive, f"archive of {opened.transfer.id}"),
        mimetype="application/zip",
        headers={"Content-Disposition": content_disposition("attachment", name)},
        direct_passthrough=True,
    )
    response.content_length = len(archive)
    return response
