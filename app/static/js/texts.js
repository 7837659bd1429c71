// The page's translated texts for scripts (see base.html), and an
// announcer for screen readers.
let cache = null;

export function text(key, values = {}) {
  cache ??= JSON.parse(document.getElementById("koerier-texts")?.textContent || "{}");
  let out = cache[key] ?? key;
  for (const [name, value] of Object.entries(values)) out = out.replace(`{${name}}`, value);
  return out;
}

export function announce(message) {
  let region = document.getElementById("announcer");
  if (!region) {
    region = document.createElement("div");
    region.id = "announcer";
    region.className = "visually-hidden";
    region.setAttribute("role", "status");
    region.setAttribute("aria-live", "polite");
    document.body.append(region);
  }
  region.textContent = "";
  // A fresh text node after a tick, so the same message is announced again.
  setTimeout(() => { region.textContent = message; }, 50);
}
