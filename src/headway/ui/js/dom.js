/* DOM building and formatting: elements from data, times, durations, states. */

const STATES = [
  "SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED",
  "CRASHED", "CANCELLING", "CANCELLED", "PAUSED",
];

const FINAL = new Set(["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]);

const ACTIVE = ["PENDING", "RUNNING", "CANCELLING", "PAUSED"];

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

const limitLink = (name) => h("a", { href: `#/limits?q=${encodeURIComponent(name)}`, text: name });

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

function field(label, input, hint) {
  return h("label", { class: "field" }, h("span", { class: "field-label", text: label }), input,
    hint ? h("small", { class: "muted", text: hint }) : null);
}

function joinNodes(nodes, sep) {
  const out = [];
  nodes.forEach((n, i) => {
    if (i) out.push(sep || ", ");
    out.push(n);
  });
  return out;
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

export {
  STATES,
  FINAL,
  ACTIVE,
  h,
  append,
  $,
  pad,
  toDate,
  fmtTime,
  fmtDuration,
  fmtRelative,
  capitalize,
  fmtSlots,
  seconds,
  duration,
  relTime,
  timeCell,
  stateBadge,
  describeSchedule,
  runLink,
  limitLink,
  gauge,
  emptyRow,
  table,
  field,
  joinNodes,
  tickDurations,
};
