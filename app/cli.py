"""Command-line tools: ``flask --app wsgi <command>``."""

from __future__ import annotations

from pathlib import Path

import csv
import json
from datetime import datetime, timezone

import click
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po, write_po
from flask import Flask, current_app

from . import audit, db, policy, scheduler
from .settings import LANGUAGES, Settings, UploadPortal, localized

ROOT = Path(__file__).resolve().parent.parent
CATALOGS = ROOT / "translations"


@click.group("translations")
def translations() -> None:
    """Keep the catalogs of every language in step with the code."""


def _pybabel(*args: str) -> None:
    CommandLineInterface().run(["pybabel", "-q", *args])


@translations.command("update")
def update() -> None:
    """Extract messages, merge them into every catalog, fill English, compile."""
    pot = CATALOGS / "messages.pot"
    _pybabel(
        "extract", "-F", str(ROOT / "babel.cfg"), "-k", "_l", "-k", "N_", "--no-location", "--sort-output",
        "--project=Koerier", "-o", str(pot), str(ROOT),
    )
    _pybabel("update", "-i", str(pot), "-d", str(CATALOGS), "--ignore-obsolete", "--no-fuzzy-matching")
    # msgids are English, so the English catalog is the identity; filling it
    # keeps it complete and makes a missing msgid visible in review.
    english = CATALOGS / "en" / "LC_MESSAGES" / "messages.po"
    with open(english, "rb") as fh:
        catalog = read_po(fh, locale="en")
    for message in catalog:
        if message.id:
            message.string = message.id
    with open(english, "wb") as fh:
        write_po(fh, catalog, omit_header=False, sort_output=True, include_lineno=False)
    compile_catalogs()
    for language in LANGUAGES:
        untranslated = missing(language)
        click.echo(f"{language}: {len(untranslated)} messages still to translate" + (":" if untranslated else "."))
        for msgid in untranslated:
            click.echo(f"  {msgid}")


@translations.command("compile")
def compile_command() -> None:
    """Compile the .po catalogs into the .mo files the app reads."""
    compile_catalogs()


def compile_catalogs() -> None:
    _pybabel("compile", "-d", str(CATALOGS), "--use-fuzzy")


def missing(language: str) -> list[str]:
    with open(CATALOGS / language / "LC_MESSAGES" / "messages.po", "rb") as fh:
        catalog = read_po(fh)
    out = []
    for message in catalog:
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.id and not all(strings):
            out.append(message.id if isinstance(message.id, str) else message.id[0])
    return out


@click.group("policy")
def policy_group() -> None:
    """Check and explain who may send to whom."""


def _limits_summary(limits: policy.Limits) -> str:
    extensions = "any" if limits.allowed_extensions is None else f"{len(limits.allowed_extensions)} types"
    return (
        f"max {limits.max_total_bytes:,} bytes, {limits.max_files} files, {limits.max_recipients} recipients, "
        f"{limits.max_expiry_days} days; "
        f"passwords: {'/'.join(limits.password_modes)}; extensions: {extensions}; "
        f"file names in mail: {limits.expose_filenames}; retrieval notice: {limits.retrieval_notice}; "
        f"message: {limits.confidential_message}; edit notification: {'yes' if limits.edit_notification else 'no'}; "
        f"malware scan: {limits.scan}; "
        f"recipient code: {limits.recipient_verification}"
        f"{' or stronger, sender chooses' if limits.recipient_verification_choice else ''}"
        f"{'; generated password by SMS' if limits.password_by_sms else ''}"
    )


@policy_group.command("check")
def policy_check() -> None:
    """Validate the configuration (done at load), print the rules in order and the upload portals.

    Fails when the rules refuse any sender whom no rule names (the public) at an upload portal."""
    settings = current_app.config["KOERIER"]
    base = policy.base_limits(settings)
    rows = [("#", "rule", "action", "senders", "recipients", "limits / reason")]
    for number, rule in enumerate(settings.rules, 1):
        detail = rule.reason_for("en") if rule.action == "deny" else _limits_summary(policy.apply(base, rule))
        rows.append((str(number), rule.name, rule.action, ", ".join(rule.senders), ", ".join(rule.recipients), detail))
    default = settings.policy
    detail = localized(default.default_reason, "en") if default.default == "deny" else _limits_summary(base)
    rows.append(("-", policy.DEFAULT_RULE, default.default, "*", "*", detail))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[5])
    unusable = [portal.slug for portal in settings.portals if not _portal_check(settings, portal)]
    if unusable:
        click.echo(
            f"The rules refuse any sender whom no rule names at {len(unusable)} of {len(settings.portals)} portals: "
            f"{', '.join(unusable)}."
        )
        raise click.exceptions.Exit(1)
    click.echo(f"Configuration is valid: {len(settings.rules)} rules.")


# Whom no sender pattern of the rules names: the public an upload portal is for.
ANY_SENDER = "someone@sender.invalid"


def _senders(settings: Settings) -> list[tuple[str, str]]:
    """(who, an address of theirs): any sender, and one for each sender pattern of the rules."""
    found = {"any sender": ANY_SENDER}
    for rule in settings.rules:
        for pattern in rule.senders:
            if pattern != "*":
                address = pattern.replace("*@*.", "someone@sub.").replace("*@", "someone@")
                found.setdefault(f"senders matching {pattern}", address)
    return list(found.items())


def _portal_check(settings: Settings, portal: UploadPortal) -> bool:
    """Print what a portal allows any sender, and which senders the rules
    refuse there; False when they refuse the public (any sender whom no rule names)."""
    usable = True
    heading = f"portal {portal.slug!r} (/to/{portal.slug}) to {', '.join(portal.addresses)}"
    for who, sender in _senders(settings):
        decision = policy.decide(settings, sender, portal.addresses, "en", portal)
        if sender == ANY_SENDER:
            click.echo(f"{heading}: {_limits_summary(decision.limits)}" if decision.allowed else heading)
        if decision.allowed:
            continue
        usable = usable and sender != ANY_SENDER
        refused = [f"{r.address} (rule {r.rule!r})" for r in decision.refusals]
        if decision.too_many:
            refused.append(f"{decision.recipient_count} recipients, more than {decision.limits.max_recipients}")
        click.echo(f"  refused for {who}: {', '.join(refused) or 'the rules share no password mode'}")
    return usable


@policy_group.command("explain")
@click.argument("sender")
@click.argument("recipient")
def policy_explain(sender: str, recipient: str) -> None:
    """Say which rule applies to SENDER sending to RECIPIENT, and what it allows."""
    settings = current_app.config["KOERIER"]
    rule = policy.rule_for(settings, sender, recipient)
    name = rule.name if rule else policy.DEFAULT_RULE
    decision = policy.decide(settings, sender, [recipient], "en")
    click.echo(f"{sender} -> {recipient}: rule {name!r}")
    if decision.refusals:
        click.echo(f"  denied: {decision.refusals[0].reason}")
    else:
        click.echo(f"  allowed: {_limits_summary(decision.limits)}")


@click.group("audit")
def audit_group() -> None:
    """The audit trail, for an auditor."""


@audit_group.command("export")
@click.option("--since", "since", required=True, type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]))
@click.option("--until", "until", type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]))
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
def audit_export(since: datetime, until: datetime | None, fmt: str) -> None:
    """Write events from SINCE (UTC) on to standard output."""
    rows = audit.export(db.session(), since.replace(tzinfo=timezone.utc), until.replace(tzinfo=timezone.utc) if until else None)
    out = click.get_text_stream("stdout")
    if fmt == "json":
        json.dump(rows, out, ensure_ascii=False, indent=1)
        out.write("\n")
        return
    writer = csv.DictWriter(out, fieldnames=["at", "kind", "transfer_id", "actor", "ip", "data"])
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "data": json.dumps(row["data"], ensure_ascii=False, sort_keys=True)})


@audit_group.command("summary")
@click.option("--since", "since", required=True, type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]))
@click.option("--until", "until", type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]))
def audit_summary(since: datetime, until: datetime | None) -> None:
    """Count the events from SINCE (UTC) on, per kind, and the virus scanner's verdicts."""
    counted = audit.summary(db.session(), since.replace(tzinfo=timezone.utc), until.replace(tzinfo=timezone.utc) if until else None)
    for kind, count in counted.kinds.items():
        click.echo(f"{kind}\t{count}")
    scans = counted.scans
    click.echo(
        f"malware scans: {sum(scans.values())} (clean {scans['clean']}, infected {scans['infected']}, "
        f"too large {scans['too_large']}, not checked completely {scans['incomplete']}, no verdict {scans['failed']}, "
        f"of which let in unscanned "
        f"{counted.accepted_unscanned})"
    )


@click.command("purge")
def purge_command() -> None:
    """Run the clean-up job once (for cron) and print what it removed."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    report = scheduler.tick(app, holder="cli:" + scheduler.holder_name(), release=True)
    if report is None:
        click.echo("Another process is running the clean-up job right now; nothing done.")
        return
    for line in report.lines():
        click.echo(line)


def init_app(app: Flask) -> None:
    app.cli.add_command(translations)
    app.cli.add_command(policy_group)
    app.cli.add_command(audit_group)
    app.cli.add_command(purge_command)
