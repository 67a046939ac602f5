// Calls to the service with the same bearer token as the REST API (kept in localStorage),
// a prompt for the token when the service asks for one, and server-sent events read
// with fetch (EventSource cannot send an Authorization header).

export const API = "/apis/v2beta1";
export const UI_API = "/ui/api";
const TOKEN_KEY = "raypipe.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(token, extra = {}) {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

let asking = null; // one token prompt at a time, shared by every call that got a 401

function askToken(message) {
  if (asking) return asking;
  const dialog = document.getElementById("token-dialog");
  const input = dialog.querySelector("input");
  dialog.querySelector(".token-message").textContent = message;
  input.value = "";
  asking = new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        asking = null;
        if (dialog.returnValue === "ok" && input.value.trim()) {
          localStorage.setItem(TOKEN_KEY, input.value.trim());
          resolve(true);
        } else {
          resolve(false);
        }
      },
      { once: true },
    );
  });
  dialog.showModal();
  input.focus();
  return asking;
}

export function forgetToken() {
  localStorage.removeItem(TOKEN_KEY);
}

export function hasToken() {
  return Boolean(localStorage.getItem(TOKEN_KEY));
}

// fetch with the token; on 401 asks for a token and tries again. A 401 to a request sent
// with a token that has been replaced since (a page sends several requests at once, and
// the first refusal's prompt got the new token) is tried again with the new one, not
// answered with a second prompt.
export async function call(path, options = {}) {
  for (;;) {
    const sent = localStorage.getItem(TOKEN_KEY);
    const response = await fetch(path, { ...options, headers: headers(sent, options.headers) });
    if (response.status === 401) {
      if (localStorage.getItem(TOKEN_KEY) !== sent) continue;
      const again = await askToken(
        hasToken() ? "That token was refused: enter another one." : "This service needs a token.",
      );
      if (again) continue;
      throw new ApiError(401, "a valid bearer token is required");
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try {
        const body = await response.json();
        message = body.error || body.detail || message;
      } catch {
        // not JSON: keep the status line
      }
      throw new ApiError(response.status, message);
    }
    return response;
  }
}

export async function getJson(path) {
  return (await call(path)).json();
}

export async function postJson(path, body = {}) {
  const response = await call(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return response.json();
}

export async function del(path) {
  return (await call(path, { method: "DELETE" })).json();
}

// Reads a text stream as it arrives (a followed log); resolves when it ends.
export async function readStream(path, onText, signal) {
  const response = await call(path, { signal });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onText(decoder.decode(value, { stream: true }));
  }
}

// Server-sent events over fetch: calls onEvent(name, data) for each event.
export async function readEvents(path, onEvent, signal) {
  let buffer = "";
  await readStream(
    path,
    (text) => {
      buffer += text;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
        }
        onEvent(name, JSON.parse(data.join("\n") || "null"));
      }
    },
    signal,
  );
}

// Downloads a file the browser cannot fetch by a plain link (it needs the token).
export async function download(path, filename) {
  const blob = await (await call(path)).blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
