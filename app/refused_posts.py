"""A refused form post is answered with a redirect to its own page, which
shows the refusal once: post/redirect/get.

No page here may be stored by the browser (Cache-Control: no-store), so a
history entry made by a post can only be shown again by posting again.
Answered in place, a refusal left such an entry behind, and Back from the
next step landed on the browser's "Confirm form resubmission" page. After a
redirect every entry is a plain page load; the page then answers with the
refusal's status (422, 429, …), so scripts and tests still see it.

What was typed goes with the refusal, so nothing is lost; the same way,
a step's form sent with another language chosen in the header comes back
in it as it was typed (carry). A draft's steps
(whose forms may hold a confidential message of 20,000 characters) seal it
under the draft's data key in the draft's row, erased as it is shown: the
key lives only in the sender's cookie, so the row alone reveals nothing;
a manual password typed there comes back too, sealed like the files it
is to protect. Small forms outside a draft (the first
step's name, phone and address; a transaction ID) keep what was typed in
the session cookie, which is signed, not sealed: passwords and access keys
are never carried there, they are typed again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import redirect, render_template, request, session
from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response
from wtforms import PasswordField

from . import db, drafts
from .crypto.keys import DecryptionError, open_text, seal_text
from .models import Draft

SESSION_KEY = "refused"
# A value a person types is far shorter; anything longer was refused for its length anyway.
MAX_VALUE_CHARS = 25_000
# In the session cookie, which browsers cap at 4 KB as a whole.
MAX_COOKIE_VALUE_CHARS = 300


@dataclass
class Refusal:
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    status: int = 422
    headers: dict[str, str] = field(default_factory=dict)

    def fill(self, form: FlaskForm) -> None:
        """Put what was typed, and why it was refused, back into ``form``.

        A post refused unread carried nothing: the form keeps what it shows.
        """
        if self.values:
            form.process(MultiDict(self.values), data={f.name: f.data for f in form})
        for name, errors in self.errors.items():
            if name in form:
                form[name].errors = list(errors)

    def answer(self) -> tuple[int, dict[str, str]]:
        return self.status, self.headers


def refuse(
    form: FlaskForm | None = None,
    *,
    notes: Iterable[object] = (),
    status: int = 422,
    headers: Mapping[str, str] | None = None,
    draft: Draft | None = None,
    forget: Iterable[str] = (),
    page: str | None = None,
) -> Response:
    """Remember the refusal for this page's next view, and redirect there.

    ``page`` is where a form posted to a path of its own is shown (by
    default the posted path). Fields named in ``forget`` (secrets such as a
    one-time code) are not carried.
    """
    refusal = Refusal(notes=[str(note) for note in notes], status=status, headers=dict(headers or {}))
    if status >= 500:
        # As for any failed request, what it wrote so far is undone; only the refusal is kept.
        db.session().rollback()
    _remember(refusal, form, draft, set(forget), page or request.path)
    return redirect(page or (request.full_path if request.query_string else request.path), 303)


def carry(form: FlaskForm, *, draft: Draft | None = None, to: str | None = None) -> Response:
    """What was typed into ``form``, as it is and unchecked, back into its
    page's next view; the browser goes to ``to`` (by default that page).

    For a form sent, but not as the step's answer: with another language
    chosen in the header, so that the page comes back in it with nothing lost.
    """
    _remember(Refusal(status=200), form, draft, {"action"}, request.path)
    return redirect(to or request.path, 303)


def _remember(refusal: Refusal, form: FlaskForm | None, draft: Draft | None, forget: set[str], shown: str) -> None:
    if form is not None:
        for f in form:
            # A password goes only where it is sealed.
            secret = f.name in forget or f.name == "csrf_token" or (isinstance(f, PasswordField) and draft is None)
            # (A form filled from a streamed body has data but no raw data.)
            typed = f.raw_data if f.raw_data is not None else [f.data] if isinstance(f.data, str) else None
            if typed and not secret:
                # One value a field: a post repeating a field thousands of times carries one.
                refusal.values[f.name] = str(typed[0])
            if f.errors:
                refusal.errors[f.name] = [str(e) for e in f.errors]
    limit = MAX_VALUE_CHARS if draft is not None else MAX_COOKIE_VALUE_CHARS
    refusal.values = {name: value[:limit] for name, value in refusal.values.items()}
    if draft is not None:
        plain = json.dumps(refusal.__dict__)
        draft.refusal_ct = seal_text(drafts.data_key(draft), "refusal", draft.transfer_id, plain)
        session[SESSION_KEY] = {"page": shown, "sealed": True}
    else:
        session[SESSION_KEY] = {"page": shown, "refusal": refusal.__dict__}


def show(  # type: ignore[no-untyped-def]
    template: str, form: FlaskForm, sealed_in: Draft | None = None, **context: Any
):
    """A page with ``form``, showing the refusal of its last post if there was one."""
    refusal = restore(form, sealed_in)
    return render_template(template, form=form, **context), *refusal.answer()


def restore(form: FlaskForm, sealed_in: Draft | None = None) -> Refusal:
    """The refusal of this page's last post, put back into ``form``, once.
    Without one, an empty refusal that answers 200, like any page."""
    refusal = _take(sealed_in)
    if refusal is None:
        return Refusal(status=200)
    refusal.fill(form)
    return refusal


def _take(draft: Draft | None) -> Refusal | None:
    """The refusal to show on this page view, once."""
    kept = session.pop(SESSION_KEY, None)
    sealed = draft.refusal_ct if draft is not None else None
    if sealed is not None:
        draft.refusal_ct = None
    if not isinstance(kept, dict) or kept.get("page") != request.path or request.method != "GET":
        return None
    try:
        if kept.get("sealed"):
            if sealed is None:
                return None
            raw = json.loads(open_text(drafts.data_key(draft), "refusal", draft.transfer_id, sealed))
        else:
            raw = kept["refusal"]
        return Refusal(**raw)
    except (DecryptionError, KeyError, TypeError, ValueError):
        return None
