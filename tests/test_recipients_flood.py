"""A verified sender posting thousands of refused addresses: refused as too
many before any rule is tried for each, and the audit trail grows by a small
bounded event however many were entered."""

from __future__ import annotations

import json

from sqlalchemy import select

from app import db
from app.models import Event

from .test_recipient_limits import at_recipients
from .walker import text_of

DENY_ALL = {"policy": {"default": "deny", "default_reason": "Only the municipality."}}


def field_of(prefix: str, limit: int = 19_000) -> list[str]:
    """As many addresses as fit in one field (20,000 characters)."""
    out: list[str] = []
    while sum(len(a) + 1 for a in out) < limit:
        out.append(f"{prefix}{len(out)}@q.example")
    return out


def refusal_events(app) -> list[Event]:  # type: ignore[no-untyped-def]
    with app.app_context():
        return db.session().scalars(select(Event).where(Event.kind == "policy_refused")).all()


def test_thousands_of_refused_addresses_cost_one_small_event(make_app, mailbox) -> None:
    app = make_app(DENY_ALL)
    sender = at_recipients(app, mailbox)
    to, cc, bcc = field_of("t"), field_of("c"), field_of("b")
    entered = len(to) + len(cc) + len(bcc)
    assert entered > 3000
    r = sender.recipients("\n".join(to), "\n".join(cc), "\n".join(bcc))
    assert r.status_code == 422
    page = text_of(r)
    assert f"A transfer can go to at most 50 recipients (To, Cc and Bcc together); you entered {entered}." in page
    assert to[0] in page and cc[-1] in page and bcc[1000] in page  # what was typed is kept
    assert "You cannot send to" not in page  # no rule was tried for each
    for event in refusal_events(app):
        assert len(json.dumps(event.data)) < 1000


def test_a_refusal_event_names_the_first_few_and_counts_the_rest(make_app, mailbox) -> None:
    app = make_app(DENY_ALL)
    sender = at_recipients(app, mailbox)
    refused = [f"x{n}@q.example" for n in range(45)]
    r = sender.recipients("\n".join(refused))
    assert r.status_code == 422
    page = text_of(r)
    assert all(f"You cannot send to {a}: Only the municipality." in page for a in refused)
    (event,) = refusal_events(app)
    assert event.data == {
        "recipients": refused[:10], "rules": ["(default)"] * 10, "refused": 45, "entered": 45,
    }


def test_a_rule_that_allows_more_recipients_raises_the_ceiling(make_app, mailbox) -> None:
    app = make_app({"rules": [{"name": "bulk", "recipients": ["*@gemeente.example"], "max_recipients": 80}]})
    sender = at_recipients(app, mailbox)
    r = sender.recipients("\n".join(f"m{n}@gemeente.example" for n in range(70)))
    assert r.status_code == 302
    r = sender.recipients("\n".join(f"m{n}@gemeente.example" for n in range(81)))
    assert r.status_code == 422 and "at most 80 recipients" in text_of(r) and "you entered 81" in text_of(r)
