// The pipeline graph: boxes laid out by the server (raypipe/api/ui/graph.py), drawn as SVG,
// with zoom and pan, and step states painted on as they arrive.
//
// Node ids are task paths without loop indexes ("for-loop-2/train"); a run's steps carry
// them ("for-loop-2[7]/train"). A task node shows its step's state, or counts when it
// stands for many iterations; a folded loop shows its iterations by state.

import { el, fill, svg } from "./dom.js";

const WORST = ["FAILED", "RUNNING", "PENDING", "UPSTREAM_FAILED", "CANCELED", "SUCCEEDED", "CACHED", "SKIPPED"];
const SHORT = {
  SUCCEEDED: "ok", FAILED: "failed", RUNNING: "running", PENDING: "waiting",
  CACHED: "cached", SKIPPED: "skipped", CANCELED: "canceled", UPSTREAM_FAILED: "upstr. failed",
};

const TOP = 52; // the zoom buttons' strip: a fitted graph starts below it
const READABLE = 0.85; // the smallest scale a graph opens at: 13 px labels stay about 11 px

export function template(path) {
  return path.replace(/\[\d+\]/g, "");
}

function worst(states) {
  for (const state of WORST) if (states.includes(state)) return state;
  return null;
}

export class GraphView {
  // onSelect(node, steps): a node was chosen; onToggle(node): fold or unfold a loop.
  constructor(container, { onSelect, onToggle }) {
    this.container = container;
    this.onSelect = onSelect;
    this.onToggle = onToggle;
    this.steps = {}; // step path -> {state, cached}
    this.runActive = true;
    this.view = { x: 0, y: 0, k: 1 };
    this.selected = null;
    // a group, not an img: an img's children (the steps, which are buttons) would be hidden
    this.svg = svg("svg", { class: "graph", role: "group", "aria-label": "pipeline graph" });
    this.layer = svg("g");
    this.svg.append(this.layer);
    const tools = el(
      "div",
      { class: "graph-tools" },
      el("button", { type: "button", title: "zoom in", "aria-label": "zoom in", onclick: () => this.zoom(1.25) }, "+"),
      el("button", { type: "button", title: "zoom out", "aria-label": "zoom out", onclick: () => this.zoom(0.8) }, "−"),
      el("button", { type: "button", title: "fit to the window", onclick: () => this.fit() }, "fit"),
    );
    fill(container, this.svg, tools);
    this.panning();
  }

  draw(graph) {
    const first = !this.graph;
    this.graph = graph;
    this.nodes = new Map(graph.nodes.map((n) => [n.id, n]));
    const markers = svg(
      "defs",
      {},
      svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto" },
        svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" })),
    );
    const groups = [];
    const tasks = [];
    for (const node of graph.nodes) {
      (node.kind === "task" || node.folded ? tasks : groups).push(this.box(node));
    }
    const edges = graph.edges.map((edge) =>
      svg("polyline", {
        class: edge.ordering ? "edge ordering" : "edge",
        points: edge.points.map(([x, y]) => `${x},${y}`).join(" "),
        "marker-end": "url(#arrow)",
        "data-source": edge.source,
        "data-target": edge.target,
      }),
    );
    const focused = this.layer.contains(document.activeElement) ? document.activeElement.dataset.id : null;
    fill(this.layer, markers, ...groups, ...edges, ...tasks);
    // a redraw (a loop folded or unfolded) keeps the keyboard on the node it was on
    if (focused) this.layer.querySelector(`.node[data-id="${CSS.escape(focused)}"]`)?.focus();
    this.paint();
    if (first) this.fit(true);
    else this.apply();
  }

  box(node) {
    const isGroup = node.kind !== "task";
    // steps open their panel and loops fold or unfold: those are buttons, reached with Tab;
    // other groups (conditions, exit handlers, sub-pipelines) only frame their steps
    const acts = !isGroup || node.kind === "loop";
    const group = svg("g", {
      class: `node kind-${node.kind}${node.folded ? " folded" : ""}${node.exit_task ? " exit-task" : ""}`,
      transform: `translate(${node.x},${node.y})`,
      tabindex: acts ? "0" : null,
      role: acts ? "button" : "group",
      "aria-expanded": node.kind === "loop" ? String(!node.folded) : null,
      "data-id": node.id,
      "aria-label": node.kind === "loop" ? `loop ${node.label}: ${node.folded ? "unfold" : "fold"}` : `${node.kind} ${node.label}`,
    });
    const rect = svg("rect", { width: node.width, height: node.height, rx: isGroup && !node.folded ? 10 : 6 });
    group.append(rect);
    if (isGroup && !node.folded) {
      const caption = node.kind === "pipeline" ? node.label : `${node.kind.replace("-", " ")}: ${node.detail || node.label}`;
      const loop = node.kind === "loop";
      const room = node.width - (loop ? 150 : 20); // a loop's header ends with counts and "fold"
      group.append(svg("text", { x: 10, y: 17, class: "group-title" }, clip(caption, room / 6.6)));
      if (loop) {
        group.append(svg("text", { x: node.width - 10, y: 17, class: "toggle", "text-anchor": "end" }, "fold ▴"));
      }
      group.append(svg("text", { x: node.width - (loop ? 52 : 10), y: 17, class: "counts", "text-anchor": "end" }));
      group.append(svg("title", {}, caption));
    } else {
      group.append(svg("circle", { cx: 14, cy: 16, r: 5, class: "dot" }));
      group.append(svg("text", { x: 26, y: 20, class: "label" }, clip(node.label, (node.width - 110) / 7.5)));
      group.append(svg("title", {}, `${node.label} (${node.component})`));
      const sub = node.folded ? `loop ${node.detail.replace(/^for each of /, "over ")}` : node.component;
      group.append(svg("text", { x: 26, y: 36, class: "sub" }, clip(sub, (node.width - 34) / 6)));
      group.append(svg("text", { x: node.width - 8, y: 20, class: "counts", "text-anchor": "end" }));
      if (node.folded) group.append(svg("text", { x: node.width - 8, y: node.height - 8, class: "toggle", "text-anchor": "end" }, "unfold ▾"));
    }
    const choose = (event, fromKey = false) => {
      event.stopPropagation();
      if (node.kind === "loop" && (node.folded || fromKey || event.target.classList.contains("toggle"))) {
        this.onToggle(node);
        return;
      }
      if (isGroup) return;
      this.select(node.id);
    };
    group.addEventListener("click", choose);
    group.addEventListener("keydown", (event) => {
      if (event.target !== group) return; // a key on a step inside an unfolded loop is the step's
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        choose(event, true);
      }
    });
    return group;
  }

  select(id) {
    this.selected = id;
    for (const g of this.layer.querySelectorAll(".node.selected")) g.classList.remove("selected");
    const found = this.layer.querySelector(`.node[data-id="${CSS.escape(id)}"]`);
    if (found) found.classList.add("selected");
    this.onSelect(this.nodes.get(id), this.stepsOf(id));
  }

  // Steps of the run that a node stands for (exact path, or every iteration of it).
  stepsOf(id) {
    return Object.keys(this.steps).filter((path) => template(path) === id).sort(byIndex);
  }

  update(changed, runActive) {
    Object.assign(this.steps, changed);
    this.runActive = runActive;
    if (this.graph) this.paint();
  }

  paint() {
    const byNode = new Map(); // node id -> [states of steps it stands for]
    const iterations = new Map(); // folded loop id -> Map(iteration prefix -> [states])
    for (const [path, step] of Object.entries(this.steps)) {
      const id = template(path);
      if (!byNode.has(id)) byNode.set(id, []);
      byNode.get(id).push(step.state);
      for (const node of this.graph.nodes) {
        if (node.kind === "loop" && (id.startsWith(node.id + "/"))) {
          const depth = node.id.split("/").length;
          const prefix = path.split("/").slice(0, depth).join("/");
          if (!iterations.has(node.id)) iterations.set(node.id, new Map());
          const seen = iterations.get(node.id);
          if (!seen.has(prefix)) seen.set(prefix, []);
          seen.get(prefix).push(step.state);
        }
      }
    }
    for (const g of this.layer.querySelectorAll(".node")) {
      const node = this.nodes.get(g.dataset.id);
      let states = byNode.get(node.id) || [];
      if (node.kind === "loop") {
        states = [...(iterations.get(node.id) || new Map()).values()].map(worst);
      } else if (node.kind !== "task") {
        states = [];
        for (const [id, list] of byNode) if (id.startsWith(node.id + "/")) states.push(...list);
      }
      let state = worst(states);
      if (!state) state = this.runActive ? "PENDING" : "NOT_RUN";
      if (node.kind !== "task" && !node.folded && states.length && states.every((s) => s === "SKIPPED")) state = "SKIPPED";
      g.setAttribute("data-state", state);
      const counts = g.querySelector(".counts");
      const showCounts = node.kind === "loop" || (node.kind === "task" && states.length > 1);
      if (counts) {
        counts.textContent = showCounts ? summary(states, node.items) : node.kind === "task" ? (SHORT[state] || "") : "";
      }
      const cached = node.kind === "task" && states.length === 1 && this.steps[this.stepsOf(node.id)[0]]?.cached;
      g.classList.toggle("cached", Boolean(cached));
    }
  }

  // -- zoom and pan -------------------------------------------------------------------------

  apply() {
    const { x, y, k } = this.view;
    this.layer.setAttribute("transform", `translate(${x},${y}) scale(${k})`);
  }

  // The whole graph in the window; with ``readable``, no smaller than READABLE (a large
  // graph then opens at its top, centred, and **fit** shows all of it).
  fit(readable = false) {
    if (!this.graph) return;
    const width = this.svg.clientWidth || 800;
    const height = this.svg.clientHeight || 500;
    let k = Math.min(1.2, (width - 40) / Math.max(this.graph.width, 1), (height - TOP - 20) / Math.max(this.graph.height, 1));
    if (readable) k = Math.max(k, READABLE);
    let x = (width - this.graph.width * k) / 2;
    if (x < 0) { // wider than the window at this scale: centre on the first step instead
      const top = this.graph.nodes.reduce((a, b) => (b.y < a.y || (b.y === a.y && b.x < a.x) ? b : a));
      x = Math.min(20, Math.max(width - 20 - this.graph.width * k, width / 2 - (top.x + top.width / 2) * k));
    }
    this.view = { k, x, y: TOP };
    this.apply();
  }

  zoom(factor, cx, cy) {
    const width = this.svg.clientWidth || 800;
    const height = this.svg.clientHeight || 500;
    cx = cx ?? width / 2;
    cy = cy ?? height / 2;
    const k = Math.max(0.1, Math.min(4, this.view.k * factor));
    const scale = k / this.view.k;
    this.view = { k, x: cx - (cx - this.view.x) * scale, y: cy - (cy - this.view.y) * scale };
    this.apply();
  }

  panning() {
    let start = null;
    this.svg.addEventListener("wheel", (event) => {
      event.preventDefault();
      const box = this.svg.getBoundingClientRect();
      this.zoom(event.deltaY < 0 ? 1.1 : 1 / 1.1, event.clientX - box.left, event.clientY - box.top);
    }, { passive: false });
    this.svg.addEventListener("pointerdown", (event) => {
      if (event.target.closest(".node")) return;
      start = { px: event.clientX, py: event.clientY, x: this.view.x, y: this.view.y };
      this.svg.setPointerCapture(event.pointerId);
      this.svg.classList.add("panning");
    });
    this.svg.addEventListener("pointermove", (event) => {
      if (!start) return;
      this.view.x = start.x + event.clientX - start.px;
      this.view.y = start.y + event.clientY - start.py;
      this.apply();
    });
    const stop = () => {
      start = null;
      this.svg.classList.remove("panning");
    };
    this.svg.addEventListener("pointerup", stop);
    this.svg.addEventListener("pointercancel", stop);
  }
}

function summary(states, items) {
  const counts = {};
  for (const s of states) counts[s] = (counts[s] || 0) + 1;
  const parts = WORST.filter((s) => counts[s]).map((s) => `${counts[s]} ${SHORT[s]}`);
  const total = items ? ` of ${items}` : "";
  return parts.length ? parts.join(" · ") + (items && states.length < items ? total : "") : items ? `${items} items` : "";
}

function clip(text, chars) {
  const limit = Math.max(4, Math.floor(chars));
  return text.length > limit ? text.slice(0, limit - 1) + "…" : text;
}

function byIndex(a, b) {
  const key = (p) => (p.match(/\d+/g) || []).map(Number);
  const ka = key(a);
  const kb = key(b);
  for (let i = 0; i < Math.min(ka.length, kb.length); i++) if (ka[i] !== kb[i]) return ka[i] - kb[i];
  return a.localeCompare(b);
}
