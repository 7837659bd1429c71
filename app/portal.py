"""The services' shared parts, bundled once per app.

Services take a ``Portal`` (plain Python, no Flask globals), so the same
function serves a view, the CLI, the scheduler and a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .argon2_gate import Argon2Gate
from .crypto.keys import derive
from .mailer import Mailer
from .settings import Settings
from .sms import Gateway
from .storage import BlobStore


@dataclass(frozen=True)
class Portal:
    settings: Settings
    store: BlobStore
    mailer: Mailer
    instance_path: Path
    server_secret: bytes
    argon2_gate: Argon2Gate
    # None with sms.backend = "off": then no rule asks for SMS.
    sms: Gateway | None = None

    @property
    def notice_key(self) -> bytes:
        """Seals a downloaded file's name for the few minutes until the sender is told."""
        return derive(self.server_secret, "koerier/notice/v1")

    @property
    def code_key(self) -> bytes:
        """HMAC key for verification codes, so a database dump cannot be brute-forced offline."""
        return derive(self.server_secret, "koerier/verification/v1")

    @property
    def recipient_code_key(self) -> bytes:
        """HMAC key for recipients' one-time codes (app/recipient_codes.py)."""
        return derive(self.server_secret, "koerier/recipient-code/v1")
