/* The page around the views: live status, error banner, dialogs, action buttons. */
import { ApiError } from "./api.js";
import { $, h } from "./dom.js";

// Set by the app: refresh the current view now; ask for the API key.
const hooks = {
  refresh() {},
  needLogin() {},
};

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
        hooks.refresh();
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) {
          this.close();
          return hooks.needLogin(err.detail);
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

// A button whose action calls the API; failures go to the banner.
function actionButton(label, action, cls) {
  return h("button", {
    type: "button",
    class: `button small ${cls || ""}`,
    text: label,
    onclick: async (ev) => {
      const button = ev.currentTarget;
      button.disabled = true;
      try {
        await action();
        showBanner(null);
        hooks.refresh();
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) return hooks.needLogin(err.detail);
        showBanner(errorText(err));
      } finally {
        button.disabled = false;
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

export {
  hooks,
  setLive,
  showBanner,
  errorText,
  dialog,
  actionButton,
  numberValue,
};
