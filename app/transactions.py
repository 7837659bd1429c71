"""Starting a transaction: the draft becomes a transfer, in one DB transaction.

After ``start`` the request commits; only then are the mails sent (a mail
must never point at a transfer that a failed commit left out). A password
that goes by SMS goes before, outside any transaction (``password_texts``).
The draft's server-side key wrapping is deleted with the draft, so from here
on the data key opens only through a key slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode
from email.message import EmailMessage

from flask_babel import force_locale, gettext, ngettext
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from . import (
    audit, dates, drafts, exposed_names, fixed_recipients, keyslots, mails, metrics, password_policy, policy, ratelimit,
    recipient_codes, status, upload_requests, uploads,
)
from .clients import network
from .clock import utcnow
from .crypto.keys import open_text
from .db import after_commit
from .ids import group, new_access_id, new_token
from .models import Draft, KeySlot, Recipient, Transfer
from .portal import Portal
from .sms import SmsError, TextMessage


DAY = timedelta(days=1)
# Co-recipients listed by name in a mail; the rest are counted, so that a
# mail's size does not grow with the number of recipients.
LISTED_RECIPIENTS = 5


class RecipientBudgetExhausted(ratelimit.RateLimited):
    """The sender's recipients for today are used up; ``left`` can still be sent to."""

    def __init__(self, retry_at: datetime, allowed: int, left: int, wanted: int) -> None:
        super().__init__(retry_at)
        self.allowed, self.left, self.wanted = allowed, left, wanted


class NotReady(Exception):
    """A step of the wizard is missing; ``step`` names the first one."""

    def __init__(self, step: str) -> None:
        super().__init__(step)
        self.step = step


@dataclass
class Started:
    transfer: Transfer
    file_names: list[str]
    generated_password: str | None
    status_link: str
    mails: list[EmailMessage] = field(default_factory=list)


class PasswordNotSent(Exception):
    """The SMS gateway did not take a recipient's password: the transfer must not start."""


def first_missing_step(draft: Draft, sender_verified: bool, before: str | None = None) -> str | None:
    """The first wizard step the draft still lacks, or None when complete;
    only the steps before ``before``, when given (each upload chunk asks
    about the files step, and need not load the draft's files for it)."""
    done = (
        ("personal", lambda: bool(draft.sender_name and draft.sender_phone and draft.sender_email)),
        ("verify", lambda: sender_verified),
        ("recipients", lambda: bool(draft.to_addresses)),
        ("files", lambda: bool(draft.files) or draft.message_ct is not None),
        ("options", lambda: draft.options_saved and not (draft.password_mode == "manual" and not draft.pending_slot)),
        ("notification", lambda: draft.subject is not None and draft.body is not None),
    )
    for step, is_done in done:
        if step == before:
            return None
        if not is_done():
            return step
    return None


def expiry_instant(portal: Portal, day: date) -> datetime:
    """A transfer stays available through the whole of its expiration day, local time."""
    zone = portal.settings.site.zone
    return datetime.combine(day, time(23, 59, 59), tzinfo=zone)


def default_subject(file_count: int, sender_name: str, language: str) -> str:
    with force_locale(language):
        if file_count == 0:
            return gettext("Confidential message from %(name)s", name=sender_name)
        return gettext("Files (%(count)d) from %(name)s", count=file_count, name=sender_name)


def default_body(portal: Portal, draft: Draft, language: str) -> str:
    with force_locale(language):
        return gettext(
            "Dear Sir or Madam,\n\n"
            "%(name)s has sent you confidential data. You can download it until %(date)s. "
            "After the expiration date the data is deleted from the server automatically.\n\n"
            "The transfer is encrypted.",
            name=draft.sender_name,
            date=dates.day(draft.expires_on),
        )


def start(
    db: Session, portal: Portal, draft: Draft, sender_language: str, ip: str = "", now: datetime | None = None,
    texts_sent: Sequence[TextMessage] = (),
) -> Started:
    """The draft becomes the transfer. Where the rules send the generated
    password by SMS, ``texts_sent`` are the texts that went out
    (``password_texts``): the transfer starts only if they carried its
    password to every recipient, else NotReady (the step to try again)."""
    now = now or utcnow()
    if (missing := first_missing_step(draft, sender_verified=True)) is not None:
        raise NotReady(missing)
    assert draft.expires_on is not None and draft.subject is not None and draft.body is not None
    # A portal's or request's recipients as they are now, whatever the draft's
    # row says; fixed_recipients.Gone once the portal or request is no more.
    source = fixed_recipients.refresh(db, portal.settings, draft, now)
    decision = policy.decide(portal.settings, draft.sender_email, drafts.recipients(draft), sender_language, source)
    if (missing := policy_problem(draft, decision, now, portal)) is not None:
        raise NotReady(missing)
    by_sms = decision.limits.password_by_sms and draft.password_mode == "generate"
    sms_password = drafts.sms_password(draft) if by_sms else None
    if by_sms and (sms_password is None or not set(_password_texts(portal, draft, sms_password)) <= set(texts_sent)):
        # The recipients or their numbers changed (in another tab) after the texts went out.
        raise NotReady("notification")
    # The request is used last, with the limits: a start refused answers the
    # sender with a page (which commits), and must leave the request open.
    with db.begin_nested():
        _count_against_limits(db, portal, draft, ip, now)
        if draft.request_id is not None and not upload_requests.consume(
            db, portal.settings, draft.request_id, draft.transfer_id, draft.sender_email, ip, now
        ):
            # Used by another transfer since the refresh above; nothing counted.
            raise fixed_recipients.Gone("request")
    dek = drafts.data_key(draft)
    file_names = [open_text(dek, "name", f.id, f.name_ct) for f in draft.files]
    status_token = new_token()
    transfer = Transfer(
        status_token_hash=status.token_hash(status_token),
        manifest_ct=status.seal_manifest(
            status_token, draft.transfer_id,
            [{"id": f.id, "name": n, "size": f.size} for f, n in zip(draft.files, file_names)],
        ),
        reply_to_id=draft.reply_to_id,
        id=draft.transfer_id,
        created_at=now,
        expires_at=expiry_instant(portal, draft.expires_on),
        sender_name=draft.sender_name,
        sender_phone=draft.sender_phone,
        sender_email=draft.sender_email,
        language=draft.recipient_language,
        sender_language=sender_language,
        subject=draft.subject,
        body=draft.body,
        message_ct=draft.message_ct,
        password_mode=draft.password_mode,
        notify_confirmation=draft.notify_confirmation,
        notify_retrieval=draft.notify_retrieval,
        expose_filenames=draft.expose_filenames,
        file_count=len(draft.files),
        total_bytes=drafts.total_bytes(draft),
        recipient_verification=draft.recipient_verification,
        password_by_sms=by_sms,
    )
    db.add(transfer)
    for kind, addresses in (("to", draft.to_addresses), ("cc", draft.cc_addresses), ("bcc", draft.bcc_addresses)):
        for address in addresses:
            transfer.recipients.append(Recipient(email=address, kind=kind, access_id=new_access_id()))
    db.flush()  # recipient ids, for the link slots and the sealed numbers
    numbers = drafts.mobiles(draft) if transfer.recipient_verification == "sms" or transfer.password_by_sms else {}
    for recipient in transfer.recipients:
        if recipient.email in numbers:
            recipient.mobile_ct = recipient_codes.seal_mobile(dek, transfer.id, recipient.id, numbers[recipient.email])
    if transfer.expose_filenames:
        exposed_names.keep(db, portal, transfer.id, file_names)

    generated: str | None = None
    link_secrets: dict[int, str] = {}
    slots: list[tuple[keyslots.SlotData, int | None]] = []
    if draft.password_mode == "manual":
        assert draft.pending_slot is not None
        slots.append((keyslots.SlotData.from_json(draft.pending_slot), None))
    elif draft.password_mode == "generate":
        generated = sms_password or password_policy.generate(portal.settings.password)
        params = keyslots.params_from(portal.settings.crypto)
        with portal.argon2_gate.slot():
            slots.append((keyslots.password_slot(dek, transfer.id, generated, params), None))
    else:
        for recipient in transfer.recipients:
            link_secrets[recipient.id] = new_token()
            slots.append((keyslots.link_slot(dek, transfer.id, link_secrets[recipient.id]), recipient.id))
    for slot, recipient_id in slots:
        transfer.slots.append(
            KeySlot(id=slot.id, recipient_id=recipient_id, kind=slot.kind, kdf=slot.kdf, salt=slot.salt, wrapped_dek=slot.wrapped_dek)
        )

    for stored in list(draft.files):
        stored.draft = None
        stored.transfer = transfer
    # An upload begun since the check above (in another tab) is not part of it.
    for key in [u.blob_key for u in draft.uploads]:
        after_commit(db, lambda key=key: portal.store.delete(key))
    db.delete(draft)
    audit.record(
        db, "transfer_created", transfer_id=transfer.id, actor=transfer.sender_email, ip=ip, now=now,
        recipients=[{"email": r.email, "kind": r.kind} for r in transfer.recipients],
        file_count=transfer.file_count, total_bytes=transfer.total_bytes, password_mode=transfer.password_mode,
        reply_to=transfer.reply_to_id, portal=draft.portal_slug, request=draft.request_id,
    )
    after_commit(db, metrics.TRANSFERS_STARTED.inc)
    started = Started(transfer, file_names, generated, status.link(portal, status_token))
    started.mails = _notification_mails(portal, transfer, file_names, link_secrets, draft.request_id is not None)
    if transfer.notify_confirmation:
        started.mails.append(_confirmation_mail(portal, transfer, file_names, started.status_link))
    return started


def password_texts(
    db: Session, portal: Portal, draft: Draft, sender_language: str, ip: str = "", now: datetime | None = None,
) -> list[TextMessage]:
    """Where the rules send the generated password by SMS: the text for each
    recipient, to go out before the transfer starts; else none.

    The transfer must not start unless every text went out: otherwise a
    recipient is told of a transfer they cannot open. But the texts must not
    go out during the transaction that starts it either: an SMS gateway may
    take up to its timeout per text, and meanwhile SQLite's one write lock
    would make every other request that writes wait longer than its busy
    wait, and fail. So the caller commits what this wrote, then sends the
    texts (``send_passwords``), and then ``start`` makes the transfer with
    the password they carried.

    What this writes is the password, made at the first try and kept in the
    draft, sealed under its key: a second click, or a try after a gateway
    failure, sends the same one, never one that differs from what some
    recipients already hold. A draft ``start`` would refuse (the steps, the
    rules, the day's limits: NotReady, RateLimited,
    RecipientBudgetExhausted) is refused here first, so that no text goes
    out for it. Texts that go out again spend the day's recipient budgets,
    as a notification sent again does: else a sender whose texts the gateway
    takes for some numbers and refuses for one could text the others again
    at every click, none of it counted. StaleDataError when the draft is
    gone: started meanwhile.
    """
    now = now or utcnow()
    if (missing := first_missing_step(draft, sender_verified=True, before="notification")) is not None:
        raise NotReady(missing)
    source = fixed_recipients.of(db, portal.settings, draft, now)
    decision = policy.decide(portal.settings, draft.sender_email, drafts.recipients(draft), sender_language, source)
    if not (decision.limits.password_by_sms and draft.password_mode == "generate"):
        return []
    if (missing := policy_problem(draft, decision, now, portal)) is not None:
        raise NotReady(missing)
    trial = db.begin_nested()
    try:
        _count_against_limits(db, portal, draft, ip, now)
    finally:
        trial.rollback()
    if draft.sms_password_ct is not None:
        with db.begin_nested():
            charge_recipients(db, portal, draft.sender_email, len(drafts.recipients(draft)), ip, now)
    password = drafts.keep_sms_password(db, draft, lambda: password_policy.generate(portal.settings.password))
    if password is None:
        raise StaleDataError(f"draft {draft.id} is gone")
    return _password_texts(portal, draft, password)


def _password_texts(portal: Portal, draft: Draft, password: str) -> list[TextMessage]:
    numbers = drafts.mobiles(draft)
    with force_locale(draft.recipient_language):
        text = gettext(
            "%(site)s: the password for the files from %(name)s is %(password)s. The transaction ID comes by email.",
            site=portal.settings.site.name, name=draft.sender_name, password=password,
        )
    # One text per phone: the numbers are the sender's to type, and one
    # number given for every recipient must not make one click a flood.
    return [TextMessage(number, text) for number in dict.fromkeys(numbers[a] for a in drafts.recipients(draft))]


def send_passwords(portal: Portal, texts: Sequence[TextMessage]) -> None:
    """The texts of ``password_texts``, with no database transaction open;
    PasswordNotSent unless the gateway took every one."""
    assert portal.sms is not None  # the settings allow password_by_sms only with a gateway
    try:
        for message in texts:
            portal.sms.send(message)
    except SmsError as exc:
        raise PasswordNotSent(str(exc)) from exc


def _count_against_limits(db: Session, portal: Portal, draft: Draft, ip: str, now: datetime) -> None:
    """One transfer, and each of its recipients, against the daily limits.

    Counted per mailbox (``mallory+1@`` and ``mallory+2@`` are one sender),
    and the recipients also per client network, so that fresh addresses from
    one network do not multiply the budget. In a savepoint, so that a
    refused start counts against none of them.
    """
    limits = portal.settings.limits
    with db.begin_nested():
        ratelimit.hit(db, "transactions-sender", mailbox(draft.sender_email), limits.transactions_per_sender_per_day, DAY, now)
        charge_recipients(db, portal, draft.sender_email, len(drafts.recipients(draft)), ip, now)


def charge_recipients(db: Session, portal: Portal, sender_email: str, wanted: int, ip: str, now: datetime) -> None:
    """``wanted`` more mails to recipients against the sender's and the
    network's daily budgets (a new transfer's, or a notification sent
    again), or RecipientBudgetExhausted."""
    limits, sender = portal.settings.limits, mailbox(sender_email)
    budgets = [("recipients-sender", sender, limits.recipients_per_sender_per_day)]
    if ip:
        budgets.append(("recipients-network", network(ip), limits.recipients_per_ip_per_day))
    for limit, subject, budget in budgets:
        try:
            ratelimit.hit(db, limit, subject, budget, DAY, now, n=wanted)
        except ratelimit.RateLimited as exc:
            used_before = ratelimit.count(db, limit, subject, DAY, now) - wanted
            raise RecipientBudgetExhausted(exc.retry_at, budget, max(0, budget - used_before), wanted) from None


def mailbox(address: str) -> str:
    """The mailbox an address delivers to, for counting: without a "+tag"
    in the local part (``jan+x@zorg.nl`` is ``jan@zorg.nl``)."""
    local, at, domain = address.lower().rpartition("@")
    return f"{local.split('+', 1)[0] or local}{at}{domain}"


def reply_link(portal: Portal, transfer: Transfer, recipient: Recipient) -> str:
    """Opens the wizard prefilled to answer; it grants nothing by itself."""
    token = URLSafeSerializer(portal.server_secret, salt="koerier/reply/v1").dumps([transfer.id, recipient.id])
    return f"{portal.settings.site.base_url.rstrip('/')}/send/reply/{token}"


def reply_origin(db: Session, portal: Portal, token: str, now: datetime | None = None) -> Recipient | None:
    """The recipient a reply link was made for, while their transfer lasts."""
    try:
        transfer_id, recipient_id = URLSafeSerializer(portal.server_secret, salt="koerier/reply/v1").loads(token)
    except (BadSignature, ValueError, TypeError):
        return None
    recipient = db.get(Recipient, recipient_id)
    if recipient is None or recipient.transfer_id != transfer_id or recipient.transfer.expires_at <= (now or utcnow()):
        return None
    return recipient


def download_link(portal: Portal, recipient: Recipient, link_secret: str | None) -> str:
    """The recipient's link. A no-password link carries its secret after "#":
    browsers never send the fragment, so it reaches no access log, proxy or
    server; the page's script posts it (see app/static/js/link.js)."""
    link = f"{portal.settings.site.base_url.rstrip('/')}/download/?{urlencode({'id': group(recipient.access_id)})}"
    return f"{link}#{urlencode({'key': link_secret})}" if link_secret else link


def _notification_mails(
    portal: Portal, transfer: Transfer, file_names: list[str], link_secrets: dict[int, str], answers_request: bool
) -> list[EmailMessage]:
    return [
        notification_mail(portal, transfer, recipient, file_names, link_secrets.get(recipient.id), answers_request)
        for recipient in transfer.recipients
    ]


def notification_mail(
    portal: Portal, transfer: Transfer, recipient: Recipient, file_names: list[str], link_secret: str | None,
    answers_request: bool = False,
) -> EmailMessage:
    """One recipient's notification; never the password, which the server does not know.
    ``answers_request``: the transfer answers the recipient's upload request,
    which this mail tells them is fulfilled."""
    # Bcc recipients get their own mail like everyone else, and are listed in nobody's.
    visible = [r for r in transfer.recipients if r.kind != "bcc"]
    text, html = mails.render(
        "notification",
        transfer.language,
        transfer=transfer,
        recipient=recipient,
        access_id=group(recipient.access_id),
        link=download_link(portal, recipient, link_secret),
        link_key=link_secret,
        reply_link=reply_link(portal, transfer, recipient),
        listed=visible[:LISTED_RECIPIENTS],
        unlisted=max(0, len(visible) - LISTED_RECIPIENTS),
        file_names=file_names if transfer.expose_filenames else [],
        site=portal.settings.site,
        answers_request=answers_request,
    )
    return mails.compose(
        portal.settings, recipient.email, transfer.subject, text, html,
        reply_to=(transfer.sender_name, transfer.sender_email),
    )


def _confirmation_mail(portal: Portal, transfer: Transfer, file_names: list[str], status_link: str) -> EmailMessage:
    """The receipt. Mail travels in clear, to the sender too: it names the
    files only when the sender chose to show file names in the mails."""
    language = transfer.sender_language
    text, html = mails.render(
        "confirmation",
        language,
        transfer=transfer,
        files=list(zip(file_names, [f.size for f in transfer.files])) if transfer.expose_filenames else [],
        listed=transfer.recipients[:LISTED_RECIPIENTS],
        unlisted=max(0, len(transfer.recipients) - LISTED_RECIPIENTS),
        status_link=status_link,
        site=portal.settings.site,
    )
    with force_locale(language):
        subject = ngettext(
            "Your transfer to %(num)d recipient has been sent",
            "Your transfer to %(num)d recipients has been sent",
            len(transfer.recipients),
        )
    return mails.compose(portal.settings, transfer.sender_email, subject, text, html)


def expiry_range(portal: Portal, now: datetime, max_days: int) -> tuple[date, date]:
    """The first and the last expiration day a sender may choose now."""
    today = now.astimezone(portal.settings.site.zone).date()
    return today, today + timedelta(days=max_days)


def expiry_problem(portal: Portal, day: date, now: datetime, max_days: int) -> str | None:
    """Why an expiration date is not allowed ("past", "too_late"), or None."""
    earliest, latest = expiry_range(portal, now, max_days)
    if day < earliest:
        return "past"
    if day > latest:
        return "too_late"
    return None


def policy_problem(draft: Draft, decision: policy.Decision, now: datetime, portal: Portal) -> str | None:
    """The first step whose entries the operator's rules no longer allow.

    Checked again at the commit: recipients may have changed after the files
    and options were chosen under more generous rules.
    """
    limits = decision.limits
    if not decision.allowed:
        return "recipients"
    if files_problems(portal, draft, limits):
        return "files"
    if limits.confidential_message == "required" and draft.message_ct is None:
        return "files"
    if limits.confidential_message == "forbidden" and draft.message_ct is not None:
        return "files"
    if draft.password_mode not in limits.password_modes:
        return "options"
    # A portal's or request's sender cannot give the recipients' mobile numbers.
    sms = portal.sms is not None and not fixed_recipients.fixed(draft)
    if draft.recipient_verification not in limits.verifications(sms):
        return "options"
    if (draft.recipient_verification == "sms" or limits.password_by_sms) and drafts.without_mobile(draft):
        return "recipients"
    if draft.expires_on is None or expiry_problem(portal, draft.expires_on, now, limits.max_expiry_days):
        return "options"
    for key, chosen in (("expose_filenames", draft.expose_filenames), ("retrieval_notice", draft.notify_retrieval)):
        toggle = getattr(limits, key)
        if policy.Limits.fixed(toggle) and chosen != policy.Limits.default_on(toggle):
            return "options"
    return None


def files_problems(portal: Portal, draft: Draft, limits: policy.Limits) -> list[tuple[str, str]]:
    """(file name, problem) for files the limits do not allow: "extension", "count", "size";
    "unfinished" for uploads not complete yet; "unchecked" for files that the
    limits require scanned and that no scan has let in (``uploads.screen_files``)."""
    views = drafts.files(draft)
    problems = [(f.name, "unfinished") for f in drafts.unfinished(draft)]
    problems += [(f.name, "extension") for f in views if not limits.extension_allowed(f.name)]
    problems += [(f.name, "unchecked") for f in views if not uploads.admitted(portal, limits, f.scanned)]
    if len(views) > limits.max_files:
        problems += [(f.name, "count") for f in views[limits.max_files :]]
    if sum(f.size for f in views) > limits.max_total_bytes:
        problems.append(("", "size"))
    return problems
