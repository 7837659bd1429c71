"""Development: each SMS is written as a text file beside the outbox mails.

The file holds the number and the text (a code, a password), so the folder
is the portal user's alone, like the mail outbox; the log names the file
and the number's last digits only.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timezone
from pathlib import Path

from .. import private_files
from . import TextMessage, masked

log = logging.getLogger(__name__)


class OutboxGateway:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        private_files.make_dir(folder)
        private_files.tighten(folder)

    def send(self, message: TextMessage) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%f")
        path = self.folder / f"{stamp}-{secrets.token_hex(4)}.sms"
        with private_files.create(path) as fh:
            fh.write(f"To: {message.number}\n\n{message.text}\n".encode())
        log.info("SMS to %s written to %s", masked(message.number), path)
