"""Download views: unlock, show the transfer, stream files."""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable, Iterator
from urllib.parse import quote

from flask import abort, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext
from werkzeug.wrappers import Response

from app import access, dates, db, delivery, ratelimit, retrievals, transactions
from app.argon2_gate import Argon2Busy
from app.clock import utcnow
from app.forms import ButtonForm
from app.uploads import clean_filename
from app.crypto.keys import DecryptionError
from app.ids import group
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


def _opened() -> access.Opened:
    opened = access.open_grant(db.session(), _ticket())
    if opened is None:
        abort(404)
    return opened


@bp.route("/", methods=["GET", "POST"])
def start():  # type: ignore[no-untyped-def]
    if request.method == "GET" and request.args.get("key"):
        # A link from before keys moved into the fragment: it still opens.
        old_link = UnlockForm(data={"transaction_id": request.args.get("id", ""), "key": request.args["key"]})
        return render_template("download/open_link.html", form=old_link)
    form = UnlockForm(data={"transaction_id": request.args.get("id", "")} if request.method == "GET" else None)
    template = "download/start.html"
    if not form.validate_on_submit():
        return render_template(template, form=form), 200 if request.method == "GET" else 422
    by_link = bool(form.key.data)
    secret = form.key.data if by_link else (form.password.data or "")
    try:
        ticket = access.unlock(
            db.session(), portal(), form.transaction_id.data, secret, by_link=by_link, ip=client_ip()
        )
    except ratelimit.RateLimited as exc:
        error = gettext("Too many attempts. Please try again after %(time)s.", time=dates.moment(exc.retry_at))
        return render_template(template, form=form, error=error), 429, {"Retry-After": _seconds_until(exc.retry_at)}
    except access.AccessLocked as exc:
        error = gettext(
            "Too many wrong attempts for this transaction ID. Please try again after %(time)s.",
            time=dates.moment(exc.until),
        )
        return render_template(template, form=form, error=error), 429, {"Retry-After": _seconds_until(exc.until)}
    except Argon2Busy:
        form.keep_password()
        error = gettext("The portal is very busy right now. Please try again in a moment.")
        return render_template(template, form=form, error=error), 503, {"Retry-After": "10"}
    except access.AccessDenied:
        error = gettext(
            "This transaction ID and access key do not match an available transfer. "
            "Check both, or ask the sender whether the transfer has expired."
        ) if by_link else gettext(
            "This transaction ID and password do not match an available transfer. "
            "Check both, or ask the sender whether the transfer has expired."
        )
        return render_template(template, form=form, error=error), 403
    session["grant"] = {"id": ticket.grant_id, "secret": ticket.secret}
    return redirect(url_for("download.transfer"))


@bp.get("/transfer")
def transfer():  # type: ignore[no-untyped-def]
    opened = access.open_grant(db.session(), _ticket())
    if opened is None:
        flash(gettext("Please enter the transaction ID and password again."), "info")
        return redirect(url_for("download.start"))
    files = [delivery.describe(opened.dek, f) for f in opened.transfer.files]
    return render_template(
        "download/transfer.html",
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
