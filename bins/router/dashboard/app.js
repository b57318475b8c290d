// The router's dashboard: reads the router's own REST API and /metrics, with the API key
// the user gives (kept for this tab only, in sessionStorage). No library, no build step.
// Every value from the server reaches the page through textContent, never as HTML.
"use strict";

const REFRESH_MS = 2000;
const HISTORY = 60;
// The route templates of the requests counted as queries (as the alert rules count them).
const QUERY_ENDPOINT = /^\/collections\/\{name\}\/points\/(query|search|recommend|discover)(\/batch|\/groups)?$/;

const state = {
  key: sessionStorage.getItem("vr-api-key") || "",
  previous: null,           // the last scrape: {at, totals}
  history: { rps: [], qps: [], p99: [] },
  collections: [],          // names, for the query box
  vectorNames: {},          // collection -> [vector names] ("" for the unnamed one)
  replicaCounts: [],        // node k -> its replicas (1 for a node that is no replica set)
};

const $ = (id) => document.getElementById(id);

function setStatus(text, bad) {
  const s = $("status");
  s.textContent = text;
  s.className = bad ? "bad" : "";
}

// Point ids are u64: one past 2^53 is kept as its source text (JSON.parse's source access),
// so that it is shown and sent back exactly.
function keepBigIds(key, value, context) {
  if (key === "id" && typeof value === "number" && !Number.isSafeInteger(value)
      && context && context.source) {
    return context.source;
  }
  return value;
}

// `body` is an object, or a string of JSON already (a query whose id must stay exact).
async function api(method, path, body) {
  const headers = {};
  if (state.key) headers["api-key"] = state.key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method, headers,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await resp.text();
  let json = null;
  try { json = JSON.parse(text, keepBigIds); } catch (_) { /* /metrics is text */ }
  if (!resp.ok) {
    const message = json && json.status && json.status.error ? json.status.error : text;
    const err = new Error(`${resp.status}: ${message}`);
    err.status = resp.status;
    throw err;
  }
  return json === null ? text : json;
}

// ---- Prometheus text exposition ----------------------------------------------------------

// One sample line: name, labels (values may hold braces: route templates), value.
function parseSample(line) {
  let i = 0;
  while (i < line.length && /[A-Za-z0-9_:]/.test(line[i])) i++;
  const name = line.slice(0, i);
  const labels = {};
  if (line[i] === "{") {
    i++;
    while (i < line.length && line[i] !== "}") {
      const eq = line.indexOf("=", i);
      const key = line.slice(i, eq).trim();
      i = eq + 2; // past ="
      let value = "";
      while (i < line.length && line[i] !== '"') {
        if (line[i] === "\\") {
          i++;
          value += line[i] === "n" ? "\n" : line[i];
        } else {
          value += line[i];
        }
        i++;
      }
      labels[key] = value;
      i++; // the closing quote
      if (line[i] === ",") i++;
    }
    i++; // the closing brace
  }
  const value = parseFloat(line.slice(i).trim().split(/\s+/)[0]);
  return { name, labels, value };
}

function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    samples.push(parseSample(line));
  }
  return samples;
}

// What the live figures are computed from: counters summed, the query histogram by bucket.
function totals(samples) {
  const t = { requests: 0, queries: 0, errors: 0, buckets: new Map(), nodes: [], replicas: new Map(),
              rss: null, uptime: null };
  // A node that is a replica set: its replicas by URL, each up or not, and the one its writes
  // go to first.
  const replica = (s) => {
    if (!t.replicas.has(s.labels.node)) t.replicas.set(s.labels.node, new Map());
    const set = t.replicas.get(s.labels.node);
    if (!set.has(s.labels.replica)) set.set(s.labels.replica, { url: s.labels.replica, up: false, writes: false });
    return set.get(s.labels.replica);
  };
  for (const s of samples) {
    if (s.name === "vector_router_http_requests_total") {
      t.requests += s.value;
      if (QUERY_ENDPOINT.test(s.labels.endpoint || "")) t.queries += s.value;
      const status = s.labels.status || "";
      // Server errors, as the alert counts them (501 and 503 apart).
      if (status.startsWith("5") && status !== "501" && status !== "503") t.errors += s.value;
    } else if (s.name === "vector_router_http_request_duration_seconds_bucket"
               && QUERY_ENDPOINT.test(s.labels.endpoint || "")) {
      const le = s.labels.le === "+Inf" ? Infinity : parseFloat(s.labels.le);
      t.buckets.set(le, (t.buckets.get(le) || 0) + s.value);
    } else if (s.name === "vector_router_cluster_node_up") {
      t.nodes.push({ url: s.labels.node, up: s.value === 1 });
    } else if (s.name === "vector_router_cluster_replica_up") {
      replica(s).up = s.value === 1;
    } else if (s.name === "vector_router_cluster_replica_write_target") {
      replica(s).writes = s.value === 1;
    } else if (s.name === "vector_router_process_resident_memory_bytes") {
      t.rss = s.value;
    } else if (s.name === "vector_router_process_uptime_seconds") {
      t.uptime = s.value;
    }
  }
  return t;
}

// Prometheus' histogram_quantile over the buckets' increase: linear within a bucket.
function quantile(q, increase) {
  const bounds = [...increase.keys()].sort((a, b) => a - b);
  const total = increase.get(Infinity) || 0;
  if (total <= 0) return null;
  const rank = q * total;
  let prevBound = 0, prevCount = 0;
  for (const b of bounds) {
    const count = increase.get(b);
    if (count >= rank) {
      if (b === Infinity) return prevBound;
      if (count === prevCount) return b;
      return prevBound + (b - prevBound) * (rank - prevCount) / (count - prevCount);
    }
    prevBound = b; prevCount = count;
  }
  return prevBound;
}

function formatSeconds(s) {
  if (s === null) return "–";
  if (s < 1e-3) return `${(s * 1e6).toFixed(0)} µs`;
  if (s < 1) return `${(s * 1e3).toFixed(s < 0.01 ? 2 : 1)} ms`;
  return `${s.toFixed(2)} s`;
}

function formatBytes(b) {
  if (b === null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return `${b.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function formatRate(r) {
  return r === null ? "–" : r < 10 ? r.toFixed(2) : r.toFixed(0);
}

function spark(canvasId, values) {
  const c = $(canvasId);
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const points = values.filter((v) => v !== null);
  if (points.length < 2) return;
  const max = Math.max(...points) || 1;
  g.strokeStyle = "#2f6fdf";
  g.lineWidth = 1.5;
  g.beginPath();
  values.forEach((v, i) => {
    const x = (i / (HISTORY - 1)) * c.width;
    const y = c.height - 2 - ((v || 0) / max) * (c.height - 4);
    if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
}

function remember(series, value) {
  series.push(value);
  if (series.length > HISTORY) series.shift();
}

async function refreshLive() {
  const samples = parseMetrics(await api("GET", "/metrics"));
  const at = performance.now() / 1000;
  const t = totals(samples);
  // The process the counters belong to, by when it started (to a second or two: the scrape
  // and the uptime are not read at one instant).
  const now = { at, totals: t, started: t.uptime === null ? null : at - t.uptime };
  const prev = state.previous;
  state.previous = now;
  $("rss").textContent = formatBytes(now.totals.rss);
  renderNodes(now.totals.nodes, now.totals.replicas);
  // Counters belong to one process: a router restarted, or behind a load balancer another
  // router answering, gives no rate until two scrapes in a row come from the same one.
  if (!prev || now.started === null || prev.started === null
      || Math.abs(now.started - prev.started) > 2 || now.totals.requests < prev.totals.requests) {
    return;
  }
  const dt = now.at - prev.at;
  const rate = (key) => Math.max(0, now.totals[key] - prev.totals[key]) / dt;
  const increase = new Map();
  for (const [le, count] of now.totals.buckets) {
    increase.set(le, Math.max(0, count - (prev.totals.buckets.get(le) || 0)));
  }
  const rps = rate("requests"), qps = rate("queries");
  const p50 = quantile(0.5, increase), p99 = quantile(0.99, increase);
  $("rps").textContent = formatRate(rps);
  $("qps").textContent = formatRate(qps);
  $("errors").textContent = formatRate(rate("errors"));
  $("p50").textContent = formatSeconds(p50);
  $("p99").textContent = formatSeconds(p99);
  remember(state.history.rps, rps);
  remember(state.history.qps, qps);
  remember(state.history.p99, p99);
  spark("rps-chart", state.history.rps);
  spark("qps-chart", state.history.qps);
  spark("p99-chart", state.history.p99);
}

// ---- collections, shards, nodes ----------------------------------------------------------

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function vectorNames(config) {
  const vectors = config.params.vectors;
  if (vectors && typeof vectors.size === "number") return [""];
  return Object.keys(vectors || {}).sort();
}

function describeVectors(config) {
  const vectors = config.params.vectors;
  if (vectors && typeof vectors.size === "number") return `${vectors.size}-d ${vectors.distance}`;
  return Object.entries(vectors || {})
    .map(([name, p]) => `${name}: ${p.size}-d ${p.distance}`).join(", ") || "none";
}

async function refreshCollections() {
  const list = await api("GET", "/collections");
  const names = list.result.collections.map((c) => c.name).sort();
  // One collection that cannot be described (deleted meanwhile, or a node down) is shown as
  // such; the others still are.
  const infos = await Promise.allSettled(names.map((n) => api("GET", `/collections/${encodeURIComponent(n)}`)));
  const clusters = await Promise.all(names.map((n) =>
    api("GET", `/collections/${encodeURIComponent(n)}/cluster`).catch(() => null)));
  const body = $("collections-table").querySelector("tbody");
  body.replaceChildren();
  const shardBody = $("shards-table").querySelector("tbody");
  shardBody.replaceChildren();
  $("no-collections").hidden = names.length > 0;
  names.forEach((name, i) => {
    if (infos[i].status === "rejected") {
      const row = document.createElement("tr");
      row.dataset.collection = name;
      row.className = "unavailable";
      cell(row, name, "name");
      cell(row, "unavailable", "status red");
      const reason = cell(row, infos[i].reason.message, "error");
      reason.colSpan = 6;
      body.appendChild(row);
      return;
    }
    const info = infos[i].value.result;
    const vectorCount = vectorNames(info.config).length || 1;
    const expected = (info.points_count || 0) * vectorCount;
    const indexed = info.indexed_vectors_count || 0;
    const row = document.createElement("tr");
    row.dataset.collection = name;
    cell(row, name, "name");
    cell(row, info.status, `status ${info.status}`);
    cell(row, String(info.points_count ?? 0), "points");
    cell(row, String(indexed), "indexed");
    const progress = cell(row, "", "indexing");
    const bar = document.createElement("progress");
    bar.max = Math.max(expected, 1);
    bar.value = Math.min(indexed, bar.max);
    progress.appendChild(bar);
    const pct = document.createElement("span");
    // A green collection with vectors left out of every index scans them exactly: segments
    // under the indexing threshold (or `m: 0`) need no graph.
    const share = expected ? Math.min(100, (100 * indexed) / expected).toFixed(0) : null;
    pct.textContent = share === null ? " –"
      : info.status === "green" && indexed < expected ? ` ${share}% (the rest scanned exactly)`
      : ` ${share}%`;
    progress.appendChild(pct);
    cell(row, String(info.segments_count ?? 0), "segments");
    cell(row, describeVectors(info.config), "vectors");
    cell(row, String(info.config.params.shard_number ?? 1), "shards");
    body.appendChild(row);

    const details = document.createElement("tr");
    details.className = "config";
    const td = document.createElement("td");
    td.colSpan = 8;
    const d = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = `${name}: configuration`;
    const pre = document.createElement("pre");
    pre.textContent = JSON.stringify(info.config, null, 2);
    d.append(summary, pre);
    td.appendChild(d);
    details.appendChild(td);
    body.appendChild(details);

    state.vectorNames[name] = vectorNames(info.config);
    const cluster = clusters[i] && clusters[i].result;
    if (cluster) {
      for (const s of cluster.local_shards || []) {
        const r = document.createElement("tr");
        cell(r, name); cell(r, String(s.shard_id)); cell(r, "this router");
        cell(r, "1"); cell(r, s.state, `state ${s.state}`); cell(r, String(s.points_count ?? "–"));
        shardBody.appendChild(r);
      }
      for (const s of cluster.remote_shards || []) {
        const r = document.createElement("tr");
        cell(r, name); cell(r, String(s.shard_id));
        cell(r, `node ${s.peer_id}`); cell(r, String(state.replicaCounts[s.peer_id] ?? 1));
        cell(r, s.state, `state ${s.state}`); cell(r, "–");
        shardBody.appendChild(r);
      }
    }
  });
  if (names.join("\n") !== state.collections.join("\n")) {
    state.collections = names;
    fillCollectionSelect();
  }
}

function renderNodes(nodes, replicas) {
  const table = $("nodes-table");
  const body = table.querySelector("tbody");
  body.replaceChildren();
  table.hidden = nodes.length === 0;
  const sets = nodes.filter((n) => replicas.has(n.url)).length;
  $("mode").textContent = nodes.length === 0
    ? "Embedded: every shard lives in this router's process."
    : sets === 0
      ? `Cluster mode over ${nodes.length} nodes (node k holds shard k). No replicas: a node down takes its shard with it.`
      : `Cluster mode over ${nodes.length} nodes (node k holds shard k), ${sets} of them replica sets: a set answers while a majority of its replicas does.`;
  state.replicaCounts = nodes.map((n) => (replicas.has(n.url) ? replicas.get(n.url).size : 1));
  nodes.forEach((n, k) => {
    const r = document.createElement("tr");
    cell(r, `node ${k}: ${n.url}`, "node");
    cell(r, n.up ? "up" : "down", n.up ? "health up" : "health down");
    const set = replicas.get(n.url);
    const td = document.createElement("td");
    td.className = "replicas";
    if (!set) {
      td.textContent = "–";
    } else {
      for (const rep of set.values()) {
        const span = document.createElement("span");
        span.className = rep.up ? "replica health up" : "replica health down";
        span.textContent = `${rep.url} ${rep.up ? "up" : "down"}${rep.writes ? ", takes writes" : ""}`;
        td.appendChild(span);
      }
    }
    r.appendChild(td);
    body.appendChild(r);
  });
}

// ---- the query box -----------------------------------------------------------------------

function fillCollectionSelect() {
  const select = $("q-collection");
  const current = select.value;
  select.replaceChildren();
  for (const name of state.collections) {
    const o = document.createElement("option");
    o.value = name; o.textContent = name;
    select.appendChild(o);
  }
  if (state.collections.includes(current)) select.value = current;
  fillUsingSelect();
}

function fillUsingSelect() {
  const select = $("q-using");
  const current = select.value;
  select.replaceChildren();
  for (const name of state.vectorNames[$("q-collection").value] || [""]) {
    const o = document.createElement("option");
    o.value = name; o.textContent = name === "" ? "(unnamed)" : name;
    select.appendChild(o);
  }
  if ([...select.options].some((o) => o.value === current)) select.value = current;
}

function showQueryError(message) {
  const e = $("q-error");
  e.textContent = message;
  e.hidden = !message;
}

function readQuery() {
  const mode = document.querySelector("input[name=q-mode]:checked").value;
  const raw = $("q-input").value.trim();
  let query;
  if (mode === "vector") {
    let v;
    try { v = JSON.parse(raw); } catch (_) { throw new Error("the vector is not JSON: write [0.1, 0.2, ...]"); }
    if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === "number")) {
      throw new Error("the vector must be a non-empty JSON array of numbers");
    }
    query = v;
  } else {
    if (/^\d{1,20}$/.test(raw)) query = Number(raw);
    else if (/^[0-9a-fA-F-]{32,36}$/.test(raw)) query = raw;
    else throw new Error("a point id is an unsigned integer or a UUID");
  }
  const body = { query, limit: Number($("q-limit").value) || 10, with_payload: true };
  const using = $("q-using").value;
  if (using) body.using = using;
  const filter = $("q-filter").value.trim();
  if (filter) {
    try { body.filter = JSON.parse(filter); } catch (_) { throw new Error("the filter is not JSON"); }
  }
  // A numeric id goes out as its digits: a u64 past 2^53 would change as a JS number.
  // (BigInt drops leading zeros, which JSON does not allow.)
  return typeof query === "number"
    ? JSON.stringify({ ...body, query: 0 }).replace('"query":0', `"query":${BigInt(raw)}`)
    : body;
}

async function runQuery(event) {
  event.preventDefault();
  showQueryError("");
  const tbody = $("hits").querySelector("tbody");
  tbody.replaceChildren();
  $("q-summary").textContent = "";
  let body;
  try { body = readQuery(); } catch (e) { showQueryError(e.message); return; }
  const collection = $("q-collection").value;
  const started = performance.now();
  try {
    const answer = await api("POST", `/collections/${encodeURIComponent(collection)}/points/query`, body);
    const points = answer.result.points;
    $("q-summary").textContent =
      `${points.length} hits in ${(performance.now() - started).toFixed(1)} ms (server: ${(answer.time * 1e3).toFixed(2)} ms)`;
    points.forEach((p, i) => {
      const r = document.createElement("tr");
      r.className = "hit";
      cell(r, String(i + 1), "rank");
      cell(r, String(p.id), "id");
      cell(r, String(p.score), "score");
      const td = cell(r, "", "payload");
      const pre = document.createElement("pre");
      pre.textContent = p.payload == null ? "" : JSON.stringify(p.payload);
      td.appendChild(pre);
      tbody.appendChild(r);
    });
  } catch (e) {
    showQueryError(e.message);
  }
}

// ---- start -------------------------------------------------------------------------------

async function tick() {
  try {
    // The metrics first: the shard rows take their replica counts from them.
    await refreshLive();
    await refreshCollections();
    setStatus(`updated ${new Date().toLocaleTimeString()}`, false);
  } catch (e) {
    setStatus(e.status === 401 || e.status === 403
      ? "The server wants an API key: enter it above." : `Cannot read the server: ${e.message}`, true);
  }
}

async function start() {
  $("interval").textContent = String(REFRESH_MS / 1000);
  $("api-key").value = state.key;
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.key = $("api-key").value.trim();
    sessionStorage.setItem("vr-api-key", state.key);
    state.previous = null;
    // The loop below picks the key up in its next round (rounds never overlap).
    setStatus("key set: reading the server…", false);
  });
  $("q-collection").addEventListener("change", fillUsingSelect);
  $("query-form").addEventListener("submit", runQuery);
  try {
    const root = await api("GET", "/");
    // `/` answers as Qdrant does (its title and API version), for the clients.
    $("version").textContent = root.version ? `Qdrant API ${root.version}` : "";
  } catch (_) { /* shown by the first tick */ }
  // The next round starts when this one has ended: slow answers never pile up.
  for (;;) {
    const started = performance.now();
    await tick();
    await new Promise((r) => setTimeout(r, Math.max(0, REFRESH_MS - (performance.now() - started))));
  }
}

start();
