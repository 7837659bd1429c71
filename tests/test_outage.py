"""The database going away, and coming back, in the middle of a walk.

The tests' PostgreSQL server is stopped between two steps of a sender's
walk and started again (on the same data, before the test ends whatever
happens). While it is down, pages answer 503 with the portal's "try again
in a moment" in its layout, a form post is offered again as it was typed,
and tus requests get JSON with Retry-After; the log names the cause,
without a traceback. Once it is back, the walk goes on where it stood, the
upload from its last offset, and the file downloads intact.
"""

from __future__ import annotations

import html
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from flask_wtf import FlaskForm
from werkzeug.test import TestResponse
from wtforms import PasswordField

from app.crypto.stream import SEGMENT_SIZE
from app.errors import SECRET_FIELDS
from download import forms as download_forms
from wizard import forms as wizard_forms

from .conftest import Setup
from .pg import PostgresServer
from .test_tus import TusSender
from .walker import BASE, Browser, csrf_token, text_of

# About a database server going away: PostgreSQL's, which the tests can stop.
pytestmark = pytest.mark.setup("distributed")

UNAVAILABLE = "The portal is temporarily unavailable. Please try again in a moment."
# What a browser says it takes when it opens a page or posts a form.
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@contextmanager
def down(server: PostgresServer) -> Iterator[None]:
    """The server stopped for the block, as an outage stops it, and started again."""
    server.halt()
    try:
        yield
    finally:
        server.resume()


def _at_recipients(app, mailbox) -> tuple[TusSender, str]:  # type: ignore[no-untyped-def]
    """A verified sender, in a browser, at the recipients step; and that form's token."""
    sender = TusSender(app, mailbox)
    sender.client.environ_base["HTTP_ACCEPT"] = BROWSER_ACCEPT
    sender.personal()
    sender.verify()
    return sender, csrf_token(sender.get("/send/recipients").get_data(as_text=True))


def _hidden_fields(page: TestResponse) -> list[tuple[str, str]]:
    fields = re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page.get_data(as_text=True))
    return [(html.unescape(name), html.unescape(value)) for name, value in fields]


def _down_page(response: TestResponse) -> None:
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    # It may hold what was typed: never kept by a browser or a proxy.
    assert response.headers["Cache-Control"] == "no-store" and "Content-Security-Policy" in response.headers
    page = text_of(response)
    assert UNAVAILABLE in page and "Gemeente Voorbeeld" in page  # in the portal's layout
    assert "Traceback" not in page and "OperationalError" not in page


def test_a_walk_survives_the_database_going_away(make_app, mailbox, postgres, setup: Setup, caplog) -> None:
    sender, token = _at_recipients(make_app(), mailbox)
    typed = {"csrf_token": token, "to": "anna@gemeente.example", "cc": "kees@gemeente.example", "bcc": ""}
    with down(postgres):
        _down_page(sender.get("/send/recipients"))
        refused = sender.post("/send/recipients", data=typed)
    _down_page(refused)
    # What was typed comes back with the page, to be sent again by its "Try again" button.
    assert set(typed.items()) <= set(_hidden_fields(refused))
    again = sender.post("/send/recipients", data=dict(_hidden_fields(refused)))
    assert again.status_code == 302 and again.location.endswith("/send/files")

    # A resumable upload: its first segment is in when the database goes.
    sender.token = sender.upload_token()
    data = os.urandom(3 * SEGMENT_SIZE + 1000)
    location = sender.create(len(data)).headers["Location"]
    first = sender.patch(location, 0, data[:SEGMENT_SIZE], Accept="*/*")
    assert first.status_code == 204 and first.headers["Upload-Offset"] == str(SEGMENT_SIZE)
    with down(postgres):
        cut = sender.patch(location, SEGMENT_SIZE, data[SEGMENT_SIZE:], Accept="*/*")
        asked = sender.client.head(location, base_url=BASE, headers={"Tus-Resumable": "1.0.0", "Accept": "*/*"})
    for answer in (cut, asked):
        assert answer.status_code == 503
        assert int(answer.headers["Retry-After"]) > 0 and answer.headers["Tus-Resumable"] == "1.0.0"
    assert cut.json == {"error": UNAVAILABLE}

    assert sender.head(location).headers["Upload-Offset"] == str(SEGMENT_SIZE)
    rest = sender.patch(location, SEGMENT_SIZE, data[SEGMENT_SIZE:], Accept="*/*")
    assert rest.status_code == 204 and rest.headers["Upload-Offset"] == str(len(data))
    recipient = sender.open_uploaded("anna@gemeente.example")
    assert recipient.get(recipient.file_links()["scan.zip"]).data == data

    # The operator reads why, once per request, and no traceback.
    causes = [r for r in caplog.records if "storage.database_url" in r.getMessage() and "unavailable" in r.getMessage()]
    assert len(causes) == 4 and all(r.levelno == logging.ERROR for r in causes)
    assert all("Connection refused" in r.getMessage() for r in causes)
    assert not [r for r in caplog.records if r.exc_info]


def test_a_password_is_typed_again_not_written_into_the_page(make_app, mailbox, postgres, setup: Setup) -> None:
    """The page offers the post again without its secrets: a password, an
    access key or a code would otherwise sit in the page's source, where a
    shared computer's session restore or an extension reads it."""
    recipient = Browser(make_app())
    recipient.client.environ_base["HTTP_ACCEPT"] = BROWSER_ACCEPT
    token = csrf_token(recipient.get("/download/").get_data(as_text=True))
    typed = {"csrf_token": token, "transaction_id": "ABCD-EFGH", "password": "Zomer-Appel-Rivier-42", "key": "k3y-fr0m-l1nk"}
    with down(postgres):
        refused = recipient.post("/download/", data=typed)
    _down_page(refused)
    assert "Zomer-Appel-Rivier-42" not in refused.get_data(as_text=True)
    assert "k3y-fr0m-l1nk" not in refused.get_data(as_text=True)
    assert dict(_hidden_fields(refused)) == {"csrf_token": token, "transaction_id": "ABCD-EFGH"}
    # "Try again" then asks for the password, without counting an attempt.
    asked = recipient.post("/download/", data=dict(_hidden_fields(refused)))
    assert asked.status_code == 422 and "ABCD-EFGH" in asked.get_data(as_text=True)
    assert "Please enter the password" in text_of(asked)


def test_a_step_whose_commit_fails_is_offered_again(make_app, mailbox, setup: Setup) -> None:
    """The view has done its work and the request commits at its end, when
    the database ends its connection (here: while the commit waits for a
    row another session holds). Nothing of the step stays; it comes back
    as typed, and goes through once the database answers."""
    sender, token = _at_recipients(make_app(), mailbox)
    typed = {"csrf_token": token, "to": "anna@gemeente.example", "cc": "", "bcc": ""}
    plain_url = setup.database_url.replace("+psycopg", "")
    answers: list[TestResponse] = []
    with psycopg.connect(plain_url) as holder, psycopg.connect(plain_url, autocommit=True) as admin:
        holder.execute("SELECT id FROM draft FOR UPDATE")
        posting = threading.Thread(target=lambda: answers.append(sender.post("/send/recipients", data=typed)))
        posting.start()
        deadline = time.monotonic() + 60  # only catches a hang
        while not (waiting := admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchall()):
            assert time.monotonic() < deadline, "the commit never waited for the row"
            time.sleep(0.05)
        [(pid,)] = waiting
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        posting.join(timeout=60)
    [refused] = answers
    _down_page(refused)
    assert set(typed.items()) <= set(_hidden_fields(refused))
    assert sender.get("/send/files").location.endswith("/send/recipients")  # the step did not stay
    again = sender.post("/send/recipients", data=dict(_hidden_fields(refused)))
    assert again.status_code == 302 and again.location.endswith("/send/files")


def test_a_restart_between_two_requests_costs_no_request(make_app, mailbox, postgres, setup: Setup) -> None:
    """Pooled connections die with the server; the next request tests its
    connection first and takes a new one instead of failing."""
    sender, _token = _at_recipients(make_app(), mailbox)
    assert sender.get("/readyz").status_code == 200
    postgres.halt()
    postgres.resume()
    assert sender.get("/readyz").status_code == 200
    assert sender.get("/send/recipients").status_code == 200


def test_readiness_names_the_database_while_it_is_down(make_app, postgres, setup: Setup, caplog) -> None:
    client = make_app().test_client()
    assert client.get("/readyz").json == {"database": "ok", "migrations": "ok", "storage": "ok"}
    with down(postgres):
        ready = client.get("/readyz")
        alive = client.get("/healthz")
    assert ready.status_code == 503
    assert ready.json == {"database": "unreachable", "migrations": "unknown", "storage": "ok"}
    # Alive all the same: restarting the worker would not bring the database back.
    assert alive.status_code == 200
    assert any("storage.database_url" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert client.get("/readyz").status_code == 200


def test_every_password_field_is_a_secret_the_page_leaves_out(make_app, setup: Setup) -> None:
    with make_app().test_request_context():
        forms = [
            cls
            for module in (wizard_forms, download_forms)
            for cls in vars(module).values()
            if isinstance(cls, type) and issubclass(cls, FlaskForm) and cls.__module__ == module.__name__
        ]
        passwords = {f.name for form in forms for f in form(meta={"csrf": False}) if isinstance(f, PasswordField)}
    assert passwords and passwords <= SECRET_FIELDS
