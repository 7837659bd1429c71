"""Hostile input everywhere: each gets a clean 4xx with a message, nothing is stored."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from app import db
from app.models import Draft, StoredFile, Transfer

from .walker import Browser, Recipient, Sender, csrf_token, multipart, text_of

XSS = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


def _stored(app) -> tuple[int, int, int]:
    with app.app_context():
        s = db.session()
        return tuple(s.scalar(select(func.count()).select_from(m)) for m in (Draft, StoredFile, Transfer))  # type: ignore[return-value]


def _blobs(app) -> list:
    return [p for p in app.extensions["koerier"].store.root.rglob("*") if p.is_file()]


def test_security_headers_on_every_response(app) -> None:
    browser = Browser(app)
    for path in ("/", "/send/", "/download/", "/nope", "/static/style.css"):
        r = browser.get(path)
        csp = r.headers["Content-Security-Policy"]
        for directive in ("default-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"):
            assert directive in csp
        assert "unsafe-inline" not in csp
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")
        if path != "/static/style.css":
            assert r.headers["Cache-Control"] == "no-store"


def test_no_inline_script_or_style_in_pages(sender: Sender) -> None:
    sender.personal()
    sender.verify()
    for path in ("/", "/send/recipients", "/download/", "/help"):
        page = sender.get(path).get_data(as_text=True)
        assert "style=" not in page and "<style" not in page
        # Scripts come from our own static files; the only inline block is data, which never runs.
        for tag in re.findall(r"<script\b[^>]*>", page):
            assert re.search(r'src="/static/js/[a-z]+\.js"', tag) or 'type="application/json"' in tag, tag


def test_session_cookie_is_host_prefixed_httponly_and_lax(sender: Sender) -> None:
    r = sender.personal()
    cookie = next(c for c in r.headers.getlist("Set-Cookie") if c.startswith("__Host-koerier="))
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Domain=" not in cookie


def test_idle_session_timeout(make_app, mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    app = make_app({"site": {"session_idle_minutes": 5}})
    sender = Sender(app, mailbox)
    sender.personal()
    assert sender.get("/send/verify").status_code == 200
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 6 * 60)
    r = sender.get("/send/verify")
    assert r.status_code == 302 and r.location.endswith("/send/")


def test_xss_in_every_text_field_is_escaped_in_pages_and_mails(make_app, mailbox) -> None:
    app = make_app({"transfer": {"allowed_extensions": ["*"]}})
    sender = Sender(app, mailbox)
    sender.personal(name="Jan " + XSS[:60])
    sender.verify()
    sender.recipients("anna@gemeente.example")
    sender.files([(XSS + ".pdf", b"x")], message=XSS, action="upload")
    files_page = sender.get("/send/files").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in files_page and "onerror=alert(2)>" not in files_page
    sender.files([], message=XSS)
    sender.options(expose_filenames="y")
    summary = sender.notification(subject="Dossier " + XSS[:80], body=XSS)
    raw = summary.get_data(as_text=True)
    assert "<script>alert(1)</script>" not in raw
    mail = mailbox.last_to("anna@gemeente.example")
    assert "<script>alert(1)</script>" not in mail.html and "<img src=x" not in mail.html
    recipient = Recipient(app)
    access_id = re.search(r"id=([A-Z0-9-]+)", mail.text).group(1)
    recipient.unlock(access_id, "Zonnebloem-Kade-1987!")
    page = recipient.get("/download/transfer").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;" in page


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "Jan\r\nBcc: evil@example.com"},
        {"email": "jan@zorg.example\nBcc: evil@example.com"},
        {"email": "jan@zorg.example%0ABcc:evil@example.com"},
        {"phone": "0612345678\r\nX-Evil: 1"},
    ],
)
def test_header_injection_in_personal_data_is_refused(sender: Sender, app, fields: dict[str, str]) -> None:
    r = sender.personal(**fields)
    assert r.status_code == 422 and 'aria-invalid="true"' in r.get_data(as_text=True)
    assert _stored(app) == (0, 0, 0)
    assert sender.mailbox.to("evil@example.com") == []


@pytest.mark.parametrize("token", [None, "", "garbage", "x" * 500])
def test_missing_or_garbled_csrf_token(sender: Sender, app, token: str | None) -> None:
    data = {"name": "Jan", "phone": "0612345678", "email": "jan@zorg.example"}
    if token is not None:
        data["csrf_token"] = token
    r = sender.post("/send/", data=data)
    assert r.status_code == 400
    assert "Your session has expired" in text_of(r)
    assert _stored(app) == (0, 0, 0)


def test_cross_site_posts_are_refused(sender: Sender, app) -> None:
    token = csrf_token(sender.get("/send/").get_data(as_text=True))
    data = {"csrf_token": token, "name": "Jan", "phone": "0612345678", "email": "jan@zorg.example"}
    assert sender.post("/send/", data=data, headers={"Origin": "https://evil.example"}).status_code == 403
    assert sender.post("/send/", data=data, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert _stored(app) == (0, 0, 0)


def _at_files(sender: Sender) -> None:
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")


@pytest.mark.parametrize(
    "body",
    [
        b"not multipart at all",
        b"--B\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n",  # cut off
        b"--B\r\nNo-Headers-Here\r\n\r\nx\r\n--B--\r\n",
        b"--B--\r\n",
        b"\x00\xff" * 1000,
    ],
)
def test_malformed_multipart_is_a_clean_400(sender: Sender, app, body: bytes) -> None:
    _at_files(sender)
    r = sender.post("/send/files", data=body, content_type="multipart/form-data; boundary=B")
    assert r.status_code == 400
    assert not _blobs(app)


def test_upload_without_boundary_or_wrong_type(sender: Sender) -> None:
    _at_files(sender)
    assert sender.post("/send/files", data=b"x", content_type="multipart/form-data").status_code == 400
    assert sender.post("/send/files", data={"message": "x"}).status_code == 400


def test_garbled_csrf_in_upload_stores_nothing(sender: Sender, app) -> None:
    _at_files(sender)
    body, content_type = multipart([("csrf_token", "garbage"), ("files", ("a.pdf", b"%PDF" * 10000))])
    assert sender.post("/send/files", data=body, content_type=content_type).status_code == 400
    assert not _blobs(app)


def test_forbidden_extensions_are_refused_before_storing(sender: Sender, app) -> None:
    _at_files(sender)
    r = sender.files([("virus.exe", b"MZ" * 1000), ("script.js", b"alert(1)"), ("goed.pdf", b"%PDF")], action="upload")
    page = text_of(r)
    assert "“virus.exe” is not allowed" in page and "“script.js” is not allowed" in page
    assert len(_blobs(app)) == 1


def test_path_traversal_and_bidi_names_never_reach_the_file_system(sender: Sender, app) -> None:
    _at_files(sender)
    sender.files([("../../../../tmp/pwned.pdf", b"1"), ("..\\..\\boot.ini.txt", b"2"), ("a\u202egpj.pdf", b"3")], action="upload")
    root = app.extensions["koerier"].store.root
    for blob in _blobs(app):
        assert blob.parent.parent == root and re.fullmatch(r"[0-9a-f]{32}", blob.name)
    page = text_of(sender.get("/send/files"))
    assert "pwned.pdf" in page and "../" not in page and "\u202e" not in page


def test_oversized_form_body_is_refused_before_reading(sender: Sender) -> None:
    r = sender.post("/send/", data={"name": "x" * (2 * 1024 * 1024)})
    assert r.status_code == 413
    assert "larger than this portal accepts" in text_of(r)


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/send/recipients", {"to": "\x00\x01", "cc": "a" * 30000}),
        ("/send/", {"name": "\x00" * 50, "phone": "+" * 40, "email": "@" * 400}),
        ("/download/", {"transaction_id": "\x00" * 90, "password": "x" * 5000}),
    ],
)
def test_malformed_forms_never_500(sender: Sender, path: str, form: dict[str, str]) -> None:
    _at_files(sender)
    r = sender.submit(path, form)
    assert 200 <= r.status_code < 500


def test_invalid_utf8_never_500(sender: Sender) -> None:
    token = csrf_token(sender.get("/download/").get_data(as_text=True))
    body = f"csrf_token={token}&transaction_id=%FF%FE%C0%AF&password=%ED%A0%80".encode()
    r = sender.post("/download/", data=body, content_type="application/x-www-form-urlencoded")
    assert 400 <= r.status_code < 500


def test_unknown_routes_and_methods_in_the_users_language(app) -> None:
    browser = Browser(app)
    browser.get("/lang/nl?next=/")
    missing = browser.get("/bestaat-niet")
    assert missing.status_code == 404 and "Deze pagina bestaat niet." in text_of(missing)
    wrong = browser.client.delete("/send/", base_url="https://portal.example.nl")
    assert wrong.status_code == 405 and "Deze pagina kan niet op deze manier worden gebruikt." in text_of(wrong)
