"""File names the sender chose to show in the notification mails.

With "Show file names in notification mails" on, the names go out in clear
mail to every recipient. The server keeps them, sealed under a key of its
own, for as long as the transfer lives, so that My transfers, its report and
a notification sent again name the files as the first mail did. With the
option off nothing is kept here: the names stay sealed under the transfer's
data key, which the server does not hold, and no page of the server can
name them (the status link's page can: its token opens the manifest).
"""

from __future__ import annotations

import json

from sqlalchemy.orm import Session

from .crypto.keys import derive, unwrap, wrap
from .models import ExposedNames
from .portal import Portal


def _key(portal: Portal) -> bytes:
    return derive(portal.server_secret, "koerier/exposed-names/v1")


def _aad(transfer_id: str) -> bytes:
    return f"exposed-names/{transfer_id}".encode()


def keep(db: Session, portal: Portal, transfer_id: str, names: list[str]) -> None:
    """Only for a transfer that shows its file names in the mails."""
    db.add(ExposedNames(transfer_id=transfer_id, names_ct=wrap(_key(portal), json.dumps(names).encode(), _aad(transfer_id))))


def find(db: Session, portal: Portal, transfer_id: str) -> list[str] | None:
    """The names in file order, or None where the server may not know them."""
    row = db.get(ExposedNames, transfer_id)
    if row is None:
        return None
    return list(json.loads(unwrap(_key(portal), row.names_ct, _aad(transfer_id))))
