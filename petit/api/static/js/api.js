// The HTTP API, as the dashboard uses it. The token lives in sessionStorage only (it dies with
// the tab) and travels in the Authorization header, never in a URL: so event streams are read
// with fetch() rather than EventSource, which cannot send headers.

const TOKEN_KEY = "petit.token";

export class AuthRequired extends Error {}

export class ApiError extends Error {
  constructor(status, body) {
    super(typeof body?.error === "string" ? body.error : `HTTP ${status}`);
    this.status = status;
    this.code = body?.code;
  }
}

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  forget: () => sessionStorage.removeItem(TOKEN_KEY),
};

function headers(extra = {}) {
  const value = token.get();
  return value ? { ...extra, Authorization: `Bearer ${value}` } : extra;
}

async function request(method, url, signal) {
  const response = await fetch(url, {
    method,
    headers: headers({ Accept: "application/json" }),
    cache: "no-store",
    credentials: "omit",
    signal,
  });
  if (response.status === 401) throw new AuthRequired();
  let body = null;
  try {
    body = await response.json();
  } catch {
    // a proxy's HTML error page: the status says enough
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

export const get = (url, signal) => request("GET", url, signal);
export const post = (url, signal) => request("POST", url, signal);

// What the key in use may do, from GET /api/whoami: the pages show only the buttons its role
// allows (the server refuses the rest anyway, with a 403 naming the role needed).
const ROLES = ["read", "operate", "admin"];
export const access = { key: null, role: "read", required: false };

export async function loadAccess(signal) {
  const me = await get("/api/whoami", signal);
  Object.assign(access, { key: me.key, role: me.role, required: me.keys_required });
  return access;
}

/** Whether the key in use has `role` (or a larger one). */
export const can = (role) => ROLES.indexOf(access.role) >= ROLES.indexOf(role);

/** A query string from a map; arrays repeat the key. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const item of [value].flat()) {
      if (item !== null && item !== undefined) search.append(key, String(item));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/**
 * Reads a Server-Sent Events stream until `signal` aborts: onMessage(event, data, id) per
 * message, onState(connected, resumed) as the connection comes and goes (`resumed`: it went on
 * after the last id seen, so nothing was missed). Reconnects after the server's
 * `retry:` delay, resuming from the last id seen (Last-Event-ID), as EventSource would. Returns
 * when the stream ends for good: aborted, or (with `once`) after the server closed it.
 */
export async function readStream(url, { signal, onMessage, onState = () => {}, once = false }) {
  let lastId = null;
  let retryMs = 1000;
  while (!signal.aborted) {
    try {
      const extra = { Accept: "text/event-stream" };
      if (lastId !== null) extra["Last-Event-ID"] = lastId;
      const response = await fetch(url, { headers: headers(extra), cache: "no-store", signal });
      if (response.status === 401) throw new AuthRequired();
      if (!response.ok) {
        let body = null;
        try {
          body = await response.json();
        } catch {
          // not JSON
        }
        throw new ApiError(response.status, body);
      }
      onState(true, lastId !== null); // resumed: the server replays what this client missed
      await parse(response.body, signal, (field) => {
        if (field.retry !== undefined) retryMs = field.retry;
        if (field.id !== undefined) lastId = field.id;
        if (field.event !== undefined) onMessage(field.event, field.data, field.id);
      });
      if (once) return;
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof AuthRequired || (error instanceof ApiError && error.status < 500)) {
        onState(false);
        throw error;
      }
    }
    onState(false);
    await pause(retryMs, signal);
  }
}

async function parse(body, signal, dispatch) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const cancel = () => reader.cancel().catch(() => {});
  signal.addEventListener("abort", cancel, { once: true });
  try {
    await readMessages(reader, dispatch);
  } finally {
    // also when a handler threw: an abandoned body would hold one of the browser's 6 connections
    signal.removeEventListener("abort", cancel);
    cancel();
  }
}

async function readMessages(reader, dispatch) {
  let buffer = "";
  let event = { data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        if (event.name !== undefined || event.data.length) {
          let data = null;
          try {
            data = event.data.length ? JSON.parse(event.data.join("\n")) : null;
          } catch {
            data = event.data.join("\n");
          }
          dispatch({ event: event.name || "message", data, id: event.id });
        } else if (event.id !== undefined) {
          dispatch({ id: event.id });
        }
        event = { data: [] };
        continue;
      }
      if (line.startsWith(":")) continue; // a keepalive comment
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") event.data.push(text);
      else if (field === "event") event.name = text;
      else if (field === "id") event.id = text;
      else if (field === "retry" && /^\d+$/.test(text)) dispatch({ retry: Number(text) });
    }
  }
}

function pause(ms, signal) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
