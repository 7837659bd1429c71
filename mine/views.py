"""My transfers: parse the form, call one service, render or redirect.

The rules (whose transfer, which dates, how often) live in
app/my_transfers.py; here the verified address comes from the session
(wizard/sender_cookie.py) and goes into every call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import abort, flash, redirect, render_template, request, session, url_for
from flask_babel import get_locale, gettext
from flask_babel import lazy_gettext as _l

from app import dates, db, my_transfers, ratelimit, refused_posts, status, transactions, upload_requests, verification
from app.clock import utcnow
from app.i18n import local_path
from app.forms import ButtonForm
from app.mailer import MailError
from app.models import Transfer
from app.web import client_ip, portal, settings
from wizard import sender_cookie
from wizard.forms import VerifyForm
from wizard.guards import browser_id, code_message, retry_message

from . import bp
from .forms import AddressForm, ExpiryForm, RequestForm

# The address a code was sent to, until it is entered.
PENDING = "my_transfers_pending"
# The page of My transfers asked for when its time had run out.
RETURN_TO = "my_transfers_return_to"
MAIL_FAILED = _l("We could not send the verification code. Please try again in a few minutes.")


def verified_address(view: Callable[..., Any]) -> Callable[..., Any]:
    """The view gets the verified address first; without one, the visitor verifies first."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        lapsed = sender_cookie.my_transfers_lapsed()
        email = sender_cookie.my_transfers_email()
        if email is None:
            if lapsed:
                # Said, and the way back is short: the address filled in, and after the code, this page.
                flash(gettext(
                    "For your safety, My transfers closes %(minutes)d minutes after the code was entered. "
                    "Please ask for a new code.", minutes=settings().verification.my_transfers_minutes,
                ), "info")
                session[PENDING] = lapsed
                if request.method == "GET":
                    session[RETURN_TO] = request.path
            return redirect(url_for("mine.verify"))
        return view(email, *args, **kwargs)

    return guarded


def own_transfer(view: Callable[..., Any]) -> Callable[..., Any]:
    """The view gets the verified address and the transfer, if that address
    sent it; any other id is "not found", whoever's it is."""

    @verified_address
    @functools.wraps(view)
    def guarded(email: str, transfer_id: str, *args: Any, **kwargs: Any) -> Any:
        transfer = my_transfers.find(db.session(), email, transfer_id)
        if transfer is None:
            abort(404)
        return view(transfer, *args, **kwargs)

    return guarded


@bp.get("/")
@verified_address
def index(email: str):  # type: ignore[no-untyped-def]
    staff = upload_requests.is_staff(settings(), email)
    return render_template(
        "mine/list.html", email=email, transfers=my_transfers.sent_by(db.session(), email), form=ButtonForm(),
        staff=staff, requests=upload_requests.of_staff(db.session(), email) if staff else [],
        request_state=lambda r: upload_requests.state(settings(), r),
    )


@bp.app_context_processor
def _staff_browser() -> dict[str, object]:
    """Whether this browser proved an address of the operator's staff: the
    start page then offers "Request files" beside "Send"."""
    def staff_browser() -> bool:
        # Asked on every start page: a My transfers that closed is left for its
        # next visit to say so (my_transfers_email would forget it).
        lapsed = sender_cookie.my_transfers_lapsed() is not None
        proven = (None if lapsed else sender_cookie.my_transfers_email()) or sender_cookie.verified_email()
        return upload_requests.is_staff(settings(), proven)

    return {"staff_browser": staff_browser}


def staff_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """The view gets the verified address, if it is one of the operator's staff; others are refused."""

    @verified_address
    @functools.wraps(view)
    def guarded(email: str, *args: Any, **kwargs: Any) -> Any:
        if not upload_requests.is_staff(settings(), email):
            abort(403)
        return view(email, *args, **kwargs)

    return guarded


@bp.route("/requests/new", methods=["GET", "POST"])
@staff_only
def new_request(email: str):  # type: ignore[no-untyped-def]
    """"Request files": someone outside gets a personal link to send files to this staff member."""
    latest = upload_requests.latest_day(portal(), utcnow())
    if request.method == "GET":
        form = RequestForm(data={"expires_on": latest, "language": str(get_locale())})
    else:
        form = RequestForm()
    today = utcnow().astimezone(settings().site.zone).date()
    form.expires_on.render_kw = {"min": today.isoformat(), "max": latest.isoformat()}
    if request.method == "GET":
        return refused_posts.show("mine/request.html", form)
    if form.validate_on_submit():
        megabytes = form.max_megabytes.data
        new = upload_requests.NewRequest(
            external_name=form.name.data, external_email=form.email.data, message=form.message.data or "",
            expires_on=form.expires_on.data, language=form.language.data,
            allowed_extensions=form.extensions,
            # Decimal, as every size on the site is shown (web.human_size): 5 MB reads back as 5.0 MB.
            max_total_bytes=megabytes * 1_000_000 if megabytes else None,
        )
        try:
            upload_requests.create(db.session(), portal(), email, new, ip=client_ip())
        except upload_requests.ExpiryRefused as exc:
            form.expires_on.errors.append(
                gettext("The expiration date cannot be in the past.") if exc.reason == "past"
                else gettext("The expiration date can be at most %(date)s.", date=dates.day(latest))
            )
        except transactions.RecipientBudgetExhausted as exc:
            form.email.errors.append(gettext(
                "Your daily limit of recipients is reached. Please try again after %(time)s.",
                time=dates.moment(exc.retry_at),
            ))
            return refused_posts.refuse(form, status=429)
        except MailError:
            db.session().rollback()
            form.email.errors.append(gettext("The mail could not be sent. Please try again in a few minutes."))
            return refused_posts.refuse(form, status=503)
        else:
            flash(gettext("Your request has been sent to %(email)s.", email=new.external_email), "info")
            return redirect(url_for("mine.index"))
    return refused_posts.refuse(form)


@bp.post("/requests/<request_id>/revoke")
@staff_only
def revoke_request(email: str, request_id: str):  # type: ignore[no-untyped-def]
    if not ButtonForm().validate_on_submit():
        abort(400)
    if not upload_requests.revoke(db.session(), settings(), email, request_id, ip=client_ip()):
        abort(404)
    flash(gettext("The request has been revoked: its link no longer works."), "info")
    return redirect(url_for("mine.index"))


@bp.route("/verify", methods=["GET", "POST"])
def verify():  # type: ignore[no-untyped-def]
    if sender_cookie.my_transfers_email() is not None:
        return redirect(url_for("mine.index"))
    if request.method == "GET":
        form = AddressForm(data={"email": session.get(PENDING) or session.get("sender", {}).get("email", "")})
    else:
        form = AddressForm()
    if request.method == "GET":
        return refused_posts.show("mine/verify.html", form)
    if not form.validate_on_submit():
        return refused_posts.refuse(form)
    # The same answer whoever the address is: only its mailbox learns more.
    try:
        verification.send_code(
            db.session(), portal(), form.email.data, browser_id(), str(get_locale()), ip=client_ip(), purpose="mine"
        )
    except verification.ResendTooSoon:
        pass  # a code sent moments ago is still on its way; it serves here too
    except ratelimit.RateLimited as exc:
        form.email.errors.append(retry_message(exc))
        return refused_posts.refuse(form, status=429)
    except MailError:
        form.email.errors.append(str(MAIL_FAILED))
        return refused_posts.refuse(form, status=503)
    session[PENDING] = form.email.data
    return redirect(url_for("mine.code"))


@bp.route("/verify/code", methods=["GET", "POST"])
def code():  # type: ignore[no-untyped-def]
    email = session.get(PENDING)
    if not email:
        return redirect(url_for("mine.verify"))
    form = VerifyForm()
    if request.method == "GET":
        return refused_posts.show("mine/code.html", form, email=email, resend=ButtonForm())
    if form.validate_on_submit():
        try:
            verification.check_code(db.session(), portal(), email, browser_id(), form.code.data, ip=client_ip())
        except verification.CodeRejected as exc:
            form.code.errors.append(code_message(exc))
        else:
            session.pop(PENDING)
            back = session.pop(RETURN_TO, "")
            sender_cookie.open_my_transfers(email)
            my_transfers.opened(db.session(), email, ip=client_ip())
            # Back to the page whose visit found My transfers closed; only ever one of its own.
            index = url_for("mine.index")
            return redirect(back if isinstance(back, str) and back.startswith(index) and local_path(back) == back else index)
    # A wrong code is not shown again.
    return refused_posts.refuse(form, forget=("code",))


@bp.post("/verify/resend")
def resend_code():  # type: ignore[no-untyped-def]
    email = session.get(PENDING)
    if not ButtonForm().validate_on_submit() or not email:
        abort(400)
    try:
        verification.send_code(
            db.session(), portal(), email, browser_id(), str(get_locale()), ip=client_ip(), purpose="mine"
        )
        flash(gettext("A new code has been sent to %(email)s.", email=email), "info")
    except verification.ResendTooSoon as exc:
        flash(gettext("Please wait %(seconds)d seconds before asking for a new code.", seconds=exc.seconds), "error")
    except ratelimit.RateLimited as exc:
        flash(retry_message(exc), "error")
    except MailError:
        flash(str(MAIL_FAILED), "error")
    return redirect(url_for("mine.code"))


@bp.post("/end")
def end():  # type: ignore[no-untyped-def]
    if not ButtonForm().validate_on_submit():
        abort(400)
    sender_cookie.close_my_transfers()
    flash(gettext("You have closed My transfers in this browser."), "info")
    return redirect(url_for("site.index"))


def _render_transfer(transfer: Transfer, expiry_form: ExpiryForm):  # type: ignore[no-untyped-def]
    refusal = refused_posts.restore(expiry_form)
    details = my_transfers.details(db.session(), portal(), transfer)
    # The date picker offers only what the server accepts.
    expiry_form.expires_on.render_kw = {"min": details.earliest.isoformat(), "max": details.latest.isoformat()}
    return render_template(
        "mine/transfer.html", details=details, transfer=transfer, expiry_form=expiry_form, form=ButtonForm(),
    ), *refusal.answer()


@bp.get("/<transfer_id>")
@own_transfer
def transfer(transfer: Transfer):  # type: ignore[no-untyped-def]
    day = transfer.expires_at.astimezone(settings().site.zone).date()
    return _render_transfer(transfer, ExpiryForm(data={"expires_on": day}))


@bp.post("/<transfer_id>/expiry")
@own_transfer
def expiry(transfer: Transfer):  # type: ignore[no-untyped-def]
    form = ExpiryForm()
    if form.validate_on_submit():
        try:
            my_transfers.change_expiry(db.session(), portal(), transfer, form.expires_on.data, ip=client_ip())
        except my_transfers.ExpiryRefused as exc:
            if exc.reason == "past":
                form.expires_on.errors.append(gettext("The expiration date cannot be in the past."))
            else:
                form.expires_on.errors.append(
                    gettext("The expiration date can be at most %(date)s.", date=dates.day(exc.latest))
                )
        else:
            flash(gettext("The transfer is now available until %(date)s.", date=dates.day(transfer.expires_at)), "info")
            return redirect(url_for("mine.transfer", transfer_id=transfer.id))
    return refused_posts.refuse(form, page=url_for("mine.transfer", transfer_id=transfer.id))


@bp.post("/<transfer_id>/resend/<int:recipient_id>")
@own_transfer
def resend(transfer: Transfer, recipient_id: int):  # type: ignore[no-untyped-def]
    """Button actions answer with a redirect, errors too (as a message), so
    that going back never lands on a posted page."""
    if not ButtonForm().validate_on_submit():
        abort(400)
    try:
        recipient = my_transfers.resend(db.session(), portal(), transfer, recipient_id, ip=client_ip())
    except my_transfers.CannotResend:
        flash(gettext("A transfer without a password cannot be notified again: its key was only in the first mail."), "error")
    except transactions.RecipientBudgetExhausted as exc:
        flash(
            gettext("Your daily limit of recipients is reached. Please try again after %(time)s.", time=dates.moment(exc.retry_at)),
            "error",
        )
    except ratelimit.RateLimited as exc:
        flash(gettext(
            "A recipient's notification can be sent again at most %(max)d times a day. You can send it again after %(time)s.",
            max=settings().limits.notification_resends_per_recipient_per_day, time=dates.moment(exc.retry_at),
        ), "error")
    except MailError:
        # Nothing was counted or recorded: the request rolls back.
        db.session().rollback()
        flash(gettext("The mail could not be sent. Please try again in a few minutes."), "error")
    else:
        if recipient is None:
            abort(404)
        flash(gettext("The notification mail has been sent again to %(email)s.", email=recipient.email), "info")
    return redirect(url_for("mine.transfer", transfer_id=transfer.id))


@bp.route("/<transfer_id>/withdraw", methods=["GET", "POST"])
@own_transfer
def withdraw(transfer: Transfer):  # type: ignore[no-untyped-def]
    form = ButtonForm()
    if not form.validate_on_submit():
        return render_template(
            "wizard/withdraw.html", transfer=transfer, form=form,
            action=url_for("mine.withdraw", transfer_id=transfer.id), back=url_for("mine.transfer", transfer_id=transfer.id),
        )
    status.withdraw(db.session(), portal(), transfer, ip=client_ip())
    flash(gettext("The transfer has been withdrawn. The recipients can no longer open it and have been told."), "info")
    return redirect(url_for("mine.index"))


@bp.get("/<transfer_id>/report")
@own_transfer
def report(transfer: Transfer):  # type: ignore[no-untyped-def]
    my_transfers.reported(db.session(), transfer, ip=client_ip())
    details = my_transfers.details(db.session(), portal(), transfer)
    return render_template("mine/report.html", details=details, transfer=transfer, printed_at=utcnow())
