// A session ends after site.session_idle_minutes without a request (and
// after site.session_absolute_hours in any case), and with it the draft or
// the opened transfer. Some minutes before, a banner says so and offers to
// stay signed in: a request to the portal, which extends the session like
// any other. At the end it says the session is over. Requests the page's
// scripts make (uploads, the password check) extend the session on the
// server too, so they count here as well.
import { announce, text } from "./texts.js";

// The server records activity at most every 30 s (app/web.py): its idle
// clock may have started that much before ours.
const SERVER_SLACK_MS = 30_000;

let session = null;

export function watchSession(body) {
  if (!body.dataset.sessionUrl) return;
  session = { url: body.dataset.sessionUrl, idleMs: Number(body.dataset.sessionIdle) * 1000, banner: null, timer: null };
  setEnds(Number(body.dataset.sessionLeft), Number(body.dataset.sessionAbsoluteLeft));
  schedule();
  // Timers in a background tab run late; look again when it is shown.
  document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && !session.over && schedule());
}

// Called by the page's scripts after each answer from the portal.
export function noteActivity() {
  if (!session || session.over) return;
  session.idleEnd = Date.now() + session.idleMs - SERVER_SLACK_MS;
  schedule();
}

function setEnds(idleSeconds, absoluteSeconds) {
  const now = Date.now();
  session.idleEnd = now + idleSeconds * 1000;
  session.absoluteEnd = now + absoluteSeconds * 1000;
}

const end = () => Math.min(session.idleEnd, session.absoluteEnd);
const warnBeforeMs = () => Math.min(5 * 60_000, session.idleMs / 4);

function schedule() {
  clearTimeout(session.timer);
  const now = Date.now();
  const warnAt = end() - warnBeforeMs();
  if (now >= end()) return over();
  if (now >= warnAt) {
    warn();
  } else {
    hideBanner();
  }
  // In steps of at most a minute, so a clock that jumped (a sleeping laptop) is noticed.
  session.timer = setTimeout(schedule, Math.min(now >= warnAt ? end() - now : warnAt - now, 60_000));
}

function clock(ms) {
  const format = new Intl.DateTimeFormat(document.documentElement.lang, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  return format.format(new Date(ms));
}

function showBanner(key, message, action) {
  if (session.banner?.dataset.key === key) return;
  if (!session.banner) {
    session.banner = document.createElement("div");
    session.banner.className = "session-banner";
    session.banner.setAttribute("role", "alert");
    document.body.append(session.banner);
  }
  session.banner.dataset.key = key;
  const line = document.createElement("p");
  line.textContent = message;
  session.banner.replaceChildren(line, ...(action ? [action] : []));
}

function hideBanner() {
  session.banner?.remove();
  session.banner = null;
}

function button(label, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = "button button-primary";
  element.textContent = label;
  element.addEventListener("click", onClick);
  return element;
}

function warn() {
  const time = clock(end());
  if (session.absoluteEnd <= session.idleEnd) {
    // Only the absolute limit is left: staying cannot help.
    showBanner(`final ${time}`, text("session_final", { time }));
  } else {
    showBanner(`idle ${time}`, text("session_ends", { time }), button(text("stay_signed_in"), stay));
  }
}

async function stay() {
  let left;
  try {
    const response = await fetch(session.url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) return; // the banner stays, and its button with it
    left = await response.json();
  } catch {
    return;
  }
  if (left.idle <= 0) return over();
  setEnds(left.idle, left.absolute);
  schedule();
  if (!session.banner) announce(text("still_signed_in"));
}

function over() {
  clearTimeout(session.timer);
  session.over = true;
  // A fresh load of this address: the portal says what happened and where to go on.
  showBanner("over", text("session_ended"), button(text("start_again"), () => location.assign(location.pathname + location.search)));
}
