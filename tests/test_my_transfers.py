"""My transfers, through HTTP: a sender verifies their address with a code and
sees, withdraws, extends, notifies again and reports on what they sent, and
nothing of anybody else's."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from app import db, purge
from app.clock import utcnow
from app.models import Event, ExposedNames, Transfer

from .mailbox import Mailbox
from .walker import BASE, PASSWORD, Browser, Person, Recipient, Sender, text_of

CONTENT = b"%PDF-1.4 MY-TRANSFERS-CONTENT-5b1e"
MESSAGE = "MY-TRANSFERS-MESSAGE-9c3d"
JAN, PIET = "jan@zorg.example", "piet@zorg.example"


class Owner(Browser):
    """A browser that opens My transfers for ``email`` with the mailed code."""

    def __init__(self, app: Flask, mailbox: Mailbox, email: str = JAN) -> None:
        super().__init__(app)
        self.mailbox, self.email = mailbox, email

    def verify(self) -> TestResponse:
        asked = self.submit("/mine/verify", {"email": self.email})
        assert asked.status_code == 302 and asked.location.endswith("/mine/verify/code"), text_of(asked)
        done = self.submit("/mine/verify/code", {"code": self.mailbox.code_for(self.email)})
        assert done.status_code == 302 and done.location.endswith("/mine/"), text_of(done)
        return done

    def act(self, transfer_id: str, action: str, page: str | None = None, **data: str) -> TestResponse:
        """Post one of the transfer page's forms (with the token a page of this browser carries)."""
        return self.submit(f"/mine/{transfer_id}/{action}", data, page=page or "/mine/")


def send(app: Flask, mailbox: Mailbox, subject: str, email: str = JAN, to: str = "anna@gemeente.example",
         files=(("verslag.pdf", CONTENT),), message: str = "", **options: str) -> str:
    """A whole transaction with its own subject; returns the transfer's id."""
    sender = Sender(app, mailbox, Person(email=email))
    sender.mailbox.clear()
    sender.personal()
    sender.verify()
    assert sender.recipients(to).status_code == 302
    assert sender.files(list(files), message).status_code == 302
    assert sender.options(**options).status_code == 302
    assert sender.notification(subject=subject).status_code == 200
    return transfer_id(app, subject)


def transfer_id(app: Flask, subject: str) -> str:
    # A session of its own, closed at once: on PostgreSQL a session left open
    # holds a connection until the garbage collector finds it.
    with db.new_session(app) as session:
        return session.scalars(select(Transfer.id).where(Transfer.subject == subject)).one()


def transfer(app: Flask, id_: str) -> Transfer | None:
    with app.app_context():
        return db.session().get(Transfer, id_)


def events(app: Flask, kind: str) -> list[Event]:
    with db.new_session(app) as session:
        return list(session.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def test_a_verified_sender_sees_their_own_transfers_and_no_others(app, mailbox) -> None:
    send(app, mailbox, "Dossier Jan een")
    send(app, mailbox, "Dossier Jan twee", to="kees@gemeente.example, anna@gemeente.example")
    send(app, mailbox, "Dossier Piet", email=PIET)
    owner = Owner(app, mailbox)
    owner.verify()
    code_mail = mailbox.last_to(JAN).text
    assert "You asked to see the transfers you sent" in code_mail and "start a transaction" not in code_mail
    page = text_of(owner.get("/mine/"))
    assert "Dossier Jan een" in page and "Dossier Jan twee" in page
    assert "Dossier Piet" not in page
    assert "kees@gemeente.example and 1 other" in page
    assert [e.actor for e in events(app, "my_transfers_opened")] == [JAN]


def test_without_a_verified_address_every_page_leads_to_the_verify_step(app, mailbox) -> None:
    id_ = send(app, mailbox, "Dossier")
    stranger = Browser(app)
    for path in ("/mine/", f"/mine/{id_}", f"/mine/{id_}/report", f"/mine/{id_}/withdraw"):
        answer = stranger.get(path)
        assert answer.status_code == 302 and answer.location.endswith("/mine/verify"), path
    page = stranger.get("/mine/verify").get_data(as_text=True)
    answer = stranger.post(f"/mine/{id_}/withdraw", data={"csrf_token": re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)})
    assert answer.status_code == 302 and answer.location.endswith("/mine/verify")
    assert transfer(app, id_) is not None
    # A code works only in the browser that asked for it.
    Browser(app).submit("/mine/verify", {"email": JAN})
    code = mailbox.code_for(JAN)
    other = Browser(app)
    other.submit("/mine/verify", {"email": JAN})
    refused = other.submit("/mine/verify/code", {"code": code})
    assert refused.status_code == 422 and "not correct" in text_of(refused)
    assert other.get("/mine/").location.endswith("/mine/verify")


def test_asking_for_a_code_tells_nothing_about_the_address(app, mailbox) -> None:
    send(app, mailbox, "Dossier")
    answers = {}
    for email in (JAN, "nobody@zorg.example"):
        visitor = Browser(app)
        answer = visitor.submit("/mine/verify", {"email": email})
        code_page = re.sub(r'value="[^"]+"', "", text_of(visitor.get("/mine/verify/code")).replace(email, "ADDRESS"))
        answers[email] = (answer.status_code, answer.location, code_page)
        assert "You asked to see the transfers you sent" in mailbox.last_to(email).text
    assert answers[JAN] == answers["nobody@zorg.example"]
    # An address that sent nothing sees an empty list, like anyone with no transfers left.
    nobody = Owner(app, mailbox, "nobody@zorg.example")
    nobody.verify()
    assert "There are no transfers from this address" in text_of(nobody.get("/mine/"))


def test_another_addresss_transfer_is_neither_shown_nor_changed_by_its_id(app, mailbox) -> None:
    """IDOR: Piet, verified, uses the ids of Jan's transfer in every URL."""
    id_ = send(app, mailbox, "Dossier Jan")
    before = transfer(app, id_)
    recipient_id = before.recipients[0].id
    piet = Owner(app, mailbox, PIET)
    piet.verify()
    mailbox.clear()
    unknown = "00000000-0000-4000-8000-000000000000"
    for path in ("/mine/{}", "/mine/{}/report", "/mine/{}/withdraw"):
        answer = piet.get(path.format(id_))
        # The same answer as for an id that does not exist.
        assert answer.status_code == 404, path
        assert text_of(answer).replace(id_, unknown) == text_of(piet.get(path.format(unknown))), path
    tomorrow = (date.today() + timedelta(days=2)).isoformat()
    for action, data in (("withdraw", {}), ("expiry", {"expires_on": tomorrow}), (f"resend/{recipient_id}", {})):
        assert piet.act(id_, action, **data).status_code == 404, action
    after = transfer(app, id_)
    assert after is not None and after.expires_at == before.expires_at
    assert mailbox.to("anna@gemeente.example") == []
    assert events(app, "transfer_report_viewed") == [] and events(app, "notification_resent") == []


def test_a_recipient_of_another_transfer_cannot_be_notified_through_ones_own(app, mailbox) -> None:
    mine = send(app, mailbox, "Dossier Jan")
    theirs = send(app, mailbox, "Dossier Piet", email=PIET, to="kees@gemeente.example")
    owner = Owner(app, mailbox)
    owner.verify()
    mailbox.clear()
    assert owner.act(mine, f"resend/{transfer(app, theirs).recipients[0].id}").status_code == 404
    assert mailbox.to("kees@gemeente.example") == []


def test_withdraw_from_my_transfers(app, mailbox) -> None:
    id_ = send(app, mailbox, "Verkeerd verstuurd")
    owner = Owner(app, mailbox)
    owner.verify()
    confirm = text_of(owner.get(f"/mine/{id_}/withdraw"))
    assert "cannot be undone" in confirm
    done = owner.act(id_, "withdraw", page=f"/mine/{id_}/withdraw")
    assert done.status_code == 302 and done.location.endswith("/mine/")
    assert transfer(app, id_) is None
    assert "Withdrawn: Verkeerd verstuurd" in mailbox.last_to("anna@gemeente.example").message["Subject"]
    page = text_of(owner.get("/mine/"))
    assert "has been withdrawn" in page and "Verkeerd verstuurd" not in page
    assert [e.transfer_id for e in events(app, "transfer_withdrawn")] == [id_]


def test_the_expiration_date_moves_within_the_senders_rule(make_app, mailbox) -> None:
    """Up to the rule's maximum counted from the day it was sent, never before today."""
    app = make_app({"rules": [{"name": "jan", "senders": [JAN], "recipients": ["*"], "max_expiry_days": 10}]})
    id_ = send(app, mailbox, "Dossier")
    owner = Owner(app, mailbox)
    owner.verify()
    sent = transfer(app, id_).created_at.astimezone(app.config["KOERIER"].site.zone).date()
    today, latest = sent, sent + timedelta(days=10)  # the test runs on the day it sent
    page = owner.get(f"/mine/{id_}").get_data(as_text=True)
    assert f'min="{today.isoformat()}"' in page and f'max="{latest.isoformat()}"' in page

    too_late = owner.act(id_, "expiry", page=f"/mine/{id_}", expires_on=(latest + timedelta(days=1)).isoformat())
    assert too_late.status_code == 422 and "can be at most" in text_of(too_late)
    past = owner.act(id_, "expiry", page=f"/mine/{id_}", expires_on=(today - timedelta(days=1)).isoformat())
    assert past.status_code == 422 and "cannot be in the past" in text_of(past)
    # Refused, the typed date is still in the field.
    assert f'value="{(today - timedelta(days=1)).isoformat()}"' in past.get_data(as_text=True)
    assert events(app, "transfer_expiry_changed") == []

    for day in (latest, today):
        moved = owner.act(id_, "expiry", page=f"/mine/{id_}", expires_on=day.isoformat())
        assert moved.status_code == 302, text_of(moved)
        expires = transfer(app, id_).expires_at.astimezone(app.config["KOERIER"].site.zone)
        assert (expires.date(), expires.hour, expires.minute) == (day, 23, 59)
    assert "now available until" in text_of(owner.get(f"/mine/{id_}"))
    assert len(events(app, "transfer_expiry_changed")) == 2


def test_the_notification_is_sent_again_as_it_was_without_the_password(app, mailbox) -> None:
    id_ = send(app, mailbox, "Dossier", to="anna@gemeente.example, kees@gemeente.example")
    first = mailbox.last_to("anna@gemeente.example")
    owner = Owner(app, mailbox)
    owner.verify()
    anna = transfer(app, id_).recipients[0]
    mailbox.clear()
    for _ in range(3):  # limits.notification_resends_per_recipient_per_day
        answer = owner.act(id_, f"resend/{anna.id}", page=f"/mine/{id_}")
        assert answer.status_code == 302
    assert "sent again to anna@gemeente.example" in text_of(owner.get(f"/mine/{id_}"))
    again = mailbox.to("anna@gemeente.example")
    assert len(again) == 3 and mailbox.to("kees@gemeente.example") == []
    mail = again[-1]
    assert mail.message["Subject"] == first.message["Subject"] == "Dossier"
    assert mail.text == first.text
    assert PASSWORD not in mail.text and PASSWORD not in mail.html
    assert "verslag.pdf" not in mail.text

    refused = owner.act(id_, f"resend/{anna.id}", page=f"/mine/{id_}")
    assert refused.status_code == 302
    assert "can be sent again at most 3 times a day" in text_of(owner.get(f"/mine/{id_}"))
    assert len(mailbox.to("anna@gemeente.example")) == 3
    resent = events(app, "notification_resent")
    assert len(resent) == 3 and {e.data["recipient"] for e in resent} == {"anna@gemeente.example"}
    # The page shows when each was notified: the first mail and three more.
    row = text_of(owner.get(f"/mine/{id_}")).split("anna@gemeente.example")[1].split("</tr>")[0]
    assert row.split("</td>")[1].count("<br>") == 3


def test_a_generated_password_is_never_shown_or_sent_again(app, mailbox) -> None:
    sent = Sender(app, mailbox).send(password_mode="generate", password=None, password_repeat=None)
    id_ = transfer_id(app, "Files (1) from Jan de Vries")
    owner = Owner(app, mailbox)
    owner.verify()
    for path in (f"/mine/{id_}", f"/mine/{id_}/report"):
        assert sent.generated_password not in owner.get(path).get_data(as_text=True)
    mailbox.clear()
    assert owner.act(id_, f"resend/{transfer(app, id_).recipients[0].id}", page=f"/mine/{id_}").status_code == 302
    mail = mailbox.last_to("anna@gemeente.example")
    assert "Password: contact the sender" in mail.text
    assert sent.generated_password not in mail.text and sent.generated_password not in mail.html


def test_the_transfer_page_names_the_recipients_extra_check(make_app, mailbox) -> None:
    app = make_app({"transfer": {"recipient_verification_choice": True}})
    coded = send(app, mailbox, "Met code", recipient_verification="email")
    plain = send(app, mailbox, "Zonder code", recipient_verification="none")
    owner = Owner(app, mailbox)
    owner.verify()
    page = text_of(owner.get(f"/mine/{coded}"))
    assert "<dt>Extra check for the recipients</dt><dd>A one-time code to the recipient's email address</dd>" in page
    assert "Extra check for the recipients" not in text_of(owner.get(f"/mine/{plain}"))


def test_a_no_password_transfer_cannot_be_notified_again(app, mailbox) -> None:
    id_ = send(app, mailbox, "Dossier", password_mode="none", password=None, password_repeat=None)
    owner = Owner(app, mailbox)
    owner.verify()
    page = text_of(owner.get(f"/mine/{id_}"))
    assert "cannot be sent again" in page and "Send again" not in page
    mailbox.clear()
    answer = owner.act(id_, f"resend/{transfer(app, id_).recipients[0].id}", page=f"/mine/{id_}")
    assert answer.status_code == 302
    assert "cannot be notified again" in text_of(owner.get(f"/mine/{id_}"))
    assert mailbox.to("anna@gemeente.example") == []
    assert events(app, "notification_resent") == []


@pytest.mark.parametrize("expose", [False, True])
def test_the_report_says_who_opened_what_with_names_only_where_allowed(app, mailbox, expose: bool) -> None:
    options = {"expose_filenames": "y"} if expose else {}
    files = [("verslag.pdf", CONTENT), ("foto.jpg", b"\xff\xd8 photo" * 50)]
    id_ = send(app, mailbox, "Dossier", to="anna@gemeente.example, kees@gemeente.example", files=files,
               message=MESSAGE, **options)
    access_id = mailbox.access_id_for("anna@gemeente.example")
    anna = Recipient(app)
    anna.unlock(access_id, PASSWORD)
    anna.get(anna.file_links()["verslag.pdf"])
    owner = Owner(app, mailbox)
    owner.verify()
    answer = owner.get(f"/mine/{id_}/report")
    assert answer.status_code == 200
    report = text_of(answer)
    assert "Jan de Vries" in report and "anna@gemeente.example" in report and "kees@gemeente.example" in report
    anna_row = report.split("anna@gemeente.example")[1].split("</tr>")[0]
    kees_row = report.split("kees@gemeente.example")[1].split("</tr>")[0]
    assert "Not yet" not in anna_row and "Nothing yet" not in anna_row
    assert ("verslag.pdf" if expose else "File 1") in anna_row and "foto.jpg" not in anna_row
    assert "Not yet" in kees_row and "Nothing yet" in kees_row
    assert ("verslag.pdf" in report) is expose and ("foto.jpg" in report) is expose
    assert "MY-TRANSFERS-CONTENT" not in report and MESSAGE not in report
    assert "Confidential message" in report
    # Transaction IDs open transfers with the password: a printed report leaves them out.
    assert access_id not in report
    assert [e.transfer_id for e in events(app, "transfer_report_viewed")] == [id_]
    # Only a transfer that shows names in its mails leaves them where the server can read them.
    with app.app_context():
        kept = db.session().scalar(select(func.count()).select_from(ExposedNames))
    assert kept == (1 if expose else 0)


def test_the_report_prints_without_navigation(app, mailbox) -> None:
    id_ = send(app, mailbox, "Dossier")
    owner = Owner(app, mailbox)
    owner.verify()
    page = owner.get(f"/mine/{id_}/report").get_data(as_text=True)
    assert re.search(r'<link rel="stylesheet" href="/static/print.css" media="print">', page)
    css = owner.get("/static/print.css").get_data(as_text=True)
    hidden = re.search(r"^(.*)\{ display: none !important; \}", css, re.M).group(1)
    assert {".top", ".bottom", "nav", ".no-print"} <= {s.strip() for s in hidden.split(",")}


def test_exposed_names_go_with_their_transfer(app, mailbox) -> None:
    id_ = send(app, mailbox, "Dossier", expose_filenames="y")
    owner = Owner(app, mailbox)
    owner.verify()
    assert "verslag.pdf" in text_of(owner.get(f"/mine/{id_}"))
    with app.app_context():
        purge.run(lambda: db.new_session(app), app.extensions["koerier"], utcnow() + timedelta(days=40))
    with db.new_session(app) as session:
        assert session.scalar(select(func.count()).select_from(ExposedNames)) == 0


def test_a_reloaded_summary_still_leads_to_the_transfer(app, mailbox) -> None:
    """Defect 4: without the confirmation mail, the status link was only on the
    first summary; a reload must still say where to find the transfer."""
    sender = Sender(app, mailbox)
    sent = sender.send(notify_confirmation=None)
    assert "/send/status/" in sent.summary.get_data(as_text=True)
    reloaded = sender.get("/send/done")
    assert reloaded.status_code == 200
    page = reloaded.get_data(as_text=True)
    assert "/send/status/" not in page
    assert 'href="/mine/"' in page and "My transfers" in text_of(reloaded)
    # The names are gone (encrypted), and the page says why; the files are counted.
    assert "verslag.pdf" not in page and "File 1 (" in text_of(reloaded)
    assert "The file names were shown once" in text_of(reloaded)
    # The code entered in the wizard opens it for a while, without another.
    listed = sender.get("/mine/")
    assert listed.status_code == 200 and "Files (1) from Jan de Vries" in text_of(listed)
    # Every page links to it.
    assert 'href="/mine/"' in Browser(app).get("/").get_data(as_text=True)


def test_my_transfers_closes_after_its_time_and_on_request(make_app, mailbox) -> None:
    app = make_app({"verification": {"my_transfers_minutes": 5, "remember_days": 30}})
    id_ = send(app, mailbox, "Dossier")
    owner = Owner(app, mailbox)
    owner.verify()
    assert owner.get(f"/mine/{id_}").status_code == 200
    with owner.client.session_transaction(base_url=BASE) as session:
        held = session["my_transfers"]
        held["since"] -= 5 * 60 + 1
        session["my_transfers"] = held
    assert owner.get(f"/mine/{id_}").location.endswith("/mine/verify")
    # Said so, with the address filled in; after the new code, back to the page asked for.
    page = text_of(owner.get("/mine/verify"))
    assert "My transfers closes 5 minutes after the code was entered" in page and f'value="{JAN}"' in page
    asked = owner.submit("/mine/verify", {"email": JAN})
    assert asked.location.endswith("/mine/verify/code")
    done = owner.submit("/mine/verify/code", {"code": mailbox.code_for(JAN)})
    assert done.status_code == 302 and done.location == f"/mine/{id_}"
    # A sender remembered by the wizard's cookie (remember_days) still needs a fresh code.
    sender = Sender(app, mailbox)
    sender.send()
    with sender.client.session_transaction(base_url=BASE) as session:
        del session["my_transfers"]
    assert sender.personal().location.endswith("/send/recipients")  # remembered by the wizard
    assert sender.get("/mine/").location.endswith("/mine/verify")
    # "Close My transfers" ends it at once (the owner's is open again, after the new code).
    assert owner.submit("/mine/end", page="/mine/").status_code == 302
    assert owner.get("/mine/").location.endswith("/mine/verify")


def test_every_post_needs_the_csrf_token(app, mailbox) -> None:
    id_ = send(app, mailbox, "Dossier")
    owner = Owner(app, mailbox)
    owner.verify()
    recipient_id = transfer(app, id_).recipients[0].id
    for path, data in (
        (f"/mine/{id_}/withdraw", {}), (f"/mine/{id_}/expiry", {"expires_on": date.today().isoformat()}),
        (f"/mine/{id_}/resend/{recipient_id}", {}), ("/mine/end", {}), ("/mine/verify", {"email": JAN}),
    ):
        assert owner.post(path, data=data).status_code == 400, path
    assert transfer(app, id_) is not None


def test_pages_in_dutch(app, mailbox) -> None:
    id_ = send(app, mailbox, "Dossier")
    owner = Owner(app, mailbox)
    owner.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "nl-NL,nl;q=0.9"
    owner.verify()
    assert "Mijn transacties" in text_of(owner.get("/mine/"))
    page = text_of(owner.get(f"/mine/{id_}"))
    assert "Overdracht intrekken" in page and "Vervaldatum" in page
    assert "Rapportage" in text_of(owner.get(f"/mine/{id_}/report"))


def test_notifications_sent_again_spend_the_days_recipient_budget(make_app, mailbox) -> None:
    # Otherwise many live transfers to one address would mail it far beyond what a sender may send in a day.
    app = make_app({"limits": {"recipients_per_sender_per_day": 3}})
    id_ = send(app, mailbox, "Dossier", to="anna@gemeente.example, kees@gemeente.example")
    owner = Owner(app, mailbox)
    owner.verify()
    anna = transfer(app, id_).recipients[0]
    mailbox.clear()
    assert owner.act(id_, f"resend/{anna.id}", page=f"/mine/{id_}").status_code == 302
    assert len(mailbox.to("anna@gemeente.example")) == 1
    refused = owner.act(id_, f"resend/{anna.id}", page=f"/mine/{id_}")
    assert refused.status_code == 302
    assert "Your daily limit of recipients is reached" in text_of(owner.get(f"/mine/{id_}"))
    assert len(mailbox.to("anna@gemeente.example")) == 1
    assert len(events(app, "notification_resent")) == 1
