// Live password feedback on the options step: the server's own check
// (strength, zxcvbn's advice, the agreed pattern), asked for as the sender
// types, and whether the two entries match.
import { noteActivity } from "./session.js";
import { text } from "./texts.js";

const DEBOUNCE_MS = 300;

export function enhancePassword(root) {
  if (!root) return;
  const password = root.querySelector("#password");
  const repeat = root.querySelector("#password_repeat");
  const feedback = root.querySelector("#strength-live");
  const match = root.querySelector("#password-match");
  const manualOnly = root.querySelector("[data-manual-only]");
  let timer = null;
  let latest = 0;

  const syncMode = () => {
    const chosen = root.querySelector("input[name='password_mode']:checked");
    if (manualOnly) manualOnly.hidden = chosen !== null && chosen.value !== "manual";
  };
  for (const radio of root.querySelectorAll("input[name='password_mode']")) radio.addEventListener("change", syncMode);
  syncMode();

  const showMatch = () => {
    if (!repeat.value) {
      match.textContent = "";
      return;
    }
    const same = repeat.value === password.value;
    match.textContent = same ? text("passwords_match") : text("passwords_differ");
    match.className = same ? "match-ok" : "match-no";
    // The server's "not the same" from the last post no longer holds once they match.
    const stale = document.getElementById("password_repeat-error");
    if (same && stale) {
      stale.hidden = true;
      repeat.removeAttribute("aria-invalid");
    }
  };

  const check = async () => {
    const mine = ++latest;
    if (!password.value) {
      feedback.hidden = true;
      return;
    }
    const response = await fetch(root.dataset.strengthUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": root.dataset.csrf },
      body: JSON.stringify({ password: password.value }),
    });
    // Answers can overtake each other; only the newest counts.
    if (response.ok) noteActivity();
    if (!response.ok || mine !== latest) return;
    render(await response.json());
  };

  const render = (result) => {
    const heading = document.createElement("p");
    const parts = [heading];
    if (result.pattern) {
      // An agreed pattern is accepted for the agreement; its strength is not the point.
      heading.append(result.label);
    } else {
      const label = document.createElement("strong");
      label.textContent = `${text("strength")}: `;
      heading.append(label, result.label);
      const meter = document.createElement("meter");
      Object.assign(meter, { min: 0, max: 4, low: 2, high: 3, optimum: 4, value: result.score });
      meter.setAttribute("aria-hidden", "true");
      parts.push(meter);
    }
    for (const line of [result.problem, result.warning].filter(Boolean)) {
      const p = document.createElement("p");
      p.textContent = line;
      parts.push(p);
    }
    if (result.suggestions.length) {
      const list = document.createElement("ul");
      for (const suggestion of result.suggestions) {
        const item = document.createElement("li");
        item.textContent = suggestion;
        list.append(item);
      }
      parts.push(list);
    }
    feedback.replaceChildren(...parts);
    feedback.className = `strength strength-${result.pattern ? "pattern" : result.score}`;
    feedback.hidden = false;
  };

  password.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(check, DEBOUNCE_MS);
    showMatch();
  });
  repeat.addEventListener("input", showMatch);
}
