"""Guess counters hold under a burst of parallel requests.

Real HTTP against gunicorn with 2 workers x 8 threads, on SQLite and on
PostgreSQL: every request of a burst is released at the same moment, and no
more guesses may be judged than the limit allows, whichever worker or thread
takes them.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests
from flask import Flask
from sqlalchemy import select

from app import db
from app.ids import group, new_access_id
from app.models import Event

from .live import LiveServer
from .walker import Recipient, Sender, csrf_token

# Enough Argon2 slots that no request of a burst is turned away as "busy".
RACE = {"crypto": {"argon2_max_concurrent": 8}}
BURST = 20


def burst(count: int, request: Callable[[int], str]) -> Counter[str]:
    """Runs ``request(i)`` for every i at once; counts the answers."""
    start = threading.Barrier(count)

    def run(i: int) -> str:
        start.wait()
        return request(i)

    with ThreadPoolExecutor(count) as pool:
        return Counter(pool.map(run, range(count)))


def unlock_answer(response: requests.Response) -> str:
    if response.status_code == 403 and "do not match an available transfer" in response.text:
        return "denied"
    if response.status_code == 403 and "Too many wrong attempts for this transaction ID" in response.text:
        return "locking"  # judged, and it used the last try
    if response.status_code == 429 and "Too many wrong attempts for this transaction ID" in response.text:
        return "locked"
    if response.status_code == 429 and "Too many attempts. Please try again after" in response.text:
        return "rate limited"
    return f"HTTP {response.status_code}"


def unlock_posts(app: Flask, server: LiveServer, ids: list[str], forwarded_for: str = "") -> Callable[[int], str]:
    """Wrong-password posts, one browser each, prepared before the burst."""
    prepared = []
    for i, typed in enumerate(ids):
        browser = Recipient(app)
        token = csrf_token(browser.get(f"/download/?id={typed}").get_data(as_text=True))
        headers = {"Cookie": browser.cookie_header(), "Accept-Language": "en"}
        if forwarded_for:
            headers["X-Forwarded-For"] = forwarded_for
        prepared.append((browser, headers, {"csrf_token": token, "transaction_id": typed, "password": f"wrong-{i}"}))

    def post(i: int) -> str:
        browser, headers, data = prepared[i]
        answer = requests.post(server.url + "/download/", data=data, headers=headers, allow_redirects=False, timeout=120)
        return unlock_answer(browser.follow_refusal(answer))

    return post


def events(app: Flask, kind: str) -> list[Event]:
    with db.new_session(app) as session:
        return list(session.scalars(select(Event).where(Event.kind == kind)))


def test_parallel_wrong_passwords_get_at_most_max_attempts_guesses(make_live, mailbox) -> None:
    config = {**RACE, "limits": {"failed_downloads_per_ip_per_hour": 1000}}
    app, server = make_live(config, workers=2, threads=8)
    real = Sender(app, mailbox).send().access_id("anna@gemeente.example")
    unknown = group(new_access_id())

    answers = {}
    for typed in (real, unknown):
        answers[typed] = burst(BURST, unlock_posts(app, server, [typed] * BURST))
        # Judged guesses answer "do not match" or, the last, start the lock; the rest are refused unjudged.
        assert set(answers[typed]) == {"denied", "locking", "locked"}, answers[typed]
        assert answers[typed]["denied"] + answers[typed]["locking"] <= 5
    # An unknown ID is counted and locked like a real one.
    assert answers[real] == answers[unknown]
    failed = events(app, "download_failed")
    assert len(failed) == sum(answers[typed]["denied"] + answers[typed]["locking"] for typed in (real, unknown))
    assert len(events(app, "download_locked")) == 2


def test_parallel_wrong_passwords_from_one_ip_stay_within_its_limit(make_live, mailbox) -> None:
    config = {
        **RACE, "site": {"trusted_proxies": 1},
        "limits": {"failed_downloads_per_ip_per_hour": 5},
    }
    app, server = make_live(config, workers=2, threads=8)
    ids = [group(new_access_id()) for _ in range(BURST)]
    answers = burst(BURST, unlock_posts(app, server, ids, forwarded_for="203.0.113.7"))
    assert set(answers) == {"denied", "rate limited"}, answers
    assert answers["denied"] <= 5
    assert len(events(app, "download_failed")) == answers["denied"]


def test_parallel_wrong_codes_are_checked_at_most_max_attempts_times(make_live, mailbox) -> None:
    app, server = make_live(RACE, workers=2, threads=8)
    sender = Sender(app, mailbox)
    sender.personal()
    real = mailbox.code_for(sender.person.email)
    wrong = "00000000" if real != "00000000" else "11111111"
    token = csrf_token(sender.get("/send/verify").get_data(as_text=True))
    headers = {"Cookie": sender.cookie_header(), "Accept-Language": "en"}

    def verify(code: str) -> requests.Response:
        answer = requests.post(
            server.url + "/send/verify", data={"csrf_token": token, "code": code}, headers=headers, allow_redirects=False, timeout=120
        )
        return sender.follow_refusal(answer)

    def post(_: int) -> str:
        # One browser: its parallel refusals share the draft, whose page
        # shows the last one; what counts is how many codes were checked.
        answer = requests.post(
            server.url + "/send/verify", data={"csrf_token": token, "code": wrong}, headers=headers, allow_redirects=False, timeout=120
        )
        return "refused" if answer.status_code == 303 and answer.headers["Location"] == "/send/verify" else f"HTTP {answer.status_code}"

    answers = burst(16, post)
    assert set(answers) == {"refused"}, answers
    # Every try judged left a trace, and no more than five were judged.
    assert len(events(app, "verification_failed")) <= 5
    # And the right code no longer helps.
    r = verify(real)
    assert r.status_code == 422 and "Too many wrong attempts" in r.text
