"""After "start transaction": receipt, status, withdraw, notices, reply, expiry."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from app import db, lease, purge, scheduler
from app.clock import utcnow
from app.models import (
    DownloadGrant, Draft, Event, KeySlot, Recipient as RecipientRow, Retrieval, StoredFile, Transfer, VerificationCode,
)

from . import blobs
from .conftest import Setup
from .walker import Recipient, Sender, csrf_token, text_of

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Zonnebloem-Kade-1987!"
FILES = [("verslag.pdf", b"%PDF report" * 100), ("foto.jpg", b"\xff\xd8 photo" * 50)]


def _status_path(mailbox, sender: Sender) -> str:
    receipt = next(m for m in mailbox.to(sender.person.email) if "has been sent" in m.message["Subject"])
    link = re.search(r"https://portal\.example\.nl(/send/status/[A-Za-z0-9_-]+)", receipt.text).group(1)
    return link


def _count(app, model) -> int:
    with app.app_context():
        return db.session().scalar(select(func.count()).select_from(model))


def _blobs(app) -> list[str]:
    return blobs.leftovers(app)


def _run(app, now):  # type: ignore[no-untyped-def]
    with app.app_context():
        return purge.run(lambda: db.new_session(app), app.extensions["koerier"], now)


def test_receipt_lists_everything_and_carries_a_private_status_link(sender: Sender, mailbox) -> None:
    # File names only because the sender chose to show them (tests/test_mail_contents.py).
    sender.send(
        to="anna@gemeente.example", bcc="kees@gemeente.example", files=FILES, notify_retrieval="y", expose_filenames="y"
    )
    receipt = next(m for m in mailbox.to(sender.person.email) if "has been sent" in m.message["Subject"])
    text = receipt.text
    assert "anna@gemeente.example" in text and "kees@gemeente.example" in text
    assert "verslag.pdf (1.1 kB)" in text and "foto.jpg" in text
    assert "Inform me when files are retrieved: yes" in text
    token = _status_path(mailbox, sender).rsplit("/", 1)[1]
    assert len(token) >= 43  # 256 bits in base64url


def test_status_page_shows_who_opened_and_downloaded_what(sender: Sender, app, mailbox) -> None:
    sent = sender.send(to="anna@gemeente.example, piet@gemeente.example", files=FILES)
    path = _status_path(mailbox, sender)
    page = text_of(sender.get(path))
    assert "verslag.pdf" in page and page.count("Not yet") == 2
    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    recipient.get(recipient.file_links()["verslag.pdf"])
    page = text_of(sender.get(path))
    assert page.count("Not yet") == 1
    row = page.split("anna@gemeente.example")[1].split("</tr>")[0]
    assert "verslag.pdf" in row and "foto.jpg" not in row
    # A wrong token shows nothing.
    assert sender.get("/send/status/" + "x" * 43).status_code == 404


@blobs.BOTH_STORES
def test_withdraw_makes_the_transfer_unreachable_at_once(sender: Sender, app, mailbox) -> None:
    sent = sender.send(to="anna@gemeente.example", files=FILES, recipient_language="nl")
    opened = Recipient(app)
    opened.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    file_url = opened.file_links()["verslag.pdf"]
    path = _status_path(mailbox, sender)
    confirm = sender.get(path + "/withdraw")
    assert "cannot be undone" in text_of(confirm)
    r = sender.post(path + "/withdraw", data={"csrf_token": csrf_token(confirm.get_data(as_text=True))})
    assert "The transfer has been withdrawn" in text_of(r)

    notice = mailbox.last_to("anna@gemeente.example")
    assert notice.message["Subject"].startswith("Ingetrokken") or "ingetrokken" in notice.text
    # An open download session ends too, and the ID now gets the common answer.
    asked_again = opened.get(file_url)
    assert asked_again.status_code == 302 and asked_again.location.startswith("/download/?id=")
    late = Recipient(app).unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    assert late.status_code == 403
    assert _blobs(app) == []
    for model in (KeySlot, Transfer, StoredFile, DownloadGrant):
        assert _count(app, model) == 0
    assert sender.get(path).status_code == 404
    with app.app_context():
        kinds = set(db.session().scalars(select(Event.kind)))
    assert {"transfer_created", "transfer_withdrawn", "transfer_deleted"} <= kinds


def _notices(mailbox, sender: Sender) -> list:
    return [m for m in mailbox.to(sender.person.email) if "has downloaded" in m.message["Subject"]]


def test_retrieval_notice_is_one_mail_per_recipient_for_its_sessions(sender: Sender, app, mailbox) -> None:
    sent = sender.send(files=FILES, notify_retrieval="y")
    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    links = recipient.file_links()
    recipient.get(links["verslag.pdf"])
    recipient.get(links["foto.jpg"])
    recipient.get("/download/all")  # the same files again: one mail still

    now = utcnow()
    assert _run(app, now).notices_sent == 0  # the session is still going
    report = _run(app, now + timedelta(minutes=4))
    assert report.notices_sent == 1
    (mail,) = _notices(mailbox, sender)
    assert "anna@gemeente.example" in mail.message["Subject"]
    # File names are off in the mails: the notice says which file without naming it.
    assert "File 1 of 2 (1.1 kB)" in mail.text and "File 2 of 2" in mail.text
    assert "verslag" not in mail.text and "foto" not in mail.text
    assert "status page" in mail.text and "Download session" not in mail.text
    with app.app_context():
        assert all(r.name_ct is None for r in db.session().scalars(select(Retrieval)))
    # Later sessions are new retrievals, told in one more mail that lists each session's files.
    for path in ("/download/all", links["foto.jpg"]):
        again = Recipient(app)
        again.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
        again.get(path)
    assert _run(app, now + timedelta(minutes=10)).notices_sent == 1
    mails = _notices(mailbox, sender)
    assert len(mails) == 2
    first, second = mails[1].text.split("Download session 1:")[1].split("Download session 2:")
    assert "File 1 of 2" in first and "File 2 of 2" in first
    assert "File 1 of 2" not in second and "File 2 of 2" in second


def test_retrieval_notice_names_files_only_when_names_are_shown_in_mails(sender: Sender, app, mailbox) -> None:
    sent = sender.send(files=FILES, notify_retrieval="y", expose_filenames="y")
    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    recipient.get(recipient.file_links()["foto.jpg"])
    with app.app_context():
        (row,) = db.session().scalars(select(Retrieval))
        assert row.name_ct is not None and b"foto" not in row.name_ct
    assert _run(app, utcnow() + timedelta(minutes=4)).notices_sent == 1
    (mail,) = _notices(mailbox, sender)
    assert "foto.jpg (400 B)" in mail.text and "verslag.pdf" not in mail.text
    with app.app_context():
        assert all(r.name_ct is None for r in db.session().scalars(select(Retrieval)))


def test_no_retrieval_notice_unless_asked(sender: Sender, app, mailbox) -> None:
    sent = sender.send(files=FILES)
    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    recipient.get("/download/all")
    assert _run(app, utcnow() + timedelta(minutes=10)).notices_sent == 0


def test_reply_securely_opens_a_prefilled_wizard(sender: Sender, app, mailbox) -> None:
    sent = sender.send(to="anna@gemeente.example", recipient_language="nl")
    mail = sent.notifications["anna@gemeente.example"]
    reply_url = re.search(r"https://portal\.example\.nl(/send/reply/\S+)", mail.text).group(1)
    assert "Veilig antwoorden" in mail.text

    anna = Sender(app, mailbox)
    anna.person.name, anna.person.email = "Anna Jansen", "anna@gemeente.example"
    confirm = anna.get(reply_url)
    assert "Your reply goes to Jan de Vries (jan@zorg.example)" in text_of(confirm)
    started = anna.post(reply_url, data={"csrf_token": csrf_token(confirm.get_data(as_text=True))})
    assert started.location.endswith("/send/")
    assert 'value="anna@gemeente.example"' in anna.get("/send/").get_data(as_text=True)
    mailbox.clear()
    assert anna.personal().location.endswith("/send/verify")  # still proves the address
    anna.verify()
    assert "jan@zorg.example" in text_of(anna.get("/send/recipients"))
    anna.files([("antwoord.pdf", b"%PDF answer")])
    options = anna.get("/send/options").get_data(as_text=True)
    # Proposed in Jan's own language (his browser's, English), not the one he chose for Anna.
    assert re.search(r'<option[^>]*selected[^>]*value="en"|<option[^>]*value="en"[^>]*selected', options)
    anna.options(recipient_language="nl")
    subject = re.search(r'<input[^>]*name="subject"[^>]*value="([^"]*)"', anna.get("/send/notification").get_data(as_text=True))
    original = mail.message["Subject"]
    assert original == "Bestanden (1) van Jan de Vries"  # in the recipient language
    assert subject.group(1) == f"Re: {original}"
    assert anna.notification().status_code == 200
    assert mailbox.last_to("jan@zorg.example").message["Subject"].startswith("Re: ")
    with app.app_context():
        created = db.session().scalars(select(Event).where(Event.kind == "transfer_created").order_by(Event.id)).all()
    assert created[1].data["reply_to"] == created[0].transfer_id


def test_reply_button_on_the_download_page(sender: Sender, app) -> None:
    sent = sender.send()
    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    page = recipient.get("/download/transfer").get_data(as_text=True)
    href = re.search(r'<a class="button" href="(/send/reply/[^"]+)">Reply securely</a>', page).group(1)
    confirm = recipient.get(href)
    assert "Start the reply" in text_of(confirm) and 'href="/download/transfer">Back' in confirm.get_data(as_text=True)
    assert recipient.get("/send/reply/forged-token").location.endswith("/send/")


def _only_audit_remains(app) -> None:
    for model in (Transfer, RecipientRow, KeySlot, StoredFile, DownloadGrant, Retrieval):
        assert _count(app, model) == 0, model
    assert _blobs(app) == []
    with app.app_context():
        kinds = [e.kind for e in db.session().scalars(select(Event))]
    assert "transfer_created" in kinds and "transfer_expired" in kinds


def _expires(app):  # type: ignore[no-untyped-def]
    with app.app_context():
        return db.session().scalar(select(Transfer.expires_at))


@blobs.BOTH_STORES
def test_expiry_shreds_and_a_second_run_changes_nothing(sender: Sender, app) -> None:
    sent = sender.send(files=FILES)
    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    recipient.get("/download/all")
    expires = _expires(app)
    assert _run(app, expires - timedelta(seconds=1)).transfers_expired == 0
    report = _run(app, expires + timedelta(seconds=1))
    assert report.transfers_expired == 1 and report.failures == 0
    _only_audit_remains(app)
    again = _run(app, expires + timedelta(minutes=5))
    assert again.transfers_expired == 0 and again.failures == 0
    _only_audit_remains(app)


def test_a_crash_half_way_is_finished_by_the_next_run(sender: Sender, app) -> None:
    # On disk; tests/test_s3.py has the bucket's version (the store out of reach).
    sender.send(files=FILES)
    (blob, other) = sorted(p for p in app.extensions["koerier"].store.root.rglob("*") if p.is_file())
    # A blob that cannot be unlinked: the run fails after the slots are gone.
    blob.unlink()
    blob.mkdir()
    expires = _expires(app)
    report = _run(app, expires + timedelta(seconds=1))
    assert report.failures == 1 and report.transfers_expired == 0
    assert _count(app, KeySlot) == 0  # the transfer is unreadable already
    assert _count(app, Transfer) == 1
    blob.rmdir()  # the obstacle is gone (a blob already missing is fine)
    report = _run(app, expires + timedelta(minutes=5))
    assert report.transfers_expired == 1 and report.failures == 0
    _only_audit_remains(app)


@blobs.BOTH_STORES
def test_abandoned_drafts_and_used_codes_are_removed(sender: Sender, app) -> None:
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    sender.files(FILES, action="upload")
    assert _count(app, Draft) == 1 and len(_blobs(app)) == 2
    report = _run(app, utcnow() + timedelta(hours=25))
    assert report.drafts_removed == 1 and report.codes_removed == 1
    assert _count(app, Draft) == 0 and _count(app, StoredFile) == 0 and _count(app, VerificationCode) == 0
    assert _blobs(app) == []


def test_orphan_blobs_are_swept(sender: Sender, app) -> None:
    """A pending file left by a crash (tests/test_orphan_sweep.py sweeps both stores)."""
    import os

    root = app.extensions["koerier"].store.root
    orphan = root / "ab" / ("ab" + "0" * 30 + ".partial")
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"half an upload")
    os.utime(orphan, (0, 0))
    assert _run(app, utcnow()).orphan_blobs_removed == 1
    assert not orphan.exists()


def test_reminder_once_to_recipients_who_did_not_download(make_app, mailbox) -> None:
    app = make_app({"retention": {"reminder_days_before": 2}})
    sender = Sender(app, mailbox)
    sent = sender.send(to="anna@gemeente.example, piet@gemeente.example", recipient_language="nl")
    Recipient(app).unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    expires = _expires(app)
    assert _run(app, expires - timedelta(days=3)).reminders_sent == 0
    assert _run(app, expires - timedelta(days=1)).reminders_sent == 1
    assert _run(app, expires - timedelta(hours=12)).reminders_sent == 0
    reminder = mailbox.last_to("piet@gemeente.example")
    assert reminder.message["Subject"].startswith("Herinnering")
    assert sent.access_id("piet@gemeente.example") in reminder.text
    assert not [m for m in mailbox.to("anna@gemeente.example") if "Herinnering" in m.message["Subject"]]


def test_only_one_instance_holds_the_lease(make_app, tmp_path) -> None:
    first = make_app(instance=tmp_path / "shared")
    second = make_app(instance=tmp_path / "shared")
    assert scheduler.tick(first, "worker-1") is not None
    assert scheduler.tick(second, "worker-2") is None
    assert scheduler.tick(first, "worker-1") is not None  # the holder renews
    now = utcnow()
    with second.app_context():
        s = db.new_session(second)
        assert not lease.acquire(s, scheduler.LEASE, "worker-2", timedelta(minutes=15), now)
        # Once the holder stops renewing, the lease passes on.
        assert lease.acquire(s, scheduler.LEASE, "worker-2", timedelta(minutes=15), now + timedelta(minutes=16))
        s.close()
    assert scheduler.tick(first, "worker-1") is None


def test_in_app_scheduler_starts_with_the_first_request(make_app) -> None:
    app = make_app({"retention": {"scheduler": True, "interval_minutes": 5}})
    assert "koerier.scheduler" not in app.extensions
    app.test_client().get("/", base_url="https://localhost")
    job = app.extensions["koerier.scheduler"].get_job("purge")
    assert job is not None and job.trigger.interval == timedelta(minutes=5)
    app.extensions["koerier.scheduler"].shutdown(wait=False)


def _flask_purge(instance: Path, setup: Setup) -> subprocess.CompletedProcess[str]:
    setup.write_config(instance)
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "purge"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "KOERIER_INSTANCE_PATH": str(instance)},
    )


def test_flask_purge_prints_what_it_removed(sender: Sender, app, setup: Setup) -> None:
    sender.personal()
    result = _flask_purge(app.extensions["koerier"].instance_path, setup)
    assert result.returncode == 0, result.stderr
    assert "transfers expired: 0" in result.stdout and "drafts removed: 0" in result.stdout


def test_flask_purge_from_cron_runs_every_time(app, setup: Setup) -> None:
    """Each run gives the lease back when it ends: the next one, minutes later, is not turned away."""
    instance = app.extensions["koerier"].instance_path
    for _ in range(2):
        result = _flask_purge(instance, setup)
        assert result.returncode == 0, result.stderr
        assert "Another process" not in result.stdout and "transfers expired: 0" in result.stdout
    # A run that crashed (its process gone) still holds the lease until it runs out.
    with app.app_context():
        s = db.new_session(app)
        assert lease.acquire(s, scheduler.LEASE, "cli:crashed", timedelta(minutes=15))
        s.close()
    assert "Another process is running the clean-up job" in _flask_purge(instance, setup).stdout
