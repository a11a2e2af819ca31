// The console's only way to the server: the public HTTP API, with the user's bearer
// token (kept in sessionStorage, so it dies with the tab, and sent as a header, never in
// a URL where logs and history would keep it).

const TOKEN_KEY = "omnilog.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An answer that was not 2xx, with the problem+json detail when there is one. */
export class ApiError extends Error {
  constructor(status, title, detail, path) {
    super(`${status} ${title}${detail ? ": " + detail : ""}`);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.path = path;
  }
  /** A sentence for a person. */
  explain() {
    if (this.status === 401) return `Sign-in needed: ${this.detail || "this server asks for a bearer token"}.`;
    if (this.status === 403) return `Not allowed with this token: ${this.detail || "it lacks the scope"}.`;
    if (this.status === 0) return `The server cannot be reached (${this.detail}).`;
    return `${this.path} answered ${this.status} ${this.title}${this.detail ? ": " + this.detail : ""}`;
  }
}

function headers(extra) {
  const h = new Headers(extra || {});
  const t = token();
  if (t) h.set("Authorization", `Bearer ${t}`);
  return h;
}

async function failure(response, path) {
  let title = response.statusText || "error";
  let detail = "";
  try {
    const text = await response.text();
    try {
      const problem = JSON.parse(text);
      title = problem.title || title;
      detail = problem.detail || "";
    } catch {
      detail = text.trim().slice(0, 300);
    }
  } catch {
    // The body could not be read: the status says enough.
  }
  return new ApiError(response.status, title, detail, path);
}

/** GET (or another method) of a JSON resource; throws ApiError on anything but 2xx. */
export async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, {
      method: options.method || "GET",
      headers: headers(options.body !== undefined ? { "Content-Type": "application/json" } : {}),
      body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
      signal: options.signal,
      cache: "no-store",
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "unreachable", String(error.message || error), path);
  }
  if (!response.ok) throw await failure(response, path);
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

/** The status of a request without throwing: for probing what a token may do. */
async function statusOf(path, options = {}) {
  try {
    const response = await fetch(path, {
      method: options.method || "GET",
      headers: headers(options.body ? { "Content-Type": "application/json" } : {}),
      body: options.body,
      cache: "no-store",
    });
    return response.status;
  } catch {
    return 0;
  }
}

/**
 * What the current token (or no token) may do. The server has no "who am I", so each
 * scope is probed with a request that needs it and changes nothing: an empty event batch
 * is refused as invalid (400) only after the token passed, and never reaches the log.
 */
export async function probeAccess() {
  const read = await statusOf("/v1/views");
  if (read === 0) return { reachable: false };
  const [admin, ingest, metrics] = await Promise.all([
    statusOf("/v1/admin/channels"),
    statusOf("/v1/events", { method: "POST", body: "[]" }),
    statusOf("/metrics"),
  ]);
  const allowed = (status) => status !== 401 && status !== 403;
  return {
    reachable: true,
    open: !token() && allowed(read) && allowed(admin),
    needsToken: read === 401,
    badToken: read === 401 && !!token(),
    scopes: {
      read: allowed(read),
      ingest: allowed(ingest),
      metrics: allowed(metrics),
      admin: allowed(admin),
    },
  };
}

/**
 * Follows a server-sent-event stream with fetch() and a streaming reader (EventSource
 * cannot send an Authorization header). Calls onEvent(name, data) per event and
 * reconnects after a pause until stop() is called.
 */
export function follow(path, onEvent, onState) {
  let stopped = false;
  let controller = null;
  async function run() {
    while (!stopped) {
      controller = new AbortController();
      try {
        const response = await fetch(path, { headers: headers({ Accept: "text/event-stream" }), signal: controller.signal, cache: "no-store" });
        if (!response.ok) throw await failure(response, path);
        onState && onState("live");
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
            let name = "message";
            const data = [];
            for (const line of block.split(/\r?\n/)) {
              if (line.startsWith("event:")) name = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
            }
            if (data.length) onEvent(name, data.join("\n"));
          }
        }
        onState && onState("reconnecting");
      } catch (error) {
        if (stopped) return;
        onState && onState(error instanceof ApiError ? error : "reconnecting");
        if (error instanceof ApiError && (error.status === 401 || error.status === 403)) return;
      }
      // A pause before reconnecting, so a server restart is not hammered.
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
  run();
  return {
    stop() {
      stopped = true;
      if (controller) controller.abort();
    },
  };
}
