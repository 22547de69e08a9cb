/* Concurrency limits: gauges, holders, waiters in order; create, edit, delete. */
import { api, get, limitDetails, limitPath, MAX_LIMIT_DETAILS, whoNode } from "../api.js";
import { duration, field, fmtSlots, gauge, h, relTime, table, timeCell } from "../dom.js";
import { actionButton, dialog, hooks, numberValue } from "../shell.js";

const limitsView = {
  section: "limits",
  mount(ctx) {
    const filter = h("input", { type: "search", name: "q", placeholder: "filter by name",
      "aria-label": "Filter limits", value: ctx.query.get("q") || "" });
    filter.addEventListener("input", () => {
      const v = filter.value.trim();
      ctx.query = new URLSearchParams(v ? { q: v } : {});
      history.replaceState(null, "", `#/limits${v ? `?q=${encodeURIComponent(v)}` : ""}`);
      hooks.refresh();
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
      h("td", null, whoNode(lease.holder)),
      h("td", { text: String(lease.slots[l.name] || "") }),
      h("td", null, timeCell(lease.created)),
      h("td", null, relTime(lease.expires)))), "holders"),
    h("h3", { text: "Waiters, in grant order" }),
    table(["#", "Waiter", "Slots", "Priority", "Waiting"], waiters.map((w) => h("tr", null,
      h("td", { text: String(w.position) }),
      h("td", null, whoNode(w.holder)),
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
  const limit = h("input", { name: "limit", type: "number", min: 0, step: 1, required: true,
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

export {
  limitsView,
  limitCard,
  limitFields,
  createLimitDialog,
  editLimitDialog,
  deleteLimitDialog,
};
