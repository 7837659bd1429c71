"""Every byte of a file served to a recipient leaves a trace: a retrieval
record, an audit event and (when asked) a notice to the sender. Once per
download session and way of serving, however the bytes are asked for."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app import db, purge
from app.clock import utcnow
from app.models import Event, Retrieval

from .walker import Recipient, Sender

PASSWORD = "Zonnebloem-Kade-1987!"
CONTENT = bytes(range(256)) * 1000  # 256 kB: several segments
FILES = [("verslag.pdf", CONTENT), ("foto.jpg", b"\xff\xd8 photo" * 50)]


def _opened(sender: Sender, app) -> Recipient:
    sent = sender.send(files=FILES, notify_retrieval="y")
    recipient = Recipient(app)
    assert recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD).status_code == 302
    return recipient


def _trail(app) -> tuple[list[tuple[str, str]], list[str]]:
    with app.app_context():
        s = db.session()
        rows = [(r.how, r.file_id) for r in s.scalars(select(Retrieval).order_by(Retrieval.id))]
        kinds = [e.kind for e in s.scalars(select(Event).where(Event.kind.in_(
            ("file_downloaded", "file_previewed", "archive_downloaded"))).order_by(Event.id))]
    return rows, kinds


def _notices(app, mailbox, sender: Sender) -> list:
    with app.app_context():
        purge.run(lambda: db.new_session(app), app.extensions["koerier"], utcnow() + timedelta(minutes=10))
    return [m for m in mailbox.to(sender.person.email) if "has downloaded" in m.message["Subject"]]


def test_a_suffix_range_for_the_whole_file_is_a_retrieval(sender: Sender, app, mailbox) -> None:
    recipient = _opened(sender, app)
    url = recipient.file_links()["verslag.pdf"]
    r = recipient.get(url, headers={"Range": f"bytes=-{len(CONTENT)}"})
    assert r.status_code == 206 and r.data == CONTENT
    rows, kinds = _trail(app)
    assert [how for how, _ in rows] == ["download"] and kinds == ["file_downloaded"]
    assert len(_notices(app, mailbox, sender)) == 1


def test_any_range_counts_once_per_session(sender: Sender, app) -> None:
    recipient = _opened(sender, app)
    url = recipient.file_links()["verslag.pdf"]
    for header in ("bytes=70000-70010", "bytes=-1", "bytes=100000-", "bytes=0-0"):
        assert recipient.get(url, headers={"Range": header}).status_code == 206
    assert recipient.get(url).data == CONTENT
    rows, kinds = _trail(app)
    assert len(rows) == 1 and kinds == ["file_downloaded"]
    # A range that serves nothing is no retrieval.
    assert recipient.get(url, headers={"Range": f"bytes={len(CONTENT) + 5}-"}).status_code == 416
    assert len(_trail(app)[0]) == 1


def test_a_range_that_serves_nothing_is_no_retrieval(sender: Sender, app) -> None:
    recipient = _opened(sender, app)
    url = recipient.file_links()["verslag.pdf"]
    assert recipient.get(url, headers={"Range": f"bytes={len(CONTENT) + 5}-"}).status_code == 416
    assert _trail(app) == ([], [])


def test_a_preview_is_a_retrieval(sender: Sender, app, mailbox) -> None:
    recipient = _opened(sender, app)
    file_id = recipient.file_links()["verslag.pdf"].rsplit("/", 1)[1]
    r = recipient.get(f"/download/file/{file_id}/preview", headers={"Range": "bytes=1000-"})
    assert r.status_code == 206 and r.data == CONTENT[1000:]
    rows, kinds = _trail(app)
    assert rows == [("preview", file_id)] and kinds == ["file_previewed"]
    assert len(_notices(app, mailbox, sender)) == 1


def test_the_archive_counts_every_file_once_per_session(sender: Sender, app) -> None:
    recipient = _opened(sender, app)
    assert recipient.get("/download/all").status_code == 200
    assert recipient.get("/download/all").status_code == 200
    rows, kinds = _trail(app)
    assert sorted(how for how, _ in rows) == ["archive", "archive"] and kinds == ["archive_downloaded"]


def test_parallel_range_requests_leave_exactly_one_record(make_live, mailbox) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import requests

    app, server = make_live(workers=2)
    recipient = _opened(Sender(app, mailbox), app)
    url = server.url + recipient.file_links()["verslag.pdf"]
    cookie = recipient.cookie_header()

    def fetch(i: int) -> int:
        r = requests.get(url, headers={"Cookie": cookie, "Range": f"bytes={i * 1000}-{i * 1000 + 99}"}, timeout=60)
        assert r.content == CONTENT[i * 1000 : i * 1000 + 100]
        return r.status_code

    with ThreadPoolExecutor(20) as pool:
        assert set(pool.map(fetch, range(20))) == {206}
    rows, kinds = _trail(app)
    assert len(rows) == 1 and kinds == ["file_downloaded"]
