// A form generated from a pipeline's inputs (its IR's root.inputs): one field per input,
// typed after the input's type, its default filled in; for schedules, a trigger too.

import { el, errorBox } from "./dom.js";

export function runForm(spec, experiments, { submitLabel, defaultName, schedule = false, onSubmit }) {
  const inputs = Object.entries(spec?.root?.inputs || {});
  const name = el("input", { name: "display_name", required: true, value: defaultName });
  const experiment = el("select", { name: "experiment" },
    el("option", { value: "" }, "Default"),
    experiments.map((x) => el("option", { value: x.experiment_id }, x.display_name)));
  const fields = inputs.map(([key, input]) => field(key, input));
  const message = el("div", { class: "form-message", "aria-live": "polite" });
  const triggerKind = el("select", { name: "trigger_kind", onchange: () => swap() },
    el("option", { value: "periodic" }, "every N seconds"), el("option", { value: "cron" }, "cron expression"));
  const interval = el("input", { name: "interval_second", type: "number", min: 1, value: 3600, "aria-label": "interval in seconds" });
  const cron = el("input", { name: "cron", value: "0 0 * * * *", placeholder: "0 0 * * * *", "aria-label": "cron expression" });
  const triggerValue = el("span", {}, interval);
  const swap = () => triggerValue.replaceChildren(triggerKind.value === "cron" ? cron : interval);
  const maxConcurrency = el("input", { name: "max_concurrency", type: "number", min: 1, max: 100, value: 1 });
  const catchup = el("input", { name: "catchup", type: "checkbox", checked: true });
  const form = el("form", { class: "generated-form", onsubmit: async (event) => {
    event.preventDefault();
    message.replaceChildren();
    const parameters = {};
    try {
      for (const f of fields) {
        const value = f.read();
        if (value !== undefined) parameters[f.key] = value;
      }
      const submitted = { name: name.value, experiment: experiment.value, parameters };
      if (schedule) {
        submitted.trigger = triggerKind.value === "cron"
          ? { cron_schedule: { cron: cron.value } }
          : { periodic_schedule: { interval_second: Number(interval.value) } };
        submitted.maxConcurrency = Number(maxConcurrency.value);
        submitted.catchup = catchup.checked;
      }
      form.querySelector("button[type=submit]").disabled = true;
      await onSubmit(submitted);
    } catch (error) {
      message.replaceChildren(errorBox(error));
    } finally {
      const button = form.querySelector("button[type=submit]");
      if (button) button.disabled = false;
    }
  } },
    row("Name", name),
    row("Experiment", experiment),
    fields.length ? el("fieldset", {}, el("legend", {}, "Pipeline inputs"), fields.map((f) => f.row)) : el("p", { class: "muted" }, "This pipeline takes no inputs."),
    schedule ? el("fieldset", {}, el("legend", {}, "Schedule"),
      row("Trigger", el("span", {}, triggerKind, " ", triggerValue)),
      row("Max concurrent runs", maxConcurrency),
      row("Catch up missed ticks", catchup)) : null,
    el("button", { type: "submit", class: "primary" }, submitLabel),
    message,
  );
  return form;
}

function row(label, control) {
  const id = `f-${Math.random().toString(36).slice(2, 9)}`;
  const target = control.matches?.("input,select,textarea") ? control : control.querySelector?.("input,select,textarea");
  if (target && !target.id) target.id = id;
  return el("div", { class: "form-row" }, el("label", { for: target?.id || id }, label), control);
}

function field(key, input) {
  const type = input.type || "str";
  const has = input.optional || input.default !== null && input.default !== undefined;
  const label = `${key} (${input.kind === "artifact" ? input.type || "artifact" : type})${has ? "" : " *"}`;
  let control;
  let read;
  if (input.kind === "parameter" && type === "bool") {
    control = el("input", { name: key, type: "checkbox", checked: Boolean(input.default) });
    read = () => control.checked;
  } else if (input.kind === "parameter" && (type === "int" || type === "float")) {
    control = el("input", { name: key, type: "number", step: type === "int" ? "1" : "any", value: input.default ?? "", required: !has });
    read = () => (control.value === "" ? undefined : Number(control.value));
  } else if (input.kind === "parameter" && type === "str") {
    control = el("input", { name: key, value: input.default ?? "", required: !has });
    read = () => (control.value === "" && has && input.default === null ? undefined : control.value);
  } else {
    // lists, dicts, artifacts and anything else: JSON
    control = el("textarea", { name: key, rows: 2, required: !has, placeholder: "JSON" },
      input.default === null || input.default === undefined ? "" : JSON.stringify(input.default));
    read = () => {
      if (control.value.trim() === "") return undefined;
      try {
        return JSON.parse(control.value);
      } catch {
        throw new Error(`input ${key}: not valid JSON`);
      }
    };
  }
  return { key, read, row: row(label, control) };
}
