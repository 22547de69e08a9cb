/* The runs list: filters, live states, and which runs wait for what, behind whom. */
import { get, limitDetails, names, resolveExplained, whoNode } from "../api.js";
import { duration, h, joinNodes, limitLink, runLink, stateBadge, STATES, table, timeCell } from "../dom.js";
import { hooks } from "../shell.js";

const RUN_PAGE = 200;

// The API filters runs by state and deployment; a tag is matched here, over
// this many of the newest runs (with the other filters applied first).
const TAG_SCAN = 1000;

// Runs of a list explained one by one (deployment runs waiting for a slot).
const MAX_RUN_EXPLAINS = 20;

const runsView = {
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
      hooks.refresh();
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

export {
  RUN_PAGE,
  TAG_SCAN,
  MAX_RUN_EXPLAINS,
  runsView,
  waitingByRun,
  waitNote,
};
