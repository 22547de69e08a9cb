/* headway dashboard: a small single-page app over the server's /api/v1.
 *
 * No framework and no external request: ES modules served from /ui/, views
 * built with the DOM API (text always goes through textContent, never parsed
 * as HTML), polled every POLL_MS while they are shown, and re-rendered only
 * when their data changed. Durations of things still going tick in place.
 *
 * With an API key on the server, every /api/v1 call answers 401 until the
 * user signs in; the key is kept in sessionStorage (this tab, this session)
 * and sent as "Authorization: Bearer <key>".
 *
 * This module is the entry point: sign-in, routing by the URL fragment, and
 * the polling loop. Views live in js/views/, one per section.
 */
import { ApiError, auth, get } from "./js/api.js";
import { $, field, fmtTime, h, tickDurations } from "./js/dom.js";
import { dialog, errorText, hooks, setLive, showBanner } from "./js/shell.js";
import { deploymentsView } from "./js/views/deployments.js";
import { limitsView } from "./js/views/limits.js";
import { poolsView } from "./js/views/pools.js";
import { runView } from "./js/views/run.js";
import { runsView } from "./js/views/runs.js";

const POLL_MS = 1000;

// -- sign in ---------------------------------------------------------------------------
function needLogin(detail) {
  stopView();
  setLive(false, "signed out");
  showBanner(null);
  document.body.dataset.view = "login";
  const input = h("input", { type: "password", name: "api-key", autocomplete: "current-password",
    required: true, "aria-label": "API key" });
  const error = h("p", { class: "form-error", role: "alert",
    hidden: !(auth.key && detail), text: auth.key && detail ? detail : "" });
  const form = h("form", { class: "card login", id: "login" },
    h("h1", { text: "Sign in" }),
    h("p", { text: "This headway server requires an API key (HEADWAY_API_KEY). "
      + "It is kept for this browser tab only." }),
    field("API key", input),
    error,
    h("button", { type: "submit", class: "button primary", text: "Sign in" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    auth.key = input.value.trim();
    try {
      await get("/flow_runs", { limit: 1 });
    } catch (err) {
      auth.key = null;
      error.textContent = errorText(err);
      error.hidden = false;
      return;
    }
    route();
  });
  auth.key = null;
  $("#main").replaceChildren(form);
  input.focus();
}

// -- routing and polling ---------------------------------------------------------------
/* A view: mount(ctx) builds the parts that stay (filters, buttons) and returns
 * { live, load, render }: load() fetches, render(data) builds the live part,
 * which is replaced only when the data changed. ctx.query holds the fragment's
 * query (filters), ctx.params the path's parameters. */
const routes = [
  [/^\/runs\/?$/, runsView],
  [/^\/runs\/([^/]+)$/, runView],
  [/^\/deployments\/?$/, deploymentsView],
  [/^\/pools\/?$/, poolsView],
  [/^\/limits\/?$/, limitsView],
];

let current = null;

function stopView() {
  if (current) {
    current.alive = false;
    clearTimeout(current.timer);
    current = null;
  }
}

function route() {
  stopView();
  dialog.close();
  const raw = location.hash.replace(/^#/, "") || "/runs";
  const [path, search] = raw.split("?");
  let view = null;
  let params = [];
  for (const [pattern, candidate] of routes) {
    const m = path.match(pattern);
    if (m) {
      view = candidate;
      params = m.slice(1).map(decodeURIComponent);
      break;
    }
  }
  const main = $("#main");
  main.replaceChildren();
  for (const a of document.querySelectorAll(".nav a")) {
    const here = view !== null && a.dataset.section === view.section;
    a.classList.toggle("current", here);
    if (here) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (!view) {
    main.append(h("p", { text: `No page ${path}.` }), h("a", { href: "#/runs", text: "Go to the runs" }));
    return;
  }
  document.body.dataset.view = view.section;
  const ctx = { main, params, query: new URLSearchParams(search || ""), alive: true,
    timer: null, signature: null };
  const parts = view.mount(ctx);
  ctx.parts = parts;
  current = ctx;
  tick(ctx);
}

async function tick(ctx) {
  if (!ctx.alive) return;
  clearTimeout(ctx.timer);
  const seq = (ctx.seq = (ctx.seq || 0) + 1);
  try {
    const data = await ctx.parts.load();
    if (!ctx.alive || seq !== ctx.seq) return;
    const signature = JSON.stringify(data);
    if (signature !== ctx.signature) {
      ctx.signature = signature;
      const out = ctx.parts.render(data);
      ctx.parts.live.replaceChildren(...[out].flat().filter(Boolean));
    }
    ctx.parts.live.dataset.loaded = "true";
    showBanner(null);
    setLive(true, `live · ${fmtTime(new Date().toISOString())}`);
  } catch (err) {
    if (!ctx.alive) return;
    if (err instanceof ApiError && err.status === 401) {
      needLogin(err.detail);
      return;
    }
    showBanner(errorText(err));
    setLive(false, err instanceof ApiError && err.status === 0 ? "offline" : "error");
  }
  if (ctx.alive && seq === ctx.seq) ctx.timer = setTimeout(() => tick(ctx), POLL_MS);
}

function refreshNow() {
  if (current) tick(current);
}

hooks.refresh = refreshNow;
hooks.needLogin = needLogin;

// A module runs once the document is parsed (before DOMContentLoaded).
function start() {
  $("#sign-out").hidden = !auth.key;
  $("#sign-out").addEventListener("click", () => {
    auth.key = null;
    route();
  });
  window.addEventListener("hashchange", route);
  setInterval(tickDurations, 1000);
  route();
}

start();
