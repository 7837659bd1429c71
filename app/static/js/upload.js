// The files step with JavaScript: drag and drop or pick files, and upload
// them one after another over the portal's tus endpoint, in chunks that
// resume where the server says it is after a dropped connection. A file
// added again that matches an upload the page lists as unfinished (the
// same name and size; the page that sent it was left) resumes that upload.
// Each file shows progress, speed and time left, and can be cancelled or retried.
// A file is in once the server says so for its last byte: where the portal
// scans for malware, only after the scanner found it clean. When the
// scanner could not judge it, the complete upload stays on the server, and
// a PATCH at its end without a body asks again: nothing is sent twice.
// "Next" waits until every file is in, then goes on by itself; a file that
// did not get in stops it, named, until it is retried or removed.
import { noteActivity } from "./session.js";
import { announce, text } from "./texts.js";

// A multiple of the server's 64 KiB segments, so a resumed chunk starts on
// a boundary; small enough that a dropped connection costs little.
const CHUNK = 8 * 1024 * 1024;
const RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 8000, 15000, 30000];
const SPEED_WINDOW_MS = 5000;
// The first seconds after a (re)start say little about the speed to come.
const ESTIMATE_AFTER_MS = 3000;

class UploadError extends Error {
  // final: the server refused the file itself (its type, its size), so trying again cannot help.
  constructor(message, final = false) {
    super(message);
    this.final = final;
  }
}
// Worth trying again; the message is what the sender reads meanwhile, the
// refusal the server's own words, for when trying again has not helped.
class Retry extends Error {
  constructor(message = text("reconnecting"), refusal = null) {
    super(message);
    this.refusal = refusal;
  }
}
// The server answered, so the connection is fine: 423 (a node that died
// still holds the upload until its lease runs out) or 5xx (its database or
// store is down) pass; 409 (the offsets crossed) is set right at once.
const retryFor = (status) => new Retry(status === 409 ? "" : text("unavailable"));
// The server is at its limit of uploads running at once (429 with
// Retry-After): wait as long as it asks, saying so, then try again. A 429
// without Retry-After (too many unfinished transfers) is an answer, not a wait.
class Busy extends Error {
  constructor(retryAfter, refusal) {
    super(text("waiting_for_uploads"));
    this.refusal = refusal; // the server's own words, for when waiting has not helped
    const seconds = Number(retryAfter);
    this.seconds = Number.isFinite(seconds) && seconds > 0 ? seconds : 5;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// Western digits in every language, as the server writes sizes and dates (Arabic would default to ٠١٢).
const NUMBERS_LOCALE = `${document.documentElement.lang}-u-nu-latn`;

// As the server writes sizes (human_size in app/web.py): one decimal above bytes, "40.0 MB".
function formatBytes(bytes) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  const digits = unit === 0 ? 0 : 1;
  return `${new Intl.NumberFormat(NUMBERS_LOCALE, { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(value)} ${units[unit]}`;
}

function formatDuration(seconds) {
  const [value, unit] = seconds >= 90 ? [Math.ceil(seconds / 60), "minute"] : [Math.max(1, Math.ceil(seconds)), "second"];
  return new Intl.NumberFormat(NUMBERS_LOCALE, { style: "unit", unit, unitDisplay: "long" }).format(value);
}

function base64(value) {
  return btoa(String.fromCodePoint(...new TextEncoder().encode(value)));
}

async function serverMessage(response) {
  try {
    return (await response.json()).error || text("failed");
  } catch {
    return text("failed");
  }
}

class Upload {
  // resumeUrl: an unfinished upload of this file, to go on with from the offset the server has.
  constructor(file, queue, resumeUrl = null) {
    this.file = file;
    this.queue = queue;
    this.url = resumeUrl;
    this.offset = resumeUrl ? null : 0;
    // The server has taken the whole file as a file of the transfer (scanned, where it scans).
    this.admitted = false;
    this.state = "waiting";
    this.samples = [];
    this.item = this.render();
  }

  render() {
    const item = document.createElement("li");
    item.className = "upload";
    const name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = this.file.name;
    const size = document.createElement("span");
    size.className = "upload-size";
    size.textContent = formatBytes(this.file.size);
    this.progress = document.createElement("progress");
    this.progress.max = Math.max(this.file.size, 1);
    this.progress.value = 0;
    this.progress.setAttribute("aria-label", this.file.name);
    this.status = document.createElement("span");
    this.status.className = "upload-status";
    this.status.textContent = text("waiting");
    this.cancelButton = this.button(text("cancel"), () => this.cancel());
    this.retryButton = this.button(text("retry"), () => this.queue.retry(this));
    this.retryButton.hidden = true;
    this.removeButton = this.button(text("remove"), () => this.cancel());
    this.removeButton.hidden = true;
    const actions = document.createElement("span");
    actions.className = "upload-actions";
    actions.append(this.cancelButton, this.retryButton, this.removeButton);
    item.append(name, size, this.progress, this.status, actions);
    return item;
  }

  button(label, action) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link-button";
    button.textContent = label;
    button.setAttribute("aria-label", `${label}: ${this.file.name}`);
    button.addEventListener("click", action);
    return button;
  }

  setState(state, message) {
    const pressed = this.item.contains(document.activeElement) ? document.activeElement : null;
    this.state = state;
    this.item.dataset.state = state;
    this.status.textContent = message;
    this.cancelButton.hidden = !["waiting", "uploading"].includes(state);
    this.retryButton.hidden = state !== "failed";
    this.removeButton.hidden = !["done", "failed", "refused"].includes(state);
    // A hidden button loses the focus to the top of the page: the keyboard
    // stays on the file, on the button that took its place (Retry gives way to Cancel).
    if (pressed?.hidden) this.item.querySelector("button:not([hidden])")?.focus();
    this.queue.changed();
  }

  headers(extra = {}) {
    return { "Tus-Resumable": "1.0.0", "X-CSRFToken": this.queue.csrf, ...extra };
  }

  async run() {
    this.setState("uploading", text("uploading"));
    this.restarted();
    try {
      if (!this.url) await this.create();
      while (this.offset === null || this.offset < this.file.size || !this.admitted) await this.sendWithRetries();
      this.progress.value = this.progress.max;
      this.setState("done", text("uploaded"));
      announce(`${this.file.name}: ${text("uploaded")}`);
    } catch (error) {
      if (this.state === "cancelled") return;
      const message = error instanceof UploadError ? error.message : text("failed");
      this.setState(error instanceof UploadError && error.final ? "refused" : "failed", message);
      // The server's refusals name the file themselves.
      announce(message.includes(this.file.name) ? message : `${this.file.name}: ${message}`);
    }
  }

  async create() {
    for (let attempt = 0; ; attempt += 1) {
      const response = await fetch(this.queue.endpoint, {
        method: "POST",
        credentials: "same-origin",
        headers: this.headers({ "Upload-Length": String(this.file.size), "Upload-Metadata": `filename ${base64(this.file.name)}` }),
      });
      const retryAfter = response.headers.get("Retry-After");
      if (response.status === 429 && retryAfter && attempt < RETRY_DELAYS_MS.length && this.state !== "cancelled") {
        // Read to its end, or the unread answer keeps its request open.
        await this.waitWhileBusy(new Busy(retryAfter, await serverMessage(response)));
        continue;
      }
      if (response.status !== 201) throw new UploadError(await serverMessage(response), [403, 413].includes(response.status));
      noteActivity();
      this.url = new URL(response.headers.get("Location"), location.href).href;
      this.offset = Number(response.headers.get("Upload-Offset"));
      // An empty file is in at once.
      this.admitted = this.offset === this.file.size;
      return;
    }
  }

  async sendWithRetries() {
    for (let attempt = 0; ; attempt += 1) {
      try {
        if (attempt > 0 || this.offset === null) this.offset = await this.askOffset();
        if (attempt > 0) this.restarted();
        if (this.offset < this.file.size || !this.admitted) this.offset = await this.sendChunk();
        return;
      } catch (error) {
        if (error instanceof UploadError || this.state === "cancelled") throw error;
        if (attempt >= RETRY_DELAYS_MS.length) throw new UploadError(error.refusal || text("failed"));
        if (error instanceof Busy) {
          await this.waitWhileBusy(error);
        } else {
          const message = error instanceof Retry ? error.message : text("reconnecting");
          if (message) this.say(message);
          await sleep(RETRY_DELAYS_MS[attempt]);
        }
      }
    }
  }

  async waitWhileBusy(busy) {
    this.say(busy.message);
    await sleep(busy.seconds * 1000);
  }

  // Why the upload waits, shown and, once each time it changes, announced:
  // a screen reader would otherwise hear nothing until the file is in.
  say(message) {
    if (this.status.textContent === message) return;
    this.status.textContent = message;
    announce(`${this.file.name}: ${message}`);
  }

  // The server says this draft has no upload at this address any more: Retry starts a new one.
  gone(message) {
    this.url = null;
    this.offset = null;
    return new UploadError(message);
  }

  async askOffset() {
    const response = await fetch(this.url, { method: "HEAD", credentials: "same-origin", headers: this.headers() });
    if (response.status === 404 || response.status === 403) throw new UploadError(text("failed"));
    if (!response.ok) throw retryFor(response.status);
    return Number(response.headers.get("Upload-Offset"));
  }

  sendChunk() {
    return new Promise((resolve, reject) => {
      const start = this.offset;
      const end = Math.min(start + CHUNK, this.file.size);
      const xhr = new XMLHttpRequest();
      this.xhr = xhr;
      xhr.open("PATCH", this.url);
      for (const [key, value] of Object.entries(this.headers({ "Upload-Offset": String(start), "Content-Type": "application/offset+octet-stream" }))) {
        xhr.setRequestHeader(key, value);
      }
      xhr.upload.onprogress = (event) => {
        this.showProgress(start + event.loaded);
        // The last byte is sent; the server scans the file before it answers.
        if (this.queue.scans && end === this.file.size && start + event.loaded === end) this.status.textContent = text("scanning");
      };
      xhr.onload = () => {
        let said = null; // the server's own words, when it gave any
        let reason = null; // "scanner": the virus scanner could not judge the complete file
        try {
          ({ error: said = null, reason = null } = JSON.parse(xhr.responseText));
        } catch {}
        const message = said || text("failed");
        if (xhr.status === 204) {
          noteActivity();
          const offset = Number(xhr.getResponseHeader("Upload-Offset"));
          this.admitted = offset === this.file.size;
          resolve(offset);
        }
        else if (xhr.status === 429 && xhr.getResponseHeader("Retry-After")) reject(new Busy(xhr.getResponseHeader("Retry-After"), message));
        // 507: the portal is short of storage space; its message says to try later.
        // The virus scanner down: the complete file waits on the server to be judged again, asked
        // for by itself meanwhile; the words are for when that has not helped.
        else if (xhr.status === 503 && reason === "scanner") reject(new Retry(text("scanner_unavailable"), said));
        else if ([409, 423].includes(xhr.status) || (xhr.status >= 500 && xhr.status !== 507)) reject(retryFor(xhr.status));
        // Gone from this draft (removed in another tab, its bytes lost): Retry sends the file anew.
        // Not on a 404, which may mean that this page's draft is no longer the session's.
        else if (xhr.status === 410) reject(this.gone(message));
        // 422: the scanner refused the file (malware, too large to check): only Remove helps.
        else reject(new UploadError(message, xhr.status === 422));
      };
      xhr.onerror = xhr.ontimeout = xhr.onabort = () => reject(new Retry());
      xhr.send(this.file.slice(start, end));
    });
  }

  // Sending (again) from this.offset: what came before tells nothing of the speed now.
  restarted() {
    this.samples = [];
    this.since = performance.now();
  }

  showProgress(sent) {
    const now = performance.now();
    this.progress.value = sent;
    this.samples.push([now, sent]);
    while (this.samples.length > 2 && now - this.samples[0][0] > SPEED_WINDOW_MS) this.samples.shift();
    if (now - this.since < ESTIMATE_AFTER_MS) {
      this.status.textContent = text("uploading"); // bytes flow again, whatever was said before
      return;
    }
    const [then, before] = this.samples[0];
    const seconds = (now - then) / 1000;
    if (seconds < 0.5 || sent <= before) return;
    const speed = (sent - before) / seconds;
    const left = text("time_left", { time: formatDuration((this.file.size - sent) / speed) });
    this.status.textContent = `${formatBytes(speed)}/s · ${left}`;
  }

  async cancel() {
    this.state = "cancelled";
    this.xhr?.abort();
    // The keyboard stays in the list: on the next file's button (or the
    // last one's), or on "Add files" once none is left.
    const focused = this.item.contains(document.activeElement);
    const neighbour = this.item.nextElementSibling || this.item.previousElementSibling;
    this.item.remove();
    if (focused) (neighbour?.querySelector("button:not([hidden])") || this.queue.pick).focus();
    announce(text("removed", { name: this.file.name }));
    this.queue.forget(this);
    if (this.url) {
      await fetch(this.url, { method: "DELETE", credentials: "same-origin", headers: this.headers() });
    }
  }
}

class Queue {
  constructor(root, list) {
    this.endpoint = root.dataset.uploadUrl;
    this.pick = root.querySelector("[data-pick]");
    this.csrf = root.dataset.csrf;
    this.scans = root.dataset.scans === "required";
    this.list = list;
    this.uploads = [];
    this.running = false;
  }

  add(files) {
    for (const note of document.querySelectorAll("[data-empty-note]")) note.hidden = files.length > 0 || note.hidden;
    for (const file of files) {
      // The page lists only this draft's unfinished uploads; each is taken up once.
      const row = [...document.querySelectorAll("tr[data-resume-url]")]
        .find((r) => r.dataset.name === file.name.normalize("NFC") && Number(r.dataset.size) === file.size);
      if (row) {
        const table = row.closest("table");
        row.remove();
        table.hidden = !table.querySelector("tbody tr");
      }
      const upload = new Upload(file, this, row?.dataset.resumeUrl);
      this.uploads.push(upload);
      this.list.append(upload.item);
    }
    this.pump();
  }

  retry(upload) {
    upload.setState("waiting", text("waiting"));
    this.pump();
  }

  forget(upload) {
    this.uploads = this.uploads.filter((u) => u !== upload);
    this.changed();
    this.pump();
  }

  get busy() {
    return this.uploads.some((u) => ["waiting", "uploading"].includes(u.state));
  }

  // Added but not in: failed (Retry may help) or refused (only Remove can).
  get stuck() {
    return this.uploads.filter((u) => ["failed", "refused"].includes(u.state));
  }

  changed() {
    this.onChange?.();
  }

  // One file at a time: each gets the whole connection, and the first
  // files are complete early.
  async pump() {
    if (this.running) return;
    this.running = true;
    try {
      let next;
      while ((next = this.uploads.find((u) => u.state === "waiting"))) await next.run();
    } finally {
      this.running = false;
    }
  }
}

// "Next" while files are uploading waits, saying so, and goes on by itself
// once they are in. A file that did not get in (now, or while waiting)
// stops it: the sender must retry or remove it, so that no transfer goes
// out without a file that was added (the server refuses such a Next too).
// "Back" saves the step as Next does, so it waits for the uploads too (else
// leaving the page would cut them off); a file that did not get in does not
// stop it, as the server lets Back through with one.
function waitOnNext(form, notice, queue) {
  const next = form.querySelector("button[value='next']");
  const back = form.querySelector("button[value='back']");
  let waiting = null; // the button that goes on once the uploads are in
  // Waiting is news, not an error; a file that did not get in is one.
  const say = (message, problem = true) => {
    notice.textContent = message;
    notice.classList.toggle("error", problem);
    notice.hidden = false;
    notice.focus();
  };
  const stopOnStuck = () => {
    const stuck = queue.stuck;
    if (!stuck.length) return false;
    waiting = null;
    // A refused file (malware, its type) offers only Remove; Retry may help a failed one.
    const names = (state) => stuck.filter((u) => u.state === state).map((u) => `“${u.file.name}”`).join(", ");
    say([["refused", "not_added"], ["failed", "not_uploaded"]]
      .filter(([state]) => names(state))
      .map(([state, key]) => text(key, { names: names(state) }))
      .join(" "));
    return true;
  };
  queue.onChange = () => {
    if (waiting) {
      if ((waiting === next && stopOnStuck()) || queue.busy) return;
      const button = waiting;
      waiting = null;
      notice.hidden = true;
      form.requestSubmit(button);
    } else if (!notice.hidden && !queue.stuck.length) {
      notice.hidden = true; // every file that stopped Next was retried or removed
    }
  };
  form.addEventListener("submit", (event) => {
    if (event.submitter === next && stopOnStuck()) {
      event.preventDefault();
    } else if ([next, back].includes(event.submitter) && queue.busy) {
      event.preventDefault();
      waiting = event.submitter;
      say(text(waiting === next ? "wait_for_uploads" : "back_waits_for_uploads"), false);
    }
  });
}

export function enhanceUploads(root) {
  if (!root) return;
  const picker = root.querySelector("input[type='file']");
  const zone = root.querySelector(".dropzone");
  const queue = new Queue(root, root.querySelector(".uploads"));
  root.hidden = false;
  for (const plain of document.querySelectorAll("[data-without-js]")) plain.hidden = true;

  root.querySelector("[data-pick]").addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => {
    queue.add([...picker.files]);
    picker.value = "";
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    queue.add([...event.dataTransfer.files]);
  });

  const form = root.closest("main").querySelector("form[data-files-form]");
  if (form) waitOnNext(form, root.querySelector(".upload-notice"), queue);
  window.addEventListener("beforeunload", (event) => {
    if (queue.busy) event.preventDefault();
  });
}
