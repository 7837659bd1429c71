"""The files step's resumable upload endpoint, speaking tus 1.0.

Extensions: creation, termination, expiration. The endpoint serves only a
verified sender's own draft, and every request that changes something
carries the form's CSRF token in an ``X-CSRFToken`` header. The token is
checked here rather than by the global CSRF hook, which would open the
request body under the small limit for forms before a PATCH can raise it.
"""

from __future__ import annotations

import logging

from flask import Response, abort, jsonify, request, url_for
from flask_babel import gettext
from werkzeug.exceptions import ClientDisconnected
from werkzeug.http import http_date

from app import csrf, db, drafts, fixed_recipients, resumable, upload_limits, uploads
from app.crypto.stream import LengthExceeded
from app.models import Draft, StoredFile, Upload
from app.policy import Limits
from app.reusable_buffers import BufferPool
from app.storage import UploadBusy, UploadGone, UploadRestarted
from app.web import client_ip, limit_body, portal, streams_body, upload_leases

from . import bp
from .guards import (
    PORTAL_GONE, REQUEST_CLOSED, SCANNER_RETRY_SECONDS, SHORT_OF_SPACE, TOO_MANY_UPLOADS, csrf_token_ok, current_draft,
    decision, file_problem, fixed_source, infected_message, skips_ahead,
)

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
# Whole segments, so that they are sealed straight from the read buffer;
# kept for the next PATCH (as many as run at once, usually), and wiped.
READ_BUFFERS = BufferPool(1024 * 1024, keep=4)


def _tus(response: Response) -> Response:
    response.headers["Tus-Resumable"] = TUS_VERSION
    return response


def _error(status: int, message: str, reason: str | None = None, **headers: str) -> Response:
    response = jsonify(error=message, **({"reason": reason} if reason else {}))
    response.status_code = status
    response.headers.update(headers)
    return _tus(response)


def _too_many_uploads() -> Response:
    return _error(429, str(TOO_MANY_UPLOADS), **{"Retry-After": str(upload_limits.RETRY_AFTER_SECONDS)})


def _refused(why: str, limits: Limits) -> Response:
    """An upload that may store nothing: its draft would be one too many in its network, or the disk is short."""
    if why == "drafts":
        return _error(429, file_problem("", why, limits))
    return _error(507, str(SHORT_OF_SPACE))


def _not_admitted(refused: resumable.Refused, limits: Limits) -> Response:
    """A complete upload the true type check or the scanner kept out: 422 for
    good (disguised, infected, too large), 503 while the scanner cannot judge
    (a PATCH at the end, without a body, asks again)."""
    if refused.why == "scanner":
        # Told apart from the database or the store out of reach, whose 503s have words too.
        retry = {"Retry-After": str(SCANNER_RETRY_SECONDS)}
        return _error(503, file_problem(refused.name, refused.why, limits), reason="scanner", **retry)
    if refused.why == "infected":
        return _error(422, infected_message(refused.name, refused.signature))
    return _error(422, file_problem(refused.name, refused.why, limits))


def _sender_draft() -> Draft:
    """The draft, if the wizard has reached the files step; 403 otherwise."""
    if request.method not in ("GET", "HEAD", "OPTIONS") and not csrf_token_ok(request.headers.get("X-CSRFToken", "")):
        abort(_error(403, gettext("The page has expired. Please reload it and try again.")))
    draft = current_draft()
    if draft is None:
        abort(_error(403, gettext("Your session has expired. Please start again.")))
    try:
        fixed_source(draft)
    except fixed_recipients.Gone as exc:
        abort(_error(410, str(REQUEST_CLOSED if exc.kind == "request" else PORTAL_GONE)))
    if skips_ahead(draft, "files"):
        abort(_error(403, gettext("Please complete the previous steps first.")))
    return draft


def _check_version() -> None:
    if request.headers.get("Tus-Resumable") != TUS_VERSION:
        abort(_error(412, "Tus-Resumable 1.0.0 required", **{"Tus-Version": TUS_VERSION}))


def _found(draft: Draft, upload_id: str) -> Upload | StoredFile:
    found = resumable.find(db.session(), portal(), draft, upload_id)
    if found is None:
        abort(_error(404, gettext("This upload does not exist any more. Please add the file again.")))
    return found


def _progress(found: Upload | StoredFile, status: int = 204) -> Response:
    response = _tus(Response(status=status))
    if isinstance(found, Upload):
        response.headers["Upload-Offset"] = str(found.offset)
        response.headers["Upload-Length"] = str(found.length)
        response.headers["Upload-Expires"] = http_date(resumable.expires_at(portal(), found))
    else:
        response.headers["Upload-Offset"] = response.headers["Upload-Length"] = str(found.size)
    return response


@csrf.exempt
@streams_body
@bp.route("/uploads", methods=["OPTIONS"], provide_automatic_options=False)
def tus_options() -> Response:
    draft = _sender_draft()
    response = _tus(Response(status=204))
    response.headers["Tus-Version"] = TUS_VERSION
    response.headers["Tus-Extension"] = "creation,termination,expiration"
    response.headers["Tus-Max-Size"] = str(decision(draft).limits.max_total_bytes)
    return response


@csrf.exempt
@streams_body
@bp.post("/uploads")
def tus_create() -> Response:
    _check_version()
    draft = _sender_draft()
    if request.headers.get("Upload-Defer-Length"):
        return _error(400, "Upload-Defer-Length is not supported")
    try:
        length = int(request.headers.get("Upload-Length", ""))
        metadata = resumable.parse_metadata(request.headers.get("Upload-Metadata", ""))
    except ValueError:
        return _error(400, "Upload-Length and Upload-Metadata are required and must be well-formed")
    if length < 0:
        return _error(400, "Upload-Length must not be negative")
    limits = decision(draft).limits
    try:
        with upload_limits.running(
            portal(), upload_leases(), request.environ, draft, client_ip(), size=length
        ) as why:
            if why:
                return _refused(why, limits)
            if length > upload_limits.quota_left(db.session(), portal(), draft.sender_email):
                name = uploads.clean_filename(metadata.get("filename") or metadata.get("name") or "")
                raise resumable.Refused(name, "quota")
            found = resumable.create(db.session(), portal(), draft, length, metadata, limits)
            db.session().commit()
    except resumable.Refused as refused:
        status = 413 if refused.why in ("size", "quota", "unscannable") else 403
        return _error(status, file_problem(refused.name, refused.why, limits))
    except upload_limits.TooManyUploads:
        return _too_many_uploads()
    response = _progress(found, status=201)
    response.headers["Location"] = url_for("wizard.tus_upload", upload_id=found.id)
    return response


@csrf.exempt
@streams_body
@bp.route("/uploads/<upload_id>", methods=["HEAD"])
def tus_upload(upload_id: str) -> Response:
    _check_version()
    return _progress(_found(_sender_draft(), upload_id), status=200)


@csrf.exempt
@streams_body
@bp.route("/uploads/<upload_id>", methods=["PATCH"])
def tus_patch(upload_id: str) -> Response:
    _check_version()
    draft = _sender_draft()
    found = _found(draft, upload_id)
    if request.mimetype != "application/offset+octet-stream":
        return _error(415, "Content-Type must be application/offset+octet-stream")
    try:
        offset = int(request.headers.get("Upload-Offset", ""))
    except ValueError:
        return _error(400, "Upload-Offset is required")
    if isinstance(found, StoredFile):
        # Asked again whether the complete file is in (its answer was lost): it is.
        in_already = offset == found.size and not request.content_length
        return _progress(found, status=204 if in_already else 409)
    if offset != found.offset:
        return _progress(found, status=409)
    if (request.content_length or 0) > found.length - found.offset:
        return _error(413, "The body runs past Upload-Length")
    # A body that runs past the length anyway (chunked) is refused by the writer.
    limit_body(found.length - found.offset)
    if not upload_limits.room_for_rest(portal(), found):
        return _refused("space", decision(draft).limits)
    limits = decision(draft).limits
    try:
        with upload_limits.running(portal(), upload_leases(), request.environ, draft, client_ip()) as why:
            if why:
                return _refused(why, limits)
            with READ_BUFFERS.lend(wipe=True) as buffer:
                chunks = uploads.read_filled(request.stream, buffer, request.content_length)
                found = resumable.append(
                    db.session(), portal(), draft, found, offset, chunks, limits, upload_leases(), client_ip()
                )
    except resumable.Refused as refused:
        return _not_admitted(refused, limits)
    except upload_limits.TooManyUploads:
        return _too_many_uploads()
    except (resumable.OffsetMismatch, UploadRestarted):
        return _progress(found, status=409)
    except UploadBusy:
        return _error(423, "This upload is being written or checked by another request", **{"Retry-After": "5"})
    except UploadGone:
        return _error(410, gettext("This upload does not exist any more. Please add the file again."))
    except LengthExceeded:
        return _error(413, "The body runs past Upload-Length")
    except (ClientDisconnected, OSError):
        # Nobody is listening; the stored offset was recorded on the way out.
        return _error(400, "connection lost")
    return _progress(found)


@csrf.exempt
@streams_body
@bp.route("/uploads/<upload_id>", methods=["DELETE"])
def tus_delete(upload_id: str) -> Response:
    _check_version()
    draft = _sender_draft()
    # tus termination: an unfinished upload goes; a finished one leaves the draft.
    drafts.remove_file(db.session(), portal(), draft, _found(draft, upload_id).id)
    return _tus(Response(status=204))

