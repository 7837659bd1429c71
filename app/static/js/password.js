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

  // A refusal from the last post no longer holds once the live check
  // passes: it goes from beside the field and from the summary, and the
  // summary with its last entry.
  const clearRefusal = (field) => {
    const error = document.getElementById(`${field.id}-error`);
    if (!error) return;
    error.remove();
    const described = (field.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && id !== error.id);
    if (described.length) field.setAttribute("aria-describedby", described.join(" "));
    else field.removeAttribute("aria-describedby");
    field.removeAttribute("aria-invalid");
    field.closest(".field")?.classList.remove("field-error");
    const summary = document.querySelector(".error-summary");
    if (!summary) return;
    for (const link of summary.querySelectorAll(`a[href="#${field.id}"]`)) link.closest("li").remove();
    if (!summary.querySelector("li")) summary.hidden = true;
  };

  const showMatch = () => {
    if (!repeat.value) {
      match.textContent = "";
      return;
    }
    const same = repeat.value === password.value;
    match.textContent = same ? text("passwords_match") : text("passwords_differ");
    match.className = same ? "match-ok" : "match-no";
    if (same) clearRefusal(repeat);
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
    if (result.acceptable) clearRefusal(password);
  };

  password.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(check, DEBOUNCE_MS);
    showMatch();
  });
  repeat.addEventListener("input", showMatch);
}
