"""Wizard views: parse the form, call one service, render or redirect."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import abort, flash, g, redirect, render_template, request, session, url_for
from flask_babel import get_locale, gettext
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from app import (
    addresses, audit, csrf, dates, db, drafts, fixed_recipients, i18n, keyslots, mobiles, password_policy, policy,
    ratelimit, refused_posts, status, transactions, upload_limits, upload_requests, uploads, verification,
)
from app.argon2_gate import Argon2Busy
from app.clock import utcnow
from app.errors import STORE_RETRY_SECONDS, STORE_UNAVAILABLE
from app.forms import ButtonForm
from app.ids import group
from app.mailer import MailError
from app.models import Draft, Transfer
from app.settings import UploadPortal
from app.storage import StorageUnavailable
from app.web import client_ip, limit_body, portal, settings, streams_body, upload_leases

from . import bp, portals_bp, sender_cookie
from .guards import (
    SCANNER_RETRY_SECONDS, TOO_MANY_UPLOADS, around_recipients, browser_id, code_message, csrf_token_ok, current_draft,
    decision, file_problem, first_missing_step, fixed_source, gone, infected_message, retry_message, sender_verified,
    to_summary_of, wizard_step,
)
from .forms import (
    MessageForm, NotificationForm, OptionsForm, PersonalForm, RecipientsForm, VerifyForm, mobile_field_name,
    recipients_form,
)

log = logging.getLogger(__name__)

UPLOAD_OVERHEAD = 2 * 1024 * 1024
BUSY = _l("The portal is very busy right now. Please try again in a moment; what you entered is kept.")
STRENGTH_LABELS = {0: _l("Weak"), 1: _l("Weak"), 2: _l("Fair"), 3: _l("Strong"), 4: _l("Strong")}


@bp.app_context_processor
def _fixed_source() -> dict[str, object]:
    """The upload portal or request of the wizard on this page, if any
    (``fixed_source``): its steps have no recipients step."""
    return {"fixed": g.get("fixed")}


@bp.route("/", methods=["GET", "POST"])
def personal():  # type: ignore[no-untyped-def]
    draft = current_draft()
    try:
        source = fixed_source(draft) if draft is not None else None
    except fixed_recipients.Gone as exc:
        return gone(exc.kind)
    return _personal(draft, source)


@portals_bp.route("/<slug>", methods=["GET", "POST"])
def portal_start(slug: str):  # type: ignore[no-untyped-def]
    """An upload portal's link: the first step, for a transfer to the portal's recipients."""
    upload_portal = settings().portal(slug)
    if upload_portal is None:
        abort(404)
    draft = current_draft()
    if draft is not None and draft.portal_slug == slug:
        return _personal(draft, fixed_source(draft))
    # Another unfinished transfer in this browser is discarded only once
    # this step's form is sent: the page says so first.
    return _personal(None, upload_portal, replaces=draft)


@bp.route("/request/<token>", methods=["GET", "POST"])
def request_start(token: str):  # type: ignore[no-untyped-def]
    """An upload request's personal link: the first step, for a transfer from
    the address it was mailed to, to the staff member who asked."""
    found = upload_requests.find_open(db.session(), settings(), token)
    if found is None:
        # Unknown, revoked, expired or used alike; and no draft is started.
        return gone("request")
    draft = current_draft()
    if draft is not None and draft.request_id == found.id:
        return _personal(draft, fixed_source(draft))
    return _personal(None, upload_requests.Source(found), replaces=draft)


def _personal(  # type: ignore[no-untyped-def]
    draft: Draft | None, source: fixed_recipients.Source | None, replaces: Draft | None = None
):
    """The first step; ``source``: at an upload portal or by a request's link,
    whose recipients the draft gets (and a request's sender: the address its
    link came to, which needs no code); ``replaces``: the browser's other
    draft, discarded once the form is sent."""
    g.fixed = source
    remembered = session.get("sender", {})
    # A reply waiting for its first step does not become a portal's transfer.
    reply = {} if source is not None else session.get("reply", {})
    form = PersonalForm(
        data={
            "name": draft.sender_name if draft else remembered.get("name", ""),
            "phone": draft.sender_phone if draft else remembered.get("phone", ""),
            "email": draft.sender_email if draft else reply.get("email") or remembered.get("email", ""),
        }
        if request.method == "GET"
        else None
    )
    if source is not None and source.sender is not None:
        # Whatever was posted: the request is answered from where it was sent.
        form.email.data = source.sender
        form.email.render_kw = {"readonly": True}
    if request.method == "GET":
        # A reply says whom it answers, before its draft exists and after.
        answered = draft.reply_to_id if draft else reply.get("reply_to_id")
        return refused_posts.show(
            "wizard/personal.html", form, draft, step="personal",
            answered=db.session().get(Transfer, answered) if answered else None,
            resume=url_for(f"wizard.{first_missing_step(replaces) or 'notification'}") if replaces is not None else None,
        )
    if i18n.switch_posted() or form.back:
        return refused_posts.carry(form, draft=draft, to=url_for("site.index") if form.back else None)
    if not form.validate_on_submit():
        return refused_posts.refuse(form, draft=draft)
    if source is not None:
        verdict = policy.decide(settings(), form.email.data, source.addresses, str(get_locale()), source)
        if not verdict.allowed:
            # Said before a code is sent for nothing.
            form.email.errors.extend(_portal_refusal(verdict))
            audit.record(db.session(), "policy_refused", actor=form.email.data, ip=client_ip(), **policy.audited(verdict))
            return refused_posts.refuse(form, draft=draft)
    verified = (source is not None and source.sender is not None) or sender_cookie.verified_email() == form.email.data
    if not verified:
        # Before a draft exists: a refused request leaves none behind.
        try:
            verification.send_code(
                db.session(), portal(), form.email.data, browser_id(), str(get_locale()), ip=client_ip()
            )
        except verification.ResendTooSoon:
            pass  # a code sent moments ago is still on its way; reuse it
        except ratelimit.RateLimited as exc:
            form.email.errors.append(retry_message(exc))
            return refused_posts.refuse(form, status=429, draft=draft)
        except MailError:
            form.email.errors.append(_l("We could not send the verification code. Please try again in a few minutes."))
            return refused_posts.refuse(form, status=503, draft=draft)
    if draft is None:
        if replaces is not None:
            drafts.discard(db.session(), portal(), replaces)
        # An empty draft is a cheap row, gone after draft_ttl_hours; it
        # takes a seat in its network's cap only with its first upload.
        draft, ticket = drafts.create(db.session())
        session["draft"] = ticket.as_session()
        reply = session.pop("reply", None)
        if source is not None:
            fixed_recipients.attach(draft, source)
        elif reply:
            drafts.prefill_reply(draft, **reply)
    drafts.save_personal(draft, form.name.data, form.phone.data, form.email.data)
    session["sender"] = {"name": form.name.data, "phone": form.phone.data, "email": form.email.data}
    return redirect(around_recipients(draft) if verified else url_for("wizard.verify"))


def _portal_refusal(verdict: policy.Decision) -> list[str]:
    """Why the rules keep this sender from a portal's recipients: the rules' own reasons,
    or, where the operator's portal does not fit the rules at all, that it cannot be used."""
    return [
        gettext("You cannot send to %(address)s: %(reason)s", address=refusal.address, reason=refusal.reason)
        for refusal in verdict.refusals
    ] or [gettext("Nothing can be sent through this page at the moment. Please contact the organisation it belongs to.")]


@bp.route("/verify", methods=["GET", "POST"])
@wizard_step("verify")
def verify(draft: Draft):  # type: ignore[no-untyped-def]
    if sender_verified(draft):
        return redirect(around_recipients(draft))
    form = VerifyForm()
    if request.method == "GET":
        return refused_posts.show(
            "wizard/verify.html", form, draft, resend=ButtonForm(), draft=draft, step="personal"
        )
    if i18n.switch_posted():
        return refused_posts.carry(form, draft=draft)
    if form.validate_on_submit():
        try:
            verification.check_code(db.session(), portal(), draft.sender_email, browser_id(), form.code.data, ip=client_ip())
        except verification.CodeRejected as exc:
            form.code.errors.append(code_message(exc))
        else:
            response = redirect(around_recipients(draft))
            sender_cookie.remember(response, draft.sender_email)
            sender_cookie.open_my_transfers(draft.sender_email)
            return response
    # A wrong code is not shown again.
    return refused_posts.refuse(form, draft=draft, forget=("code",))


@bp.post("/verify/resend")
@wizard_step("verify")
def resend(draft: Draft):  # type: ignore[no-untyped-def]
    if not ButtonForm().validate_on_submit():
        abort(400)
    try:
        verification.send_code(db.session(), portal(), draft.sender_email, browser_id(), str(get_locale()), ip=client_ip())
        flash(gettext("A new code has been sent to %(email)s.", email=draft.sender_email), "info")
    except verification.ResendTooSoon as exc:
        flash(gettext("Please wait %(seconds)d seconds before asking for a new code.", seconds=exc.seconds), "error")
    except ratelimit.RateLimited as exc:
        flash(retry_message(exc), "error")
    except MailError:
        flash(gettext("We could not send the verification code. Please try again in a few minutes."), "error")
    return redirect(url_for("wizard.verify"))


@bp.route("/recipients", methods=["GET", "POST"])
@wizard_step("recipients")
def recipients(draft: Draft):  # type: ignore[no-untyped-def]
    if fixed_recipients.fixed(draft):
        # A portal's or request's recipients are fixed: nothing posted here is read.
        return _past_fixed_recipients(draft)
    if request.method == "GET":
        lists = RecipientsForm(data={
            "to": "\n".join(draft.to_addresses), "cc": "\n".join(draft.cc_addresses),
            "bcc": "\n".join(draft.bcc_addresses),
        })
        refusal = refused_posts.restore(lists, draft)
        typed = {name: lists[name].data for name in ("to", "cc", "bcc")}
        rows, required = _mobile_rows(draft, typed)
        known = drafts.mobiles(draft)
        numbers = {mobile_field_name(a): mobiles.readable(known[a]) for a in rows if a in known}
        form = recipients_form(rows, formdata=None, data=typed | numbers)
        refusal.fill(form)
        page = render_template(
            "wizard/recipients.html", form=form, mobiles_required=required, draft=draft, step="recipients"
        )
        return page, *refusal.answer()
    rows, required = _mobile_rows(draft, {name: request.form.get(name, "") for name in ("to", "cc", "bcc")})
    form = recipients_form(rows)
    if i18n.switch_posted():
        return refused_posts.carry(form, draft=draft)
    if form.validate_on_submit():
        everyone = [*form.parsed["to"], *form.parsed["cc"], *form.parsed["bcc"]]
        verdict = decision(draft, everyone)
        if not verdict.allowed:
            _refusal_errors(form, verdict)
            audit.record(
                db.session(), "policy_refused", actor=draft.sender_email, ip=client_ip(), **policy.audited(verdict)
            )
        elif (numbers := _numbers(form, required)) is not None:
            drafts.save_recipients(draft, form.parsed["to"], form.parsed["cc"], form.parsed["bcc"])
            drafts.save_mobiles(draft, numbers)
            return redirect(url_for("wizard.personal" if form.back else "wizard.files"))
    return refused_posts.refuse(form, draft=draft)


def _mobile_rows(draft: Draft, lists: dict[str, str]) -> tuple[list[str], bool]:
    """The recipients to ask a mobile number for (their rules want, or offer,
    a code by SMS), and whether it is required. Rows for the valid addresses
    typed, even while others are refused, so that numbers typed are kept."""
    parts = addresses.dedupe(*(addresses.parse_valid(lists[n] or "") for n in ("to", "cc", "bcc")))
    typed = [address for part in parts for address in part]
    typed = typed[: policy.most_recipients(settings())]
    limits = decision(draft, typed).limits
    required = limits.recipient_verification == "sms" or limits.password_by_sms
    offered = required or "sms" in limits.verifications(portal().sms is not None)
    return (typed if offered else []), required


def _numbers(form: RecipientsForm, required: bool) -> dict[str, str] | None:
    """The mobile numbers typed, in E.164 by address; None after adding why not to the form."""
    numbers: dict[str, str] = {}
    ok = True
    for address, field in form.mobiles:
        if field.data:
            try:
                numbers[address] = mobiles.normalize(field.data)
            except mobiles.InvalidMobile as exc:
                field.errors.append(gettext(
                    "“%(number)s” is a fixed line: a code by SMS cannot reach it. Please enter a mobile number.",
                    number=field.data,
                ) if exc.reason == "not_mobile" else gettext(
                    "“%(number)s” is not a mobile number. For example 06 12345678, or +32 470 12 34 56 abroad.",
                    number=field.data,
                ))
                ok = False
        elif required and not form.back:
            field.errors.append(gettext("Please enter a mobile number for %(address)s.", address=address))
            ok = False
    return numbers if ok else None


def _past_fixed_recipients(draft: Draft):  # type: ignore[no-untyped-def]
    """On to the files step, unless the rules (changed since the first step) refuse the fixed recipients."""
    verdict = decision(draft)
    if verdict.allowed:
        return redirect(url_for("wizard.files"))
    for message in _portal_refusal(verdict):
        flash(message, "error")
    audit.record(db.session(), "policy_refused", actor=draft.sender_email, ip=client_ip(), **policy.audited(verdict))
    return redirect(url_for("wizard.personal"))


def _refusal_errors(form: RecipientsForm, decision: policy.Decision) -> None:
    for refusal in decision.refusals:
        field = next(getattr(form, n) for n in ("to", "cc", "bcc") if refusal.address in form.parsed[n])
        field.errors.append(
            gettext("You cannot send to %(address)s: %(reason)s", address=refusal.address, reason=refusal.reason)
        )
    if decision.too_many:
        form.to.errors.append(gettext(
            "A transfer can go to at most %(max)d recipients (To, Cc and Bcc together); you entered %(count)d. "
            "Please remove some, or send separate transfers.",
            max=decision.limits.max_recipients, count=decision.recipient_count,
        ))
    elif not decision.refusals:
        # Each recipient is allowed, but their rules share no password mode.
        form.to.errors.append(gettext("These recipients cannot be combined in one transfer. Please send separate transfers."))


def _render_files(draft: Draft):  # type: ignore[no-untyped-def]
    form = MessageForm(formdata=None, data={"message": drafts.message(draft)})
    refusal = refused_posts.restore(form, draft)
    form.keep_for(draft.sender_email)
    limits = decision(draft).limits
    page = render_template(
        "wizard/files.html",
        form=form,
        remove_form=ButtonForm(formdata=None),
        files=drafts.files(draft),
        # Let in unscanned under other recipients' rules: Next scans them first.
        to_scan={f.id for f in draft.files if not uploads.admitted(portal(), limits, f.scanned)},
        unfinished=drafts.unfinished(draft),
        used=drafts.total_bytes(draft),
        limits=limits,
        extensions=sorted(e for e in limits.allowed_extensions or () if e),
        errors=refusal.notes,
        focus=request.args.get("focus"),
        draft=draft,
        step="files",
    )
    return page, *refusal.answer()


# Exempt from the global CSRF hook, which would parse (and spool to disk) the
# whole multipart body first; uploads.receive checks the token from the
# stream before it stores a single byte. For the same reason every form
# here is built with formdata=None, refusals included.
@csrf.exempt
@streams_body
@bp.route("/files", methods=["GET", "POST"])
@wizard_step("files")
def files(draft: Draft):  # type: ignore[no-untyped-def]
    if request.method == "GET":
        return _render_files(draft)
    # The message (and files chosen without the script) are saved as by an
    # upload, and the page comes back in the language chosen.
    i18n.switch_posted()

    boundary = request.mimetype_params.get("boundary", "").encode()
    if request.mimetype != "multipart/form-data" or not boundary:
        abort(400)
    limits = decision(draft).limits
    budget = limits.max_total_bytes - drafts.reserved_bytes(draft) + UPLOAD_OVERHEAD
    if (request.content_length or 0) > budget:
        # Refused unread. The message typed beside the files is in that body
        # too, beyond reach; the page shows the one saved before.
        return refused_posts.refuse(notes=[file_problem("", "size", limits)], status=413, draft=draft)
    limit_body(budget)
    try:
        with upload_limits.running(
            portal(), upload_leases(), request.environ, draft, client_ip(), size=request.content_length or budget
        ) as refused:
            # Refused, the body is still read for its fields (files skipped),
            # so that the message typed beside the files is kept.
            received = uploads.receive(
                db.session(), portal(), draft, request.stream, boundary, check_csrf=csrf_token_ok, limits=limits,
                quota_left=upload_limits.quota_left(db.session(), portal(), draft.sender_email), refuse_files=refused,
                ip=client_ip(),
            )
            drafts.drop_superseded(db.session(), portal(), draft, received.added)
            db.session().commit()
    except uploads.UploadRejected:
        abort(400)
    except upload_limits.TooManyUploads:
        return refused_posts.refuse(
            notes=[TOO_MANY_UPLOADS], status=429, headers={"Retry-After": str(upload_limits.RETRY_AFTER_SECONDS)}, draft=draft
        )
    except StorageUnavailable as exc:
        # None of this post's files is kept; the message typed beside them
        # may be beyond reach in the unread body, as for a body too large.
        log.warning("files step: %s", exc)
        return refused_posts.refuse(
            notes=[STORE_UNAVAILABLE], status=503, headers={"Retry-After": str(STORE_RETRY_SECONDS)}, draft=draft
        )

    # The token was already checked from the stream by uploads.receive.
    form = MessageForm(formdata=None, data={"message": received.fields.get("message", "")}, meta={"csrf": False})
    errors = []
    if not form.validate():
        return refused_posts.refuse(form, draft=draft)
    if limits.confidential_message == "forbidden" and (form.message.data or "").strip():
        return refused_posts.refuse(form, notes=[_l("A confidential message is not allowed for these recipients.")], draft=draft)
    drafts.save_message(draft, form.message.data or "")
    # Once each: every file refused for want of space (or of a seat) has the same message.
    errors += list(dict.fromkeys(file_problem(name, why, limits) for name, why in received.refused))
    errors += [infected_message(name, signature) for name, signature in received.infected]
    if errors:
        whys = {why for _, why in received.refused}
        status = 507 if "space" in whys else 429 if "drafts" in whys else 503 if "scanner" in whys else 422
        headers = {"Retry-After": str(SCANNER_RETRY_SECONDS)} if status == 503 else {}
        return refused_posts.refuse(form, notes=errors, status=status, headers=headers, draft=draft)
    if received.fields.get("action") == "back":
        return redirect(around_recipients(draft, back=True))
    if received.fields.get("action") == "next":
        # Files let in unscanned under earlier recipients' rules: Next waits for their verdicts.
        # Scanning holds a thread here and one in clamd, as an upload does: so it counts as one.
        try:
            with upload_limits.running(portal(), upload_leases(), request.environ, draft, client_ip()):
                screened = uploads.screen_files(db.session(), portal(), draft, limits, client_ip())
        except upload_limits.TooManyUploads:
            return refused_posts.refuse(
                form, notes=[TOO_MANY_UPLOADS], status=429,
                headers={"Retry-After": str(upload_limits.RETRY_AFTER_SECONDS)}, draft=draft,
            )
        whys = [*screened.refused, *transactions.files_problems(portal(), draft, limits)]
        problems = [infected_message(name, signature, removed=True) for name, signature in screened.infected]
        problems += dict.fromkeys(file_problem(name, why, limits) for name, why in whys)
        if not draft.files and draft.message_ct is None:
            problems.append(gettext("Please add at least one file or a confidential message."))
        if limits.confidential_message == "required" and draft.message_ct is None:
            problems.append(gettext("Please write a confidential message for these recipients."))
        if problems:
            # Files waiting for the scanner: try again later, as for an upload.
            waiting = any(why == "unchecked" for _, why in whys)
            status, headers = (503, {"Retry-After": str(SCANNER_RETRY_SECONDS)}) if waiting else (422, {})
            return refused_posts.refuse(form, notes=problems, status=status, headers=headers, draft=draft)
        return redirect(url_for("wizard.options"))
    return redirect(url_for("wizard.files"))


@bp.post("/files/<file_id>/remove")
@wizard_step("files")
def remove_file(draft: Draft, file_id: str):  # type: ignore[no-untyped-def]
    if not ButtonForm().validate_on_submit():
        abort(400)
    listed = [*drafts.files(draft), *drafts.unfinished(draft)]  # as the page lists them
    removed = next((i for i, f in enumerate(listed) if f.id == file_id), None)
    if removed is None or not drafts.remove_file(db.session(), portal(), draft, file_id):
        return redirect(url_for("wizard.files"))
    # The keyboard stays in the list: on the next file's "Remove" (or the
    # last one's), or on the list's heading once none is left.
    flash(gettext("“%(name)s” has been removed.", name=listed[removed].name), "info")
    rest = listed[:removed] + listed[removed + 1:]
    return redirect(url_for("wizard.files", focus=rest[min(removed, len(rest) - 1)].id if rest else "files"))


@bp.route("/options", methods=["GET", "POST"])
@wizard_step("options")
def options(draft: Draft):  # type: ignore[no-untyped-def]
    config = settings()
    limits = decision(draft).limits
    earliest, latest = transactions.expiry_range(portal(), utcnow(), limits.max_expiry_days)
    if request.method == "GET":
        fresh = not draft.options_saved
        default_mode = config.password.default_mode
        form = OptionsForm(
            data={
                "expires_on": draft.expires_on
                or earliest + timedelta(days=min(config.transfer.default_expiry_days, limits.max_expiry_days)),
                # A portal's operator, or the staff member who asked, may know the recipients' language.
                "recipient_language": draft.recipient_language
                or (g.fixed and g.fixed.recipient_language) or str(get_locale()),
                "notify_confirmation": draft.notify_confirmation,
                "notify_retrieval": limits.default_on(limits.retrieval_notice) if fresh else draft.notify_retrieval,
                "expose_filenames": limits.default_on(limits.expose_filenames) if fresh else draft.expose_filenames,
                "password_mode": draft.password_mode
                or (default_mode if default_mode in limits.password_modes else limits.password_modes[0]),
                "recipient_verification": draft.recipient_verification,
            }
        )
    else:
        form = OptionsForm()
    refusal = refused_posts.restore(form, draft) if request.method == "GET" else None
    form.password_mode.choices = [c for c in form.password_mode.choices if c.value in limits.password_modes]
    # A portal's or request's sender cannot give its recipients' mobile numbers.
    verifications = limits.verifications(portal().sms is not None and not fixed_recipients.fixed(draft))
    form.recipient_verification.choices = [c for c in form.recipient_verification.choices if c.value in verifications]
    if len(verifications) == 1 or form.recipient_verification.data not in verifications and request.method == "GET":
        # The rules' minimum: fixed, or preselected where the sender may choose more.
        form.recipient_verification.data = verifications[0]
    # The date picker offers the days the check below accepts, and no others.
    form.expires_on.render_kw = {"min": earliest.isoformat(), "max": latest.isoformat()}
    # Options the operator fixed are shown, but not to be changed.
    for field, toggle in ((form.notify_retrieval, limits.retrieval_notice), (form.expose_filenames, limits.expose_filenames)):
        if limits.fixed(toggle):
            field.data = limits.default_on(toggle)
            field.render_kw = {"disabled": True}
    if refusal is not None:  # a page view
        typed = form.password.data
        return _render_options(draft, form, _assess(draft, typed) if typed else None), *refusal.answer()
    if i18n.switch_posted():
        return refused_posts.carry(form, draft=draft)
    if form.validate_on_submit():
        day = form.expires_on.data
        problem = transactions.expiry_problem(portal(), day, utcnow(), limits.max_expiry_days)
        ok = problem is None
        if problem == "past":
            form.expires_on.errors.append(_l("The expiration date cannot be in the past."))
        elif problem == "too_late":
            form.expires_on.errors.append(
                _l("The expiration date can be at most %(days)d days from today.", days=limits.max_expiry_days)
            )
        if form.recipient_verification.data not in verifications:
            form.recipient_verification.errors.append(_l("Please choose the extra check for the recipients."))
            ok = False
        elif form.recipient_verification.data == "sms" and not form.back and (
            missing := drafts.without_mobile(draft)
        ):
            form.recipient_verification.errors.append(gettext(
                "For a code by SMS, enter a mobile number for each recipient on the Recipients step "
                "(missing for %(addresses)s).",
                addresses=", ".join(missing[:3]) + (" …" if len(missing) > 3 else ""),
            ))
            ok = False
        pending = draft.pending_slot if form.password_mode.data == "manual" else None
        # Going back, a password still to be typed is fine: "Next" needs it.
        if form.password_mode.data == "manual" and (form.password.data or not (pending or form.back)):
            pending = None
            assessment = _assess(draft, form.password.data or "")
            if form.password.data != form.password_repeat.data:
                form.password_repeat.errors.append(_l("The two passwords are not the same."))
                ok = False
            elif not assessment.acceptable:
                form.password.errors.append(_password_message(assessment))
                ok = False
            elif ok:
                try:
                    with portal().argon2_gate.slot():
                        slot = keyslots.password_slot(
                            drafts.data_key(draft), draft.transfer_id, form.password.data,
                            keyslots.params_from(config.crypto),
                        )
                    pending = slot.as_json()
                except Argon2Busy:
                    # Answered in place, the typed password shown again: it was never tried.
                    form.password.errors.append(BUSY)
                    return _render_options(draft, form, assessment), 503, {"Retry-After": "10"}
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
                    recipient_verification=form.recipient_verification.data,
                ),
                pending,
            )
            return redirect(url_for("wizard.files" if form.back else "wizard.notification"))
    return refused_posts.refuse(form, draft=draft)


def _render_options(draft: Draft, form: OptionsForm, assessment: password_policy.Assessment | None = None) -> str:
    config = settings()
    return render_template(
        "wizard/options.html",
        form=form,
        draft=draft,
        assessment=assessment,
        strength_label=_strength_label(assessment) if assessment else None,
        patterns=config.password.patterns,
        min_length=config.password.min_length,
        # A generated password that goes by SMS is not the sender's to pass on.
        password_by_sms=decision(draft).limits.password_by_sms,
        step="options",
    )


@csrf.exempt
@bp.post("/options/strength")
def password_strength():  # type: ignore[no-untyped-def]
    """Live feedback for the options page's script: the same check the form runs."""
    draft = current_draft()
    if draft is None or not csrf_token_ok(request.headers.get("X-CSRFToken", "")):
        abort(403)
    payload = request.get_json(silent=True)
    password = payload.get("password") if isinstance(payload, dict) else None
    if not isinstance(password, str) or len(password) > 1000:
        abort(400)
    assessment = _assess(draft, password)
    return {
        "score": assessment.score,
        "label": _strength_label(assessment),
        "acceptable": assessment.acceptable,
        "pattern": assessment.pattern,
        "problem": "" if assessment.acceptable or not password else _password_message(assessment),
        "warning": assessment.warning,
        "suggestions": assessment.suggestions,
    }


def _assess(draft: Draft, password: str) -> password_policy.Assessment:
    """The operator's password policy; the sender's name and address, and the site's name, count as guessable."""
    guessable = [draft.sender_name, draft.sender_email, settings().site.name]
    return password_policy.assess(password, settings().password, guessable)


def _strength_label(assessment: password_policy.Assessment) -> str:
    """What the meter says. A password on an agreed pattern is accepted for
    the agreement, not for its strength: the AGB codes such a pattern is
    built on are public, so it is never called strong."""
    if assessment.pattern:
        return gettext("This password matches the agreed convention “%(name)s”.", name=assessment.pattern)
    return str(STRENGTH_LABELS[assessment.score])


def _password_message(assessment: password_policy.Assessment) -> str:
    if not assessment.length_ok:
        return gettext("The password must have at least %(min)d characters.", min=settings().password.min_length)
    if settings().password.patterns:
        return gettext("This password is too easy to guess. Choose a longer one, or use the agreed convention.")
    return gettext("This password is too easy to guess. Choose a longer one, for example three or four unrelated words.")


@bp.route("/notification", methods=["GET", "POST"])
@wizard_step("notification")
def notification(draft: Draft):  # type: ignore[no-untyped-def]
    language = draft.recipient_language
    defaults = {
        "subject": transactions.default_subject(len(draft.files), draft.sender_name, language),
        "body": transactions.default_body(portal(), draft, language),
    }
    editable = decision(draft).limits.edit_notification
    if request.method == "GET":
        form = NotificationForm(data={"subject": draft.subject or defaults["subject"], "body": draft.body or defaults["body"]})
    else:
        form = NotificationForm()
    refusal = refused_posts.restore(form, draft) if request.method == "GET" else None
    if not editable:
        # The operator's text is sent as it is, whatever was posted.
        form.subject.data, form.body.data = defaults["subject"], defaults["body"]
        form.subject.render_kw = form.body.render_kw = {"readonly": True}
    if refusal is not None:  # a page view
        written_for = _text_written_for(draft)
        return render_template(
            "wizard/notification.html", form=form, draft=draft, step="notification", propose=ButtonForm(),
            written_for=written_for if editable and written_for != draft.recipient_language else None,
        ), *refusal.answer()
    if i18n.switch_posted():
        return refused_posts.carry(form, draft=draft)
    if form.action.data == "propose":
        # "Use the proposed text": the sender's own text gives way to the one proposed for the options chosen now.
        _keep_text(draft, defaults["subject"], defaults["body"], defaults)
        return redirect(url_for("wizard.notification"))
    if not form.validate_on_submit():
        return refused_posts.refuse(form, draft=draft)
    subject, body = form.subject.data.strip(), form.body.data.strip()
    if form.back:
        _keep_text(draft, subject, body, defaults)
        return redirect(url_for("wizard.options"))
    try:
        return _start(draft, subject, body)
    # Not started: as after "Back", the draft keeps only the text the sender changed.
    # (Argon2Busy undoes this request's writes, the text _start saved among them.)
    except transactions.NotReady as exc:
        _keep_text(draft, subject, body, defaults)
        flash(gettext("Please check this step again: the rules for your recipients do not allow what was chosen."), "error")
        return redirect(url_for(f"wizard.{exc.step}"))
    except transactions.RecipientBudgetExhausted as exc:
        _keep_text(draft, subject, body, defaults)
        form.subject.errors.append(gettext(
            "Your daily limit of recipients is reached: %(left)d of %(max)d left today, and this transfer has %(count)d. "
            "Remove recipients, or try again after %(time)s.",
            left=exc.left, max=exc.allowed, count=exc.wanted, time=dates.moment(exc.retry_at),
        ))
        return refused_posts.refuse(form, status=429, draft=draft)
    except ratelimit.RateLimited as exc:
        _keep_text(draft, subject, body, defaults)
        form.subject.errors.append(retry_message(exc))
        return refused_posts.refuse(form, status=429, draft=draft)
    except fixed_recipients.Gone as exc:
        # Its request was used by another transfer a moment ago.
        return gone(exc.kind)
    except Argon2Busy:
        form.subject.errors.append(BUSY)
        return refused_posts.refuse(form, status=503, headers={"Retry-After": "10"}, draft=draft)
    except transactions.PasswordNotSent:
        # Nothing started: the draft is as it was (with the password the next
        # try sends again), and what was typed here comes back.
        form.subject.errors.append(gettext(
            "The password could not be sent to the recipients by SMS, so the transaction was not started. "
            "Please try again in a few minutes."
        ))
        return refused_posts.refuse(form, status=503, headers={"Retry-After": "60"}, draft=draft)


# The recipient language a text the sender changed is written for: in the
# session, beside the draft's ticket, as a hint for the page rather than a
# part of the transfer.
TEXT_WRITTEN_FOR = "text_written_for"


def _text_written_for(draft: Draft) -> str | None:
    kept = session.get(TEXT_WRITTEN_FOR)
    return str(kept["language"]) if isinstance(kept, dict) and kept.get("draft") == draft.id else None


def _keep_text(draft: Draft, subject: str, body: str, defaults: dict[str, str]) -> None:
    written_for = drafts.keep_notification(draft, subject, body, proposed=defaults, written_for=_text_written_for(draft))
    if written_for:
        session[TEXT_WRITTEN_FOR] = {"draft": draft.id, "language": written_for}
    else:
        session.pop(TEXT_WRITTEN_FOR, None)


def _start(draft: Draft, subject: str, body: str):  # type: ignore[no-untyped-def]
    transfer_id, portal_slug = draft.transfer_id, draft.portal_slug
    try:
        texts = transactions.password_texts(db.session(), portal(), draft, str(get_locale()), ip=client_ip())
        if texts:
            # The password is kept before it goes out, and no write lock waits on the gateway.
            db.session().commit()
            transactions.send_passwords(portal(), texts)
        drafts.save_notification(draft, subject, body)
        started = transactions.start(db.session(), portal(), draft, str(get_locale()), ip=client_ip(), texts_sent=texts)
        # The transfer must exist before any mail points at it.
        db.session().commit()
    except (IntegrityError, StaleDataError):
        # A second click on "Start transaction" while the first was running:
        # the transfer id is fixed in the draft, so only the first commit can
        # win, and this one finds the draft gone or the id taken. The browser
        # shows this answer, so it leads to that transfer's summary, whichever
        # response sets the cookie first.
        db.session().rollback()
        if db.session().get(Transfer, transfer_id) is None:
            raise
        return to_summary_of(transfer_id)
    session.pop("draft", None)
    mail_failed = False
    try:
        portal().mailer.send(started.mails)
    except MailError:
        mail_failed = True
    # Only what finds the transfer again: a reload of the summary reads the
    # rest from the database, so the cookie stays small whatever was sent.
    session["summary"] = {"transfer": started.transfer.id, "mail_failed": mail_failed, "portal": portal_slug}
    summary = _summary(started.transfer, mail_failed, started.file_names, started.status_link)
    # A password that went by SMS is not the sender's to pass on.
    password = None if started.transfer.password_by_sms else started.generated_password
    return render_template("wizard/done.html", summary=summary, password=password, step="done")


def _summary(
    transfer: Transfer, mail_failed: bool, file_names: list[str] | None = None, status_link: str | None = None
) -> dict[str, object]:
    """The summary page's content. File names and the status link exist only
    in the request that started the transfer; a reload shows sizes alone."""
    names = file_names or [None] * len(transfer.files)
    return {
        "status_link": status_link,
        "files": [{"name": n, "size": f.size} for n, f in zip(names, transfer.files)],
        "recipients": [{"email": r.email, "kind": r.kind, "access_id": group(r.access_id)} for r in transfer.recipients],
        "language": transfer.language,
        "expires_at": transfer.expires_at.isoformat(),
        "notify_confirmation": transfer.notify_confirmation,
        "notify_retrieval": transfer.notify_retrieval,
        "expose_filenames": transfer.expose_filenames,
        "password_mode": transfer.password_mode,
        "password_by_sms": transfer.password_by_sms,
        "recipient_verification": transfer.recipient_verification,
        "sender_email": transfer.sender_email,
        "has_message": transfer.message_ct is not None,
        "mail_failed": mail_failed,
    }


@bp.get("/done")
def done():  # type: ignore[no-untyped-def]
    kept = session.get("summary")
    transfer = db.session().get(Transfer, kept["transfer"]) if isinstance(kept, dict) and "transfer" in kept else None
    if transfer is None or transfer.expires_at <= utcnow():
        session.pop("summary", None)
        return redirect(url_for("wizard.personal"))
    summary = _summary(transfer, bool(kept.get("mail_failed")))
    g.fixed = _summary_portal(kept)
    return render_template("wizard/done.html", summary=summary, password=None, step="done")


def _summary_portal(kept: object) -> UploadPortal | None:
    """The upload portal the summary's transfer was sent through, while the operator offers it."""
    slug = kept.get("portal") if isinstance(kept, dict) else None
    return settings().portal(slug) if isinstance(slug, str) else None


@bp.post("/new")
def new():  # type: ignore[no-untyped-def]
    if not ButtonForm().validate_on_submit():
        abort(400)
    # A draft left here would keep its seat in the network's cap for a day.
    unfinished = current_draft()
    if unfinished is not None:
        drafts.discard(db.session(), portal(), unfinished)
    # After a transfer through an upload portal, the next one starts there too.
    upload_portal = _summary_portal(session.pop("summary", None))
    session.pop("draft", None)
    if upload_portal is not None:
        return redirect(url_for("portals.portal_start", slug=upload_portal.slug))
    return redirect(url_for("wizard.personal"))


@bp.route("/reply/<token>", methods=["GET", "POST"])
def reply(token: str):  # type: ignore[no-untyped-def]
    """"Reply securely": a new wizard, prefilled to answer the sender.

    The link only shows whom the reply goes to; a CSRF-checked post starts
    it. So a link followed from another site cannot plant a recipient in
    this browser's next transfer, and an unfinished transfer here is
    discarded only when the page said so and the sender confirmed.
    """
    origin = transactions.reply_origin(db.session(), portal(), token)
    if origin is None:
        flash(gettext("This transfer is no longer available. You can still send a new transfer."), "info")
        return redirect(url_for("wizard.personal"))
    transfer = origin.transfer
    unfinished = current_draft()
    form = ButtonForm()
    if not form.validate_on_submit():
        if request.method == "POST":
            abort(400)
        resume = (first_missing_step(unfinished) or "notification") if unfinished is not None else None
        back = url_for("download.transfer") if "grant" in session else url_for("site.index")
        return render_template("wizard/reply_confirm.html", form=form, token=token, resume=resume, transfer=transfer, back=back)
    if unfinished is not None:
        drafts.discard(db.session(), portal(), unfinished)
    session.pop("draft", None)
    session.pop("summary", None)
    session["reply"] = {
        "email": origin.email,
        "reply_to_id": transfer.id,
        "to": transfer.sender_email,
        "subject": "Re: " + transfer.subject,
        # The reply goes to the sender: in the language they used, not the one they chose for this recipient.
        "language": transfer.sender_language,
    }
    return redirect(url_for("wizard.personal"))


@bp.get("/status/<token>")
def status_page(token: str):  # type: ignore[no-untyped-def]
    transfer = status.find(db.session(), token)
    if transfer is None:
        return render_template("wizard/status_gone.html"), 404
    files = status.manifest(token, transfer)
    names = {str(f["id"]): str(f["name"]) for f in files}
    return render_template(
        "wizard/status.html", transfer=transfer, files=files, token=token,
        recipients=status.activity(db.session(), transfer, names), form=ButtonForm(),
    )


@bp.route("/status/<token>/withdraw", methods=["GET", "POST"])
def withdraw(token: str):  # type: ignore[no-untyped-def]
    transfer = status.find(db.session(), token)
    if transfer is None:
        return render_template("wizard/status_gone.html"), 404
    form = ButtonForm()
    if not form.validate_on_submit():
        return render_template(
            "wizard/withdraw.html", transfer=transfer, form=form,
            action=url_for("wizard.withdraw", token=token), back=url_for("wizard.status_page", token=token),
        )
    status.withdraw(db.session(), portal(), transfer, ip=client_ip())
    return render_template("wizard/status_gone.html", withdrawn=True)
