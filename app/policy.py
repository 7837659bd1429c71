"""Who may send what to whom: the operator's ``[[rules]]``.

Rules are tried top to bottom for each (sender, recipient) pair; the first
whose sender and recipient patterns both match decides, and ``[policy]
default`` decides when none does. A rule denies (with a reason the sender
reads) or allows, optionally tightening the limits of ``[transfer]`` and
``[password]``. A transfer to several recipients gets the strictest
combination of the rules that apply to each of them; one sent through an
upload portal or by an upload request, the strictest of that and the
portal's or request's own limits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from .settings import MESSAGE_RULES, RECIPIENT_VERIFICATIONS, SCAN_RULES, TOGGLES, Rule, Settings, localized

DEFAULT_RULE = "(default)"
# Refused recipients named in one audit event; the rest are counted.
AUDITED_REFUSALS = 10


def matches(pattern: str, address: str) -> bool:
    """``*``, an exact address, ``*@domain`` or ``*@*.domain`` (subdomains only)."""
    pattern, address = pattern.lower(), address.lower()
    if pattern == "*":
        return True
    domain = address.rpartition("@")[2]
    if pattern.startswith("*@*."):
        return domain.endswith(pattern[3:])
    if pattern.startswith("*@"):
        return domain == pattern[2:]
    return address == pattern


@dataclass(frozen=True)
class Limits:
    """What a transfer may be, after the rules for all its recipients."""

    max_total_bytes: int
    max_files: int
    max_recipients: int
    max_expiry_days: int
    password_modes: tuple[str, ...]
    allowed_extensions: frozenset[str] | None  # None: any
    expose_filenames: str
    retrieval_notice: str
    confidential_message: str
    edit_notification: bool
    # "required": every file is scanned for malware before it joins the transfer.
    scan: str = "off"
    recipient_verification: str = "none"
    recipient_verification_choice: bool = False
    password_by_sms: bool = False
    rules: tuple[str, ...] = ()

    def extension_allowed(self, filename: str) -> bool:
        if self.allowed_extensions is None:
            return True
        stem, dot, ext = filename.rpartition(".")
        return (ext.lower() if dot and stem else "") in self.allowed_extensions

    @staticmethod
    def fixed(toggle: str) -> bool:
        return toggle in ("never", "always")

    @staticmethod
    def default_on(toggle: str) -> bool:
        return toggle in ("on", "always")

    def verifications(self, sms_gateway: bool) -> tuple[str, ...]:
        """The recipients' second factors a sender may choose: the rules'
        minimum, and the stronger ones where the rules allow a choice (SMS
        only with a gateway)."""
        if not self.recipient_verification_choice:
            return (self.recipient_verification,)
        at_least = RECIPIENT_VERIFICATIONS.index(self.recipient_verification)
        return tuple(v for v in RECIPIENT_VERIFICATIONS[at_least:] if v != "sms" or sms_gateway)


def base_limits(settings: Settings) -> Limits:
    t, p = settings.transfer, settings.password
    return Limits(
        max_total_bytes=t.max_total_bytes,
        max_files=t.max_files,
        max_recipients=t.max_recipients,
        max_expiry_days=t.max_expiry_days,
        password_modes=tuple(p.modes),
        allowed_extensions=_extensions(t.allowed_extensions),
        expose_filenames=t.expose_filenames,
        retrieval_notice=t.retrieval_notice,
        confidential_message=t.confidential_message,
        edit_notification=t.edit_notification,
        scan="required" if settings.scan.backend == "clamd" else "off",
        recipient_verification=t.recipient_verification,
        recipient_verification_choice=t.recipient_verification_choice,
        password_by_sms=t.password_by_sms,
    )


def _extensions(listed: list[str]) -> frozenset[str] | None:
    return None if "*" in listed else frozenset(listed)


def rule_for(settings: Settings, sender: str, recipient: str) -> Rule | None:
    """The first rule matching the pair, or None when the default applies."""
    for rule in settings.rules:
        if any(matches(p, sender) for p in rule.senders) and any(matches(p, recipient) for p in rule.recipients):
            return rule
    return None


def apply(base: Limits, rule: Rule) -> Limits:
    """One rule's overrides on top of the global limits."""
    changes: dict[str, object] = {"rules": (rule.name,)}
    for key in ("max_total_bytes", "max_files", "max_recipients", "max_expiry_days", "expose_filenames", "retrieval_notice",
                "confidential_message", "edit_notification", "scan", "recipient_verification",
                "recipient_verification_choice", "password_by_sms"):
        if getattr(rule, key) is not None:
            changes[key] = getattr(rule, key)
    if rule.password_modes is not None:
        changes["password_modes"] = tuple(rule.password_modes)
    if rule.allowed_extensions is not None:
        changes["allowed_extensions"] = _extensions(rule.allowed_extensions)
    return replace(base, **changes)


# Strictness orders, strictest first. File names in clear-text mail leak
# information, so "never" is strictest; a retrieval notice is an extra
# safeguard for the sender, so "always" is strictest there.
_STRICT = {
    "expose_filenames": ("never", "off", "on", "always"),
    "retrieval_notice": ("always", "on", "off", "never"),
    "confidential_message": ("forbidden", "required", "allowed"),
    "scan": SCAN_RULES,
    "recipient_verification": tuple(reversed(RECIPIENT_VERIFICATIONS)),
}
assert set(_STRICT["expose_filenames"]) == set(TOGGLES) and set(_STRICT["confidential_message"]) == set(MESSAGE_RULES)
assert SCAN_RULES[0] == "required"


def strictest(a: Limits, b: Limits) -> Limits:
    def pick(key: str) -> str:
        order = _STRICT[key]
        return min(getattr(a, key), getattr(b, key), key=order.index)

    if a.allowed_extensions is None:
        extensions = b.allowed_extensions
    elif b.allowed_extensions is None:
        extensions = a.allowed_extensions
    else:
        extensions = a.allowed_extensions & b.allowed_extensions
    return Limits(
        max_total_bytes=min(a.max_total_bytes, b.max_total_bytes),
        max_files=min(a.max_files, b.max_files),
        max_recipients=min(a.max_recipients, b.max_recipients),
        max_expiry_days=min(a.max_expiry_days, b.max_expiry_days),
        password_modes=tuple(m for m in a.password_modes if m in b.password_modes),
        allowed_extensions=extensions,
        expose_filenames=pick("expose_filenames"),
        retrieval_notice=pick("retrieval_notice"),
        confidential_message=pick("confidential_message"),
        edit_notification=a.edit_notification and b.edit_notification,
        scan=pick("scan"),
        recipient_verification=pick("recipient_verification"),
        recipient_verification_choice=a.recipient_verification_choice and b.recipient_verification_choice,
        # A recipient whose rule sends the password by SMS gets it so whoever they share the transfer with.
        password_by_sms=a.password_by_sms or b.password_by_sms,
        rules=tuple(dict.fromkeys((*a.rules, *b.rules))),
    )


@dataclass(frozen=True)
class Refusal:
    address: str
    rule: str
    reason: str


@dataclass(frozen=True)
class Decision:
    limits: Limits
    refusals: tuple[Refusal, ...]
    recipient_count: int = 0

    @property
    def too_many(self) -> bool:
        return self.recipient_count > self.limits.max_recipients

    @property
    def allowed(self) -> bool:
        return not self.refusals and not self.too_many and bool(self.limits.password_modes)


def most_recipients(settings: Settings) -> int:
    """The most recipients any transfer may have, under whichever rules apply."""
    return max([settings.transfer.max_recipients, *(r.max_recipients for r in settings.rules if r.max_recipients)])


class Tightening(Protocol):
    """An upload portal's or an upload request's own limits (None: the rules')."""

    @property
    def max_total_bytes(self) -> int | None: ...

    @property
    def max_files(self) -> int | None: ...

    @property
    def allowed_extensions(self) -> list[str] | None: ...


def tighten(limits: Limits, portal: Tightening) -> Limits:
    """``limits`` with an upload portal's or request's own: never more than the rules allow."""
    own: dict[str, object] = {key: getattr(portal, key) for key in ("max_total_bytes", "max_files")}
    if portal.allowed_extensions is not None:
        own["allowed_extensions"] = _extensions(portal.allowed_extensions)
    if limits.recipient_verification == "sms" or limits.password_by_sms:
        # The portal's sender cannot give its recipients' mobile numbers: no transfer fits.
        own["password_modes"] = ()
    return strictest(limits, replace(limits, **{key: value for key, value in own.items() if value is not None}))


def decide(
    settings: Settings, sender: str, recipients: list[str], language: str, portal: Tightening | None = None
) -> Decision:
    """The combined limits for a transfer, and every recipient a rule refuses;
    ``portal``, the upload portal or request the transfer is sent through, tightens them.

    ``recipients`` are To, Cc and Bcc alike: a Bcc recipient is as much a
    recipient to the rules, and counts against ``max_recipients`` too.

    More recipients than any rule allows are refused as too many, before
    the rules are tried: a form field holds thousands of addresses, and
    deciding (and recording a refusal) for each would cost time and fill
    the audit trail.
    """
    decision = _decide(settings, sender, recipients, language)
    return replace(decision, limits=tighten(decision.limits, portal)) if portal is not None else decision


def _decide(settings: Settings, sender: str, recipients: list[str], language: str) -> Decision:
    base = base_limits(settings)
    count = len(set(recipients))
    if count > (most := most_recipients(settings)):
        return Decision(replace(base, max_recipients=most), (), count)
    combined: Limits | None = None
    refusals = []
    for recipient in recipients:
        rule = rule_for(settings, sender, recipient)
        if rule is None:
            if settings.policy.default == "deny":
                refusals.append(Refusal(recipient, DEFAULT_RULE, localized(settings.policy.default_reason, language)))
                continue
            limits = replace(base, rules=(DEFAULT_RULE,))
        elif rule.action == "deny":
            refusals.append(Refusal(recipient, rule.name, rule.reason_for(language)))
            continue
        else:
            limits = apply(base, rule)
        combined = limits if combined is None else strictest(combined, limits)
    return Decision(combined or base, tuple(refusals), count)


def audited(decision: Decision) -> dict[str, object]:
    """What the audit trail keeps of a refused choice of recipients: the
    first few refusals and how many there were, so that one event stays
    small whatever was entered."""
    shown = decision.refusals[:AUDITED_REFUSALS]
    return {
        "recipients": [r.address for r in shown], "rules": [r.rule for r in shown],
        "refused": len(decision.refusals), "entered": decision.recipient_count,
    }
