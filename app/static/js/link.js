// No-password links carry their access key after "#", which browsers never
// send to a server: it reaches no access log, proxy or server. Here it is
// taken out of the address bar and the history entry at once, and put into
// the form, which posts it. Opening still takes a click, so a mail scanner
// that renders links opens nothing.
export function enhanceLinkKey(form) {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const query = new URLSearchParams(location.search);
  const key = fragment.get("key");
  if (key !== null || query.has("key")) {
    query.delete("key");
    const search = query.toString();
    history.replaceState(null, "", location.pathname + (search ? "?" + search : ""));
  }
  if (!form || !key) return;
  form.querySelector('input[name="key"]').value = key;
  // With the key in hand, the recipient only has to confirm.
  for (const part of document.querySelectorAll("[data-intro], [data-password-field], [data-key-field]")) {
    part.hidden = true;
  }
  form.querySelector("[data-link-note]").hidden = false;
  form.querySelector('button[type="submit"]').focus();
}
