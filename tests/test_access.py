"""Opening a transfer: transaction IDs, key slots, lockouts and download grants."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import delete, select, update

from app import db
from app.clock import utcnow
from app.ids import group, new_access_id, normalize_access_id
from app.models import DownloadGrant, Event, KeySlot, Recipient as RecipientRow

from .walker import PASSWORD, Recipient, Sender, text_of

CROCKFORD_BASE32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LOCKED = "Too many wrong attempts for this transaction ID"


def test_access_ids_are_12_characters_of_the_whole_crockford_alphabet() -> None:
    ids = [new_access_id() for _ in range(4000)]
    # 12 characters x 5 bits = 60 bits, from all 32 symbols and only those (docs/FORMAT.md says why 60 are enough).
    assert {len(i) for i in ids} == {12}
    assert set("".join(ids)) == set(CROCKFORD_BASE32)
    assert len(set(ids)) == len(ids)


def test_a_transaction_id_is_three_groups_of_four_and_typed_loosely(sender: Sender, app) -> None:
    sent = sender.send()
    access_id = sent.access_id("anna@gemeente.example")
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}", access_id)
    assert access_id in sent.notifications["anna@gemeente.example"].text.replace("?id=" + access_id, "")
    # Read out over the phone and typed as heard: lower case, spaces or other dashes, O for 0, I or L for 1.
    spoken = access_id.lower().replace("-", " ", 1).replace("-", "\u2013").replace("0", "o").replace("1", "l")
    assert Recipient(app).unlock(f" {spoken} ", PASSWORD).status_code == 302


def test_an_id_made_before_the_short_ones_still_opens_its_transfer(sender: Sender, app) -> None:
    sent = sender.send()
    old = "7KQ2M9XD4TRB0H5WZP3NCGAEF8SV"  # 28 characters, as IDs were made before
    with db.new_session(app) as s:
        s.execute(update(RecipientRow).values(access_id=old))
        s.commit()
    assert Recipient(app).unlock(sent.access_id("anna@gemeente.example"), PASSWORD).status_code == 403
    assert Recipient(app).unlock(group(old).lower(), PASSWORD).status_code == 302
    assert Recipient(app).unlock(group(old)[:-1], PASSWORD).status_code == 403


def test_recipient_ids_of_one_transfer_share_its_password_lockout(sender: Sender, app) -> None:
    addresses = ["anna@gemeente.example", "piet@gemeente.example", "kees@gemeente.example"]
    sent = sender.send(to=", ".join(addresses))
    ids = [sent.access_id(a) for a in addresses]
    browser = Recipient(app)
    for n in range(5):
        assert browser.unlock(ids[n % 3], "fout").status_code == 403
    # Five guesses in all, at most two per ID: the password slot is locked for every ID.
    for typed in ids:
        r = browser.unlock(typed, PASSWORD)
        assert r.status_code == 429 and LOCKED in text_of(r)
    with db.new_session(app) as s:
        assert len(s.scalars(select(Event).where(Event.kind == "download_locked")).all()) == 1
    # An unknown ID is still counted on its own.
    assert browser.unlock(group(new_access_id()), "fout").status_code == 403


def test_a_right_password_is_no_failure_for_the_per_ip_limit(make_app, mailbox) -> None:
    app = make_app({"limits": {"failed_downloads_per_ip_per_hour": 2}})
    real = Sender(app, mailbox).send().access_id("anna@gemeente.example")
    browser = Recipient(app)
    assert browser.unlock(group(new_access_id()), "fout").status_code == 403
    assert browser.unlock(real, PASSWORD).status_code == 302
    assert browser.unlock(group(new_access_id()), "fout").status_code == 403
    assert browser.unlock(group(new_access_id()), "fout").status_code == 429


def test_a_download_grant_past_its_expiry_no_longer_opens(sender: Sender, app) -> None:
    sent = sender.send()
    recipient = Recipient(app)
    assert recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD).status_code == 302
    link = recipient.file_links()["verslag.pdf"]
    assert recipient.get(link).status_code == 200
    with db.new_session(app) as s:
        s.execute(update(DownloadGrant).values(expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    # The recipient is asked for the password again, and nothing is served.
    for path in (link, "/download/all"):
        answer = recipient.get(path)
        assert answer.status_code == 302 and answer.location.startswith("/download/?id=")
    assert recipient.get("/download/transfer").location.endswith("/download/")


def test_a_password_slot_moved_to_another_transfer_does_not_open_it(app, mailbox) -> None:
    """The slot's associated data names its transfer: same password, other transfer, no key."""
    first = Sender(app, mailbox).send().access_id("anna@gemeente.example")
    second = Sender(app, mailbox).send().access_id("anna@gemeente.example")

    def transfer_of(access_id: str) -> str:
        canonical = normalize_access_id(access_id)
        return s.scalar(select(RecipientRow.transfer_id).where(RecipientRow.access_id == canonical))

    def move_slot(source: str, target: str) -> None:
        s.execute(update(KeySlot).where(KeySlot.transfer_id == source).values(transfer_id=target))
        s.commit()

    with db.new_session(app) as s:
        one, other = transfer_of(first), transfer_of(second)
        s.execute(delete(KeySlot).where(KeySlot.transfer_id == other))
        move_slot(one, other)
        assert Recipient(app).unlock(second, PASSWORD).status_code == 403
        # Back where it belongs, the same row opens its own transfer.
        move_slot(other, one)
        assert Recipient(app).unlock(first, PASSWORD).status_code == 302
