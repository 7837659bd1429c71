"""Download views: unlock, show the transfer, stream files."""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable, Iterator
from urllib.parse import quote

from flask import abort, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext, ngettext
from werkzeug.wrappers import Response

from app import access, dates, db, delivery, ratelimit, refused_posts, retrievals, transactions
from app.argon2_gate import Argon2Busy
from app.clock import utcnow
from app.forms import ButtonForm
from app.uploads import clean_filename
from app.crypto.keys import DecryptionError
from app.ids import group, normalize_access_id
from app.models import StoredFile
from app.web import client_ip, portal

from . import bp
from .forms import UnlockForm

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
    session["grant"] = {"id": ticket.grant_id, "secret": ticket.secret, "for": typed_id}
    return redirect(_after_unlock())


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
