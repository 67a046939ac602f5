// The step panel: a step's state, timings, node, cache, inputs and outputs, artifacts with
// download and preview, attempts with their errors, and its log (followed while running).

import { API, UI_API, download, getJson, readStream } from "./api.js";
import { badge, el, errorBox, fill, seconds, svg, when } from "./dom.js";

export async function showStep(panel, run, path, { mlflow, live, signal, options = {} }) {
  fill(panel, el("p", { class: "muted" }, `loading ${path}…`));
  let step;
  try {
    step = await getJson(`${UI_API}/runs/${run.run_id}/steps/${encodePath(path)}`);
  } catch (error) {
    if (error.status === 404) {
      fill(panel, el("h2", {}, path), el("p", { class: "muted" }, "This step has not started yet."));
      return;
    }
    fill(panel, errorBox(error));
    return;
  }
  const link = mlflow?.steps?.[path];
  const inputs = step.values.filter((v) => v.direction === "input");
  const outputs = step.values.filter((v) => v.direction === "output");
  const log = el("pre", { class: "log", "aria-label": "log" });
  fill(panel,
    el("h2", {}, step.display_name || path, " ", badge(step.state)),
    el("p", { class: "muted" }, path, step.component ? ` · component ${step.component}` : ""),
    facts([
      ["started", when(step.start_time)],
      ["ended", when(step.end_time)],
      ["duration", seconds(step.duration_s)],
      ["node", step.node_ip ? `${step.node_ip} (${(step.node_id || "").slice(0, 12)})` : ""],
      ["asked for", Object.entries(options).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ")],
      ["cache", step.cached ? "hit: outputs reused" : step.cache_key ? "miss" : ""],
      ["cache key", step.cache_key ? step.cache_key.slice(0, 16) : ""],
    ]),
    link ? el("p", {}, el("a", { href: link, target: "_blank", rel: "noopener" }, "Open the step's MLflow run ↗")) : null,
    step.error_message ? el("div", { class: "step-error", role: "alert" }, el("strong", {}, step.error_type || "error"), ": ", step.error_message) : null,
    section("Inputs", values(inputs, run)),
    section("Outputs", values(outputs, run)),
    section("Artifacts", artifacts(step.artifacts, run)),
    step.attempts.length ? section("Attempts", attempts(step.attempts)) : null,
    section("Log", log),
  );
  if (!step.logs.length && !live) {
    log.textContent = "(this step wrote no log)";
    return;
  }
  const follow = live ? "?follow=true" : "";
  readStream(`${API}/runs/${run.run_id}/logs/${encodePath(path)}${follow}`, (text) => {
    log.textContent += text;
    log.scrollTop = log.scrollHeight;
  }, signal).catch((error) => {
    if (error.name === "AbortError") return;
    if (error.status === 404) log.textContent = "(this step wrote no log)";
    else log.append(errorBox(error));
  });
}

export function encodePath(path) {
  return path.split("/").map(encodeURIComponent).join("/");
}

function facts(pairs) {
  return el("dl", { class: "facts" }, pairs.filter(([, v]) => v).map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function section(title, body) {
  return el("section", { class: "panel-section" }, el("h3", {}, title), body);
}

function values(list, run) {
  if (!list.length) return el("p", { class: "muted" }, "none");
  return el("table", { class: "values" }, el("tbody", {}, list.map((v) => el("tr", {},
    el("th", {}, v.position === null ? v.name : `${v.name}[${v.position}]`),
    el("td", {}, v.kind === "parameter" ? el("code", {}, JSON.stringify(v.value)) :
      v.kind === "artifact" ? artifactLink(run, v.uri, v.artifact_type) :
      `${v.object_type || "object"}${v.size ? ` (${v.size} bytes)` : ""}`,
      v.producer ? el("span", { class: "muted" }, ` from ${v.producer}`) : null),
  ))));
}

function artifactLink(run, uri, type) {
  return el("span", {}, el("code", { class: "uri" }, uri), type ? el("span", { class: "muted" }, ` ${type}`) : null);
}

function artifacts(list, run) {
  if (!list.length) return el("p", { class: "muted" }, "none");
  return el("div", {}, list.map((a) => {
    const holder = el("div", { class: "preview" });
    const name = a.uri.split("/").pop();
    return el("div", { class: "artifact" },
      el("div", { class: "artifact-head" },
        el("strong", {}, a.output), " ", el("span", { class: "muted" }, a.type || ""), " ",
        el("code", { class: "uri" }, a.uri),
        a.size !== null ? el("span", { class: "muted" }, ` ${a.size} bytes`) : null),
      el("div", { class: "buttons" },
        el("button", { type: "button", onclick: () => preview(holder, run, a) }, "Preview"),
        el("button", { type: "button", onclick: () => download(`${API}/runs/${run.run_id}/artifacts:download?uri=${encodeURIComponent(a.uri)}`, name) }, "Download"),
        el("a", { href: `#/lineage?run=${run.run_id}&uri=${encodeURIComponent(a.uri)}` }, "Lineage")),
      holder);
  }));
}

export async function preview(holder, run, artifact) {
  fill(holder, el("p", { class: "muted" }, "loading…"));
  try {
    const shown = await getJson(`${UI_API}/runs/${run.run_id}/preview?uri=${encodeURIComponent(artifact.uri)}`);
    fill(holder, render(shown));
  } catch (error) {
    fill(holder, errorBox(error));
  }
}

function render(p) {
  const shown = body(p);
  // a preview reads only the beginning of a large file: say so, next to what is shown
  return p.truncated ? el("div", {}, el("p", { class: "truncated", role: "note" }, p.note), shown) : shown;
}

function body(p) {
  switch (p.kind) {
    case "markdown": {
      const box = el("div", { class: "markdown" });
      box.innerHTML = p.html; // rendered by the server with raw HTML disabled
      return box;
    }
    case "html":
      // no allow-scripts, no allow-same-origin: the document cannot reach the UI
      return el("iframe", { class: "html-preview", sandbox: "", srcdoc: p.html, title: "HTML artifact" });
    case "metrics":
      return table(p.columns, p.rows, "metrics");
    case "table":
      return el("div", {},
        table(p.columns, p.rows, "data"),
        el("p", { class: "muted" }, p.total_rows === null
          ? `first ${p.rows.length} rows (the file is too large to count them all here; download it)`
          : `first ${p.rows.length} of ${p.total_rows} rows`));
    case "classification":
      return el("div", { class: "classification" }, confusion(p.labels, p.matrix), roc(p.roc));
    case "text":
      return el("pre", { class: "text-preview" }, p.text);
    default:
      return el("p", { class: "muted" }, p.note || "no preview");
  }
}

function table(columns, rows, kind) {
  return el("table", { class: `grid ${kind}` },
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", {}, c)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c === null ? "" : typeof c === "number" ? fmt(c) : String(c)))))));
}

function fmt(n) {
  return Number.isInteger(n) ? String(n) : n.toPrecision(4);
}

function confusion(labels, matrix) {
  if (!matrix.length) return el("p", { class: "muted" }, "no confusion matrix");
  const most = Math.max(1, ...matrix.flat());
  return el("table", { class: "confusion", "aria-label": "confusion matrix" },
    el("caption", {}, "Confusion matrix (rows: actual, columns: predicted)"),
    el("thead", {}, el("tr", {}, el("th", {}), labels.map((l) => el("th", {}, l)))),
    el("tbody", {}, matrix.map((row, i) => el("tr", {}, el("th", {}, labels[i] ?? i),
      row.map((v) => el("td", { style: `background: rgba(21,101,192,${(0.08 + 0.8 * v / most).toFixed(2)})`, class: v / most > 0.5 ? "dark" : "" }, v))))));
}

function roc(points) {
  if (!points.length) return el("p", { class: "muted" }, "no ROC curve");
  const size = 220;
  const sorted = [...points].sort((a, b) => a.fpr - b.fpr || a.tpr - b.tpr);
  const line = [[0, 0], ...sorted.map((p) => [p.fpr, p.tpr]), [1, 1]]
    .map(([x, y]) => `${30 + x * size},${10 + (1 - y) * size}`).join(" ");
  return svg("svg", { class: "roc", width: size + 40, height: size + 40, role: "img", "aria-label": "ROC curve" },
    svg("rect", { x: 30, y: 10, width: size, height: size, class: "roc-frame" }),
    svg("line", { x1: 30, y1: 10 + size, x2: 30 + size, y2: 10, class: "roc-chance" }),
    svg("polyline", { points: line, class: "roc-line" }),
    svg("text", { x: 30 + size / 2, y: size + 34, "text-anchor": "middle" }, "false positive rate"),
    svg("text", { x: 12, y: 10 + size / 2, transform: `rotate(-90 12 ${10 + size / 2})`, "text-anchor": "middle" }, "true positive rate"));
}

function attempts(list) {
  return el("ol", { class: "attempts" }, list.map((a) => el("li", {},
    el("span", {}, `attempt ${a.attempt}: `, a.end_time === null ? `running since ${when(a.start_time)}` : a.succeeded ? "succeeded" : "failed",
      a.duration_s !== null ? ` in ${seconds(a.duration_s)}` : ""),
    a.error_type ? el("div", { class: "step-error" }, el("strong", {}, a.error_type), ": ", a.error_message) : null,
    a.traceback ? el("details", { open: !a.succeeded }, el("summary", {}, "traceback"), el("pre", { class: "traceback" }, a.traceback)) : null,
  )));
}
