"""The daily budgets of a sender count a mailbox, not an address string, and
the recipients also count per client network: fresh addresses do not buy a
fresh budget."""

from __future__ import annotations

from .test_client_networks import at
from .test_recipient_limits import at_notification, transfers
from .walker import Person, Sender, text_of


def sender_at(app, mailbox, email: str, address: str) -> Sender:  # type: ignore[no-untyped-def]
    return at(Sender(app, mailbox, Person(name="Helpdesk Gemeente", email=email)), address)


def start_as(app, mailbox, email: str, address: str, to: str, cc: str = ""):  # type: ignore[no-untyped-def]
    """A newly verified sender's attempt to start a transfer; the sender and the answer."""
    sender = sender_at(app, mailbox, email, address)
    assert sender.personal().status_code == 302 and sender.verify().status_code == 302
    token = at_notification(sender, to, cc)
    return sender, sender.post("/send/notification", data={"csrf_token": token, "subject": "Onderwerp", "body": "Tekst"})


def test_plus_tags_of_one_mailbox_share_its_recipient_budget(make_app, mailbox) -> None:
    app = make_app({"limits": {"recipients_per_sender_per_day": 3}})
    sender_at(app, mailbox, "mallory+1@zorg.example", "192.0.2.1").send("a@x.example", cc="b@x.example")
    _, r = start_as(app, mailbox, "mallory+2@zorg.example", "192.0.2.2", "c@x.example", cc="d@x.example")
    assert r.status_code == 429
    assert "Your daily limit of recipients is reached: 1 of 3 left today, and this transfer has 2." in text_of(r)
    assert transfers(app) == 1


def test_plus_tags_of_one_mailbox_share_its_transfers_per_day(make_app, mailbox) -> None:
    app = make_app({"limits": {"transactions_per_sender_per_day": 1}})
    sender_at(app, mailbox, "mallory@zorg.example", "192.0.2.1").send()
    _, r = start_as(app, mailbox, "mallory+nieuw@zorg.example", "192.0.2.2", "anna@gemeente.example")
    assert r.status_code == 429 and "Too many attempts" in text_of(r)
    assert transfers(app) == 1


def test_senders_of_one_network_share_a_recipient_budget(make_app, mailbox) -> None:
    app = make_app({"limits": {"recipients_per_ip_per_day": 3}})
    sender_at(app, mailbox, "alice@zorg.example", "2001:db8:4:4::1").send("a@x.example", cc="b@x.example")
    bob, r = start_as(app, mailbox, "bob@elders.example", "2001:db8:4:4::2", "c@x.example", cc="d@x.example")
    assert r.status_code == 429 and "1 of 3 left today" in text_of(r)
    # One recipient still fits; another network has a budget of its own.
    assert bob.recipients("c@x.example").status_code == 302 and bob.notification().status_code == 200
    sender_at(app, mailbox, "carol@zorg.example", "2001:db8:4:5::1").send("a@x.example", cc="b@x.example")
    assert transfers(app) == 3
