"""Limits kept per IP count a client network (an IPv4 address or an IPv6
/64), and no such limit lets one party lock another out of verification."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select

from app import db
from app.ids import group, new_access_id
from app.models import Event

from .walker import Browser, Person, Recipient, Sender, text_of

B = TypeVar("B", bound=Browser)
VICTIM = "victim@zorg.example"


def at(browser: B, address: str) -> B:
    """The browser's requests come from ``address``."""
    browser.client.environ_base["REMOTE_ADDR"] = address
    return browser


def test_one_network_cannot_lock_an_address_out_of_verification(app, mailbox) -> None:
    """Fresh browsers from one address ask for codes for the victim's address
    until nothing more is mailed; the victim, elsewhere, still gets a code and uses it."""
    refused = None
    for _ in range(21):
        r = at(Sender(app, mailbox, Person(email=VICTIM)), "198.51.100.7").personal()
        if r.status_code == 429:
            refused = r
            break
        assert r.location.endswith("/send/verify")
    assert refused is not None and "Too many attempts. Please try again after" in text_of(refused)

    victim = at(Sender(app, mailbox, Person(email=VICTIM)), "203.0.113.5")
    r = victim.personal()
    assert r.status_code == 302 and r.location.endswith("/send/verify"), text_of(r)
    assert victim.verify(mailbox.code_for(VICTIM)).location.endswith("/send/recipients")


def test_the_addresses_of_one_ipv6_64_share_the_per_ip_verification_limits(make_app, mailbox) -> None:
    app = make_app({"limits": {"verification_mails_per_ip_per_hour": 3}})
    for n in range(3):
        sender = at(Sender(app, mailbox, Person(email=f"p{n}@zorg.example")), f"2001:db8:1:2::{n + 1}")
        assert sender.personal().status_code == 302
    r = at(Sender(app, mailbox, Person(email="p9@zorg.example")), "2001:db8:1:2:ffff:ffff:ffff:ffff").personal()
    assert r.status_code == 429 and mailbox.to("p9@zorg.example") == []
    # The next /64 is another network.
    assert at(Sender(app, mailbox, Person(email="p9@zorg.example")), "2001:db8:1:3::1").personal().status_code == 302


def test_the_addresses_of_one_ipv6_64_share_the_daily_cap_for_an_address(make_app, mailbox) -> None:
    app = make_app({"limits": {"verification_mails_per_address_per_ip_per_day": 2}})
    for n in range(2):
        assert at(Sender(app, mailbox, Person(email=VICTIM)), f"2001:db8:7:7::{n + 1}").personal().status_code == 302
    assert at(Sender(app, mailbox, Person(email=VICTIM)), "2001:db8:7:7::99").personal().status_code == 429
    assert len(mailbox.to(VICTIM)) == 2
    victim = at(Sender(app, mailbox, Person(email=VICTIM)), "2001:db8:8:8::1")
    assert victim.personal().status_code == 302
    assert victim.verify(mailbox.code_for(VICTIM)).location.endswith("/send/recipients")


def test_the_addresses_of_one_ipv6_64_share_the_failed_download_limit(make_app, mailbox) -> None:
    app = make_app({"limits": {"failed_downloads_per_ip_per_hour": 3}})
    for n in range(3):
        assert at(Recipient(app), f"2001:db8:5:5::{n + 1}").unlock(group(new_access_id()), "x").status_code == 403
    r = at(Recipient(app), "2001:db8:5:5::abcd").unlock(group(new_access_id()), "x")
    assert r.status_code == 429 and "Too many attempts" in text_of(r)
    assert at(Recipient(app), "2001:db8:5:6::1").unlock(group(new_access_id()), "x").status_code == 403
    with app.app_context():
        # The audit keeps the address itself.
        ips = db.session().scalars(select(Event.ip).where(Event.kind == "download_failed")).all()
    assert "2001:db8:5:5::1" in ips and "2001:db8:5:6::1" in ips


def test_codes_to_one_address_are_bounded_across_networks(make_app, mailbox) -> None:
    # Each code allows a few guesses: from enough networks, unbounded codes
    # would let a guesser try a large share of all codes for an address.
    app = make_app({"limits": {"verification_mails_per_address_per_day": 3}})
    for n in range(3):
        assert at(Sender(app, mailbox, Person(email=VICTIM)), f"2001:db8:{n + 1}::1").personal().status_code == 302
    assert at(Sender(app, mailbox, Person(email=VICTIM)), "2001:db8:99::1").personal().status_code == 429
    assert len(mailbox.to(VICTIM)) == 3
    # Other addresses are not affected.
    assert at(Sender(app, mailbox, Person(email="iemand@zorg.example")), "2001:db8:99::1").personal().status_code == 302
