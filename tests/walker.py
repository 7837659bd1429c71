"""Walking the wizard and the download pages like a browser would.

Each step fetches its page, takes the CSRF token from the form, and posts;
mails are read from the real SMTP server. Tests call the steps one by one
to poke at a step, or ``send`` for a whole transaction.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse
from werkzeug.wrappers import Response

from .mailbox import Mailbox, Received

BASE = "https://portal.example.nl"
# The manual password the options step chooses unless a test says otherwise.
PASSWORD = "Zonnebloem-Kade-1987!"


def csrf_token(page: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page) or re.search(
        r'type="hidden" name="csrf_token" value="([^"]+)"', page
    )
    assert match, "no CSRF token on the page"
    return match.group(1)


def multipart(parts: list[tuple[str, str | tuple[str, bytes]]]) -> tuple[bytes, str]:
    """A multipart/form-data body in the given order, as a browser sends it.

    Built here rather than by the test client, which spools large bodies
    through temporary files of its own.
    """
    boundary = "----KoerierTestBoundary7MA4YWxkTrZu0gW"
    out = bytearray()
    for name, value in parts:
        out += f"--{boundary}\r\n".encode()
        if isinstance(value, tuple):
            filename, content = value
            out += f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'.encode()
            out += b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n"
        else:
            out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value.encode() + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def text_of(response: TestResponse) -> str:
    """The page as text, entities decoded, for assertions on messages."""
    return html.unescape(response.get_data(as_text=True))


class HttpClient:
    """The part of Flask's test client the walker uses, over real HTTP to
    ``url`` (a live server, or a proxy in front of several), with the
    cookies a browser keeps and the ``Origin`` it sends with every post.
    Paths go to ``url``: the test client's ``base_url`` is taken and ignored."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        # As in Flask's test client: HTTP_* entries are sent as headers.
        self.environ_base: dict[str, str] = {}

    def open(
        self, method: str, path: str, base_url: str | None = None, data: Any = None,
        headers: dict[str, str] | None = None, content_type: str | None = None,
    ) -> Response:
        base = self.environ_base.items()
        sent = {key[5:].replace("_", "-").title(): value for key, value in base if key.startswith("HTTP_")}
        if method not in ("GET", "HEAD", "OPTIONS"):
            sent["Origin"] = self.url
        if content_type:
            sent["Content-Type"] = content_type
        sent.update(headers or {})
        answer = self.session.request(
            method, urljoin(self.url, path), data=data, headers=sent, allow_redirects=False, timeout=120
        )
        return Response(answer.content, status=answer.status_code, headers=list(answer.headers.items()))

    def get(self, path: str, **kw: Any) -> Response:
        return self.open("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Response:
        return self.open("POST", path, **kw)

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)


class Browser:
    """A test client that talks https to the portal, like a real deployment;
    with ``via``, a browser that does so over real HTTP to that address."""

    def __init__(self, app: Flask, via: str | None = None) -> None:
        self.app = app
        self.via = via
        self.client: FlaskClient | HttpClient = HttpClient(via) if via else app.test_client()
        # An English-speaking browser unless a test switches with /lang/nl.
        self.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en-GB,en;q=0.9"

    def get(self, path: str, **kw: Any) -> TestResponse:
        return self.client.get(path, base_url=BASE, **kw)

    def post(self, path: str, **kw: Any) -> TestResponse:
        """As a browser does, a refusal's "303 See Other" is followed to the
        page that shows it; other redirects are returned as they are."""
        answer = self.client.post(path, base_url=BASE, **kw)
        if answer.status_code == 303:
            return self.get(answer.location)
        return answer

    def restart_on(self, app: Flask) -> None:
        """Go on with this browser's cookies on another app: the portal restarted, e.g. with a new config."""
        cookies = list(self.client._cookies.values())
        language = self.client.environ_base["HTTP_ACCEPT_LANGUAGE"]
        self.app, self.client = app, app.test_client()
        self.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
        for cookie in cookies:
            self.client.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)

    def cookie_header(self) -> str:
        """This browser's cookies, for another HTTP client to carry on the session."""
        if isinstance(self.client, HttpClient):
            return self.client.cookie_header()
        return "; ".join(f"{c.key}={c.value}" for c in self.client._cookies.values())

    def follow_refusal(self, answer: requests.Response) -> requests.Response:
        """For another HTTP client: as a browser does, follow a refusal's
        "303 See Other" to the page that shows it, with the cookie it set."""
        if answer.status_code != 303:
            return answer
        cookies = dict(c.split("=", 1) for c in self.cookie_header().split("; ") if c)
        cookies.update(answer.cookies.get_dict())
        page = urljoin(answer.url, answer.headers["Location"])
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        return requests.get(page, headers={"Cookie": cookie, "Accept-Language": "en"}, allow_redirects=False, timeout=60)

    def submit(self, path: str, data: dict[str, Any] | None = None, page: str | None = None, **kw: Any) -> TestResponse:
        """Fetch ``page`` (default: ``path``) for its token, then post ``data`` to ``path``."""
        token = csrf_token(self.get(page or path).get_data(as_text=True))
        return self.post(path, data={"csrf_token": token, **(data or {})}, **kw)


@dataclass
class Person:
    name: str = "Jan de Vries"
    phone: str = "0592 123456"
    email: str = "jan@zorg.example"


@dataclass
class Sent:
    """What a finished wizard left behind, for the download side."""

    summary: TestResponse
    notifications: dict[str, Received] = field(default_factory=dict)

    def link(self, address: str) -> str:
        match = re.search(r"(https?://[^/\s]+/download/\?\S+)", self.notifications[address].text)
        assert match, "no download link in the mail"
        return match.group(1)

    def access_id(self, address: str) -> str:
        return parse_qs(urlsplit(self.link(address)).query)["id"][0]

    def link_key(self, address: str) -> str:
        return parse_qs(urlsplit(self.link(address)).fragment)["key"][0]

    @property
    def generated_password(self) -> str:
        match = re.search(r'<code id="generated-password">([^<]+)</code>', self.summary.get_data(as_text=True))
        assert match, "no generated password on the summary"
        return match.group(1)


class Sender(Browser):
    def __init__(self, app: Flask, mailbox: Mailbox, person: Person | None = None, via: str | None = None) -> None:
        super().__init__(app, via)
        self.mailbox = mailbox
        self.person = person or Person()

    def personal(self, **overrides: str) -> TestResponse:
        data = {"name": self.person.name, "phone": self.person.phone, "email": self.person.email, **overrides}
        return self.submit("/send/", data)

    def verify(self, code: str | None = None) -> TestResponse:
        return self.submit("/send/verify", {"code": code or self.mailbox.code_for(self.person.email)})

    def recipients(self, to: str = "", cc: str = "", bcc: str = "") -> TestResponse:
        return self.submit("/send/recipients", {"to": to, "cc": cc, "bcc": bcc})

    def files(self, files: list[tuple[str, bytes]] = (), message: str = "", action: str = "next") -> TestResponse:
        token = csrf_token(self.get("/send/files").get_data(as_text=True))
        parts: list[tuple[str, str | tuple[str, bytes]]] = [("csrf_token", token)]
        parts += [("files", (name, content)) for name, content in files] or [("files", ("", b""))]
        parts += [("message", message), ("action", action)]
        body, content_type = multipart(parts)
        return self.post("/send/files", data=body, content_type=content_type)

    def upload_token(self) -> str:
        """The CSRF token a script on the files page sends with resumable uploads."""
        return csrf_token(self.get("/send/files").get_data(as_text=True))

    def options(self, **overrides: Any) -> TestResponse:
        page = self.get("/send/options").get_data(as_text=True)
        expires = re.search(r'<input[^>]*name="expires_on"[^>]*value="([^"]*)"', page)
        data: dict[str, Any] = {
            "expires_on": expires.group(1) if expires else "",
            "recipient_language": "en",
            "notify_confirmation": "y",
            "password_mode": "manual",
            "password": PASSWORD,
            "password_repeat": PASSWORD,
        }
        data.update(overrides)
        data = {k: v for k, v in data.items() if v is not None}
        return self.post("/send/options", data={"csrf_token": csrf_token(page), **data})

    def notification(self, **overrides: str) -> TestResponse:
        page = self.get("/send/notification").get_data(as_text=True)
        subject = re.search(r'<input[^>]*name="subject"[^>]*value="([^"]*)"', page)
        body = re.search(r'<textarea[^>]*name="body"[^>]*>\s*(.*?)</textarea>', page, re.S)
        data = {
            "subject": html.unescape(subject.group(1)) if subject else "",
            "body": html.unescape(body.group(1)) if body else "",
            **overrides,
        }
        return self.post("/send/notification", data={"csrf_token": csrf_token(page), **data})

    def send(
        self,
        to: str = "anna@gemeente.example",
        cc: str = "",
        bcc: str = "",
        files: list[tuple[str, bytes]] = (("verslag.pdf", b"%PDF-1.4 test report\n"),),
        message: str = "",
        **options: Any,
    ) -> Sent:
        """A whole transaction; returns the summary and the notification mails."""
        self.mailbox.clear()
        r = self.personal()
        assert r.status_code == 302, r.get_data(as_text=True)
        if r.location.endswith("/send/verify"):
            r = self.verify()
            assert r.status_code == 302, text_of(r)
        r = self.recipients(to, cc, bcc)
        assert r.status_code == 302, text_of(r)
        r = self.files(list(files), message)
        assert r.status_code == 302, text_of(r)
        return self.finish(re.split(r"[\s,;]+", " ".join((to, cc, bcc)).strip()), **options)

    def open_uploaded(self, address: str = "anna@gemeente.example") -> "Recipient":
        """With the files already uploaded (resumably): start the transaction
        and return a recipient who has opened it."""
        assert self.files(action="next").status_code == 302
        sent = self.finish([address])
        recipient = Recipient(self.app, self.via)
        recipient.unlock(sent.access_id(address), PASSWORD)
        return recipient

    def replier(self, person: Person) -> "Sender":
        """``person``, a recipient of a transaction this sender starts, having
        followed its "Reply securely" link and verified: at the reply's files step."""
        mail = self.send(to=person.email).notifications[person.email]
        reply = re.search(r"https://portal\.example\.nl(/send/reply/\S+)", mail.text).group(1)
        replier = Sender(self.app, self.mailbox, person)
        page = replier.get(reply)
        assert replier.post(reply, data={"csrf_token": csrf_token(page.get_data(as_text=True))}).status_code == 302
        replier.personal()
        replier.verify()
        return replier

    def finish(self, addresses: Sequence[str] = ("anna@gemeente.example",), **options: Any) -> Sent:
        """From the files step on: options, notification mail, "Start transaction"."""
        r = self.options(**options)
        assert r.status_code == 302, text_of(r)
        summary = self.notification()
        assert summary.status_code == 200, text_of(summary)
        sent = Sent(summary)
        for address in addresses:
            sent.notifications[address] = self.mailbox.last_to(address)
        return sent


class Recipient(Browser):
    def unlock(self, access_id: str, password: str) -> TestResponse:
        return self.submit(
            "/download/", {"transaction_id": access_id, "password": password}, page=f"/download/?id={access_id}"
        )

    def open_link(self, link: str) -> TestResponse:
        """As a browser does: the fragment stays in the browser, the page posts the key."""
        parts = urlsplit(link.removeprefix(BASE))
        return self.submit(
            "/download/",
            {"transaction_id": parse_qs(parts.query)["id"][0], "key": parse_qs(parts.fragment)["key"][0]},
            page=parts._replace(fragment="").geturl(),
        )

    def file_links(self) -> dict[str, str]:
        """File name -> download URL, as listed on the transfer page."""
        page = self.get("/download/transfer").get_data(as_text=True)
        pairs = re.findall(r'<td class="file-name"[^>]*>([^<]*)</td>.*?<a href="(/download/file/[^"/]+)"', page, re.S)
        return {html.unescape(name): href for name, href in pairs}
