// The dashboard's shell: routes a path to its page, keeps the token prompt, the error banner
// and the "live" mark, and gives each page what it shares (streams closed when it is left).

import { access, AuthRequired, get, loadAccess, readStream, token } from "./api.js";
import { $, button, fill, h } from "./dom.js";
import * as jobPage from "./job.js";
import * as overviewPage from "./overview.js";
import * as runPage from "./run.js";

const ROUTES = [
  [/^\/$/, overviewPage],
  [/^\/jobs\/([^/]+)$/, jobPage],
  [/^\/runs\/([^/]+)$/, runPage],
];

let current = null; // the mounted page's context
const SETTLE_MS = 400; // more than the recorder's 0.25 s between writes of a live run
const REPLAY_MS = 1500; // how far back reread() applies events again: well past the store's lag

class PageContext {
  constructor(name) {
    this.name = name;
    this.controller = new AbortController();
    this.streams = 0;
    this.connected = 0;
    this.recent = []; // {at, name, data, onMessage} of the events of the last REPLAY_MS, for reread()
    this.replaying = false;
  }

  get signal() {
    return this.controller.signal;
  }

  get active() {
    return current === this && !this.signal.aborted;
  }

  /**
   * Read an event stream while this page is shown; errors other than auth go to the banner.
   * A stream starts from "now", and the store lags the events by up to the recorder's interval
   * (0.25 s): what changed just before it connected may be neither in the page's first read nor
   * in the stream. So `settle` (a re-read, through reread()) runs SETTLE_MS after every
   * connection that did not resume from an id (the first one, and any after a drop before the
   * first event).
   */
  stream(url, onMessage, { once = false, settle = null } = {}) {
    let up = false;
    const handle = (name, data, id) => {
      this.recent.push({ at: Date.now(), name, data, onMessage });
      if (this.recent.length > 2000 || Date.now() - this.recent[0].at > REPLAY_MS) this.prune();
      onMessage(name, data, id);
    };
    const onState = (state, resumed) => {
      if (!this.active) return;
      if (state && !resumed && settle) {
        setTimeout(() => this.active && this.reread(settle), SETTLE_MS);
      }
      if (state && !this.connectedOnce) {
        this.connectedOnce = true;
        this.showReady();
      }
      if (state === up) return;
      up = state;
      this.connected += state ? 1 : -1;
      document.body.dataset.live = this.connected > 0 ? "on" : "off";
    };
    this.streams += 1;
    return readStream(url, { signal: this.signal, onMessage: handle, onState, once })
      .catch((error) => this.fail(error))
      .finally(() => onState(false));
  }

  prune() {
    const since = Date.now() - REPLAY_MS;
    this.recent = this.recent.filter((event) => event.at >= since);
  }

  /**
   * Run `read` (a GET of state, applied to the page), then apply again the events of the last
   * REPLAY_MS: a read can return the store from before events the page already showed (the
   * store lags), and must not undo them. Events apply idempotently, in order; while they are
   * replayed, `replaying` is true so handlers start no re-read of their own.
   */
  async reread(read) {
    const since = Date.now() - REPLAY_MS;
    try {
      await read();
    } catch (error) {
      this.fail(error);
      return;
    }
    if (!this.active) return;
    this.replaying = true;
    try {
      for (const event of this.recent) {
        if (event.at >= since && event.name !== "reset") event.onMessage(event.name, event.data);
      }
    } finally {
      this.replaying = false;
    }
  }

  /** The page's data is on screen; it says so (data-ready) once its streams are live too, so
   * what happens from then on is shown. */
  ready() {
    this.rendered = true;
    this.showReady();
  }

  showReady() {
    if (this.active && this.rendered && (this.streams === 0 || this.connectedOnce)) {
      document.body.dataset.ready = "1";
    }
  }

  /** Show an error (or the token prompt) unless the page was left meanwhile. */
  fail(error) {
    if (!this.active) return;
    if (error instanceof AuthRequired) {
      showLogin(token.get() ? "That token was refused." : null);
    } else {
      showError(error.message || String(error));
    }
  }

  navigate(url) {
    navigate(url, true);
  }
}

export function showError(message) {
  const banner = $("#error");
  if (message) {
    fill(banner, message, " ", button("Dismiss", () => showError(null), { class: "link" }));
  }
  banner.hidden = !message;
}

function unmount() {
  if (current) current.controller.abort();
  current = null;
  document.body.dataset.live = "off";
  document.body.dataset.ready = "0";
}

async function navigate(url, push) {
  const target = new URL(url, location.href);
  if (push) history.pushState(null, "", target.pathname + target.search);
  unmount();
  showError(null);
  $("#logout").hidden = !token.get();
  const main = $("#main");
  for (const [pattern, page] of ROUTES) {
    const match = pattern.exec(target.pathname);
    if (!match) continue;
    const context = new PageContext(page.NAME);
    current = context;
    document.body.dataset.page = page.NAME;
    const params = match.slice(1).map(decodeURIComponent);
    try {
      await loadAccess(context.signal); // each page: a key's role may change at a reload
      showAccess();
      await page.mount(main, params, target.searchParams, context);
    } catch (error) {
      context.fail(error);
    }
    return;
  }
  document.body.dataset.page = "notfound";
  fill(main, h("h1", {}, "Not found"), h("p", {}, "No page here. ", h("a", { href: "/" }, "All jobs")));
  document.body.dataset.ready = "1";
}

/** The key in use and its role, in the bar; nothing when this petit asks for no key. */
function showAccess() {
  document.body.dataset.role = access.role;
  const label = $("#whoami");
  label.textContent = access.key ? `${access.key} · ${access.role}` : "";
  label.title = access.key ? `API key ${access.key}, role ${access.role}` : "";
  label.hidden = !access.key;
}

function showLogin(problem) {
  unmount();
  document.body.dataset.page = "login";
  const input = h("input", {
    id: "token",
    type: "password",
    autocomplete: "off", // a password manager would keep it past the tab
    required: true,
    "aria-describedby": "login-help",
  });
  const error = h("p", { id: "login-error", role: "alert" }, problem || "");
  error.hidden = !problem;
  const form = h(
    "form",
    { id: "login", class: "card login" },
    h("h1", {}, "Sign in"),
    h("p", { id: "login-help" }, "This petit asks for an API key (petit keys new, or its "
      + "--api-token). It is kept for this browser tab only."),
    h("label", { for: "token" }, "API key"),
    input,
    error,
    h("button", { type: "submit", id: "login-submit" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = input.value.trim();
    input.value = "";
    if (!value) return;
    token.set(value);
    try {
      await get("/api/status");
    } catch (failure) {
      token.forget();
      error.textContent = failure instanceof AuthRequired ? "That token was refused." : failure.message;
      error.hidden = false;
      return;
    }
    navigate(location.href, false);
  });
  fill($("#main"), form);
  $("#logout").hidden = true;
  $("#whoami").hidden = true;
  document.body.dataset.ready = "1";
  input.focus();
}

function onClick(event) {
  // links of this site change the page without a reload; a modified click opens a tab as usual
  const link = event.target.closest("a[href]");
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const href = link.getAttribute("href");
  if (!href.startsWith("/") || href.startsWith("//") || href.startsWith("/api/")) return;
  event.preventDefault();
  navigate(href, true);
}

function start() {
  document.addEventListener("click", onClick);
  window.addEventListener("popstate", () => navigate(location.href, false));
  // A page left by a full load may wait in the back/forward cache with its streams open, and a
  // browser allows only 6 connections per host: close them as the page goes, reopen on return.
  window.addEventListener("pagehide", () => unmount());
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) navigate(location.href, false);
  });
  $("#logout").addEventListener("click", () => {
    token.forget();
    showLogin(null);
  });
  navigate(location.href, false);
}

start();
