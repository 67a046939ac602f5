// The pages, chosen by the URL's hash: #/runs, #/runs/ID, #/pipelines, #/pipelines/ID,
// #/experiments, #/recurring, #/compare?runs=A,B, #/lineage?run=ID&uri=URI.

import { API, UI_API, del, forgetToken, getJson, postJson, readEvents } from "./api.js";
import { ACTIVE, badge, between, el, errorBox, fill, refill, seconds, when } from "./dom.js";
import { GraphView, template } from "./graph.js";
import { runForm } from "./form.js";
import { encodePath, showStep } from "./step.js";

const main = document.getElementById("main");
let leave = () => {}; // stops what the current page keeps running (its streams)

const STATES = ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELING", "CANCELED"];

async function route() {
  leave();
  leave = () => {};
  const [path, query] = (location.hash.slice(1) || "/runs").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  for (const link of document.querySelectorAll("nav a")) {
    link.toggleAttribute("aria-current", link.getAttribute("href") === `#/${parts[0]}`);
  }
  const controller = new AbortController();
  leave = () => controller.abort();
  const page = { signal: controller.signal };
  try {
    if (parts[0] === "runs" && parts[1]) await runPage(parts[1], page);
    else if (parts[0] === "pipelines" && parts[1]) await pipelinePage(parts[1], params, page);
    else if (parts[0] === "pipelines") await pipelinesPage(page);
    else if (parts[0] === "experiments") await experimentsPage(page);
    else if (parts[0] === "recurring") await recurringPage(page);
    else if (parts[0] === "compare") await comparePage(params);
    else if (parts[0] === "lineage") await lineagePage(params);
    else await runsPage(params, page);
  } catch (error) {
    if (error.name !== "AbortError") fill(main, errorBox(error));
  }
}

// Follows a list's stream of server-sent events until the page is left: show(data) for
// each event called ``name``; the stream is opened again when the service ends it, and at
// once by refresh() (after an action here, so that its effect shows without waiting).
function follow(path, name, show, page, onError) {
  let current = null;
  const open = () => {
    current?.abort();
    const mine = new AbortController();
    current = mine;
    page.signal.addEventListener("abort", () => mine.abort());
    (async () => {
      while (!mine.signal.aborted) {
        await readEvents(path, (event, data) => { if (event === name) show(data); }, mine.signal);
      }
    })().catch((error) => { if (error.name !== "AbortError") onError(error); });
  };
  open();
  return { refresh: open };
}

// A table body a stream fills: data-loaded once the first list arrived (tests wait for it).
function loaded(body, rows, columns, empty) {
  refill(body, rows.length ? rows : el("tr", {}, el("td", { colspan: columns, class: "muted" }, empty)));
  body.dataset.loaded = "1";
}

function title(text, ...more) {
  document.title = `${text} · raypipe`;
  return el("h1", {}, text, ...more);
}

// -- names, looked up once ------------------------------------------------------------------

const names = { experiments: new Map(), versions: new Map() };

async function experimentNames() {
  const found = await getJson(`${API}/experiments?page_size=1000`);
  for (const e of found.experiments) names.experiments.set(e.experiment_id, e.display_name);
  return found.experiments;
}

async function pipelineVersions() {
  const pipelines = (await getJson(`${API}/pipelines?page_size=1000`)).pipelines;
  const all = [];
  await Promise.all(pipelines.map(async (p) => {
    const versions = (await getJson(`${API}/pipelines/${p.pipeline_id}/versions?page_size=1000`)).pipeline_versions;
    for (const v of versions) {
      names.versions.set(v.pipeline_version_id, `${p.display_name} / ${v.display_name}`);
      all.push({ pipeline: p, version: v });
    }
  }));
  return { pipelines, all };
}

// -- runs -----------------------------------------------------------------------------------

async function runsPage(params, page) {
  const state = {
    experiment: params.get("experiment") || "",
    version: params.get("version") || "",
    pipeline: params.get("pipeline") || "",
    states: params.get("state") || "",
    recurring: params.get("recurring") || "",
    sort: params.get("sort") || "-created_at",
    size: Number(params.get("size") || 20),
    tokens: [null], // page tokens of the pages seen: back goes one down
  };
  const [experiments, { pipelines, all }] = await Promise.all([experimentNames(), pipelineVersions()]);
  const body = el("tbody");
  const pager = el("div", { class: "pager" });
  const compareButton = el("button", { type: "button", disabled: true, onclick: () => {
    const chosen = [...body.querySelectorAll("input:checked")].map((c) => c.value);
    location.hash = `#/compare?runs=${chosen.join(",")}`;
  } }, "Compare selected");
  const select = (label, name, options, value, onchange) => el("label", {}, label, " ",
    el("select", { name, onchange }, options.map(([v, text]) => el("option", { value: v, selected: v === value }, text))));
  const reload = () => {
    state.tokens = [null];
    const q = new URLSearchParams();
    if (state.experiment) q.set("experiment", state.experiment);
    if (state.pipeline) q.set("pipeline", state.pipeline);
    if (state.version) q.set("version", state.version);
    if (state.states) q.set("state", state.states);
    if (state.recurring) q.set("recurring", state.recurring);
    if (state.sort !== "-created_at") q.set("sort", state.sort);
    history.replaceState(null, "", `#/runs${q.size ? "?" + q : ""}`);
    load();
  };
  const filters = el("div", { class: "filters" },
    select("Experiment", "experiment", [["", "all"], ...experiments.map((e) => [e.experiment_id, e.display_name])], state.experiment,
      (e) => { state.experiment = e.target.value; reload(); }),
    pipelineSelect(pipelines, all, state, reload),
    select("State", "state", [["", "any"], ["PENDING,RUNNING,CANCELING", "active"], ...STATES.map((s) => [s, s.toLowerCase()])], state.states,
      (e) => { state.states = e.target.value; reload(); }),
    compareButton,
  );
  const sortHeader = (label, key) => {
    const current = state.sort.replace("-", "") === key;
    const arrow = current ? (state.sort.startsWith("-") ? " ▾" : " ▴") : "";
    return el("th", { "aria-sort": current ? (state.sort.startsWith("-") ? "descending" : "ascending") : null },
      el("button", { type: "button", class: "link", onclick: () => {
        state.sort = current && !state.sort.startsWith("-") ? `-${key}` : current ? key : key === "name" ? "name" : "-created_at";
        reload();
      } }, label + arrow));
  };
  fill(main,
    title("Runs"),
    filters,
    el("table", { class: "list runs" },
      el("thead", {}, el("tr", {}, el("th", {}, el("span", { class: "sr-only" }, "select")), sortHeader("Name", "name"), el("th", {}, "State"),
        el("th", {}, "Pipeline"), el("th", {}, "Experiment"), sortHeader("Created", "created_at"), el("th", {}, "Duration"))),
      body),
    pager,
  );
  // One stream per shown page (its filters, sort and page token): the page of runs at
  // once, then again whenever a run on it changed state or a new run joined it.
  let watching = null;
  function load() {
    watching?.abort();
    const mine = new AbortController();
    watching = mine;
    page.signal.addEventListener("abort", () => mine.abort());
    const q = new URLSearchParams({ page_size: state.size, sort_by: state.sort });
    if (state.experiment) q.set("experiment_id", state.experiment);
    if (state.version) q.set("pipeline_version_id", state.version);
    if (state.pipeline) q.set("pipeline_id", state.pipeline);
    if (state.recurring) q.set("recurring_run_id", state.recurring);
    for (const s of state.states.split(",").filter(Boolean)) q.append("state", s);
    const token = state.tokens[state.tokens.length - 1];
    if (token) q.set("page_token", token);
    (async () => {
      while (!mine.signal.aborted) { // the server ends a stream after a while: open it again
        await readEvents(`${UI_API}/runs/live?${q}`, (name, data) => { if (name === "runs") show(data); }, mine.signal);
      }
    })().catch((error) => {
      if (error.name !== "AbortError") fill(body, el("tr", {}, el("td", { colspan: 7 }, errorBox(error))));
    });
  }
  function show(found) {
    const checked = new Set([...body.querySelectorAll("input:checked")].map((c) => c.value));
    const focused = document.activeElement?.closest?.("tr[data-run]") && document.activeElement.matches("input")
      ? document.activeElement.value : null;
    fill(body, ...found.runs.map((r) => el("tr", { "data-run": r.run_id },
      el("td", {}, el("input", { type: "checkbox", value: r.run_id, checked: checked.has(r.run_id), "aria-label": `select ${r.display_name}`, onchange: count })),
      el("td", {}, el("a", { href: `#/runs/${r.run_id}` }, r.display_name)),
      el("td", {}, badge(r.state)),
      el("td", {}, r.pipeline_version_id ? names.versions.get(r.pipeline_version_id) || "" : el("span", { class: "muted" }, "uploaded")),
      el("td", {}, names.experiments.get(r.experiment_id) || ""),
      el("td", {}, when(r.created_at)),
      el("td", {}, seconds(between(r.created_at, r.finished_at))),
    )));
    if (focused) body.querySelector(`input[value="${CSS.escape(focused)}"]`)?.focus(); // a refresh keeps the keyboard's place
    if (!found.runs.length) body.append(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No runs.")));
    fill(pager,
      el("button", { type: "button", disabled: state.tokens.length < 2, onclick: () => { state.tokens.pop(); load(); } }, "‹ Previous"),
      el("span", {}, ` page ${state.tokens.length} `),
      el("button", { type: "button", disabled: !found.next_page_token, onclick: () => { state.tokens.push(found.next_page_token); load(); } }, "Next ›"),
    );
    count();
  }
  function count() {
    const n = body.querySelectorAll("input:checked").length;
    compareButton.disabled = n < 2;
    compareButton.textContent = n >= 2 ? `Compare ${n} runs` : "Compare selected";
  }
  load();
}

// The runs list's pipeline filter: a pipeline (every version of it) or one version.
function pipelineSelect(pipelines, all, state, reload) {
  const chosen = state.version ? `v:${state.version}` : state.pipeline ? `p:${state.pipeline}` : "";
  const option = (value, text) => el("option", { value, selected: value === chosen }, text);
  const sorted = [...pipelines].sort((a, b) => a.display_name.localeCompare(b.display_name));
  return el("label", {}, "Pipeline", " ", el("select", { name: "pipeline", onchange: (e) => {
    const [kind, id] = e.target.value.split(":");
    state.pipeline = kind === "p" ? id : "";
    state.version = kind === "v" ? id : "";
    reload();
  } }, option("", "all"), sorted.map((p) => el("optgroup", { label: p.display_name },
    option(`p:${p.pipeline_id}`, `${p.display_name}: every version`),
    all.filter((x) => x.pipeline.pipeline_id === p.pipeline_id)
      .map(({ version }) => option(`v:${version.pipeline_version_id}`, names.versions.get(version.pipeline_version_id)))))));
}

async function runPage(runId, page) {
  const run = await getJson(`${API}/runs/${runId}`);
  let expand = new Set();
  let live = ACTIVE.has(run.state);
  const header = el("div", { class: "run-header" });
  const panel = el("aside", { class: "step-panel", "aria-label": "step" },
    el("p", { class: "muted" }, "Click a step to see its inputs, outputs, attempts and log."));
  const graphBox = el("div", { class: "graph-box" });
  let mlflow = null;
  let stepAbort = null;
  const view = new GraphView(graphBox, {
    onSelect: (node, steps) => {
      stepAbort?.abort();
      stepAbort = new AbortController();
      page.signal.addEventListener("abort", () => stepAbort.abort());
      if (steps.length > 1) {
        fill(panel, el("h2", {}, node.label), el("p", { class: "muted" }, `${steps.length} iterations:`),
          el("ul", { class: "iterations" }, steps.map((path) => el("li", {},
            el("button", { type: "button", class: "link", onclick: () => showStep(panel, run, path, { mlflow, live, signal: stepAbort.signal, options: node.options }) }, path), " ",
            badge(view.steps[path].state)))));
        return;
      }
      showStep(panel, run, steps[0] || node.id, { mlflow, live, signal: stepAbort.signal, options: node.options });
    },
    onToggle: async (node) => {
      if (expand.has(node.id)) expand.delete(node.id);
      else expand.add(node.id);
      await drawGraph();
    },
  });
  async function drawGraph() {
    const q = new URLSearchParams();
    for (const id of expand) q.append("expand", id);
    view.draw(await getJson(`${UI_API}/runs/${runId}/graph?${q}`));
  }
  function renderHeader(current) {
    const buttons = [];
    if (ACTIVE.has(current.state)) {
      buttons.push(el("button", { type: "button", onclick: async () => { await postJson(`${API}/runs/${runId}:terminate`); } }, "Terminate"));
    }
    if (current.state === "FAILED" || current.state === "CANCELED") {
      buttons.push(el("button", { type: "button", onclick: async () => { await postJson(`${API}/runs/${runId}:retry`); route(); } }, "Retry"));
    }
    if (mlflow?.run_url) buttons.push(el("a", { class: "button", href: mlflow.run_url, target: "_blank", rel: "noopener" }, "MLflow run ↗"));
    const params = Object.entries(current.runtime_config.parameters);
    fill(header,
      title(current.display_name, " ", badge(current.state)),
      el("dl", { class: "facts" },
        el("dt", {}, "run id"), el("dd", {}, el("code", {}, current.run_id)),
        el("dt", {}, "pipeline"), el("dd", {}, current.pipeline_version_id ? names.versions.get(current.pipeline_version_id) || current.pipeline_version_id : "uploaded with the run"),
        el("dt", {}, "created"), el("dd", {}, when(current.created_at)),
        el("dt", {}, "duration"), el("dd", {}, seconds(between(current.created_at, current.finished_at))),
        params.length ? [el("dt", {}, "parameters"), el("dd", {}, params.map(([k, v]) => el("code", { class: "param" }, `${k}=${JSON.stringify(v)}`)))] : null),
      current.error ? el("p", { class: "error", role: "alert" }, current.error.error) : null,
      el("div", { class: "buttons" }, buttons),
    );
  }
  await Promise.all([experimentNames(), pipelineVersions()]).catch(() => {});
  renderHeader(run);
  fill(main, header, el("div", { class: "run-body" }, graphBox, panel));
  await drawGraph();
  getJson(`${UI_API}/runs/${runId}/mlflow`).then((links) => { mlflow = links; renderHeader(run); }).catch(() => {});
  readEvents(`${UI_API}/runs/${runId}/states`, (name, data) => {
    if (name !== "states") return;
    const changedState = data.run.state !== run.state;
    run.state = data.run.state;
    run.error = data.run.error ? { error: data.run.error } : null;
    live = ACTIVE.has(run.state);
    view.update(data.steps, live);
    if (changedState) getJson(`${API}/runs/${runId}`).then((fresh) => { Object.assign(run, fresh); renderHeader(run); });
  }, page.signal).catch((error) => { if (error.name !== "AbortError") header.append(errorBox(error)); });
}

// -- pipelines ------------------------------------------------------------------------------

// A compiled pipeline (raypipe's or KFP's IR, YAML or JSON) read from a file input.
function uploadForm(label, onUpload) {
  const file = el("input", { type: "file", name: "file", accept: ".yaml,.yml,.json", required: true, "aria-label": "compiled pipeline file" });
  const name = el("input", { name: "name", placeholder: "name (default: the file's)", "aria-label": "name" });
  const message = el("span", { "aria-live": "polite" });
  return el("form", { class: "inline-form", onsubmit: async (event) => {
    event.preventDefault();
    message.replaceChildren();
    try {
      const chosen = file.files[0];
      await onUpload(name.value.trim() || chosen.name.replace(/\.(ya?ml|json)$/, ""), await chosen.text());
    } catch (error) {
      message.replaceChildren(errorBox(error));
    }
  } }, file, name, el("button", { type: "submit" }, label), message);
}

async function pipelinesPage(page) {
  const body = el("tbody");
  fill(main,
    title("Pipelines"),
    uploadForm("Upload pipeline", async (name, text) => {
      const pipeline = await postJson(`${API}/pipelines`, { display_name: name });
      try {
        await postJson(`${API}/pipelines/${pipeline.pipeline_id}/versions`, { display_name: "v1", pipeline_spec_yaml: text });
      } catch (error) {
        await del(`${API}/pipelines/${pipeline.pipeline_id}`); // nothing half stored
        throw error;
      }
      location.hash = `#/pipelines/${pipeline.pipeline_id}`;
    }),
    el("table", { class: "list" },
      el("thead", {}, el("tr", {}, el("th", {}, "Name"), el("th", {}, "Description"), el("th", {}, "Created"))),
      body),
  );
  // live: a pipeline uploaded or deleted elsewhere joins or leaves the list
  follow(`${UI_API}/pipelines/live?sort_by=name`, "pipelines", ({ pipelines }) => loaded(body,
    pipelines.map((p) => el("tr", { "data-pipeline": p.pipeline_id },
      el("td", {}, el("a", { href: `#/pipelines/${p.pipeline_id}`, "data-key": `open:${p.pipeline_id}` }, p.display_name)),
      el("td", {}, p.description), el("td", {}, when(p.created_at)))),
    3, "No pipelines: upload one."), page, (error) => fill(body, el("tr", {}, el("td", { colspan: 3 }, errorBox(error)))));
}

async function pipelinePage(pipelineId, params, page) {
  const [pipeline, { pipeline_versions: versions }, experiments] = await Promise.all([
    getJson(`${API}/pipelines/${pipelineId}`),
    getJson(`${API}/pipelines/${pipelineId}/versions?page_size=1000`),
    experimentNames(),
  ]);
  const chosenId = params.get("version") || versions[0]?.pipeline_version_id;
  const graphBox = el("div", { class: "graph-box preview-graph" });
  const formBox = el("div", { class: "run-form" });
  fill(main,
    title(pipeline.display_name),
    el("p", { class: "muted" }, pipeline.description),
    uploadForm("Upload new version", async (name, text) => {
      const version = await postJson(`${API}/pipelines/${pipelineId}/versions`, { display_name: name, pipeline_spec_yaml: text });
      location.hash = `#/pipelines/${pipelineId}?version=${version.pipeline_version_id}`;
    }),
    el("label", {}, "Version ", el("select", { onchange: (e) => { location.hash = `#/pipelines/${pipelineId}?version=${e.target.value}`; } },
      versions.map((v) => el("option", { value: v.pipeline_version_id, selected: v.pipeline_version_id === chosenId }, `${v.display_name} (${when(v.created_at)})`)))),
    el("div", { class: "run-body" }, graphBox, formBox),
  );
  if (!chosenId) return;
  const version = await getJson(`${API}/pipelines/${pipelineId}/versions/${chosenId}`);
  const expand = new Set();
  const view = new GraphView(graphBox, {
    onSelect: () => {},
    onToggle: async (node) => {
      if (expand.has(node.id)) expand.delete(node.id);
      else expand.add(node.id);
      await draw();
    },
  });
  async function draw() {
    const q = new URLSearchParams();
    for (const id of expand) q.append("expand", id);
    view.draw(await getJson(`${UI_API}/versions/${chosenId}/graph?${q}`));
  }
  view.runActive = false;
  await draw();
  fill(formBox, el("h2", {}, "Start a run"), runForm(version.pipeline_spec, experiments, {
    submitLabel: "Start run",
    defaultName: `${pipeline.display_name} ${new Date().toLocaleString()}`,
    onSubmit: async ({ name, experiment, parameters }) => {
      const run = await postJson(`${API}/runs`, {
        display_name: name,
        pipeline_version_id: chosenId,
        experiment_id: experiment || null,
        runtime_config: { parameters },
      });
      location.hash = `#/runs/${run.run_id}`;
    },
  }));
}

// -- experiments ----------------------------------------------------------------------------

async function experimentsPage(page) {
  const archived = new URLSearchParams(location.hash.split("?")[1] || "").get("archived") === "1";
  const name = el("input", { name: "name", required: true, placeholder: "name", "aria-label": "experiment name" });
  const description = el("input", { name: "description", placeholder: "description", "aria-label": "description" });
  const message = el("span");
  const body = el("tbody");
  let live = null;
  fill(main,
    title("Experiments"),
    el("form", { class: "inline-form", onsubmit: async (e) => {
      e.preventDefault();
      try {
        await postJson(`${API}/experiments`, { display_name: name.value, description: description.value });
        name.value = "";
        description.value = "";
        message.replaceChildren();
        live.refresh();
      } catch (error) { fill(message, errorBox(error)); }
    } }, name, description, el("button", { type: "submit" }, "Create experiment"), message),
    el("p", {}, el("a", { href: archived ? "#/experiments" : "#/experiments?archived=1" }, archived ? "Show available" : "Show archived")),
    el("table", { class: "list experiments" },
      el("thead", {}, el("tr", {}, el("th", {}, "Name"), el("th", {}, "Description"), el("th", {}, "Runs"), el("th", {}, "Last run"), el("th", {}, el("span", { class: "sr-only" }, "actions")))),
      body),
  );
  // live: run counts (and the newest run's time) follow the runs; experiments created,
  // archived or unarchived elsewhere join or leave the list
  const state = archived ? "ARCHIVED" : "AVAILABLE";
  live = follow(`${UI_API}/experiments/live?storage_state=${state}`, "experiments", ({ experiments }) => loaded(body,
    experiments.map((x) => el("tr", { "data-experiment": x.experiment_id },
      el("td", {}, el("a", { href: `#/runs?experiment=${x.experiment_id}`, "data-key": `open:${x.experiment_id}` }, x.display_name)),
      el("td", {}, x.description),
      el("td", { class: "count" }, String(x.runs), x.active_runs ? el("span", { class: "muted" }, ` (${x.active_runs} active)`) : null),
      el("td", {}, when(x.last_run_created_at)),
      el("td", {}, el("button", { type: "button", "data-key": `toggle:${x.experiment_id}`, onclick: async () => {
        try {
          await postJson(`${API}/experiments/${x.experiment_id}:${archived ? "unarchive" : "archive"}`);
          live.refresh();
        } catch (error) { fill(message, errorBox(error)); }
      } }, archived ? "Unarchive" : "Archive")))),
    5, archived ? "No archived experiments." : "No experiments."), page, (error) => fill(body, el("tr", {}, el("td", { colspan: 5 }, errorBox(error)))));
}

// -- recurring runs -------------------------------------------------------------------------

async function recurringPage(page) {
  const [experiments, { all }] = await Promise.all([experimentNames(), pipelineVersions()]);
  const body = el("tbody");
  const message = el("span", { "aria-live": "polite" });
  let live = null;
  const formBox = el("div", { class: "run-form" });
  const versionSelect = el("select", { "aria-label": "pipeline version", onchange: () => showForm() },
    all.map(({ version }) => el("option", { value: version.pipeline_version_id }, names.versions.get(version.pipeline_version_id))));
  async function showForm() {
    if (!versionSelect.value) { fill(formBox, el("p", { class: "muted" }, "Upload a pipeline first.")); return; }
    const found = all.find((x) => x.version.pipeline_version_id === versionSelect.value);
    const version = await getJson(`${API}/pipelines/${found.pipeline.pipeline_id}/versions/${found.version.pipeline_version_id}`);
    fill(formBox, runForm(version.pipeline_spec, experiments, {
      submitLabel: "Create recurring run",
      defaultName: `${found.pipeline.display_name} schedule`,
      schedule: true,
      onSubmit: async ({ name, experiment, parameters, trigger, maxConcurrency, catchup }) => {
        await postJson(`${API}/recurringruns`, {
          display_name: name, pipeline_version_id: versionSelect.value, experiment_id: experiment || null,
          runtime_config: { parameters }, trigger, max_concurrency: maxConcurrency, no_catchup: !catchup,
        });
        live.refresh();
        await showForm(); // a blank form for the next one
      },
    }));
  }
  const describe = (t) => t.cron_schedule ? `cron ${t.cron_schedule.cron}` : `every ${t.periodic_schedule.interval_second} s`;
  const act = async (action) => {
    try {
      await action();
      message.replaceChildren();
      live.refresh();
    } catch (error) { fill(message, errorBox(error)); }
  };
  fill(main,
    title("Recurring runs"),
    message,
    el("table", { class: "list recurring" },
      el("thead", {}, el("tr", {}, ["Name", "Pipeline", "Trigger", "Status", "Last tick", "Last run", "Next run", "Runs"].map((h) => el("th", {}, h)),
        el("th", {}, el("span", { class: "sr-only" }, "actions")))),
      body),
    el("h2", {}, "New recurring run"),
    el("label", {}, "Pipeline ", versionSelect),
    formBox,
  );
  // live: status, last tick, the newest run and its state, the next tick and the count
  // follow the schedule as it fires; schedules made or deleted elsewhere come and go
  live = follow(`${UI_API}/recurringruns/live`, "recurringRuns", ({ recurringRuns }) => loaded(body,
    recurringRuns.map((r) => el("tr", { "data-recurring": r.recurring_run_id },
      el("td", {}, r.display_name),
      el("td", {}, names.versions.get(r.pipeline_version_id) || ""),
      el("td", {}, describe(r.trigger)),
      el("td", {}, badge(r.status)),
      el("td", {}, when(r.last_tick_at)),
      el("td", {}, r.last_run ? [el("a", { href: `#/runs/${r.last_run.run_id}`, "data-key": `last:${r.recurring_run_id}` }, when(r.last_run.created_at)), " ", badge(r.last_run.state)] : ""),
      el("td", {}, r.next_tick_at ? when(r.next_tick_at) : ""),
      el("td", { class: "count" }, el("a", { href: `#/runs?recurring=${r.recurring_run_id}`, "data-key": `runs:${r.recurring_run_id}`, "aria-label": `${r.runs} runs of ${r.display_name}` }, `${r.runs} runs`)),
      el("td", {}, el("div", { class: "buttons" }, // a flex box inside the cell, not the cell
        el("button", { type: "button", "data-key": `toggle:${r.recurring_run_id}`, onclick: () => act(() => postJson(`${API}/recurringruns/${r.recurring_run_id}:${r.status === "ENABLED" ? "disable" : "enable"}`)) },
          r.status === "ENABLED" ? "Disable" : "Enable"),
        el("button", { type: "button", "data-key": `delete:${r.recurring_run_id}`, onclick: () => { if (confirm(`Delete ${r.display_name}?`)) act(() => del(`${API}/recurringruns/${r.recurring_run_id}`)); } }, "Delete"))),
    )),
    9, "No recurring runs."), page, (error) => fill(message, errorBox(error)));
  await showForm();
}

// -- compare --------------------------------------------------------------------------------

async function comparePage(params) {
  const ids = (params.get("runs") || "").split(",").filter(Boolean);
  const q = new URLSearchParams();
  for (const id of ids) q.append("run_id", id);
  const found = await getJson(`${UI_API}/compare?${q}`);
  const rows = (key) => [...new Set(found.runs.flatMap((r) => Object.keys(r[key])))].sort();
  const grid = (key, show) => el("table", { class: "list compare" },
    el("thead", {}, el("tr", {}, el("th", {}, ""), found.runs.map((r) => el("th", {}, el("a", { href: `#/runs/${r.run_id}` }, r.display_name), " ", badge(r.state))))),
    el("tbody", {}, rows(key).map((name) => {
      const cells = found.runs.map((r) => (name in r[key] ? show(r[key][name]) : "—"));
      const differs = new Set(cells).size > 1;
      return el("tr", { class: differs ? "differs" : "" }, el("th", {}, name, differs ? el("span", { class: "diff-mark", title: "differs" }, " ≠") : null),
        cells.map((c) => el("td", {}, c)));
    })));
  fill(main,
    title("Compare runs"),
    found.mlflow_compare_url ? el("p", {}, el("a", { class: "button", href: found.mlflow_compare_url, target: "_blank", rel: "noopener" }, "Open in MLflow's compare view ↗"))
      : el("p", { class: "muted" }, "Set RAYPIPE_MLFLOW_UI_URL on the service to link to MLflow's compare view."),
    el("h2", {}, "Parameters"), grid("parameters", (v) => JSON.stringify(v)),
    el("h2", {}, "Metrics"), rows("metrics").length ? grid("metrics", (v) => (Number.isInteger(v) ? String(v) : v.toPrecision(5))) : el("p", { class: "muted" }, "No scalar metrics."),
  );
}

// -- lineage --------------------------------------------------------------------------------

async function lineagePage(params) {
  const runId = params.get("run");
  const uri = params.get("uri");
  const found = await getJson(`${UI_API}/runs/${runId}/artifact-lineage?uri=${encodeURIComponent(uri)}`);
  const table = (rows, empty) => rows.length ? el("table", { class: "list lineage" },
    el("thead", {}, el("tr", {}, ["Depth", "Run", "Step", "State", "Direction", "Name", "Value or URI"].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {},
      el("td", {}, r.depth),
      el("td", {}, el("a", { href: `#/runs/${r.run_id}` }, r.run_id.slice(0, 8))),
      el("td", {}, r.task || ""),
      el("td", {}, r.state ? badge(r.state) : ""),
      el("td", {}, r.direction || ""),
      el("td", {}, r.name || ""),
      el("td", {}, r.uri ? (r.kind === "artifact" && r.uri !== uri
        ? el("a", { href: `#/lineage?run=${r.run_id}&uri=${encodeURIComponent(r.uri)}` }, r.uri) : el("code", {}, r.uri)) : el("code", {}, r.value ?? r.object_type ?? "")),
    )))) : el("p", { class: "muted" }, empty);
  fill(main,
    title("Lineage"),
    el("p", {}, el("code", {}, uri)),
    el("h2", {}, "Upstream: what made it"), table(found.upstream, "Nothing recorded made it."),
    el("h2", {}, "Downstream: what read it"), table(found.downstream, "No recorded step read it."),
  );
}

// -- start ----------------------------------------------------------------------------------

document.getElementById("forget-token").addEventListener("click", () => { forgetToken(); route(); });
window.addEventListener("hashchange", route);
route();
export { template, encodePath };
