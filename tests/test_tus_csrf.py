"""Every tus request that changes something needs the page's CSRF token:
a missing header is refused like a wrong one, before anything changes."""

from __future__ import annotations

from sqlalchemy import select

from app import db
from app.models import Upload

from .test_tus import TUS, TusSender, metadata
from .walker import BASE


def _uploads(app) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    with app.app_context():
        return [(u.id, u.offset) for u in db.session().scalars(select(Upload))]


def test_no_csrf_header_at_all_is_refused(app, mailbox) -> None:
    tus = TusSender(app, mailbox).ready()
    created = tus.post("/send/uploads", headers={**TUS, "Upload-Length": "10", "Upload-Metadata": metadata(filename="a.pdf")})
    assert created.status_code == 403
    assert _uploads(app) == []

    location = tus.create(10).headers["Location"]
    before = _uploads(app)
    headers = {**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    assert tus.client.patch(location, base_url=BASE, data=b"0123456789", headers=headers).status_code == 403
    assert tus.client.delete(location, base_url=BASE, headers=TUS).status_code == 403
    assert _uploads(app) == before
    assert tus.head(location).headers["Upload-Offset"] == "0"
