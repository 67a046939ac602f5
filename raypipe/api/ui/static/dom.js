// Small DOM helpers: elements built from data (text is never parsed as HTML), times, states.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

export function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function when(text) {
  if (!text) return "";
  const date = new Date(text);
  return date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function seconds(value) {
  if (value === null || value === undefined) return "";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 120) return `${value.toFixed(1)} s`;
  return `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
}

export function between(start, end) {
  if (!start) return null;
  const stop = end ? new Date(end) : new Date();
  return (stop - new Date(start)) / 1000;
}

export function badge(state) {
  return el("span", { class: `badge state-${state}` }, state.replaceAll("_", " ").toLowerCase());
}

export const ACTIVE = new Set(["PENDING", "RUNNING", "CANCELING"]);

export function errorBox(error) {
  return el("p", { class: "error", role: "alert" }, String(error.message || error));
}

// replaceChildren without the null/false placeholders of optional parts.
export function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

// fill() for a part a stream redraws: the keyboard stays on the control it was on (the one
// with the same data-key), when it is still there.
export function refill(node, ...children) {
  const focused = node.contains(document.activeElement) ? document.activeElement.dataset?.key : null;
  fill(node, ...children);
  if (focused) node.querySelector(`[data-key="${CSS.escape(focused)}"]`)?.focus();
  return node;
}
