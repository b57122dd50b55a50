// eventhost's dashboard: reads the node's snapshots from one server-sent
// event stream (GET /dashboard/events) and renders them; the plugin
// buttons call the admin API. Every value from the node is written as
// text (textContent), never as HTML.
//
// The stream is read with fetch rather than EventSource, which cannot send
// the Authorization header a node with [admin] tokens requires.
"use strict";

const TOKEN_KEY = "eventhost-admin-token";
const ACTIONS = ["reload", "restart", "pause", "resume"];
const $ = (id) => document.getElementById(id);

let token = sessionStorage.getItem(TOKEN_KEY);
let retryMs = 1000;
let lastSnapshot = 0;

function headers(extra) {
  const h = Object.assign({}, extra);
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

function setConnection(text, kind) {
  const badge = $("connection");
  badge.textContent = text;
  badge.className = "badge " + (kind || "");
}

function showProblem(text) {
  const p = $("problem");
  p.textContent = text || "";
  p.hidden = !text;
}

function askForToken(why) {
  $("token-form").hidden = false;
  $("token-error").textContent = why || "";
  $("token").focus();
  setConnection("needs a token", "warn");
}

async function start() {
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    token = value;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    $("token-form").hidden = true;
    $("forget-token").hidden = false;
    connect();
  });
  $("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    $("forget-token").hidden = true;
    askForToken("");
  });
  let required = false;
  try {
    const r = await fetch("/dashboard/auth", { cache: "no-store" });
    required = (await r.json()).token_required === true;
  } catch (e) {
    showProblem("Cannot reach the node: " + e.message);
  }
  if (required && !token) {
    askForToken("");
    return;
  }
  $("forget-token").hidden = !required;
  connect();
}

let connecting = false;

// Opens the stream and renders each snapshot until it ends, then tries
// again after a growing pause (1 s, doubling to 10 s).
async function connect() {
  if (connecting) return;
  connecting = true;
  try {
    await follow();
  } catch (e) {
    setConnection("reconnecting", "warn");
    showProblem("Lost the node's stream: " + e.message + "; trying again");
  } finally {
    connecting = false;
  }
  if (!$("token-form").hidden) return;
  setTimeout(connect, retryMs);
  retryMs = Math.min(retryMs * 2, 10000);
}

async function follow() {
  setConnection("connecting", "");
  const response = await fetch("/dashboard/events", {
    headers: headers({ Accept: "text/event-stream" }),
    cache: "no-store",
  });
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    askForToken("The node refused that token.");
    return;
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.message || "HTTP " + response.status);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the node closed it");
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data) received(JSON.parse(data));
    }
  }
}

function received(snapshot) {
  retryMs = 1000;
  lastSnapshot = Date.now();
  setConnection("live", "ok");
  showProblem("");
  render(snapshot);
}

// A page left open on a stalled connection says so.
setInterval(() => {
  if (lastSnapshot && Date.now() - lastSnapshot > 5000) {
    setConnection("stale", "warn");
  }
}, 1000);

// ---- rendering ----

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (className) e.className = className;
  return e;
}

function fmtRate(x) {
  return x >= 100 ? Math.round(x).toLocaleString() : x.toFixed(1);
}

function fmtTime(ms) {
  return ms ? new Date(ms).toLocaleTimeString() : "–";
}

function render(s) {
  $("version").textContent = s.version;
  $("updated").textContent = "updated " + fmtTime(s.time_ms);
  renderChain(s.chain);
  renderHealth(s.health);
  renderPlugins(s.plugins);
  renderStreams(s.streams);
}

function renderChain(c) {
  $("height").textContent = c.height.toLocaleString();
  $("blocks-rate").textContent = fmtRate(c.blocks_per_s);
  $("tx-rate").textContent = fmtRate(c.transactions_per_s);
  $("head-seq").textContent = c.head_seq.toLocaleString();
  spark("spark-tx", c.sparkline.transactions_per_s);
  spark("spark-blocks", c.sparkline.blocks_per_s);
  const error = $("chain-error");
  error.textContent = c.error || "";
  error.hidden = !c.error;
  const body = $("blocks").tBodies[0];
  body.replaceChildren(
    ...c.recent.map((b) => {
      const tr = el("tr", null, b.valid ? "" : "invalid");
      cell(tr, "Height", b.height);
      const status = cell(tr, "Status", "");
      status.append(el("span", b.valid ? "valid" : "invalid", "badge " + (b.valid ? "ok" : "bad")));
      cell(tr, "Transactions", b.transactions + (b.valid ? "" : " rejected"));
      cell(tr, "Time", fmtTime(b.time_ms));
      const hash = cell(tr, "Hash", b.hash.slice(0, 16) + "…", "mono");
      hash.title = b.hash;
      return tr;
    }),
  );
  if (!c.recent.length) {
    const tr = el("tr");
    cell(tr, "", "No blocks yet", "muted");
    body.append(tr);
  }
}

function spark(id, points) {
  const svg = $(id);
  const max = Math.max(1, ...points);
  const n = Math.max(points.length - 1, 1);
  svg.querySelector("polyline").setAttribute(
    "points",
    points.map((v, i) => ((i * 300) / n).toFixed(1) + "," + (38 - (v / max) * 36).toFixed(1)).join(" "),
  );
  $(id + "-max").textContent = points.length ? "(max " + fmtRate(Math.max(0, ...points)) + ")" : "";
}

function cell(tr, label, text, className) {
  const td = el("td", text, className);
  td.dataset.label = label;
  tr.append(td);
  return td;
}

function renderHealth(h) {
  const badge = $("health-status");
  badge.textContent = h.status === "ok" ? "ready" : "failing";
  badge.className = "badge " + (h.status === "ok" ? "ok" : "bad");
  const checks = [];
  // A ledger node checks its ledger; an edge node its upstream stream.
  const ledger = h.checks.ledger;
  if (ledger) checks.push(check("ledger", ledger.ok, ledger.ok ? "writes to its store" : ledger.problem));
  const upstream = h.checks.upstream;
  if (upstream) {
    const following = "follows stream " + upstream.stream + ", " + (upstream.behind ?? "?") + " events behind";
    checks.push(check("upstream", upstream.ok, upstream.ok ? following : upstream.problem));
  }
  for (const [name, p] of Object.entries(h.checks.plugins)) {
    checks.push(check("plugin " + name, p.ok, p.state + (p.required ? ", required" : ", optional")));
  }
  $("health-checks").replaceChildren(...checks);
  $("health-problems").replaceChildren(...h.problems.map((p) => el("li", p, "error")));
}

function check(name, ok, detail) {
  const li = el("li", null, ok ? "ok" : "bad");
  li.append(el("span", ok ? "✔" : "✘", "mark"), el("strong", name), el("span", " " + (detail || "")));
  return li;
}

// Plugin rows are kept across snapshots (keyed by name) so that a button
// being clicked is not replaced under the pointer.
function renderPlugins(plugins) {
  const body = $("plugins").tBodies[0];
  const rows = new Map([...body.rows].map((r) => [r.dataset.plugin, r]));
  const seen = new Set();
  for (const p of plugins) {
    seen.add(p.name);
    let row = rows.get(p.name);
    if (!row) {
      row = pluginRow(p.name);
    }
    body.append(row); // keeps the node's order
    fillPlugin(row, p);
  }
  for (const [name, row] of rows) {
    if (!seen.has(name)) row.remove();
  }
  if (!plugins.length && !body.querySelector(".empty")) {
    const tr = el("tr", null, "empty");
    cell(tr, "", "No plugins loaded", "muted");
    body.append(tr);
  } else if (plugins.length) {
    body.querySelectorAll(".empty").forEach((r) => r.remove());
  }
}

const PLUGIN_CELLS = [
  ["name", "Plugin"],
  ["state", "State"],
  ["isolation", "Isolation"],
  ["library", "Library"],
  ["lag", "Lag"],
  ["queue_depth", "Queue"],
  ["restarts", "Restarts"],
  ["dead_letters", "Dead letters"],
  ["last_error", "Last error"],
];

function pluginRow(name) {
  const tr = el("tr");
  tr.dataset.plugin = name;
  for (const [key, label] of PLUGIN_CELLS) {
    cell(tr, label, "", key === "library" || key === "last_error" ? key.replace("_", "-") : "").dataset.key = key;
  }
  const actions = cell(tr, "Actions", "", "actions");
  for (const action of ACTIONS) {
    const b = el("button", action[0].toUpperCase() + action.slice(1));
    b.type = "button";
    b.dataset.plugin = name;
    b.dataset.action = action;
    b.addEventListener("click", () => act(name, action, b));
    actions.append(b);
  }
  return tr;
}

function fillPlugin(tr, p) {
  const value = (key) => tr.querySelector('[data-key="' + key + '"]');
  value("name").textContent = p.name;
  const state = value("state");
  const label = p.paused ? p.state + ", paused" : p.state;
  state.replaceChildren(el("span", label, "badge " + stateClass(p)));
  if (p.failure) state.title = p.failure;
  value("isolation").textContent = p.isolation;
  const library = value("library");
  library.textContent = p.file.split("/").pop() + " · loaded " + fmtTime(p.loaded_at_ms);
  library.title = p.file + "\n" + p.checksum + "\nplugin-api " + p.api_version;
  library.dataset.loadedAt = p.loaded_at_ms;
  value("lag").textContent = p.lag.toLocaleString();
  value("queue_depth").textContent = p.queue_depth.toLocaleString();
  value("restarts").textContent = p.restarts;
  value("dead_letters").textContent = p.dead_letters;
  value("last_error").textContent = p.last_error || "–";
  tr.querySelector('[data-action="pause"]').hidden = p.paused;
  tr.querySelector('[data-action="resume"]').hidden = !p.paused;
}

function stateClass(p) {
  if (p.state === "failed") return "bad";
  if (p.paused || p.state !== "running") return "warn";
  return "ok";
}

// Calls the admin API and shows its answer under the table.
async function act(name, action, button) {
  const answer = $("answer");
  const buttons = document.querySelectorAll('button[data-plugin="' + CSS.escape(name) + '"]');
  buttons.forEach((b) => (b.disabled = true));
  answer.className = "answer";
  answer.textContent = action + " " + name + "…";
  try {
    const r = await fetch("/admin/v1/plugins/" + encodeURIComponent(name) + "/" + action, {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: "",
    });
    const body = await r.json().catch(() => ({}));
    if (r.status === 401) {
      askForToken("The node refused the token; enter it again.");
    }
    answer.className = "answer " + (r.ok ? "ok" : "bad");
    answer.textContent =
      action + " " + name + ": " + r.status + " " + (r.ok ? summary(body) : body.message || r.statusText);
  } catch (e) {
    answer.className = "answer bad";
    answer.textContent = action + " " + name + ": the request failed: " + e.message;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
    button.focus();
  }
}

function summary(p) {
  return (
    p.state +
    (p.paused ? ", paused" : "") +
    ", loaded " +
    fmtTime(p.loaded_at_ms) +
    ", cursor " +
    p.cursor +
    ", lag " +
    p.lag
  );
}

function renderStreams(streams) {
  const out = $("streams");
  if (!streams.length) {
    out.replaceChildren(
      el("p", "No plugin reports streams: the websocket plugin shows its clients here once loaded.", "muted"),
    );
    return;
  }
  out.replaceChildren(
    ...streams.map((p) => {
      const div = el("div", null, "stream-plugin");
      const clients = p.streams.reduce((n, s) => n + s.clients, 0);
      div.append(
        el(
          "h3",
          p.plugin + ": " + clients + " client" + (clients === 1 ? "" : "s") + ", " + p.closed_slow + " closed for being slow",
        ),
      );
      const table = el("table", null, "cards");
      const head = el("tr");
      ["Stream", "Clients", "Messages/s"].forEach((h) => head.append(el("th", h)));
      table.append(el("thead"), el("tbody"));
      table.tHead.append(head);
      for (const s of p.streams) {
        const tr = el("tr");
        cell(tr, "Stream", s.stream, "mono");
        cell(tr, "Clients", s.clients);
        cell(tr, "Messages/s", fmtRate(s.messages_per_s));
        table.tBodies[0].append(tr);
      }
      div.append(table);
      return div;
    }),
  );
}

start();
