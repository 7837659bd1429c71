// No-password links carry their access key after "#", which browsers never
// send to a server: it reaches no access log, proxy or server. Here it is
// taken out of the address bar and the history entry at once, and put into
// the form, which posts it. Opening still takes a click, so a mail scanner
// that renders links opens nothing. The tab keeps the key (sessionStorage)
// until the form is sent, so a reload or a language switch does not lose it.
const KEPT = "koerier-link-key";

export function enhanceLinkKey(form) {
  takeKey(form);
  // A link opened in a tab that already shows this page changes only the fragment.
  window.addEventListener("hashchange", () => takeKey(form));
}

function takeKey(form) {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const query = new URLSearchParams(location.search);
  let key = fragment.get("key");
  if (key !== null || query.has("key")) {
    query.delete("key");
    const search = query.toString();
    history.replaceState(null, "", location.pathname + (search ? "?" + search : ""));
  }
  if (!form) return;
  const id = query.get("id") || "";
  if (key) {
    sessionStorage.setItem(KEPT, JSON.stringify({ id, key }));
  } else {
    const kept = JSON.parse(sessionStorage.getItem(KEPT) || "null");
    if (!kept || !id || kept.id !== id) return;
    key = kept.key;
  }
  form.querySelector('input[name="key"]').value = key;
  form.addEventListener("submit", () => sessionStorage.removeItem(KEPT), { once: true });
  // With the key in hand, the recipient only has to confirm.
  for (const part of document.querySelectorAll("[data-intro], [data-password-field], [data-key-field]")) {
    part.hidden = true;
  }
  form.querySelector("[data-link-note]").hidden = false;
  const button = form.querySelector('button[type="submit"]');
  button.textContent = button.dataset.openLabel;
  button.focus();
}
