/* Deployments: schedules, next runs, concurrency, pause/resume, run now. */
import { api, deploymentPath, get } from "../api.js";
import { ACTIVE, describeSchedule, field, fmtSlots, fmtTime, gauge, h, relTime, runLink, toDate } from "../dom.js";
import { actionButton, dialog, numberValue } from "../shell.js";

const deploymentsView = {
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

export {
  deploymentsView,
  deploymentCard,
  deploymentLimitDialog,
  runNowDialog,
};
