/* headway dashboard: a small single-page app over the server's /api/v1.
 *
 * No framework and no external request: views are built with the DOM API
 * (text always goes through textContent, never parsed as HTML), polled every
 * POLL_MS while they are shown, and re-rendered only when their data changed.
 * Durations of things still going tick in place once a second.
 *
 * With an API key on the server, every /api/v1 call answers 401 until the
 * user signs in; the key is kept in sessionStorage (this tab, this session)
 * and sent as "Authorization: Bearer <key>".
 */
"use strict";

(function () {
  const API = "/api/v1";
  const POLL_MS = 1000;
  const KEY_STORE = "headway.apiKey";
  const STATES = [
    "SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED",
    "CRASHED", "CANCELLING", "CANCELLED", "PAUSED",
  ];
  const FINAL = new Set(["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]);
  const ACTIVE = ["PENDING", "RUNNING", "CANCELLING", "PAUSED"];
  const RUN_PAGE = 200;
  // The API filters runs by state and deployment; a tag is matched here, over
  // this many of the newest runs (with the other filters applied first).
  const TAG_SCAN = 1000;
  const MAX_LIMIT_DETAILS = 100;
  // Runs of a list explained one by one (deployment runs waiting for a slot).
  const MAX_RUN_EXPLAINS = 20;

  // -- DOM helpers ---------------------------------------------------------------------
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    if (props) {
      for (const [name, value] of Object.entries(props)) {
        if (value === undefined || value === null || value === false) continue;
        if (name === "class") el.className = value;
        else if (name === "text") el.textContent = value;
        else if (name === "style") {
          for (const [prop, v] of Object.entries(value)) el.style.setProperty(prop, v);
        } else if (name === "data") {
          for (const [k, v] of Object.entries(value)) el.dataset[k] = v;
        } else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
        else if (value === true) el.setAttribute(name, "");
        else el.setAttribute(name, String(value));
      }
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const child of children) {
      if (child === undefined || child === null || child === false) continue;
      if (Array.isArray(child)) append(el, child);
      else if (child instanceof Node) el.appendChild(child);
      else el.appendChild(document.createTextNode(String(child)));
    }
  }

  const $ = (selector, root) => (root || document).querySelector(selector);

  // -- formatting ------------------------------------------------------------------------
  const pad = (n, w) => String(n).padStart(w || 2, "0");

  function toDate(iso) {
    if (!iso) return null;
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? null : d;
  }

  function fmtTime(iso) {
    const d = toDate(iso);
    if (!d) return "—";
    const now = new Date();
    const clock = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    if (d.toDateString() === now.toDateString()) return clock;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock}`;
  }

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
    const s = Math.max(0, seconds);
    if (s < 1) return `${Math.round(s * 1000)} ms`;
    if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${pad(Math.floor(s % 60))} s`;
    const hours = Math.floor(m / 60);
    if (hours < 48) return `${hours} h ${pad(m % 60)} min`;
    return `${Math.floor(hours / 24)} d ${hours % 24} h`;
  }

  function fmtRelative(iso) {
    const d = toDate(iso);
    if (!d) return "—";
    const diff = (d.getTime() - Date.now()) / 1000;
    const text = fmtDuration(Math.abs(diff)).replace(/\.\d+ s$/, " s");
    if (Math.abs(diff) < 1) return "now";
    return diff > 0 ? `in ${text}` : `${text} ago`;
  }

  const capitalize = (text) => text.charAt(0).toUpperCase() + text.slice(1);

  function fmtSlots(value) {
    const n = Number(value);
    return Math.abs(n - Math.round(n)) < 1e-9 ? String(Math.round(n)) : n.toFixed(2);
  }

  function seconds(startIso, endIso) {
    const start = toDate(startIso);
    if (!start) return null;
    const end = toDate(endIso) || new Date();
    return (end.getTime() - start.getTime()) / 1000;
  }

  // A duration that keeps counting while its end is unknown.
  function duration(startIso, endIso) {
    const span = h("span", { class: "duration", text: fmtDuration(seconds(startIso, endIso)) });
    if (startIso && !endIso) span.dataset.since = startIso;
    return span;
  }

  // "in 5 s" / "3 min ago", kept current by the ticker.
  function relTime(iso) {
    return h("span", { class: "relative", title: iso || undefined,
      data: iso ? { at: iso } : undefined, text: fmtRelative(iso) });
  }

  function timeCell(iso) {
    return h("time", { datetime: iso || undefined, title: iso || undefined, text: fmtTime(iso) });
  }

  function stateBadge(state) {
    const type = state && state.type ? state.type : "UNKNOWN";
    const label = state && state.name && state.name.toUpperCase() !== type ? state.name : type;
    return h("span", { class: `badge state state-${type.toLowerCase()}`, title: type, text: label });
  }

  function describeSchedule(s) {
    const tz = s.timezone && s.timezone !== "UTC" ? ` (${s.timezone})` : " (UTC)";
    if (s.cron) return `cron ${s.cron}${tz}`;
    if (s.interval !== undefined && s.interval !== null) {
      return `every ${fmtDuration(Number(s.interval))}${tz}`;
    }
    if (s.rrule) return `rrule ${s.rrule}${tz}`;
    return JSON.stringify(s);
  }

  const runLink = (id, label) => h("a", { href: `#/runs/${encodeURIComponent(id)}`, text: label });
  const limitPath = (name) => `/limits/${encodeURIComponent(name)}`;
  const limitLink = (name) => h("a", { href: `#/limits?q=${encodeURIComponent(name)}`, text: name });
  const deploymentPath = (full) => `/deployments/${full.split("/").map(encodeURIComponent).join("/")}`;

  // -- the API ---------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, error, detail) {
      super(detail);
      this.status = status;
      this.error = error;
      this.detail = detail;
    }
  }

  const auth = {
    get key() { return sessionStorage.getItem(KEY_STORE); },
    set key(value) {
      if (value) sessionStorage.setItem(KEY_STORE, value);
      else sessionStorage.removeItem(KEY_STORE);
      $("#sign-out").hidden = !value;
    },
  };

  async function api(method, path, body, query) {
    const headers = { Accept: "application/json" };
    const key = auth.key;
    if (key) headers.Authorization = `Bearer ${key}`;
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let url = API + path;
    if (query) {
      const qs = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) {
        if (v === undefined || v === null || v === "") continue;
        for (const item of Array.isArray(v) ? v : [v]) qs.append(k, String(item));
      }
      const text = qs.toString();
      if (text) url += `?${text}`;
    }
    let resp;
    try {
      resp = await fetch(url, init);
    } catch (err) {
      throw new ApiError(0, "NetworkError", "cannot reach the headway server");
    }
    if (resp.status === 204) return null;
    let data = null;
    try {
      data = await resp.json();
    } catch (err) {
      data = null;
    }
    if (!resp.ok) {
      const error = data && data.error ? data.error : `HTTP ${resp.status}`;
      const detail = data && data.detail ? String(data.detail) : resp.statusText || "request failed";
      throw new ApiError(resp.status, error, detail);
    }
    return data;
  }

  const get = (path, query) => api("GET", path, undefined, query);

  // Holder ids to runs: a flow run id to its name, a task run id to its flow run.
  // Found ids never change meaning; an id not found (yet: task runs are recorded
  // in batches) is asked again after NOT_FOUND_RETRY_MS.
  const names = new Map();
  const notFound = new Map();
  const NOT_FOUND_RETRY_MS = 2000;
  async function resolveHolder(id) {
    if (!id) return null;
    if (names.has(id)) return names.get(id);
    if (Date.now() - (notFound.get(id) || -Infinity) < NOT_FOUND_RETRY_MS) return null;
    let found = null;
    try {
      const run = await get(`/flow_runs/${encodeURIComponent(id)}`);
      found = { runId: run.id, label: run.name, kind: "flow run" };
    } catch (err) {
      if (err.status !== 404 && err.status !== 422) throw err;
      try {
        const task = await get(`/task_runs/${encodeURIComponent(id)}`);
        found = { runId: task.flow_run_id, label: task.name, kind: "task run" };
      } catch (err2) {
        if (err2.status !== 404 && err2.status !== 422) throw err2;
      }
    }
    if (found) {
      names.set(id, found);
      notFound.delete(id);
    } else {
      notFound.set(id, Date.now());
    }
    return found;
  }

  // Holders and waiters of every limit that has any, keyed by limit name.
  async function limitDetails(limits, all) {
    const wanted = limits
      .filter((l) => all || l.waiters > 0)
      .slice(0, MAX_LIMIT_DETAILS);
    const details = await Promise.all(
      wanted.map((l) => get(limitPath(l.name), { detail: true }).catch((err) => {
        if (err.status === 404) return null; // deleted meanwhile
        throw err;
      })),
    );
    const out = new Map();
    for (const d of details) if (d) out.set(d.limit.name, d);
    const ids = new Set();
    for (const d of out.values()) {
      for (const lease of d.holders) if (lease.holder.id) ids.add(lease.holder.id);
      for (const w of d.waiters) if (w.holder.id) ids.add(w.holder.id);
    }
    await Promise.all([...ids].map(resolveHolder));
    return out;
  }

  // Who holds or waits: the run it belongs to (linked), else its process.
  // x: { id, name?, kind, pid?, host? }; the id may be a flow or a task run's.
  function whoNode(x) {
    const known = x.id ? names.get(x.id) : null;
    const hasPid = x.pid !== undefined && x.pid !== null;
    const where = hasPid ? h("small", { class: "muted", text: ` (pid ${x.pid} on ${x.host})` }) : null;
    if (known && known.runId) {
      return h("span", { class: "who" }, known.kind === "task run" ? "task " : "run ",
        runLink(known.runId, x.name || known.label), where);
    }
    if (x.name) return h("span", { class: "who" }, `${x.kind.replace("_", " ")} ${x.name}`, where);
    return h("span", { class: "who", text: hasPid ? `${x.kind} pid ${x.pid} on ${x.host}` : (x.id || x.kind) });
  }

  // A lease's or waiter's holder (the slot engine's records).
  const who = (holder) => whoNode(holder);

  // -- the shell: live status, banner, dialogs ------------------------------------------
  function setLive(ok, text) {
    const el = $("#live");
    el.className = ok ? "live ok" : "live down";
    el.textContent = text;
  }

  function showBanner(message) {
    const el = $("#banner");
    if (!message) {
      el.hidden = true;
      el.textContent = "";
      return;
    }
    el.hidden = false;
    el.replaceChildren(h("strong", { text: "Error: " }), message);
  }

  function errorText(err) {
    if (err instanceof ApiError) return err.detail;
    return err && err.message ? err.message : String(err);
  }

  const dialog = {
    el: null,
    open(title, body, actions, dismiss) {
      const el = $("#dialog");
      this.el = el;
      const error = h("p", { class: "form-error", role: "alert", hidden: true });
      // The API checks every value and its message is shown: no browser-side validation.
      const form = h("form", { method: "dialog", class: "dialog-form", novalidate: true },
        h("h3", { text: title }),
        body,
        error,
        h("div", { class: "dialog-actions" },
          h("button", { type: "button", class: "button ghost", text: dismiss || "Cancel",
            onclick: () => this.close() }),
          actions.map((a) => h("button", {
            type: a.primary ? "submit" : "button",
            class: `button ${a.danger ? "danger" : "primary"}`,
            text: a.label,
            onclick: a.primary ? undefined : (ev) => run(a, ev),
          }))));
      const primary = actions.find((a) => a.primary);
      const run = async (action, ev) => {
        if (ev) ev.preventDefault();
        error.hidden = true;
        for (const b of form.querySelectorAll("button")) b.disabled = true;
        try {
          await action.run(form);
          this.close();
          refreshNow();
        } catch (err) {
          if (err instanceof ApiError && err.status === 401) {
            this.close();
            return needLogin(err.detail);
          }
          error.textContent = errorText(err);
          error.hidden = false;
        } finally {
          for (const b of form.querySelectorAll("button")) b.disabled = false;
        }
      };
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        if (primary) run(primary, ev);
      });
      el.replaceChildren(form);
      el.showModal();
      const first = form.querySelector("input, textarea, select");
      if (first) first.focus();
    },
    close() {
      if (this.el && this.el.open) this.el.close();
    },
  };

  function field(label, input, hint) {
    return h("label", { class: "field" }, h("span", { class: "field-label", text: label }), input,
      hint ? h("small", { class: "muted", text: hint }) : null);
  }

  // A button whose action calls the API; failures go to the banner.
  function actionButton(label, action, cls) {
    return h("button", {
      type: "button",
      class: `button small ${cls || ""}`,
      text: label,
      onclick: async (ev) => {
        ev.currentTarget.disabled = true;
        try {
          await action();
          showBanner(null);
          refreshNow();
        } catch (err) {
          if (err instanceof ApiError && err.status === 401) return needLogin(err.detail);
          showBanner(errorText(err));
        }
      },
    });
  }

  function numberValue(input, what, { allowEmpty = false, integer = true } = {}) {
    const raw = input.value.trim();
    if (raw === "") {
      if (allowEmpty) return null;
      throw new Error(`${what} is required`);
    }
    const n = Number(raw);
    if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) {
      throw new Error(`${what} must be a ${integer ? "whole " : ""}number, got ${raw}`);
    }
    return n;
  }

  function gauge(used, limit, label) {
    const ratio = limit > 0 ? Math.min(1, used / limit) : 0;
    const level = ratio >= 1 ? "full" : ratio >= 0.75 ? "high" : "ok";
    return h("div", { class: `gauge gauge-${level}`, role: "meter", "aria-valuemin": 0,
      "aria-valuemax": limit, "aria-valuenow": used, "aria-label": label },
      h("div", { class: "gauge-fill", style: { width: `${(ratio * 100).toFixed(1)}%` } }));
  }

  function emptyRow(cols, text) {
    return h("tr", null, h("td", { class: "empty", colspan: cols, text }));
  }

  function table(headers, rows, cls) {
    return h("div", { class: "table-wrap" },
      h("table", { class: cls || "" },
        h("thead", null, h("tr", null, headers.map((x) =>
          typeof x === "string" ? h("th", { text: x }) : h("th", { class: x.cls, text: x.text })))),
        h("tbody", null, rows.length ? rows : emptyRow(headers.length, "none"))));
  }

  // -- views -------------------------------------------------------------------------------
  /* A view: mount(ctx) builds the parts that stay (filters, buttons) and returns
   * { live, load, render }: load() fetches, render(data) builds the live part. */

  const views = {};

  // Runs ----------------------------------------------------------------------------------
  views.runs = {
    section: "runs",
    mount(ctx) {
      const q = ctx.query;
      const stateSel = h("select", { name: "state", "aria-label": "State" },
        h("option", { value: "", text: "All states" }),
        STATES.map((s) => h("option", { value: s, text: s, selected: q.get("state") === s })));
      const depSel = h("select", { name: "deployment", "aria-label": "Deployment" },
        h("option", { value: "", text: "All deployments" }));
      if (q.get("deployment")) {
        depSel.appendChild(h("option", { value: q.get("deployment"), text: q.get("deployment"),
          selected: true }));
      }
      const tagInput = h("input", { name: "tag", type: "search", placeholder: "tag",
        "aria-label": "Tag", value: q.get("tag") || "" });
      const apply = () => {
        const next = new URLSearchParams();
        if (stateSel.value) next.set("state", stateSel.value);
        if (depSel.value) next.set("deployment", depSel.value);
        if (tagInput.value.trim()) next.set("tag", tagInput.value.trim());
        ctx.query = next;
        const text = next.toString();
        history.replaceState(null, "", `#/runs${text ? `?${text}` : ""}`);
        refreshNow();
      };
      stateSel.addEventListener("change", apply);
      depSel.addEventListener("change", apply);
      tagInput.addEventListener("input", apply);
      ctx.main.append(
        h("div", { class: "page-head" }, h("h1", { text: "Flow runs" }),
          h("form", { class: "filters", onsubmit: (ev) => { ev.preventDefault(); apply(); } },
            stateSel, depSel, tagInput)));
      const live = h("section", { class: "live-region", id: "runs" });
      ctx.main.append(live);
      let knownDeployments = "";
      return {
        live,
        async load() {
          const query = ctx.query;
          const [runs, limits, deployments] = await Promise.all([
            get("/flow_runs", {
              limit: query.get("tag") ? TAG_SCAN : RUN_PAGE,
              state: query.get("state") || undefined,
              deployment: query.get("deployment") || undefined,
            }),
            get("/limits"),
            get("/deployments").catch(() => []),
          ]);
          const depNames = deployments.map((d) => d.full_name).join("\n");
          if (depNames !== knownDeployments) {
            knownDeployments = depNames;
            const chosen = depSel.value;
            depSel.replaceChildren(h("option", { value: "", text: "All deployments" }),
              deployments.map((d) => h("option", { value: d.full_name, text: d.full_name,
                selected: d.full_name === chosen })));
            if (chosen && !deployments.some((d) => d.full_name === chosen)) {
              depSel.appendChild(h("option", { value: chosen, text: chosen, selected: true }));
            }
          }
          const tag = query.get("tag");
          const shown = (tag ? runs.filter((r) => r.tags.includes(tag)) : runs).slice(0, RUN_PAGE);
          const details = await limitDetails(limits, false);
          // Deployment runs a claim left waiting: the server says for which limit, behind whom.
          const awaiting = shown.filter((r) => r.state.name === "AwaitingConcurrencySlot")
            .slice(0, MAX_RUN_EXPLAINS);
          const blocked = (await Promise.all(awaiting.map((r) =>
            get(`/explain/runs/${encodeURIComponent(r.id)}`).catch((err) => {
              if (err.status === 404) return null;
              throw err;
            })))).filter(Boolean);
          await resolveExplained(blocked);
          return {
            runs: shown,
            scanned: runs.length,
            tag,
            details: [...details.values()],
            blocked: blocked.map((e) => ({ run_id: e.run_id, blockers: e.blockers })),
          };
        },
        render(data) {
          const waits = waitingByRun(data.details, data.blocked);
          const running = data.runs.filter((r) => r.state.type === "RUNNING").length;
          const waiting = data.runs.filter((r) => waits.has(r.id)
            || r.state.name === "AwaitingConcurrencySlot").length;
          const rows = data.runs.map((run) => {
            const wait = waits.get(run.id);
            return h("tr", { data: { runId: run.id, state: run.state.type },
              class: wait ? "is-waiting" : "" },
            h("td", null, runLink(run.id, run.name),
              h("div", { class: "muted small", text: run.flow_name })),
            h("td", { class: "wide-only" }, run.deployment
              ? h("a", { href: `#/runs?deployment=${encodeURIComponent(run.deployment)}`,
                text: run.deployment }) : h("span", { class: "muted", text: "—" })),
            h("td", null, stateBadge(run.state), wait ? waitNote(wait) : null),
            h("td", null, timeCell(run.start_time || run.expected_start_time)),
            h("td", null, duration(run.start_time, run.end_time)),
            h("td", { class: "wide-only" }, run.tags.map((t) =>
              h("a", { class: "tag", href: `#/runs?tag=${encodeURIComponent(t)}`, text: t }))));
          });
          let note = data.runs.length >= RUN_PAGE ? ` (the newest ${RUN_PAGE})` : "";
          if (data.tag && data.scanned >= TAG_SCAN) note += ` among the newest ${TAG_SCAN}`;
          return [
            h("p", { class: "summary" },
              `${data.runs.length} run(s)${note} · ${running} running · ${waiting} waiting for a slot`),
            table(["Run", { text: "Deployment", cls: "wide-only" }, "State", "Start", "Duration",
              { text: "Tags", cls: "wide-only" }], rows, "runs-table"),
          ];
        },
      };
    },
  };

  // Which runs wait for slots, on which limit, at which place, behind whom.
  // Which runs wait, for which limit, at which place, behind whom: slot requests
  // queued on limits (code and task tags), and deployment runs a claim left
  // waiting for a slot (as the server explains them).
  function waitingByRun(details, blocked) {
    const out = new Map();
    const add = (runId, wait) => {
      const list = out.get(runId) || [];
      list.push(wait);
      out.set(runId, list);
    };
    for (const d of details) {
      for (const w of d.waiters) {
        const known = w.holder.id ? names.get(w.holder.id) : null;
        const runId = known ? known.runId : w.holder.id;
        if (runId) add(runId, { limit: d.limit.name, position: w.position,
          holders: d.holders.map((l) => l.holder) });
      }
    }
    for (const e of blocked) {
      for (const b of e.blockers) {
        add(e.run_id, { limit: b.limit_name, position: b.position, holders: b.holders.map((x) =>
          ({ id: x.run_id, name: x.name, kind: x.kind, pid: x.pid, host: x.host })) });
      }
    }
    return out;
  }

  function waitNote(waits) {
    return h("div", { class: "wait-note" }, waits.map((w) => h("div", null,
      "waiting for ", limitLink(w.limit), ` (#${w.position} in queue)`,
      w.holders.length ? [" · held by ", joinNodes(w.holders.map(whoNode))] : null)));
  }

  function joinNodes(nodes, sep) {
    const out = [];
    nodes.forEach((n, i) => {
      if (i) out.push(sep || ", ");
      out.push(n);
    });
    return out;
  }

  // One run ---------------------------------------------------------------------------------
  views.run = {
    section: "runs",
    mount(ctx) {
      const id = ctx.params[0];
      const live = h("section", { class: "live-region", id: "run" });
      ctx.main.append(live);
      const logs = [];
      let afterId = 0;
      // Explanations of task runs that have ended do not change: asked once.
      const endedTasks = new Map();
      return {
        live,
        async load() {
          const path = encodeURIComponent(id);
          const [run, states, tasks, why] = await Promise.all([
            get(`/flow_runs/${path}`),
            get(`/runs/${path}/states`),
            get(`/flow_runs/${path}/task_runs`),
            get(`/explain/runs/${path}`),
          ]);
          for (;;) {
            const batch = await get(`/flow_runs/${path}/logs`, { after_id: afterId });
            // Another refresh may have taken some of these meanwhile: keep each line once.
            const fresh = batch.filter((line) => line.id > afterId);
            if (!fresh.length) break;
            logs.push(...fresh);
            afterId = fresh[fresh.length - 1].id;
            if (batch.length < 200) break;
          }
          const taskWhys = await explainTasks(tasks, endedTasks);
          await resolveExplained([why, ...taskWhys]);
          return { run, states, tasks, why, taskWhys, logCount: logs.length };
        },
        render(data) {
          return renderRun(data, logs);
        },
      };
    },
  };

  // A flow run's own explanation covers the slots it asks for itself; its tasks
  // ask for theirs (tag limits, concurrency() inside a task): each task that
  // waits, or waited, is explained too (the first MAX_TASK_EXPLAINS of them).
  const MAX_TASK_EXPLAINS = 20;
  async function explainTasks(tasks, ended) {
    const open = tasks.filter((t) => !FINAL.has(t.state.type));
    const done = tasks.filter((t) => FINAL.has(t.state.type));
    const chosen = [...open, ...done].slice(0, MAX_TASK_EXPLAINS);
    const answers = await Promise.all(chosen.map(async (t) => {
      if (ended.has(t.id)) return ended.get(t.id);
      let answer;
      try {
        answer = await get(`/explain/runs/${encodeURIComponent(t.id)}`);
      } catch (err) {
        if (err.status === 404) return null; // not recorded yet
        throw err;
      }
      if (FINAL.has(t.state.type)) ended.set(t.id, answer);
      return answer;
    }));
    return answers.filter((a) => a && (a.waiting || a.waited.length));
  }

  // Holders and requests ahead name runs by id: find the flow run each belongs to.
  async function resolveExplained(answers) {
    const ids = new Set();
    for (const a of answers) {
      for (const b of a.blockers) {
        for (const x of b.holders) if (x.run_id) ids.add(x.run_id);
        for (const x of b.ahead) if (x.run_id) ids.add(x.run_id);
      }
    }
    await Promise.all([...ids].map(resolveHolder));
  }

  // A run named by an explanation: "run <link>" or "task <link>", else its process.
  // A holder or request ahead as an explanation names it.
  const explainedWho = (x) => whoNode({ id: x.run_id, name: x.name, kind: x.kind, pid: x.pid, host: x.host });


  // The "why is this waiting" panel: the server's explanation (what `headway why` prints).
  function renderWhy(why, taskWhys) {
    const waiting = taskWhys.filter((tw) => tw.waiting).length;
    return h("section", { class: "card why", id: "why" }, h("h2", { text: "Why is this waiting?" }),
      waiting ? h("p", { class: "why-lead", text: `${waiting} task run(s) of this flow run wait for slots (below).` }) : null,
      taskWhys.length ? h("h3", { text: "The flow run itself" }) : null,
      explanation(why),
      taskWhys.map((tw) => h("div", { class: "why-task" },
        h("h3", { text: `Task ${tw.name || tw.run_id}` }), explanation(tw))));
  }

  function explanation(a) {
    return h("div", { class: "explanation" },
      h("p", { class: "why-summary", text: a.summary }),
      a.blockers.map(blocker),
      a.estimated_start && a.blockers.length > 1
        ? h("p", null, "Estimated start: ", timeCell(a.estimated_start), " (", relTime(a.estimated_start), ")")
        : null,
      a.holds.length ? [h("h3", { text: "Holding" }), h("ul", { class: "holders" }, a.holds.map((x) =>
        h("li", null, `${x.slots} slot(s) of `, limitLink(x.limit_name), ` since ${fmtTime(x.since)}`)))] : null,
      a.waited.length ? [h("h3", { text: "Waited" }), h("ul", { class: "holders" }, a.waited.map((w) =>
        h("li", null, `${w.what}`, w.limit_name ? [" (", limitLink(w.limit_name), ")"] : null,
          ` · ${fmtDuration(w.seconds)} until ${fmtTime(w.until)}`))),
      a.total_wait_seconds !== null && a.total_wait_seconds !== undefined
        ? h("p", { class: "muted", text: `${fmtDuration(a.total_wait_seconds)} waited in all.` }) : null] : null,
      a.details.length ? [h("h3", { text: "Limits that apply" }),
        h("ul", { class: "plain details" }, a.details.map((d) => h("li", { text: d })))] : null);
  }

  function blocker(b) {
    const more = b.holder_count - b.holders.length;
    return h("div", { class: "why-item", data: { limit: b.limit_name } },
      h("p", null, h("strong", { text: `Waiting for ${b.slots} slot(s) of ` }), limitLink(b.limit_name),
        ` (${b.scope} limit${b.active ? "" : ", inactive"}): ${fmtSlots(b.active_slots)} of ${b.limit} slot(s) taken`
        + (b.slot_decay_per_second > 0 ? `, draining ${b.slot_decay_per_second}/s.` : ".")),
      h("p", { class: "why-position" }, `Position ${b.position} in the queue`
        + ` (${b.waiters_ahead} ahead, ${b.waiting} waiting in all), priority ${b.priority}`
        + (b.waiting_since ? `, waiting since ${fmtTime(b.waiting_since)}.` : ".")),
      h("p", { class: "muted", text: `When full: ${b.strategy}.` }),
      b.holders.length
        ? h("ul", { class: "holders" }, b.holders.map((x) => h("li", null, "held by ", explainedWho(x),
          ` · ${x.slots} slot(s) since ${fmtTime(x.since)}`)),
        more > 0 ? h("li", { text: `and ${more} more holder(s)` }) : null)
        : h("p", { class: "muted", text: "No holder now." }),
      b.ahead.length ? [h("p", { text: "Ahead of it:" }), h("ol", { class: "holders" }, b.ahead.map((x) =>
        h("li", null, explainedWho(x), ` · ${x.slots} slot(s), priority ${x.priority}, since ${fmtTime(x.since)}`)))] : null,
      h("p", null, b.estimated_start
        ? ["Estimated start: ", timeCell(b.estimated_start), " (", relTime(b.estimated_start), `), ${b.estimate}.`]
        : capitalize(/^no estimate/i.test(b.estimate) ? `${b.estimate}.` : `no estimate: ${b.estimate}.`)));
  }

  function renderRun(data, logs) {
    const { run, states, tasks } = data;
    const facts = [
      ["Flow", run.flow_name],
      ["Deployment", run.deployment ? h("a", {
        href: `#/runs?deployment=${encodeURIComponent(run.deployment)}`, text: run.deployment }) : "—"],
      ["Work pool", run.work_pool ? `${run.work_pool}${run.work_queue ? ` / ${run.work_queue}` : ""}` : "—"],
      ["Created", timeCell(run.created)],
      ["Expected start", timeCell(run.expected_start_time)],
      ["Start", timeCell(run.start_time)],
      ["End", timeCell(run.end_time)],
      ["Duration", duration(run.start_time, run.end_time)],
      ["Priority", String(run.priority)],
      ["Tags", run.tags.length ? run.tags.join(", ") : "—"],
      ["Id", h("code", { text: run.id })],
    ];
    const cancellable = !FINAL.has(run.state.type) && run.state.type !== "CANCELLING";
    return [
      h("div", { class: "page-head" },
        h("h1", null, h("a", { href: "#/runs", class: "back", text: "Runs" }), " / ",
          h("span", { id: "run-name", text: run.name })),
        h("div", { class: "head-actions" }, stateBadge(run.state),
          cancellable ? h("button", { type: "button", class: "button small danger", text: "Cancel run",
            onclick: () => cancelRunDialog(run) }) : null)),
      run.state.message ? h("p", { class: "state-message", text: run.state.message }) : null,
      h("div", { class: "grid-2" },
        h("section", { class: "card" }, h("h2", { text: "Run" }),
          h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", { text: k }), h("dd", null, v)]))),
        renderWhy(data.why, data.taskWhys)),
      h("section", { class: "card", id: "timeline" }, h("h2", { text: "State timeline" }),
        stateStrip(states, run), table(["Time", "State", "Message"], states.map((s) => h("tr", null,
          h("td", null, timeCell(s.timestamp)), h("td", null, stateBadge(s)),
          h("td", { class: "message", text: s.message || "" }))))),
      h("section", { class: "card" }, h("h2", { text: "Parameters" }),
        Object.keys(run.parameters).length
          ? h("pre", { class: "json", text: JSON.stringify(run.parameters, null, 2) })
          : h("p", { class: "muted", text: "No parameters." })),
      h("section", { class: "card", id: "task-runs" },
        h("h2", { text: `Task runs (${tasks.length})` }), gantt(run, tasks)),
      h("section", { class: "card", id: "logs" }, h("h2", { text: `Logs (${logs.length})` }),
        logs.length ? h("div", { class: "logs" }, logs.map((l) => h("div", {
          class: `log-line level-${String(l.record.level_name).toLowerCase()}` },
        h("time", { class: "log-time", text: fmtTime(l.record.timestamp) }),
        h("span", { class: "log-level", text: l.record.level_name }),
        h("span", { class: "log-message", text: l.record.message }))))
          : h("p", { class: "muted", text: "No logs yet." })),
    ];
  }

  function cancelRunDialog(run) {
    dialog.open(`Cancel run ${run.name}?`, [
      h("p", { text: run.state.type === "RUNNING"
        ? "Its process is asked to stop (SIGTERM, then SIGKILL after a grace period); "
          + "the run ends CANCELLED and gives its slots back."
        : "It will not start; the run ends CANCELLED." }),
    ], [{
      label: "Cancel run", primary: true, danger: true,
      run: () => api("POST", `/flow_runs/${encodeURIComponent(run.id)}/cancel`,
        { message: "cancelled from the dashboard" }),
    }], "Keep it");
  }

  // States as proportional segments from the first state to now (or the end).
  function stateStrip(states, run) {
    if (!states.length) return null;
    const t0 = toDate(states[0].timestamp).getTime();
    const tEnd = FINAL.has(run.state.type)
      ? toDate(states[states.length - 1].timestamp).getTime() : Date.now();
    const total = Math.max(1, tEnd - t0);
    const strip = h("div", { class: "strip", "aria-label": "state timeline" });
    states.forEach((s, i) => {
      const start = toDate(s.timestamp).getTime();
      const end = i + 1 < states.length ? toDate(states[i + 1].timestamp).getTime() : tEnd;
      const width = ((end - start) / total) * 100;
      strip.append(h("div", {
        class: `strip-seg state-bg-${s.type.toLowerCase()}`,
        title: `${s.name || s.type} · ${fmtTime(s.timestamp)} · ${fmtDuration((end - start) / 1000)}`,
        style: { "flex-grow": String(Math.max(width, 0.5)) },
      }));
    });
    return strip;
  }

  // Task runs as bars on the flow run's time axis (a Gantt-like view).
  function gantt(run, tasks) {
    if (!tasks.length) return h("p", { class: "muted", text: "No task runs." });
    const startOf = (t) => toDate(t.start_time) || toDate(t.created) || toDate(run.start_time) || new Date();
    const t0 = Math.min(...tasks.map((t) => startOf(t).getTime()),
      toDate(run.start_time) ? toDate(run.start_time).getTime() : Infinity);
    const ends = tasks.map((t) => (toDate(t.end_time) || new Date()).getTime());
    const runEnd = toDate(run.end_time);
    const t1 = Math.max(...ends, runEnd ? runEnd.getTime() : 0, t0 + 1);
    const total = t1 - t0;
    const rows = tasks.map((t) => {
      const s = startOf(t).getTime();
      const e = (toDate(t.end_time) || new Date()).getTime();
      const left = ((s - t0) / total) * 100;
      const width = Math.max(0.4, ((e - s) / total) * 100);
      return h("div", { class: "gantt-row", data: { taskRun: t.id } },
        h("div", { class: "gantt-name", title: t.task_key },
          h("span", { text: t.name }), " ", stateBadge(t.state)),
        h("div", { class: "gantt-track" }, h("div", {
          class: `gantt-bar state-bg-${t.state.type.toLowerCase()}`,
          title: `${t.name}: ${fmtTime(t.start_time)} → ${fmtTime(t.end_time)}`,
          style: { left: `${left.toFixed(2)}%`, width: `${Math.min(width, 100 - left).toFixed(2)}%` },
        })),
        h("div", { class: "gantt-dur" }, duration(t.start_time, t.end_time)));
    });
    return h("div", { class: "gantt" },
      h("div", { class: "gantt-axis muted small" },
        h("span", { text: fmtTime(new Date(t0).toISOString()) }),
        h("span", { text: `${fmtDuration(total / 1000)} total` })),
      rows);
  }

  // Deployments -------------------------------------------------------------------------
  views.deployments = {
    section: "deployments",
    mount(ctx) {
      ctx.main.append(h("div", { class: "page-head" }, h("h1", { text: "Deployments" })));
      const live = h("section", { class: "live-region", id: "deployments" });
      ctx.main.append(live);
      return {
        live,
        async load() {
          const deployments = await get("/deployments");
          const runs = await Promise.all(deployments.map((d) => get("/flow_runs", {
            deployment: d.full_name, state: ["SCHEDULED", ...ACTIVE], limit: 500 })));
          const limits = await get("/limits", { prefix: "deployment:" });
          // The server's answer to "what happens when the schedule fires while a run is active".
          const policies = await Promise.all(deployments.map((d) =>
            get(`/explain${deploymentPath(d.full_name)}`).catch((err) => {
              if (err.status === 404) return null; // deleted meanwhile
              throw err;
            })));
          return { deployments, runs, limits, policies };
        },
        render(data) {
          if (!data.deployments.length) {
            return h("p", { class: "muted", text: "No deployments yet: serve() a flow or run `headway deploy`." });
          }
          return h("div", { class: "cards" }, data.deployments.map((d, i) =>
            deploymentCard(d, data.runs[i], data.limits, data.policies[i])));
        },
      };
    },
  };

  function deploymentCard(d, runs, limits, policy) {
    const now = Date.now();
    const running = runs.filter((r) => ACTIVE.includes(r.state.type));
    const scheduled = runs.filter((r) => r.state.type === "SCHEDULED");
    const waiting = scheduled.filter((r) => r.state.name === "AwaitingConcurrencySlot"
      || r.state.name === "Late"
      || (toDate(r.expected_start_time) && toDate(r.expected_start_time).getTime() <= now));
    const upcoming = scheduled
      .filter((r) => !waiting.includes(r))
      .sort((a, b) => String(a.expected_start_time).localeCompare(String(b.expected_start_time)))
      .slice(0, 5);
    const own = limits.filter((l) => l.name === `deployment:${d.full_name}`
      || l.name.startsWith(`deployment:${d.full_name}:`));
    const active = own.reduce((n, l) => n + Number(l.active_slots), 0);
    const runsHref = `#/runs?deployment=${encodeURIComponent(d.full_name)}`;
    const concurrency = d.concurrency_limit === null || d.concurrency_limit === undefined
      ? h("p", { class: "muted", text: "Unlimited: runs overlap (no concurrency limit)." })
      : h("div", null,
        h("p", null, h("strong", { text: `Limit ${d.concurrency_limit}` }),
          ` · strategy ${d.collision_strategy}`,
          d.concurrency_key ? ` · key ${d.concurrency_key}` : "",
          own.length > 1 ? ` · ${own.length} keys active` : ""),
        d.concurrency_key ? null : [gauge(active, d.concurrency_limit, "deployment slots"),
          h("p", { class: "small muted", text: `${fmtSlots(active)} / ${d.concurrency_limit} slots in use` })]);
    return h("article", { class: "card deployment", data: { deployment: d.full_name } },
      h("div", { class: "card-head" },
        h("h2", null, h("span", { text: d.full_name })),
        d.paused ? h("span", { class: "badge paused", text: "paused" })
          : h("span", { class: "badge active", text: "active" })),
      d.description ? h("p", { class: "muted", text: d.description }) : null,
      h("dl", { class: "facts" },
        h("dt", { text: "Work pool" }), h("dd", { text: d.work_pool
          ? `${d.work_pool}${d.work_queue ? ` / ${d.work_queue}` : ""}` : "— (served by its process)" }),
        h("dt", { text: "Schedules" }), h("dd", null, d.schedules.length
          ? h("ul", { class: "plain" }, d.schedules.map((s) => h("li", {
            class: s.active ? "" : "muted", text: describeSchedule(s.schedule) + (s.active ? "" : " (inactive)") })))
          : "none (runs start on demand)"),
        h("dt", { text: "Next runs" }), h("dd", null, upcoming.length
          ? h("ul", { class: "plain" }, upcoming.map((r) => h("li", null,
            runLink(r.id, fmtTime(r.expected_start_time)), " ",
            h("span", { class: "muted" }, "(", relTime(r.expected_start_time), ")"))))
          : (d.paused ? "none while paused" : "none scheduled")),
        h("dt", { text: "Concurrency" }), h("dd", null, concurrency),
        policy ? [
          h("dt", { text: "If a run is active" }), h("dd", { class: "on-collision", text: policy.on_collision }),
          h("dt", { text: "Policy" }), h("dd", null, h("ul", { class: "plain layers" }, policy.layers.map((l) =>
            h("li", null, h("span", { class: "muted", text: `${l.layer}${l.name ? ` ${l.name}` : ""}: ` }),
              // The server's detail says "unlimited" itself when there is no limit.
              l.limit === null || l.limit === undefined
                ? (l.detail || "unlimited")
                : `limit ${l.limit}${l.detail ? ` · ${l.detail}` : ""}`))))] : null,
        h("dt", { text: "Runs" }), h("dd", null,
          h("a", { href: runsHref, text: `${running.length} running · ${waiting.length} waiting` })),
        d.tags.length ? [h("dt", { text: "Tags" }), h("dd", { text: d.tags.join(", ") })] : null),
      h("div", { class: "card-actions" },
        d.paused
          ? actionButton("Resume", () => api("PATCH", deploymentPath(d.full_name), { paused: false }))
          : actionButton("Pause", () => api("PATCH", deploymentPath(d.full_name), { paused: true })),
        h("button", { type: "button", class: "button small", text: "Edit concurrency",
          onclick: () => deploymentLimitDialog(d) }),
        h("button", { type: "button", class: "button small primary", text: "Run now",
          onclick: () => runNowDialog(d) })));
  }

  function deploymentLimitDialog(d) {
    const limit = h("input", { name: "limit", type: "number", min: 1, step: 1, placeholder: "unlimited",
      value: d.concurrency_limit === null || d.concurrency_limit === undefined ? "" : d.concurrency_limit });
    const strategy = h("select", { name: "collision_strategy" },
      ["ENQUEUE", "CANCEL_NEW", "CANCEL_IN_PROGRESS"].map((s) =>
        h("option", { value: s, text: s, selected: s === d.collision_strategy })));
    const key = h("input", { name: "concurrency_key", autocomplete: "off", placeholder: "{customer_id}",
      value: d.concurrency_key || "" });
    dialog.open(`Concurrency of ${d.full_name}`, [
      field("Limit (runs at once)", limit, "Leave empty for unlimited: runs overlap (the default)."),
      field("When the limit is full", strategy,
        "ENQUEUE: the new run waits. CANCEL_NEW: it is cancelled. CANCEL_IN_PROGRESS: the newest wins."),
      field("Concurrency key (optional)", key, "A template over parameters: one limit per value."),
    ], [{
      label: "Save", primary: true,
      run: () => api("PUT", `${deploymentPath(d.full_name)}/concurrency_limit`, {
        limit: numberValue(limit, "limit", { allowEmpty: true }),
        collision_strategy: strategy.value,
        concurrency_key: key.value.trim() || null,
      }),
    }]);
  }

  function runNowDialog(d) {
    const params = h("textarea", { name: "parameters", rows: 8, spellcheck: "false",
      class: "mono" });
    params.value = JSON.stringify(d.parameters || {}, null, 2);
    const priority = h("input", { name: "priority", type: "number", step: 1, value: 0 });
    dialog.open(`Run ${d.full_name} now`, [
      field("Parameters (JSON)", params, "Merged over the deployment's own parameters."),
      field("Priority", priority, "Higher starts first when runs wait."),
    ], [{
      label: "Run", primary: true,
      async run() {
        let parameters;
        try {
          parameters = params.value.trim() ? JSON.parse(params.value) : {};
        } catch (err) {
          throw new Error(`parameters are not valid JSON: ${err.message}`);
        }
        if (!parameters || typeof parameters !== "object" || Array.isArray(parameters)) {
          throw new Error("parameters must be a JSON object");
        }
        const run = await api("POST", `${deploymentPath(d.full_name)}/runs`,
          { parameters, priority: numberValue(priority, "priority") });
        location.hash = `#/runs/${encodeURIComponent(run.id)}`;
      },
    }]);
  }

  // Work pools ----------------------------------------------------------------------------
  views.pools = {
    section: "pools",
    mount(ctx) {
      ctx.main.append(h("div", { class: "page-head" }, h("h1", { text: "Work pools" })));
      const live = h("section", { class: "live-region", id: "pools" });
      ctx.main.append(live);
      return {
        live,
        async load() {
          const [pools, queues, workers] = await Promise.all([
            get("/work_pools"), get("/work_queues"), get("/workers")]);
          return { pools, queues, workers };
        },
        render(data) {
          if (!data.pools.length) {
            return h("p", { class: "muted", text: "No work pools yet: `headway work-pool create NAME`." });
          }
          return h("div", { class: "cards wide" }, data.pools.map((p) => poolCard(p,
            data.queues.filter((q) => q.pool === p.name),
            data.workers.filter((w) => w.pool === p.name))));
        },
      };
    },
  };

  function limitText(limit) {
    return limit === null || limit === undefined ? "unlimited" : String(limit);
  }

  function poolCard(p, queues, workers) {
    const base = `/work_pools/${encodeURIComponent(p.name)}`;
    const limited = p.concurrency_limit !== null && p.concurrency_limit !== undefined;
    return h("article", { class: "card pool", data: { pool: p.name } },
      h("div", { class: "card-head" },
        h("h2", { text: p.name }),
        h("span", { class: "badge", text: p.type }),
        p.paused ? h("span", { class: "badge paused", text: "paused" }) : null),
      p.description ? h("p", { class: "muted", text: p.description }) : null,
      h("div", { class: "pool-limit" },
        h("span", null, "Limit: ", h("strong", { class: "pool-limit-value", text: limitText(p.concurrency_limit) })),
        h("span", { class: "counts", text: `${p.running} running · ${p.waiting} waiting` })),
      limited ? gauge(p.running, p.concurrency_limit, `${p.name} runs`) : null,
      h("div", { class: "card-actions" },
        h("button", { type: "button", class: "button small", text: "Edit limit",
          onclick: () => limitEditDialog(`Concurrency limit of pool ${p.name}`, p.concurrency_limit,
            (limit) => api("PUT", `${base}/concurrency_limit`, { limit })) }),
        p.paused
          ? actionButton("Resume", () => api("PATCH", base, { paused: false }))
          : actionButton("Pause", () => api("PATCH", base, { paused: true }))),
      h("h3", { text: "Queues" }),
      table(["Queue", { text: "Priority", cls: "wide-only" }, "Limit", "Runs", ""], queues.map((q) => {
        const qbase = `${base}/queues/${encodeURIComponent(q.name)}`;
        return h("tr", { data: { queue: q.name } },
          h("td", null, q.name, q.paused ? h("span", { class: "badge paused", text: "paused" }) : null),
          h("td", { class: "wide-only", text: String(q.priority) }),
          h("td", { class: "queue-limit", text: limitText(q.concurrency_limit) }),
          h("td", { text: `${q.running} running · ${q.waiting} waiting` }),
          h("td", null, h("div", { class: "row-actions" },
            h("button", { type: "button", class: "button small", text: "Edit limit",
              onclick: () => limitEditDialog(`Concurrency limit of queue ${p.name} / ${q.name}`,
                q.concurrency_limit, (limit) => api("PUT", `${qbase}/concurrency_limit`, { limit })) }),
            q.paused
              ? actionButton("Resume", () => api("PATCH", qbase, { paused: false }))
              : actionButton("Pause", () => api("PATCH", qbase, { paused: true })))));
      })),
      h("h3", { text: "Workers" }),
      table(["Worker", { text: "Process", cls: "wide-only" }, "Last seen", "Runs", "Status"], workers.map((w) => h("tr", { data: { worker: w.name } },
        h("td", { text: w.name }),
        h("td", { class: "wide-only", text: w.pid ? `pid ${w.pid} on ${w.host || "?"}` : (w.host || "—") }),
        h("td", null, relTime(w.last_heartbeat)),
        h("td", { text: String(w.running) }),
        h("td", null, h("span", { class: `badge ${w.online ? "active" : "offline"}`,
          text: w.online ? "online" : "offline" }))))));
  }

  function limitEditDialog(title, current, save) {
    const input = h("input", { name: "limit", type: "number", min: 1, step: 1,
      value: current === null || current === undefined ? "" : current,
      placeholder: "unlimited" });
    dialog.open(title, [
      field("Limit (runs pending or running at once)", input, "Leave empty for unlimited."),
    ], [{
      label: "Save", primary: true,
      run: () => save(numberValue(input, "limit", { allowEmpty: true })),
    }]);
  }

  // Limits ----------------------------------------------------------------------------------
  views.limits = {
    section: "limits",
    mount(ctx) {
      const filter = h("input", { type: "search", name: "q", placeholder: "filter by name",
        "aria-label": "Filter limits", value: ctx.query.get("q") || "" });
      filter.addEventListener("input", () => {
        const v = filter.value.trim();
        ctx.query = new URLSearchParams(v ? { q: v } : {});
        history.replaceState(null, "", `#/limits${v ? `?q=${encodeURIComponent(v)}` : ""}`);
        refreshNow();
      });
      ctx.main.append(h("div", { class: "page-head" }, h("h1", { text: "Concurrency limits" }),
        h("div", { class: "filters" }, filter,
          h("button", { type: "button", class: "button primary", id: "new-limit", text: "New limit",
            onclick: createLimitDialog }))));
      const live = h("section", { class: "live-region", id: "limits" });
      ctx.main.append(live);
      return {
        live,
        async load() {
          const q = (ctx.query.get("q") || "").toLowerCase();
          const limits = (await get("/limits")).filter((l) => !q || l.name.toLowerCase().includes(q));
          const details = await limitDetails(limits, true);
          return { limits, details: limits.map((l) => details.get(l.name) || null) };
        },
        render(data) {
          if (!data.limits.length) {
            return h("p", { class: "muted", text: "No limits: nothing is limited (the default). "
              + "Create one to cap a shared resource, a tag, a pool or a deployment." });
          }
          const more = data.limits.length > MAX_LIMIT_DETAILS
            ? h("p", { class: "muted", text: `Holders and waiters shown for the first ${MAX_LIMIT_DETAILS}.` })
            : null;
          return [more, h("div", { class: "cards limit-cards" }, data.limits.map((l, i) =>
            limitCard(l, data.details[i])))];
        },
      };
    },
  };

  function limitCard(l, detail) {
    const holders = detail ? detail.holders : [];
    const waiters = detail ? detail.waiters : [];
    const scope = l.name.includes(":") && ["tag", "deployment", "pool", "queue"].includes(l.name.split(":")[0])
      ? l.name.split(":")[0] : "global";
    const rate = l.slot_decay_per_second > 0;
    return h("article", { class: `card limit${l.active ? "" : " disabled"}`, data: { limit: l.name } },
      h("div", { class: "card-head" },
        h("h2", { class: "limit-name", text: l.name }),
        h("span", { class: "badge scope", text: scope }),
        rate ? h("span", { class: "badge", text: "rate" }) : null,
        l.active ? null : h("span", { class: "badge paused", text: "disabled" })),
      gauge(Number(l.active_slots), l.limit, `${l.name} slots`),
      h("p", { class: "gauge-text" },
        h("strong", { class: "usage", text: `${fmtSlots(l.active_slots)} / ${l.limit}` }),
        " slots in use",
        rate ? ` · decays ${l.slot_decay_per_second}/s` : "",
        ` · ${l.waiters} waiting · ${l.grants} granted · ${l.denials} denied`),
      h("h3", { text: "Holders" }),
      table(["Holder", "Slots", "Since", "Lease expires"], holders.map((lease) => h("tr", null,
        h("td", null, who(lease.holder)),
        h("td", { text: String(lease.slots[l.name] || "") }),
        h("td", null, timeCell(lease.created)),
        h("td", null, relTime(lease.expires)))), "holders"),
      h("h3", { text: "Waiters, in grant order" }),
      table(["#", "Waiter", "Slots", "Priority", "Waiting"], waiters.map((w) => h("tr", null,
        h("td", { text: String(w.position) }),
        h("td", null, who(w.holder)),
        h("td", { text: String(w.slots) }),
        h("td", { text: String(w.priority) }),
        h("td", null, duration(w.since, null)))), "waiters"),
      h("div", { class: "card-actions" },
        h("button", { type: "button", class: "button small", text: "Edit",
          onclick: () => editLimitDialog(l) }),
        l.active
          ? actionButton("Disable", () => api("PATCH", limitPath(l.name), { active: false }))
          : actionButton("Enable", () => api("PATCH", limitPath(l.name), { active: true })),
        h("button", { type: "button", class: "button small danger", text: "Delete",
          onclick: () => deleteLimitDialog(l, holders.length) })));
  }

  function limitFields(l) {
    const name = h("input", { name: "name", required: true, maxlength: 200, autocomplete: "off",
      placeholder: "db, tag:gpu, ..." });
    const limit = h("input", { name: "limit", type: "number", min: 1, step: 1, required: true,
      value: l ? l.limit : 1 });
    const decay = h("input", { name: "slot_decay_per_second", type: "number", min: 0, step: "any",
      value: l ? l.slot_decay_per_second : 0 });
    const active = h("input", { name: "active", type: "checkbox", checked: l ? l.active : true });
    return { name, limit, decay, active };
  }

  function createLimitDialog() {
    const f = limitFields(null);
    dialog.open("New concurrency limit", [
      field("Name", f.name, "Any name used in code, or tag:<tag>, pool:<pool>, ..."),
      field("Limit (slots)", f.limit),
      field("Slot decay per second", f.decay, "0 for a concurrency limit; more for a rate limit."),
      h("label", { class: "check" }, f.active, " Enabled"),
    ], [{
      label: "Create", primary: true,
      run: () => api("POST", "/limits", {
        name: f.name.value.trim(),
        limit: numberValue(f.limit, "limit"),
        slot_decay_per_second: numberValue(f.decay, "slot decay", { integer: false }),
        active: f.active.checked,
      }),
    }]);
  }

  function editLimitDialog(l) {
    const f = limitFields(l);
    dialog.open(`Edit limit ${l.name}`, [
      field("Limit (slots)", f.limit, "Holders keep their slots; waiters that now fit start."),
      field("Slot decay per second", f.decay),
      h("label", { class: "check" }, f.active, " Enabled"),
    ], [{
      label: "Save", primary: true,
      run: () => api("PATCH", limitPath(l.name), {
        limit: numberValue(f.limit, "limit"),
        slot_decay_per_second: numberValue(f.decay, "slot decay", { integer: false }),
        active: f.active.checked,
      }),
    }]);
  }

  function deleteLimitDialog(l, holders) {
    const force = h("input", { name: "force", type: "checkbox" });
    dialog.open(`Delete limit ${l.name}?`, [
      h("p", { text: holders
        ? `${holders} holder(s) hold slots of this limit. Deleting it lets everything `
          + "that uses the name run unlimited."
        : "Everything that uses this name will run unlimited." }),
      holders ? h("label", { class: "check" }, force, " Delete even though it has holders") : null,
    ], [{
      label: "Delete", primary: true, danger: true,
      run: () => api("DELETE", limitPath(l.name), undefined, { force: force.checked || undefined }),
    }]);
  }

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
  const routes = [
    [/^\/runs\/?$/, views.runs],
    [/^\/runs\/([^/]+)$/, views.run],
    [/^\/deployments\/?$/, views.deployments],
    [/^\/pools\/?$/, views.pools],
    [/^\/limits\/?$/, views.limits],
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

  // Durations of things still going count up in place.
  function tickDurations() {
    for (const el of document.querySelectorAll("[data-since]")) {
      el.textContent = fmtDuration(seconds(el.dataset.since, null));
    }
    for (const el of document.querySelectorAll("[data-at]")) {
      el.textContent = fmtRelative(el.dataset.at);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#sign-out").hidden = !auth.key;
    $("#sign-out").addEventListener("click", () => {
      auth.key = null;
      route();
    });
    window.addEventListener("hashchange", route);
    setInterval(tickDurations, 1000);
    route();
  });
})();
