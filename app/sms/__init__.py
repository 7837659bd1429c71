"""SMS gateways: how one-time codes and generated passwords reach a mobile phone.

One small interface, ``Gateway.send``, with two implementations: a
provider's HTTP API (``http``), and an outbox folder for development that
writes each message beside the outbox mails (``outbox``). ``sms.backend =
"off"`` makes no gateway; the settings then allow no rule that needs one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..settings import Settings


@dataclass(frozen=True)
class TextMessage:
    number: str  # E.164: +31612345678
    text: str


class SmsError(Exception):
    """The gateway did not take the message (refused, unreachable, too slow)."""


class Gateway(Protocol):
    def send(self, message: TextMessage) -> None: ...


def masked(number: str) -> str:
    """What a page or a log may show of a number: its last two digits."""
    return "•••• " + number[-2:]


def make_gateway(settings: Settings, instance_path: Path) -> Gateway | None:
    if settings.sms.backend == "http":
        from .http import HttpGateway

        return HttpGateway(settings.sms)
    if settings.sms.backend == "outbox":
        from .outbox import OutboxGateway

        return OutboxGateway(instance_path / settings.mail.outbox_dir)
    return None
