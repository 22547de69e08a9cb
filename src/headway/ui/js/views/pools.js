/* Work pools: limits, queues, workers; edit limits, pause and resume. */
import { api, get } from "../api.js";
import { field, gauge, h, relTime, table } from "../dom.js";
import { actionButton, dialog, numberValue } from "../shell.js";

const poolsView = {
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
  if (limit === null || limit === undefined) return "unlimited";
  return limit === 0 ? "0 (no runs start)" : String(limit);
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
  const input = h("input", { name: "limit", type: "number", min: 0, step: 1,
    value: current === null || current === undefined ? "" : current,
    placeholder: "unlimited" });
  dialog.open(title, [
    field("Limit (runs pending or running at once)", input,
      "Leave empty for unlimited; 0 starts no runs."),
  ], [{
    label: "Save", primary: true,
    run: () => save(numberValue(input, "limit", { allowEmpty: true })),
  }]);
}

export {
  poolsView,
  limitText,
  poolCard,
  limitEditDialog,
};
