// The tether web page: chat with cited answers, document uploads, a small dashboard.
// Every string from the server is inserted as text (documents may hold hostile markup),
// and the page's CSP forbids inline script and style, so all behaviour lives here.
"use strict";

const $ = (selector) => document.querySelector(selector);
const KEY_STORE = "tether.apiKey";
const CITE_TAG = /\[(c[0-9a-f]{15})\]/g;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "text") node.textContent = value;
    else if (name === "className") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function say(target, message, kind = "") {
  target.textContent = message;
  target.className = kind ? `status ${kind}` : "status";
}

// -- the API -----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = $("#api-key").value.trim();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  const response = await fetch(path, { ...options, headers });
  if (response.ok) return response;
  let message = `${response.status} ${response.statusText}`;
  let code;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) {
      message = body.error.message;
      code = body.error.code;
    }
  } catch {
    // Not JSON (a proxy's error page, say): the status line is all there is.
  }
  throw new ApiError(message, response.status, code);
}

function failure(error) {
  if (!(error instanceof ApiError)) return `Request failed: ${error.message}`;
  return error.code ? `${error.message} (${error.code})` : error.message;
}

// EventSource can't POST or send an Authorization header, so the stream is parsed here.
async function* serverSentEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        const colon = line.indexOf(":");
        if (colon === 0) continue; // a comment (keep-alive)
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") name = text;
        else if (field === "data") data.push(text);
      }
      if (data.length) yield { name, data: JSON.parse(data.join("\n")) };
    }
  }
}

// -- chat --------------------------------------------------------------------------------

const chat = {
  numbers: new Map(), // chunk id -> citation number, in order of first appearance
  citations: new Map(), // chunk id -> citation payload
  text: "",
  tokens: 0,
  painting: false,
};

function citeNumber(chunkId) {
  if (!chat.numbers.has(chunkId)) chat.numbers.set(chunkId, chat.numbers.size + 1);
  return chat.numbers.get(chunkId);
}

function renderAnswer(text) {
  const answer = $("#answer");
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(CITE_TAG)) {
    parts.push(text.slice(last, match.index));
    const chunkId = match[1];
    const n = citeNumber(chunkId);
    const marker = el("button", {
      type: "button",
      className: "marker",
      text: String(n),
      dataset: { cite: chunkId },
      "aria-label": `Citation ${n}`,
      onclick: () => openCitation(chunkId),
    });
    parts.push(el("sup", {}, marker));
    last = match.index + match[0].length;
  }
  parts.push(text.slice(last));
  answer.replaceChildren(...parts);
}

// Tokens can arrive faster than frames; repaint (tags become markers) once per frame.
function paintSoon() {
  if (chat.painting) return;
  chat.painting = true;
  requestAnimationFrame(() => {
    chat.painting = false;
    renderAnswer(chat.text);
  });
}

function citationEntry(c) {
  const n = citeNumber(c.chunk_id);
  const details = el(
    "div",
    { className: "cite-details", id: `cite-${c.chunk_id}`, hidden: "" },
    el("p", { className: "cite-source", text: `Source: ${c.source_id}` }),
    el("p", {
      className: "cite-section",
      text: `Section: ${c.section || "–"}${c.page == null ? "" : ` · page ${c.page}`}`,
    }),
    el("blockquote", { className: "cite-snippet", text: c.snippet }),
  );
  const toggle = el("button", {
    type: "button",
    className: "cite-toggle",
    "aria-expanded": "false",
    "aria-controls": details.id,
    text: `[${n}] ${c.title || c.source_id}${c.section ? ` — ${c.section}` : ""}`,
    onclick: () => openCitation(c.chunk_id, toggle.getAttribute("aria-expanded") === "true"),
  });
  const dataset = { chunkId: c.chunk_id, sourceId: c.source_id };
  return el("li", { value: String(n), dataset }, toggle, details);
}

function renderCitations() {
  const ordered = [...chat.citations.values()].sort(
    (a, b) => citeNumber(a.chunk_id) - citeNumber(b.chunk_id),
  );
  $("#citations").replaceChildren(...ordered.map(citationEntry));
}

function openCitation(chunkId, collapse = false) {
  for (const item of $("#citations").children) {
    const mine = item.dataset.chunkId === chunkId;
    const open = mine && !collapse;
    item.classList.toggle("highlight", mine && open);
    item.querySelector(".cite-toggle").setAttribute("aria-expanded", String(open));
    item.querySelector(".cite-details").hidden = !open;
    if (open) item.scrollIntoView({ block: "nearest" });
  }
  for (const marker of $("#answer").querySelectorAll(".marker")) {
    marker.classList.toggle("active", marker.dataset.cite === chunkId && !collapse);
  }
}

function resetChat() {
  Object.assign(chat, { numbers: new Map(), citations: new Map(), text: "", tokens: 0 });
  const answer = $("#answer");
  answer.replaceChildren();
  answer.className = "answer";
  Object.assign(answer.dataset, { state: "streaming", tokens: "0", retrieved: "" });
  $("#answer-meta").textContent = "";
  $("#citations").replaceChildren();
}

const handlers = {
  tool_status(data) {
    if (data.status === "running") say($("#status"), "Searching…", "busy");
    else say($("#status"), `Searched in ${Math.round(data.ms ?? 0)} ms`);
  },
  retrieval(data) {
    $("#answer").dataset.retrieved = data.chunks.map((c) => c.chunk_id).join(" ");
  },
  token(data) {
    chat.text += data.text;
    chat.tokens += 1;
    $("#answer").dataset.tokens = String(chat.tokens);
    paintSoon();
  },
  citation(data) {
    chat.citations.set(data.chunk_id, data);
    renderCitations();
  },
  done(data) {
    // The final answer is authoritative: the streamed text was only a preview of it.
    const answer = $("#answer");
    chat.text = data.answer.summary;
    chat.numbers = new Map();
    renderAnswer(chat.text);
    chat.citations = new Map(data.citations.map((c) => [c.chunk_id, c]));
    renderCitations();
    answer.dataset.retrieved = data.retrieved.map((r) => r.chunk_id).join(" ");
    const declined = Boolean(data.answer.declined);
    answer.classList.toggle("declined", declined);
    answer.dataset.state = declined ? "declined" : "done";
    if (declined) say($("#status"), "Declined: the documents don't answer this.", "warn");
    const meta = [`model ${data.model}`];
    if (data.answer.confidence != null) meta.push(`confidence ${data.answer.confidence}`);
    if (data.timings_ms && data.timings_ms.total != null)
      meta.push(`${Math.round(data.timings_ms.total)} ms`);
    if (data.answer.flags && data.answer.flags.length) meta.push(`flags: ${data.answer.flags.join(", ")}`);
    $("#answer-meta").textContent = meta.join(" · ");
  },
  error(data) {
    $("#answer").dataset.state = "error";
    say($("#status"), data.message, "error");
  },
};

async function ask(event) {
  event.preventDefault();
  const question = $("#question").value.trim();
  if (!question) return;
  const button = $("#ask");
  button.disabled = true;
  resetChat();
  say($("#status"), "Asking…", "busy");
  try {
    const response = await api("/v1/answer", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify({ question, stream: true }),
    });
    for await (const { name, data } of serverSentEvents(response)) {
      if (Object.hasOwn(handlers, name)) handlers[name](data);
    }
    if ($("#answer").dataset.state === "streaming") {
      $("#answer").dataset.state = "error";
      say($("#status"), "The answer stream ended early.", "error");
    }
  } catch (error) {
    $("#answer").dataset.state = "error";
    say($("#status"), failure(error), "error");
  } finally {
    button.disabled = false;
  }
}

// -- documents ---------------------------------------------------------------------------

// Source ids are paths ("docs/a.md"): the route takes the slashes as they are.
const documentPath = (sourceId) =>
  `/v1/documents/${sourceId.split("/").map(encodeURIComponent).join("/")}`;

async function loadDocuments() {
  const list = $("#documents");
  try {
    const documents = await (await api("/v1/documents")).json();
    if (!documents.length) {
      list.replaceChildren(el("li", { className: "empty", text: "No documents yet." }));
      return;
    }
    list.replaceChildren(...documents.map(documentRow));
  } catch (error) {
    list.replaceChildren(el("li", { className: "error", text: failure(error) }));
  }
}

function documentRow(doc) {
  const when = new Date(doc.ingested_at).toLocaleString();
  const remove = el("button", {
    type: "button",
    className: "quiet danger",
    text: "Delete",
    "aria-label": `Delete ${doc.title}`,
    onclick: () => deleteDocument(doc, remove),
  });
  return el(
    "li",
    { dataset: { sourceId: doc.source_id } },
    el("span", { className: "doc-title", text: doc.title }),
    el("span", { className: "doc-meta", text: `${doc.source_id} · ${doc.chunks} chunks · ${when}` }),
    remove,
  );
}

async function deleteDocument(doc, button) {
  // Two clicks, not a confirm() dialog: the first arms the button, the second deletes.
  if (button.dataset.armed !== "true") {
    button.dataset.armed = "true";
    button.textContent = "Confirm delete";
    return;
  }
  button.disabled = true;
  try {
    await api(documentPath(doc.source_id), { method: "DELETE" });
    say($("#upload-status"), `Deleted ${doc.title}.`);
  } catch (error) {
    say($("#upload-status"), failure(error), "error");
  }
  await loadDocuments();
}

async function upload(event) {
  event.preventDefault();
  const file = $("#file").files[0];
  const status = $("#upload-status");
  if (!file) {
    say(status, "Choose a file first.", "error");
    return;
  }
  const form = new FormData();
  form.append("file", file);
  $("#upload").disabled = true;
  say(status, `Uploading ${file.name}…`, "busy");
  try {
    const doc = await (await api("/v1/documents", { method: "POST", body: form })).json();
    let message = `Uploaded ${doc.title} (${doc.chunks} chunk${doc.chunks === 1 ? "" : "s"}).`;
    if (doc.stripped.length) message += ` Removed active content: ${doc.stripped.join(", ")}.`;
    say(status, message, doc.stripped.length ? "warn" : "ok");
    $("#upload-form").reset();
    await loadDocuments();
  } catch (error) {
    say(status, failure(error), "error");
  } finally {
    $("#upload").disabled = false;
  }
}

// -- dashboard ---------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
const W = 320;
const H = 110;
const PAD = 4;

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

// One small line chart per metric; a null value (no requests in a bucket) breaks the line.
function chart(title, buckets, series, format) {
  const values = series.flatMap((s) => buckets.map(s.value)).filter((v) => v != null);
  const peak = Math.max(0, ...values);
  const top = peak || 1; // all zero: a flat line along the axis
  const x = (i) => PAD + (i * (W - 2 * PAD)) / Math.max(buckets.length - 1, 1);
  const y = (v) => H - PAD - (v / top) * (H - 2 * PAD);
  const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart" });
  const label = svg("title");
  label.textContent = `${title}, peak ${format(peak)}`;
  plot.append(label, svg("line", { x1: PAD, x2: W - PAD, y1: H - PAD, y2: H - PAD, class: "axis" }));
  for (const s of series) {
    let run = [];
    const flush = () => {
      if (run.length > 1) plot.append(svg("polyline", { points: run.join(" "), class: `line ${s.className}` }));
      if (run.length === 1) {
        const [cx, cy] = run[0].split(",");
        plot.append(svg("circle", { cx, cy, r: 3, class: `dot ${s.className}` }));
      }
      run = [];
    };
    buckets.forEach((bucket, i) => {
      const v = s.value(bucket);
      if (v == null) flush();
      else run.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
    });
    flush();
  }
  const legend = el("figcaption", {}, el("span", { className: "chart-title", text: title }));
  for (const s of series) legend.append(el("span", { className: `key ${s.className}`, text: s.label }));
  legend.append(el("span", { className: "peak", text: `max ${format(peak)}` }));
  return el("figure", { className: "chart-box" }, legend, plot);
}

const show = (v, format) => (v == null ? "–" : format(v));
const ms = (v) => `${Math.round(v)} ms`;
const usd = (v) => `$${v.toFixed(v < 1 ? 4 : 2)}`;

async function loadStats() {
  const status = $("#stats-status");
  say(status, "Loading…", "busy");
  try {
    const stats = await (await api("/v1/stats?minutes=60&bucket_seconds=60")).json();
    $("#stat-requests").textContent = show(stats.requests, String);
    $("#stat-errors").textContent = show(stats.errors, String);
    $("#stat-p50").textContent = show(stats.p50_ms, ms);
    $("#stat-cost").textContent = show(stats.cost_usd, usd);
    $("#stat-cache").textContent = show(stats.cache_hit_rate, (r) => `${(r * 100).toFixed(1)}%`);
    const b = stats.buckets;
    $("#charts").replaceChildren(
      chart("Latency", b, [
        { label: "p50", className: "s1", value: (d) => d.p50_ms },
        { label: "p95", className: "s2", value: (d) => d.p95_ms },
      ], ms),
      chart("Requests", b, [
        { label: "requests", className: "s1", value: (d) => d.requests },
        { label: "errors", className: "s3", value: (d) => d.errors },
      ], String),
      chart("Cost", b, [{ label: "USD", className: "s1", value: (d) => d.cost_usd }], usd),
    );
    say(status, `Updated ${new Date().toLocaleTimeString()}, ${stats.bucket_seconds} s buckets.`);
  } catch (error) {
    say(status, failure(error), "error");
  }
}

// -- tabs and start-up -------------------------------------------------------------------

const onShow = { docs: loadDocuments, dashboard: loadStats };

function selectTab(tab) {
  for (const other of document.querySelectorAll('[role="tab"]')) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
  }
  const panel = tab.getAttribute("aria-controls");
  if (onShow[panel]) onShow[panel]();
}

function setUp() {
  const key = $("#api-key");
  key.value = localStorage.getItem(KEY_STORE) || "";
  key.addEventListener("input", () => localStorage.setItem(KEY_STORE, key.value.trim()));

  const tabs = [...document.querySelectorAll('[role="tab"]')];
  for (const tab of tabs) {
    tab.addEventListener("click", () => selectTab(tab));
    // Arrow keys move between tabs, as the ARIA tabs pattern expects.
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length];
      next.focus();
      selectTab(next);
    });
  }

  $("#ask-form").addEventListener("submit", ask);
  $("#question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("#ask-form").requestSubmit();
    }
  });
  $("#upload-form").addEventListener("submit", upload);
  $("#refresh-docs").addEventListener("click", loadDocuments);
  $("#refresh-stats").addEventListener("click", loadStats);
}

setUp();
