// The console's shell: asks for a token when the server wants one, shows what it may do,
// keeps one live queue stream for every page (the wallboard's data, and the change signal
// the other pages refresh on), and routes #/page/argument to the page modules.

import { ApiError, follow, probeAccess, setToken, token } from "./api.js";
import { clear, errorBox, h } from "./ui.js";
import { pages } from "./pages.js";

const main = document.getElementById("main");
const accessBox = document.getElementById("access");
const statusBox = document.getElementById("status");

let access = null;
let cleanup = null;
let stream = null;
const queues = new Map(); // queue name → {stats, receivedAt}
const listeners = new Set();

function status(text) {
  statusBox.textContent = text;
}

function startStream() {
  if (stream || !access || !access.scopes.read) return;
  stream = follow("/v1/queues/stream", (name, data) => {
    if (name !== "queue") return;
    try {
      const stats = JSON.parse(data);
      queues.set(stats.queue, { stats, receivedAt: Date.now() });
      for (const listener of listeners) listener(stats);
    } catch {
      // A malformed event is skipped; the next one replaces it.
    }
  }, (state) => {
    if (state instanceof ApiError) status(`live updates stopped: ${state.explain()}`);
    else status(state === "live" ? "live" : "reconnecting to the live stream…");
  });
}

function stopStream() {
  if (stream) stream.stop();
  stream = null;
  queues.clear();
}

const context = {
  get access() { return access; },
  queues,
  /** Calls fn(stats) on each queue event; returns the unsubscribe function. */
  onQueue(fn) {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
  status,
};

function renderAccess() {
  if (!access) return clear(accessBox);
  if (!access.reachable) return clear(accessBox, h("span", {}, "server unreachable"));
  if (access.needsToken) return clear(accessBox, h("span", {}, "sign-in needed"));
  if (access.open) return clear(accessBox, h("span", { class: "pill ok", "data-scopes": "open" }, "open access (no tokens configured)"));
  const granted = Object.entries(access.scopes).filter(([, ok]) => ok).map(([scope]) => scope);
  clear(accessBox,
    h("span", { "data-scopes": granted.join(",") }, `token scopes: ${granted.join(", ") || "none"}`),
    token() ? h("button", { type: "button", onclick: signOut }, "Forget token") : null);
}

function signOut() {
  setToken("");
  stopStream();
  start();
}

function loginForm(message) {
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "current-password", required: true });
  const form = h("form", { class: "login", onsubmit: (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    start();
  } },
  h("h1", {}, "Sign in"),
  h("p", {}, "This server asks for a bearer token. It is kept in this tab only (sessionStorage) and sent as an Authorization header."),
  message ? h("div", { class: "error", role: "alert" }, message) : null,
  h("label", { for: "token" }, "Access token"),
  input,
  h("p", {}, h("button", { type: "submit" }, "Sign in")));
  clear(main, form);
  input.focus();
}

function route() {
  if (cleanup) {
    try { cleanup(); } catch { /* a page's cleanup never blocks the next page */ }
    cleanup = null;
  }
  const hash = location.hash.replace(/^#\/?/, "");
  const [name, ...rest] = hash.split("/");
  const page = pages[name] ? name : "wallboard";
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${pages[page].title} · omnilog console`;
  clear(main);
  status(stream ? "live" : "");
  main.dataset.page = page;
  if (!access.scopes.read) {
    clear(main, h("h1", {}, pages[page].title), errorBox("Not allowed with this token: it lacks the read scope, which every page needs."));
    return;
  }
  cleanup = pages[page].mount(main, rest.map(decodeURIComponent).join("/"), context) || null;
}

async function start() {
  access = await probeAccess();
  renderAccess();
  if (!access.reachable) {
    clear(main, errorBox(new ApiError(0, "unreachable", "no answer from the server", "/")));
    setTimeout(start, 2000);
    return;
  }
  if (access.needsToken) {
    loginForm(access.badToken ? "That token was not accepted (401). Check it and try again." : null);
    return;
  }
  startStream();
  route();
}

window.addEventListener("hashchange", () => {
  if (access && access.reachable && !access.needsToken) {
    route();
    main.focus({ preventScroll: true });
  }
});

start();
