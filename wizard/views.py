"""Wizard views: parse the form, call one service, render or redirect."""

from __future__ import annotations

from datetime import timedelta

from flask import abort, flash, redirect, render_template, request, session, url_for
from flask_babel import get_locale, gettext
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import ValidationError as CSRFValidationError
from flask_wtf.csrf import validate_csrf
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from app import csrf, db, drafts, keyslots, password_policy, transactions, uploads, verification
from app.clock import utcnow
from app.forms import ButtonForm
from app.ids import group
from app.mailer import MailError
from app.models import Draft
from app.web import client_ip, human_size, portal, settings

from . import bp, sender_cookie
from .forms import MessageForm, NotificationForm, OptionsForm, PersonalForm, RecipientsForm, VerifyForm

STEPS = ("personal", "verify", "recipients", "files", "options", "notification")
UPLOAD_OVERHEAD = 2 * 1024 * 1024
STRENGTH_LABELS = {0: _l("Weak"), 1: _l("Weak"), 2: _l("Fair"), 3: _l("Strong"), 4: _l("Strong")}


def _draft() -> Draft | None:
    return drafts.find(db.session(), portal(), session.get("draft"))


def _sender_verified(draft: Draft) -> bool:
    return bool(draft.sender_email) and sender_cookie.verified_email() == draft.sender_email


def _require(step: str) -> tuple[Draft | None, Response | None]:
    """The draft, or a redirect to the first step that still needs doing."""
    draft = _draft()
    if draft is None:
        if step == "notification" and "summary" in session:
            # A second click on "Start transaction": the first one succeeded.
            return None, redirect(url_for("wizard.done"))
        if step != "personal":
            flash(gettext("Your session has expired. Please start again."), "error")
            return None, redirect(url_for("wizard.personal"))
        return None, None
    missing = transactions.first_missing_step(draft, _sender_verified(draft))
    if missing is not None and STEPS.index(missing) < STEPS.index(step):
        return draft, redirect(url_for(f"wizard.{missing}"))
    return draft, None


@bp.route("/", methods=["GET", "POST"])
def personal():  # type: ignore[no-untyped-def]
    draft, _ = _require("personal")
    remembered = session.get("sender", {})
    form = PersonalForm(
        data={
            "name": draft.sender_name if draft else remembered.get("name", ""),
            "phone": draft.sender_phone if draft else remembered.get("phone", ""),
            "email": draft.sender_email if draft else remembered.get("email", ""),
        }
        if request.method == "GET"
        else None
    )
    if not form.validate_on_submit():
        return render_template("wizard/personal.html", form=form, step="personal")
    if draft is None:
        draft = drafts.create(db.session(), portal())
        session["draft"] = draft.id
    drafts.save_personal(draft, form.name.data, form.phone.data, form.email.data)
    session["sender"] = {"name": form.name.data, "phone": form.phone.data, "email": form.email.data}
    if _sender_verified(draft):
        return redirect(url_for("wizard.recipients"))
    try:
        verification.send_code(db.session(), portal(), draft.sender_email, str(get_locale()), ip=client_ip())
    except verification.ResendTooSoon:
        pass  # a code sent moments ago is still on its way; reuse it
    except MailError:
        form.email.errors.append(_l("We could not send the verification code. Please try again in a few minutes."))
        return render_template("wizard/personal.html", form=form, step="personal"), 503
    return redirect(url_for("wizard.verify"))


@bp.route("/verify", methods=["GET", "POST"])
def verify():  # type: ignore[no-untyped-def]
    draft, detour = _require("verify")
    if detour:
        return detour
    assert draft is not None
    if _sender_verified(draft):
        return redirect(url_for("wizard.recipients"))
    form = VerifyForm()
    if form.validate_on_submit():
        try:
            verification.check_code(db.session(), portal(), draft.sender_email, form.code.data, ip=client_ip())
        except verification.CodeRejected as exc:
            form.code.errors.append(_code_message(exc))
        else:
            response = redirect(url_for("wizard.recipients"))
            sender_cookie.remember(response, draft.sender_email)
            return response
    return render_template("wizard/verify.html", form=form, resend=ButtonForm(), draft=draft, step="personal")


def _code_message(exc: verification.CodeRejected) -> str:
    if exc.reason == "wrong":
        return gettext(
            "This code is not correct. You have %(left)d more attempts.", left=exc.attempts_left
        ) if exc.attempts_left != 1 else gettext("This code is not correct. You have 1 more attempt.")
    if exc.reason == "expired":
        return gettext("This code has expired. Please ask for a new code.")
    if exc.reason == "exhausted":
        return gettext("Too many wrong attempts. Please ask for a new code.")
    return gettext("There is no valid code for this address. Please ask for a new code.")


@bp.post("/verify/resend")
def resend():  # type: ignore[no-untyped-def]
    draft, detour = _require("verify")
    if detour:
        return detour
    assert draft is not None
    if not ButtonForm().validate_on_submit():
        abort(400)
    try:
        verification.send_code(db.session(), portal(), draft.sender_email, str(get_locale()), ip=client_ip())
        flash(gettext("A new code has been sent to %(email)s.", email=draft.sender_email), "info")
    except verification.ResendTooSoon as exc:
        flash(gettext("Please wait %(seconds)d seconds before asking for a new code.", seconds=exc.seconds), "error")
    except MailError:
        flash(gettext("We could not send the verification code. Please try again in a few minutes."), "error")
    return redirect(url_for("wizard.verify"))


@bp.route("/recipients", methods=["GET", "POST"])
def recipients():  # type: ignore[no-untyped-def]
    draft, detour = _require("recipients")
    if detour:
        return detour
    assert draft is not None
    form = RecipientsForm(
        data={
            "to": "\n".join(draft.to_addresses),
            "cc": "\n".join(draft.cc_addresses),
            "bcc": "\n".join(draft.bcc_addresses),
        }
        if request.method == "GET"
        else None
    )
    if form.validate_on_submit():
        drafts.save_recipients(draft, form.parsed["to"], form.parsed["cc"], form.parsed["bcc"])
        return redirect(url_for("wizard.files"))
    return render_template("wizard/recipients.html", form=form, draft=draft, step="recipients")


def _render_files(draft: Draft, form: MessageForm, errors: list[str] | None = None, status: int = 200):  # type: ignore[no-untyped-def]
    return render_template(
        "wizard/files.html",
        form=form,
        remove_form=ButtonForm(),
        files=drafts.files(portal(), draft),
        used=drafts.total_bytes(draft),
        limits=settings().transfer,
        errors=errors or [],
        draft=draft,
        step="files",
    ), status


# Exempt from the global CSRF hook, which would parse (and spool to disk) the
# whole multipart body first; uploads.receive checks the token from the
# stream before it stores a single byte.
@csrf.exempt
@bp.route("/files", methods=["GET", "POST"])
def files():  # type: ignore[no-untyped-def]
    draft, detour = _require("files")
    if detour:
        return detour
    assert draft is not None
    if request.method == "GET":
        return _render_files(draft, MessageForm(data={"message": drafts.message(portal(), draft)}))

    boundary = request.mimetype_params.get("boundary", "").encode()
    if request.mimetype != "multipart/form-data" or not boundary:
        abort(400)
    budget = settings().transfer.max_total_bytes - drafts.total_bytes(draft) + UPLOAD_OVERHEAD
    if (request.content_length or 0) > budget:
        raise RequestEntityTooLarge()
    request.max_content_length = budget
    try:
        received = uploads.receive(
            db.session(), portal(), draft, request.stream, boundary, check_csrf=_csrf_ok
        )
    except uploads.UploadRejected:
        abort(400)

    # The token was already checked from the stream by uploads.receive.
    form = MessageForm(formdata=None, data={"message": received.fields.get("message", "")}, meta={"csrf": False})
    errors = []
    if not form.validate():
        return _render_files(draft, form, status=422)
    drafts.save_message(portal(), draft, form.message.data or "")
    limit = settings().transfer
    errors += [
        gettext("“%(name)s” was not added: the transfer would be larger than %(max)s.", name=n, max=human_size(limit.max_total_bytes))
        for n in received.too_large
    ]
    errors += [
        gettext("“%(name)s” was not added: a transfer can hold at most %(max)d files.", name=n, max=limit.max_files)
        for n in received.too_many
    ]
    if errors:
        return _render_files(draft, form, errors, status=422)
    if received.fields.get("action") == "next":
        if not draft.files and draft.message_ct is None:
            return _render_files(draft, form, [gettext("Please add at least one file or a confidential message.")], status=422)
        return redirect(url_for("wizard.options"))
    return redirect(url_for("wizard.files"))


def _csrf_ok(token: str) -> bool:
    try:
        validate_csrf(token)
    except CSRFValidationError:
        return False
    return True


@bp.post("/files/<file_id>/remove")
def remove_file(file_id: str):  # type: ignore[no-untyped-def]
    draft, detour = _require("files")
    if detour:
        return detour
    assert draft is not None
    if not ButtonForm().validate_on_submit():
        abort(400)
    drafts.remove_file(db.session(), portal(), draft, file_id)
    return redirect(url_for("wizard.files"))


@bp.route("/options", methods=["GET", "POST"])
def options():  # type: ignore[no-untyped-def]
    draft, detour = _require("options")
    if detour:
        return detour
    assert draft is not None
    config = settings()
    today = utcnow().astimezone(config.site.zone).date()
    if request.method == "GET":
        form = OptionsForm(
            data={
                "expires_on": draft.expires_on or today + timedelta(days=config.transfer.default_expiry_days),
                "recipient_language": draft.recipient_language or str(get_locale()),
                "notify_confirmation": draft.notify_confirmation,
                "notify_retrieval": draft.notify_retrieval,
                "expose_filenames": draft.expose_filenames,
                "password_mode": draft.password_mode or config.password.default_mode,
            }
        )
    else:
        form = OptionsForm()
    form.password_mode.choices = [c for c in form.password_mode.choices if c.value in config.password.modes]
    assessment = None
    if form.validate_on_submit():
        day = form.expires_on.data
        problem = transactions.expiry_problem(portal(), day, utcnow())
        ok = problem is None
        if problem == "past":
            form.expires_on.errors.append(_l("The expiration date cannot be in the past."))
        elif problem == "too_late":
            form.expires_on.errors.append(
                _l("The expiration date can be at most %(days)d days from today.", days=config.transfer.max_expiry_days)
            )
        pending = draft.pending_slot if form.password_mode.data == "manual" else None
        if form.password_mode.data == "manual" and (form.password.data or not pending):
            pending = None
            assessment = password_policy.assess(
                form.password.data or "", config.password, [draft.sender_name, draft.sender_email]
            )
            if form.password.data != form.password_repeat.data:
                form.password_repeat.errors.append(_l("The two passwords are not the same."))
                ok = False
            elif not assessment.acceptable:
                form.password.errors.append(_password_message(assessment))
                ok = False
            elif ok:
                slot = keyslots.password_slot(
                    drafts.data_key(portal(), draft), draft.transfer_id, form.password.data,
                    keyslots.params_from(config.crypto),
                )
                pending = slot.as_json()
        if ok:
            drafts.save_options(
                draft,
                drafts.Options(
                    expires_on=day,
                    recipient_language=form.recipient_language.data,
                    notify_confirmation=form.notify_confirmation.data,
                    notify_retrieval=form.notify_retrieval.data,
                    expose_filenames=form.expose_filenames.data,
                    password_mode=form.password_mode.data,
                ),
                pending,
            )
            return redirect(url_for("wizard.notification"))
    elif request.method == "POST" and form.password.data:
        assessment = password_policy.assess(form.password.data, config.password, [draft.sender_name, draft.sender_email])
    return render_template(
        "wizard/options.html",
        form=form,
        draft=draft,
        assessment=assessment,
        strength_label=STRENGTH_LABELS[assessment.score] if assessment else None,
        patterns=config.password.patterns,
        min_length=config.password.min_length,
        step="options",
    ), (422 if request.method == "POST" else 200)


def _password_message(assessment: password_policy.Assessment) -> str:
    if not assessment.length_ok:
        return gettext("The password must have at least %(min)d characters.", min=settings().password.min_length)
    return gettext("This password is too easy to guess. Choose a longer one, or use the agreed pattern.")


@bp.route("/notification", methods=["GET", "POST"])
def notification():  # type: ignore[no-untyped-def]
    draft, detour = _require("notification")
    if detour:
        return detour
    assert draft is not None
    language = draft.recipient_language
    form = NotificationForm(
        data={
            "subject": draft.subject or transactions.default_subject(len(draft.files), draft.sender_name, language),
            "body": draft.body or transactions.default_body(portal(), draft, language),
        }
        if request.method == "GET"
        else None
    )
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render_template("wizard/notification.html", form=form, draft=draft, step="notification"), status
    drafts.save_notification(draft, form.subject.data.strip(), form.body.data.strip())
    if transactions.expiry_problem(portal(), draft.expires_on, utcnow()) is not None:
        flash(gettext("The expiration date has passed. Please choose a new one."), "error")
        return redirect(url_for("wizard.options"))
    return _start(draft)


def _start(draft: Draft):  # type: ignore[no-untyped-def]
    started = transactions.start(db.session(), portal(), draft, str(get_locale()), ip=client_ip())
    # The transfer must exist before any mail points at it.
    try:
        db.session().commit()
    except IntegrityError:
        # A concurrent second submit of the same draft: the transfer id is
        # fixed in the draft, so only the first commit can win.
        db.session().rollback()
        return redirect(url_for("wizard.done"))
    session.pop("draft", None)
    mail_failed = False
    try:
        portal().mailer.send(started.mails)
    except MailError:
        mail_failed = True
    transfer = started.transfer
    summary = {
        "files": [{"name": n, "size": f.size} for n, f in zip(started.file_names, transfer.files)],
        "recipients": [{"email": r.email, "kind": r.kind, "access_id": group(r.access_id)} for r in transfer.recipients],
        "language": transfer.language,
        "expires_at": transfer.expires_at.isoformat(),
        "notify_confirmation": transfer.notify_confirmation,
        "notify_retrieval": transfer.notify_retrieval,
        "expose_filenames": transfer.expose_filenames,
        "password_mode": transfer.password_mode,
        "sender_email": transfer.sender_email,
        "has_message": transfer.message_ct is not None,
        "mail_failed": mail_failed,
    }
    # Kept for a reload, without file names: those stay out of the cookie.
    session["summary"] = {**summary, "files": [{"size": f["size"]} for f in summary["files"]]}
    return render_template("wizard/done.html", summary=summary, password=started.generated_password, step="done")


@bp.get("/done")
def done():  # type: ignore[no-untyped-def]
    summary = session.get("summary")
    if summary is None:
        return redirect(url_for("wizard.personal"))
    return render_template("wizard/done.html", summary=summary, password=None, step="done")


@bp.post("/new")
def new():  # type: ignore[no-untyped-def]
    if not ButtonForm().validate_on_submit():
        abort(400)
    session.pop("summary", None)
    session.pop("draft", None)
    return redirect(url_for("wizard.personal"))
