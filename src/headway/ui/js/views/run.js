/* One run: facts, the why panel, state timeline, parameters, task-run Gantt, logs. */
import { api, explainedWho, get, resolveExplained } from "../api.js";
import { capitalize, duration, FINAL, fmtDuration, fmtSlots, fmtTime, h, limitLink, relTime, stateBadge, table, timeCell, toDate } from "../dom.js";
import { dialog } from "../shell.js";

const runView = {
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

export {
  runView,
  MAX_TASK_EXPLAINS,
  explainTasks,
  renderWhy,
  explanation,
  blocker,
  renderRun,
  cancelRunDialog,
  stateStrip,
  gantt,
};
