"""The download side: no oracle, lockout, previews, ranges, file names."""

from __future__ import annotations

import re
from datetime import timedelta

from app import access, db
from app.clock import utcnow
from app.ids import group, new_access_id
from app.models import Transfer

from . import blobs
from .walker import Recipient, Sender, text_of

PASSWORD = "Zonnebloem-Kade-1987!"


def _denial(r) -> str:
    return re.search(r'<div class="error-summary"[^>]*>\s*<p>(.*?)</p>', text_of(r), re.S).group(1)


def test_unknown_id_wrong_password_and_expired_look_the_same(sender: Sender, app) -> None:
    sent = sender.send()
    real = sent.access_id("anna@gemeente.example")
    wrong_password = Recipient(app).unlock(real, "Verkeerd-Wachtwoord-1")
    unknown = Recipient(app).unlock(group(new_access_id()), PASSWORD)
    garbage = Recipient(app).unlock("hallo", PASSWORD)
    with app.app_context():
        s = db.session()
        transfer = s.query(Transfer).one()
        transfer.expires_at = utcnow() - timedelta(seconds=1)
        s.commit()
    expired = Recipient(app).unlock(real, PASSWORD)
    # The count of tries left is the typed ID's own: the real ID was tried once before.
    answers = {(r.status_code, _denial(r).replace("3 more attempts", "4 more attempts")) for r in (wrong_password, unknown, garbage, expired)}
    assert len(answers) == 1
    status, denial = answers.pop()
    assert status == 403 and "4 more attempts" in denial


def test_five_wrong_passwords_lock_the_id_for_fifteen_minutes(sender: Sender, app) -> None:
    sent = sender.send()
    real = sent.access_id("anna@gemeente.example")
    browser = Recipient(app)
    for _ in range(5):
        assert browser.unlock(real, "Verkeerd-Wachtwoord-1").status_code == 403
    locked = browser.unlock(real, PASSWORD)
    assert locked.status_code == 429 and "Too many wrong attempts" in text_of(locked)
    # An unknown ID locks the same way, so the lockout reveals nothing.
    fake = group(new_access_id())
    for _ in range(5):
        browser.unlock(fake, PASSWORD)
    assert browser.unlock(fake, PASSWORD).status_code == 429
    # After the lockout the right password works again.
    portal = app.extensions["koerier"]
    with app.test_request_context():
        ticket = access.unlock(db.session(), portal, real, PASSWORD, now=utcnow() + timedelta(minutes=16))
        assert ticket.grant_id


def test_id_is_forgiving_about_case_dashes_and_lookalikes(sender: Sender, app) -> None:
    sent = sender.send()
    typed = sent.access_id("anna@gemeente.example").replace("-", " ").lower().replace("0", "o").replace("1", "l")
    assert Recipient(app).unlock(typed, PASSWORD).status_code == 302


def test_pages_without_a_grant_show_nothing(app) -> None:
    browser = Recipient(app)
    assert browser.get("/download/transfer").status_code == 302
    for path in ("/download/file/x", "/download/file/x/preview", "/download/all"):
        answer = browser.get(path)
        assert answer.status_code == 302 and answer.location == "/download/"


@blobs.BOTH_STORES
def test_preview_only_for_safe_types_and_sandboxed(make_app, mailbox) -> None:
    app = make_app({"transfer": {"allowed_extensions": ["*"]}})
    sender = Sender(app, mailbox)
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    sent = sender.send(files=[("scan.png", b"\x89PNG\r\n\x1a\n0000"), ("tekening.svg", svg), ("brief.html", b"<script>x</script>")])
    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    page = recipient.get("/download/transfer").get_data(as_text=True)
    links = recipient.file_links()
    preview = recipient.get(links["scan.png"] + "/preview")
    assert preview.status_code == 200
    assert preview.headers["Content-Type"] == "image/png"
    assert preview.headers["Content-Security-Policy"] == "sandbox"  # a PDF gets "default-src 'none'" (Chrome's viewer)
    assert preview.headers["X-Content-Type-Options"] == "nosniff"
    assert preview.headers["Content-Disposition"].startswith("inline;")
    for risky in ("tekening.svg", "brief.html"):
        assert recipient.get(links[risky] + "/preview").status_code == 404
        assert links[risky] + "/preview" not in page
        download = recipient.get(links[risky])
        assert download.headers["Content-Type"] == "application/octet-stream"
        assert download.headers["Content-Disposition"].startswith("attachment;")


@blobs.BOTH_STORES
def test_range_requests(sender: Sender, app) -> None:
    data = bytes(range(256)) * 600  # 153,600 bytes: three segments
    sent = sender.send(files=[("data.zip", data)])
    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    url = recipient.file_links()["data.zip"]
    windows = (
        (0, 0), (0, 65535), (65536, 131071),  # a whole segment, on its boundaries
        (65535, 65536), (100, 140000),  # across boundaries
        (70000, 70010),  # inside one segment
        (len(data) - 1, len(data) - 1),  # the last byte
    )
    for start, end in windows:
        r = recipient.get(url, headers={"Range": f"bytes={start}-{end}"})
        assert r.status_code == 206
        assert r.data == data[start : end + 1]
        assert r.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
    assert recipient.get(url, headers={"Range": "bytes=-10"}).data == data[-10:]
    assert recipient.get(url, headers={"Range": "bytes=150000-"}).data == data[150000:]
    unsatisfiable = recipient.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert unsatisfiable.status_code == 416 and unsatisfiable.headers["Content-Range"] == f"bytes */{len(data)}"


def test_finish_ends_the_grant(sender: Sender, app) -> None:
    from .walker import csrf_token

    sent = sender.send()
    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    url = recipient.file_links()["verslag.pdf"]
    page = recipient.get("/download/transfer").get_data(as_text=True)
    assert recipient.post("/download/finish", data={"csrf_token": csrf_token(page)}).status_code == 302
    after = recipient.get(url)
    assert after.status_code == 302 and after.location == "/download/"


def test_message_and_names_are_escaped(sender: Sender, app) -> None:
    sent = sender.send(files=[("<img src=x onerror=alert(1)>.txt", b"x")], message="<script>alert('m')</script>")
    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    raw = recipient.get("/download/transfer").get_data(as_text=True)
    assert "<script>alert('m')</script>" not in raw and "&lt;script&gt;" in raw
    assert "<img src=x" not in raw


@blobs.BOTH_STORES
def test_video_preview_plays_by_ranges(make_app, mailbox) -> None:
    app = make_app({"transfer": {"allowed_extensions": ["mp4", "pdf"]}})
    video = bytes(range(256)) * 1000
    sent = Sender(app, mailbox).send(files=[("echo.mp4", video)])
    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    page = recipient.get("/download/transfer").get_data(as_text=True)
    preview = re.search(r'href="(/download/file/[^"]+/preview)"', page).group(1)
    r = recipient.get(preview, headers={"Range": "bytes=65536-"})
    assert r.status_code == 206 and r.headers["Content-Type"] == "video/mp4"
    assert r.headers["Content-Disposition"].startswith("inline;") and r.data == video[65536:]


@blobs.BOTH_STORES
def test_pdf_preview_allows_nothing_but_the_viewer(sender: Sender, app) -> None:
    sent = sender.send()
    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    page = recipient.get("/download/transfer").get_data(as_text=True)
    preview = recipient.get(re.search(r'href="(/download/file/[^"]+/preview)"', page).group(1))
    assert preview.headers["Content-Type"] == "application/pdf"
    assert preview.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert preview.headers["X-Content-Type-Options"] == "nosniff"
