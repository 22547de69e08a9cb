/* The server's API: calls with the key, its JSON errors, and who a holder id is. */
import { $, h, runLink } from "./dom.js";

const API = "/api/v1";

const KEY_STORE = "headway.apiKey";

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
  // Every change says JSON, body or not: a server without an API key refuses
  // anything else (that is how it tells this page from a cross-site form).
  if (method !== "GET") headers["Content-Type"] = "application/json";
  if (body !== undefined) init.body = JSON.stringify(body);
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

const limitPath = (name) => `/limits/${encodeURIComponent(name)}`;

const deploymentPath = (full) => `/deployments/${full.split("/").map(encodeURIComponent).join("/")}`;

const MAX_LIMIT_DETAILS = 100;

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

// A run named by an explanation: "run <link>" or "task <link>", else its process.
// A holder or request ahead as an explanation names it.
const explainedWho = (x) => whoNode({ id: x.run_id, name: x.name, kind: x.kind, pid: x.pid, host: x.host });

export {
  API,
  KEY_STORE,
  ApiError,
  auth,
  api,
  get,
  limitPath,
  deploymentPath,
  MAX_LIMIT_DETAILS,
  names,
  notFound,
  NOT_FOUND_RETRY_MS,
  resolveHolder,
  limitDetails,
  resolveExplained,
  whoNode,
  explainedWho,
};
