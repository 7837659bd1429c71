// What the sender types into a field marked data-keep (the confidential
// message) is kept in this tab until the transfer has started, so that a
// session that ended, or a draft that is gone, does not take it along:
// after starting again, it is filled in again. sessionStorage belongs to
// this tab alone, is never sent anywhere and ends with the tab (never
// localStorage, which would outlive it on a shared computer); entries
// older than the longest session are dropped unread. It comes back only
// into an empty field, so it never replaces what the portal shows, and only
// to the sender who typed it (data-keep-owner, from the verified address):
// the next person at a shared computer starts with an empty field.
import { text } from "./texts.js";

const PREFIX = "koerier-keep:";

export function keepTyped(body) {
  for (const marker of document.querySelectorAll("[data-forget-typed]")) {
    // On the summary: the transfer has started. On a form: once it is sent.
    if (marker instanceof HTMLFormElement) marker.addEventListener("submit", forget);
    else forget();
  }
  const maxAgeMs = Number(body.dataset.keepHours) * 3_600_000;
  for (const field of document.querySelectorAll("[data-keep]")) {
    const key = PREFIX + field.dataset.keep;
    const owner = field.dataset.keepOwner;
    const kept = JSON.parse(sessionStorage.getItem(key) || "null");
    if (kept && (!(Date.now() - kept.at < maxAgeMs) || kept.owner !== owner)) {
      sessionStorage.removeItem(key);
    } else if (kept?.value.trim() && !field.value.trim()) {
      field.value = kept.value;
      restored(field);
    }
    field.addEventListener("input", () => sessionStorage.setItem(key, JSON.stringify({ value: field.value, at: Date.now(), owner })));
  }
}

function forget() {
  for (const key of Object.keys(sessionStorage)) {
    if (key.startsWith(PREFIX)) sessionStorage.removeItem(key);
  }
}

function restored(field) {
  const note = document.createElement("p");
  note.className = "hint restored";
  note.id = `${field.id}-restored`;
  note.textContent = text("restored");
  field.before(note);
  field.setAttribute("aria-describedby", [note.id, field.getAttribute("aria-describedby")].filter(Boolean).join(" "));
}
