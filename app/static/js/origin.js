// The portal takes posts only from pages at its own address (app/web.py):
// opened at another, every upload and form on the page would be refused.
// Say so at once, with a link to the same page at the right address. A
// portal on loopback (a developer's machine) answers at any loopback address.
import { text } from "./texts.js";

const onLoopback = (host) => host === "localhost" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);

export function checkAddress(body) {
  const expected = body.dataset.portalOrigin;
  if (!expected || expected === location.origin) return;
  if (onLoopback(new URL(expected).hostname) && onLoopback(location.hostname)) return;
  const notice = document.createElement("div");
  notice.className = "error-summary wrong-address";
  notice.setAttribute("role", "alert");
  const message = document.createElement("p");
  message.textContent = text("wrong_address", { here: location.origin, address: expected });
  const link = document.createElement("a");
  link.className = "button";
  link.href = expected + location.pathname + location.search;
  link.textContent = text("open_at_address");
  const action = document.createElement("p");
  action.append(link);
  notice.append(message, action);
  document.querySelector("main")?.prepend(notice);
}
