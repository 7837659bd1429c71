"""Password rules for transfers: length plus zxcvbn strength, or an operator
pattern such as the AGB convention ``Agb12345678!``.

A pattern is an agreed convention between parties who already share the
secret part (the AGB code), so a full match is accepted even though zxcvbn
would call it weak; the minimum length still applies.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field

from zxcvbn import zxcvbn

from .settings import Password
from .zxcvbn_text import translate

# zxcvbn keeps the user inputs of the current call in a module global.
_zxcvbn_lock = threading.Lock()
_ZXCVBN_MAX = 72

# Lower case and digits without look-alikes (0/o, 1/l/i): easy to read out
# over the phone, 5 bits per character.
GENERATED_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


@dataclass(frozen=True)
class Assessment:
    score: int
    length_ok: bool
    pattern: str | None
    warning: str = ""
    suggestions: list[str] = field(default_factory=list)
    min_score: int = 3

    @property
    def acceptable(self) -> bool:
        return self.length_ok and (self.pattern is not None or self.score >= self.min_score)


def assess(password: str, policy: Password, user_inputs: list[str]) -> Assessment:
    pattern = next((p.name for p in policy.patterns if p.matches(password)), None)
    inputs = [part for value in user_inputs for part in _input_parts(value)]
    with _zxcvbn_lock:
        result = zxcvbn(password[:_ZXCVBN_MAX], user_inputs=inputs)
    feedback = result.get("feedback") or {}
    return Assessment(
        score=int(result["score"]),
        length_ok=len(password) >= policy.min_length,
        pattern=pattern,
        warning=translate(feedback.get("warning") or ""),
        suggestions=[translate(s) for s in feedback.get("suggestions") or []],
        min_score=policy.min_score,
    )


def _input_parts(value: str) -> list[str]:
    """"Jan de Vries" and "jan.devries@zorg.nl" also yield their parts,
    and the name written as one word ("JanDeVries")."""
    parts = [value]
    for sep in (" ", "@", ".", "-", "_"):
        parts = [p for chunk in parts for p in chunk.split(sep)]
    return [value, value.replace(" ", ""), *(p for p in parts if len(p) >= 3)]


def generate(policy: Password) -> str:
    """A random password in groups of four, e.g. ``k7mq-x9pt-...`` (20 chars: 99 bits)."""
    groups = ["".join(secrets.choice(GENERATED_ALPHABET) for _ in range(4)) for _ in range(policy.generated_groups)]
    return "-".join(groups)
