// Traza dashboard: the operator and auditor views of one node. No framework, no build step.
// Every piece of data goes into the page through textContent (never innerHTML).
"use strict";

// ---------------------------------------------------------------------------------------------------
// Languages: every text of the page comes from one catalogue per language (/ui/static/i18n/<lang>.json,
// "{name}" placeholders). The language is the reader's choice (the switch, kept in localStorage), else
// the one the server chose from Accept-Language (<html lang>), else the browser's, else English.

const LANGUAGES = ["en", "es"];
const catalogues = {};
let lang = "en";

// t(KEY, {name: value}): the text of KEY in the current language, its {name} placeholders filled in
function t(key, vars = {}) {
  const text = (catalogues[lang] || {})[key] ?? (catalogues.en || {})[key];
  if (text === undefined) {
    console.error(`dashboard: no text for ${key}`);
    return key;
  }
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

// N_(KEY): marks a key chosen at run time (the test of the catalogues finds every key in a t() or N_())
const N_ = (key) => key;

function pickLanguage() {
  let stored = null;
  try { stored = localStorage.getItem("traza.lang"); } catch (e) { /* storage disabled: not kept */ }
  const wanted = [stored, document.documentElement.lang, ...(navigator.languages || [navigator.language])];
  for (const tag of wanted) {
    const primary = String(tag || "").toLowerCase().split("-")[0];
    if (LANGUAGES.includes(primary)) return primary;
  }
  return "en";
}

async function loadCatalogues() {
  await Promise.all(LANGUAGES.map(async (code) => {
    const resp = await fetch(`/ui/static/i18n/${code}.json`, { credentials: "same-origin" });
    if (!resp.ok) throw new Error(`/ui/static/i18n/${code}.json: ${resp.status}`);
    catalogues[code] = await resp.json();
  }));
}

// The page's fixed texts (data-i18n, data-i18n-<attribute>) and the language switch.
function applyLanguage() {
  document.documentElement.lang = lang;
  for (const e of document.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
  for (const e of document.querySelectorAll("*")) {
    for (const a of e.getAttributeNames()) {
      if (a.startsWith("data-i18n-")) e.setAttribute(a.slice("data-i18n-".length), t(e.getAttribute(a)));
    }
  }
  const nav = document.getElementById("lang-switch");
  nav.replaceChildren(...LANGUAGES.map((code) => {
    const b = document.createElement("button");
    b.type = "button";
    b.lang = code;
    b.dataset.lang = code;
    b.textContent = catalogues[code]["lang.self"];
    b.setAttribute("aria-pressed", String(code === lang));
    b.addEventListener("click", () => switchLanguage(code));
    return b;
  }));
}

// ---------------------------------------------------------------------------------------------------
// RFC 9162 Merkle proofs and C2SP signed notes, checked here in the browser (a port of
// gateway/core/merkle.py verify_inclusion and gateway/core/note.py).

const MAX_SIZE = (1n << 64n) - 1n;
const enc = new TextEncoder();

function b64decode(text) {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function b64encode(bytes) {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function equalBytes(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

const leafHash = (entry) => sha256(concat(new Uint8Array([0]), entry));
const nodeHash = (left, right) => sha256(concat(new Uint8Array([1]), left, right));

function bitLength(n) { let b = 0; while (n > 0n) { n >>= 1n; b++; } return b; }
function popCount(n) { let c = 0; while (n > 0n) { c += Number(n & 1n); n >>= 1n; } return c; }

function checkSize(name, value) {
  if (value < 0n || value > MAX_SIZE) throw new Error(t("err.size_range", { name, value }));
}

// The root implied by an inclusion proof (RFC 9162 §2.1.3.2); throws on any malformed input.
async function rootFromInclusionProof(index, size, leaf, proof) {
  index = BigInt(index); size = BigInt(size);
  checkSize("index", index); checkSize("size", size);
  if (index >= size) throw new Error(t("err.index_beyond", { index, size }));
  if (leaf.length !== 32) throw new Error(t("err.leaf_length"));
  const inner = bitLength(index ^ (size - 1n));
  const border = popCount(index >> BigInt(inner));
  if (proof.length !== inner + border) {
    throw new Error(t("err.proof_length", { n: proof.length, need: inner + border }));
  }
  proof.forEach((h, i) => { if (h.length !== 32) throw new Error(t("err.proof_hash_length", { i })); });
  let res = leaf;
  for (let i = 0; i < inner; i++) {
    res = ((index >> BigInt(i)) & 1n) === 0n ? await nodeHash(res, proof[i]) : await nodeHash(proof[i], res);
  }
  for (let i = inner; i < proof.length; i++) res = await nodeHash(proof[i], res);
  return res;
}

async function verifyInclusion(index, size, leaf, proof, root) {
  const calc = await rootFromInclusionProof(index, size, leaf, proof);
  if (!equalBytes(calc, root)) {
    throw new Error(t("err.not_root", { index, size }));
  }
}

// A served checkpoint: note text (origin, size, base64 root), a blank line, signature lines "— name sig".
function parseCheckpoint(note) {
  const cut = note.indexOf("\n\n");
  if (cut < 0) throw new Error(t("err.cp_no_signatures"));
  const text = note.slice(0, cut + 1);
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3) throw new Error(t("err.cp_lines", { n: lines.length }));
  if (!/^(0|[1-9][0-9]*)$/.test(lines[1])) throw new Error(t("err.cp_size", { size: JSON.stringify(lines[1]) }));
  const root = b64decode(lines[2]);
  if (root.length !== 32) throw new Error(t("err.cp_root"));
  const sigs = [];
  for (const line of note.slice(cut + 2).split("\n")) {
    if (!line) continue;
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) throw new Error(t("err.cp_sig_line", { line: JSON.stringify(line) }));
    sigs.push({ name: m[1], blob: b64decode(m[2]) });
  }
  return { text, origin: lines[0], size: BigInt(lines[1]), root, sigs };
}

// The log's Ed25519 signature (key id = first 4 bytes of SHA-256(name || 0x0A || 0x01 || key)).
async function verifyCheckpointSignature(cp, keys) {
  if (!crypto.subtle || !("verify" in crypto.subtle)) throw new Error(t("err.no_webcrypto"));
  for (const k of keys) {
    const pub = b64decode(k.public_key);
    const id = (await sha256(concat(enc.encode(cp.origin), new Uint8Array([0x0a, 0x01]), pub))).slice(0, 4);
    const sig = cp.sigs.find((s) => s.name === cp.origin && s.blob.length === 68 && equalBytes(s.blob.slice(0, 4), id));
    if (!sig) continue;
    let key;
    try {
      key = await crypto.subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
    } catch (e) {
      throw new Error(t("err.no_ed25519", { error: e.message }));
    }
    if (await crypto.subtle.verify({ name: "Ed25519" }, key, sig.blob.slice(4), enc.encode(cp.text))) return k.kid;
    throw new Error(t("err.sig_bad", { kid: k.kid }));
  }
  throw new Error(t("err.cp_no_log_sig", { origin: cp.origin }));
}

window.TrazaProofs = { rootFromInclusionProof, verifyInclusion, parseCheckpoint, verifyCheckpointSignature,
                       leafHash, b64decode, b64encode };

// ---------------------------------------------------------------------------------------------------
// Plumbing

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(message, status, detail) {
    super(message);
    this.status = status;
    this.detail = detail;
  }
}

// Every call carries X-Traza-Request: the node refuses operator and auditor actions (POST) without it, a
// header no cross-site form can send (gateway/core/csrf.py); the browser adds Origin and Sec-Fetch-Site.
async function api(path, options = {}) {
  const headers = { "X-Traza-Request": "dashboard", ...(options.headers || {}) };
  const resp = await fetch(path, { credentials: "same-origin", ...options, headers });
  const type = resp.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) {
    const detail = body && body.detail ? body.detail : String(body).slice(0, 200);
    throw new ApiError(t("api.error", { method: options.method || "GET", path, status: resp.status, detail }),
                       resp.status, detail);
  }
  return body;
}

function showError(err) {
  const el = $("error");
  el.textContent = err ? String(err.message || err) : "";
  el.hidden = !err;
}

function notify(text) {
  const el = $("notice");
  el.textContent = text;
  el.hidden = !text;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells, cls) {
  const tr = el("tr", null, cls);
  for (const c of cells) {
    const td = el("td");
    if (c instanceof Node) td.append(c); else td.textContent = c === null || c === undefined ? "—" : String(c);
    tr.append(td);
  }
  return tr;
}

function fillTable(id, rows, empty) {
  const body = $(id).tBodies[0];
  body.replaceChildren(...rows);
  if (!rows.length) {
    const tr = row([empty], "empty");
    tr.firstChild.colSpan = $(id).tHead.rows[0].cells.length;
    body.append(tr);
  }
}

function fillList(id, pairs) {
  $(id).replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", k), el("dd", v)]));
}

const ms = (v) => (v === null || v === undefined ? "—" : t("unit.ms", { n: v }));

function age(seconds) {
  if (seconds < 90) return t("unit.s", { n: Math.round(seconds) });
  if (seconds < 5400) return t("unit.min", { n: Math.round(seconds / 60) });
  return t("unit.h", { n: (seconds / 3600).toFixed(1) });
}

function shortId(text) {
  return text && text.length > 60 ? `${text.slice(0, 57)}…` : text;
}

// ---------------------------------------------------------------------------------------------------
// Operator view

async function refreshOperator() {
  const [status, peers, queues, dead, rejections, expiry, tp, overdue, stats] = await Promise.all([
    api("/ops/v1/status"), api("/ui/api/peers"), api("/ops/v1/queues"), api("/ops/v1/dead-letters"),
    api("/ui/api/rejections"), api("/ui/api/expiry"), api("/ui/api/throughput"), api("/ops/v1/overdue"),
    api("/ops/v1/stats"),
  ]);
  fillList("status", [
    [t("status.federation"), status.federation],
    [t("status.manifest_version"), status.manifest_version],
    [t("status.manifest_expires"), status.manifest_expires_at],
    [t("status.queued"), status.queue_depth],
    [t("status.by_state"), Object.entries(status.messages || {}).map(([k, v]) => `${k} ${v}`).join(", ") || t("status.none")],
    [t("status.witnesses"), (status.witnesses || []).map((w) => `${w.id} ${w.age_s === null ? t("status.witness_none_yet") : age(w.age_s)}${w.stale ? " " + t("status.witness_stale") : ""}`).join(", ") || t("status.no_witness")],
  ]);
  const warn = expiry.items.filter((i) => i.level !== "ok");
  const first = expiry.items[0];
  $("warnings").replaceChildren(...(warn.length ? warn.map((i) => el("li",
    i.level === "expired" ? t("expiry.expired", { what: i.what, not_after: i.not_after, days: i.days_left })
      : t("expiry.soon", { what: i.what, not_after: i.not_after, days: i.days_left }),
    i.level)) : [el("li", t("expiry.none", { days: expiry.warn_days,
      first: first ? t("expiry.first", { what: first.what, days: Math.floor(first.days_left) }) : "—" }), "ok")]));

  fillTable("peers", peers.peers.map((p) => row([
    p.id, p.kind, p.state, p.up === null ? t("peers.last.none") : p.up ? t("peers.last.ok") : t("peers.last.failed"),
    ms(p.recent_ms), ms(p.mean_ms), p.failures,
  ], `peer state-${p.state}`)), t("peers.empty"));

  fillTable("queues", queues.queues.map((q) => row([q.peer, q.depth, age(q.oldest_age_s), q.retrying], "queue")),
    t("queues.empty"));

  fillTable("dead-letters", dead.dead_letters.map((d) => {
    const actions = el("span");
    const retry = el("button", t("dl.retry"), "retry");
    retry.type = "button";
    if (d.expired) {
      // a signed expiry cannot be extended: the node refuses such a retry (409 expired)
      retry.disabled = true;
      retry.title = t("dl.retry.expired", { jti: d.jti, exp: d.exp });
    } else {
      retry.title = t("dl.retry.title", { jti: d.jti, peer: d.peer, exp: d.exp });
    }
    retry.addEventListener("click", () => deadLetter(d.id, "retry"));
    const discard = el("button", t("dl.discard"), "discard");
    discard.type = "button";
    discard.addEventListener("click", () => {
      if (window.confirm(t("dl.discard.confirm", { id: d.id, jti: d.jti }))) deadLetter(d.id, "discard");
    });
    actions.append(retry, " ", discard);
    const tr = row([d.id, d.jti, d.type, d.peer, d.code, d.detail, d.at, actions],
      "dead-letter");
    tr.dataset.id = d.id;
    return tr;
  }), t("dl.empty"));

  // receipts overdue (the receipt watchdog): Resend offers the same envelope again to its first hop
  fillTable("overdue", overdue.overdue.map((o) => {
    const resend = el("button", t("od.resend"), "resend");
    resend.type = "button";
    if (o.expired) {
      resend.disabled = true;  // the node refuses to resend a message past its signed expiry
      resend.title = t("od.resend.expired", { jti: o.jti, exp: o.exp });
    } else {
      resend.title = t("od.resend.title", { jti: o.jti, peer: o.next_hop, exp: o.exp });
    }
    resend.addEventListener("click", () => resendMessage(o.jti));
    const tr = row([o.jti, o.type, o.to, o.next_hop, o.state, o.forwarded_at, o.overdue_since, resend], "overdue");
    tr.dataset.jti = o.jti;
    return tr;
  }), t("od.empty"));

  showInsights(stats);

  fillTable("rejections", rejections.rejections.map((r) => row(
    [r.index, r.ts, r.code, r.from, r.jti ?? (r.claimed_jti ? t("rej.claimed", { jti: r.claimed_jti }) : ""),
     r.detail], "rejection")), t("rej.empty"));

  drawChart(tp);
}

let actionRefused = null;  // the node's refusal of the last dead-letter action, if it refused it

async function deadLetter(id, action) {
  try {
    const res = await api(`/ops/v1/dead-letters/${encodeURIComponent(id)}/${action}`, { method: "POST" });
    actionRefused = null;
    showError(null);
    notify(action === "retry" ? t("dl.retried", { id: res.id, jti: res.jti }) : t("dl.discarded", { id: res.id, jti: res.jti }));
    await refreshOperator();
  } catch (err) {
    if (err instanceof ApiError && err.detail) {
      // e.g. 409 expired: the server's own words; the dead letter is still there
      notify(null);
      actionRefused = action === "retry" ? t("dl.retry.refused", { id, detail: err.detail })
        : t("dl.discard.refused", { id, detail: err.detail });
      showError(actionRefused);
      await refreshOperator().catch(() => {});  // the 5 s refresh reports a failing view
    } else {
      showError(err);
    }
  }
}

// Insights (GET /ops/v1/stats): aggregates only, small cells already suppressed by the node ("<5", null)

// rows grouped by `key`: per group the sum of the counts shown and how many cells were suppressed (each
// suppressed cell holds 1 to 4), in the order first seen
function groupCells(rows, key, count) {
  const out = new Map();
  for (const r of rows) {
    const g = out.get(key(r)) || { sum: 0, hidden: 0 };
    if (typeof r[count] === "number") g.sum += r[count]; else g.hidden += 1;
    out.set(key(r), g);
  }
  return out;
}

// a group's published figure: exact when nothing is suppressed, else "<5" (one suppressed cell) or "≥n"
const shownCells = (g) => (g.hidden === 0 ? g.sum : g.sum === 0 && g.hidden === 1 ? "<5" : `≥${g.sum + g.hidden}`);

function showInsights(stats) {
  $("insights-note").textContent = t("ins.note");
  $("insights-csv").href = "/ops/v1/stats?format=csv";
  // messages per week (all types and country pairs), then the table by type, country pair and week
  const weeks = groupCells(stats.volume, (r) => r.week, "messages");
  drawBars("volume-chart", [...weeks.entries()].sort(), "week");
  fillTable("insights-volume", stats.volume.map((r) => row([r.week, r.type, `${r.from_country} → ${r.to_country}`,
    r.messages], "volume")), t("ins.empty"));
  // traced origins: per country of manufacture, and per trace status
  const origins = groupCells(stats.trace_outcomes, (r) => r.country_of_manufacture, "responses");
  // a share only when no cell is suppressed (a share of the visible part would mislead)
  const all = [...origins.values()];
  const total = all.every((o) => o.hidden === 0) ? all.reduce((a, o) => a + o.sum, 0) : 0;
  drawBars("origins-chart", [...origins.entries()].sort(), "country");
  fillTable("insights-origins", [...origins.entries()].sort().map(([c, o]) => {
    const share = total ? `${Math.round(100 * o.sum / total)} %` : "—";
    const tr = row([c, shownCells(o), share], "origin");
    tr.dataset.country = c;
    return tr;
  }), t("ins.empty"));
  const statuses = groupCells(stats.trace_outcomes, (r) => r.status, "responses");
  drawBars("status-chart", [...statuses.entries()].sort(), "status");
  fillTable("insights-times", stats.response_times.map((r) => row(
    [r.country, r.answers, r.median_hours ?? "—", r.p90_hours ?? "—"], "response-time")), t("ins.empty"));
  fillTable("insights-hits", stats.status_hits.map((r) => row(
    [r.country, r.queries, `${r.hit} + ${r.multiple_hits}`, r.hit_rate === null ? "—" : `${Math.round(1000 * r.hit_rate) / 10} %`],
    "status-hits")), t("ins.empty"));
  fillTable("insights-ballistic", stats.ballistic.map((r) => row([r.status, r.hits], "ballistic")), t("ins.empty"));
  // time to crime (ATF: days from the first retail sale to the recovery), every band once any response states it
  const bands = (stats.time_to_crime || []).map((r) => [r.to_days === null ? t("ins.ttc.over", { from: r.from_days })
    : t("ins.ttc.range", { from: r.from_days, to: r.to_days }), groupCells([r], () => r.band, "responses").get(r.band)]);
  drawBars("ttc-chart", bands, "band");
  $("ttc-note").textContent = !bands.length ? t("ins.empty") : stats.time_to_crime_median_days === null
    ? t("ins.ttc.no_median") : t("ins.ttc.median", { days: stats.time_to_crime_median_days });
}

// Horizontal bars drawn here (no library, no CDN): one per [label, group]; a group with a suppressed
// cell gets a pale bar up to the most it can hold (4 per hidden cell), labelled "<5" or "≥n".
function drawBars(id, entries, kind) {
  const chart = $(id);
  const rowH = 22, labelW = 80, width = 440;
  const upper = (g) => g.sum + 4 * g.hidden;
  const max = Math.max(1, ...entries.map(([, g]) => upper(g)));
  chart.setAttribute("viewBox", `0 0 ${width} ${Math.max(1, entries.length) * rowH + 4}`);
  chart.replaceChildren(...entries.flatMap(([label, g], i) => {
    const y = 2 + i * rowH;
    const w = Math.max(2, Math.round((width - labelW - 50) * upper(g) / max));
    return [
      svg("text", { x: 0, y: y + 15, class: "bar-label" }, label),
      svg("rect", { x: labelW, y: y + 3, width: w, height: rowH - 8,
                    class: g.hidden ? "bar suppressed" : "bar", [`data-${kind}`]: label }),
      svg("text", { x: labelW + w + 6, y: y + 15, class: "bar-value" }, String(shownCells(g))),
    ];
  }));
}

async function resendMessage(jti) {
  try {
    const res = await api(`/ops/v1/messages/${encodeURIComponent(jti)}/resend`, { method: "POST" });
    showError(null);
    notify(t("od.resent", { jti: res.jti, peer: res.peer }));
    await refreshOperator();
  } catch (err) {
    if (err instanceof ApiError && err.detail) {
      notify(null);
      showError(t("od.resend.refused", { jti, detail: err.detail }));
      await refreshOperator().catch(() => {});
    } else {
      showError(err);
    }
  }
}

function svg(tag, attrs, text) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// the series the node samples (gateway/ops/dashboard.py Sampler.SERIES), by name
const SERIES = { received: N_("series.received"), forwarded: N_("series.forwarded"), submitted: N_("series.submitted"),
                 delivered: N_("series.delivered"), rejected: N_("series.rejected") };
const seriesName = (s) => (SERIES[s] ? t(SERIES[s]) : s);

function drawChart(tp) {
  const chart = $("chart");
  const W = 640, H = 200, L = 40, B = 20, T = 10;
  const pts = tp.points;
  const max = Math.max(1, ...pts.flatMap((p) => tp.series.map((s) => p[s])));
  // time axis: the last window_s seconds, now at the right edge
  const end = pts.length ? Date.parse(pts[pts.length - 1].t) : Date.now();
  const x = (i) => L + ((W - L - 10) * (1 - (end - Date.parse(pts[i].t)) / (tp.window_s * 1000)));
  const y = (v) => H - B - (v * (H - B - T)) / max;
  const parts = [
    svg("line", { x1: L, y1: H - B, x2: W - 10, y2: H - B, class: "axis" }),
    svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }),
    svg("text", { x: L - 4, y: T + 8, class: "tick", "text-anchor": "end" }, String(max)),
    svg("text", { x: L - 4, y: H - B, class: "tick", "text-anchor": "end" }, "0"),
    svg("text", { x: L, y: H - 4, class: "tick" }, t("chart.ago", { n: Math.round(tp.window_s / 60) })),
    svg("text", { x: W - 10, y: H - 4, class: "tick", "text-anchor": "end" }, t("chart.now")),
  ];
  for (const s of tp.series) {
    const line = pts.map((p, i) => `${x(i).toFixed(1)},${y(p[s]).toFixed(1)}`).join(" ");
    if (pts.length > 1) parts.push(svg("polyline", { points: line, class: `series s-${s}` }));
    pts.forEach((p, i) => { if (p[s]) parts.push(svg("circle", { cx: x(i), cy: y(p[s]), r: 3, class: `dot s-${s}` })); });
  }
  chart.replaceChildren(...parts);
  $("legend").replaceChildren(...tp.series.map((s) => el("span", seriesName(s), `key s-${s}`)));
  const total = (s) => pts.reduce((n, p) => n + p[s], 0);
  const minutes = Math.max(1, Math.round((pts.length * tp.interval_s) / 60));
  $("throughput-note").textContent = pts.length
    ? t("chart.note", { interval: tp.interval_s, minutes,
                        totals: tp.series.map((s) => `${seriesName(s)} ${total(s)}`).join(", ") })
    : t("chart.collecting");
}

// ---------------------------------------------------------------------------------------------------
// Auditor view

// the log search (GET /audit/v1/search): filters as typed, results as a table, the same query as CSV
async function searchLog(form) {
  const params = new URLSearchParams();
  for (const [k, v] of new FormData(form)) if (String(v).trim()) params.set(k, String(v).trim());
  params.set("limit", "200");
  const doc = await api(`/audit/v1/search?${params}`);
  const csv = new URLSearchParams(params);
  csv.set("format", "csv");
  $("log-search-csv").href = `/audit/v1/search?${csv}`;
  $("log-search-csv").hidden = false;
  $("log-results").hidden = false;
  fillTable("log-results", doc.entries.map(({ index, entry: e }) => {
    const who = [e.unit, e.officer, ...(e.case || [])].filter(Boolean).join(" · ");
    const tr = row([index, e.ts, e.event, e.jti ?? "", e.mt ?? "", e.from ?? e.iss ?? "", e.to ?? e.aud ?? "", who,
                    e.code ?? e.outcome ?? ""], "log-entry");
    tr.dataset.index = index;
    return tr;
  }), t("ls.none"));
}

// the handling codes' meanings (Europol handling codes, ../shared/reference/domain-standards.md)
const HANDLING = { H0: N_("handling.H0"), H1: N_("handling.H1"), H2: N_("handling.H2"), H3: N_("handling.H3") };

let searchSeq = 0;
let lastSearch = null;

async function search(jti) {
  const seq = ++searchSeq;
  lastSearch = jti;
  showError(null);
  const panel = $("panel-message");
  panel.hidden = false;
  $("msg-id").textContent = jti;
  $("bundle").href = `/audit/v1/bundle?jti=${encodeURIComponent(jti)}`;
  $("bundle").setAttribute("download", `evidence-${jti}.json`);
  const q = encodeURIComponent(jti);
  const [status, entries] = await Promise.all([
    api(`/ui/api/messages/${q}`).catch((err) => ({ missing: String(err.message) })),
    api(`/audit/v1/entries?jti=${q}&limit=1000`),
  ]);
  if (status.missing) {
    fillList("msg-summary", [[t("msg.on_this_node"), status.missing]]);
    $("msg-notice").hidden = true;
    fillTable("timeline", [], t("timeline.not_here"));
  } else {
    // the marking from the signed token (issue #15); an H1 message carries its notice on every view
    const marking = status.handling ? [[t("msg.handling"), t(HANDLING[status.handling] || status.handling)],
      [t("msg.handling_restrictions"), status.handling_restrictions || "—"],
      [t("msg.classification"), status.classification], [t("msg.purpose"), status.purpose]] : [];
    fillList("msg-summary", [[t("msg.type"), status.type], [t("msg.from"), status.from], [t("msg.to"), status.to],
      [t("msg.state"), status.state], [t("msg.conversation"), status.conversation],
      [t("msg.reply_to"), status.reply_to || "—"], ...marking]);
    $("msg-notice").textContent = status.handling === "H1" ? t(HANDLING.H1) : "";
    $("msg-notice").hidden = status.handling !== "H1";
    fillTable("timeline", status.timeline.map((s) => row([s.at, s.state, s.node, shortId(s.detail)], "step")),
      t("timeline.empty"));
  }
  const decoded = entries.entries.map((e) => {
    const bytes = b64decode(e.entry);
    return { index: e.index, bytes, doc: JSON.parse(new TextDecoder().decode(bytes)) };
  });
  const cells = new Map();
  fillTable("entries", decoded.map((e) => {
    const cell = el("span", t("check.pending"), "proof pending");
    cells.set(e.index, cell);
    return row([e.index, e.doc.ts, e.doc.event, e.doc.from, e.doc.to, e.doc.code, cell], "entry");
  }), t("entries.empty"));
  $("route-notes").replaceChildren();
  if (!decoded.length) {
    fillTable("route", [], t("route.no_entries"));
    return;
  }
  fillTable("route", [], t("route.waiting"));
  // the evidence bundle is built against the latest checkpoint: fetch it once that covers every entry
  const cp = await coveringCheckpoint(seq, decoded[decoded.length - 1].index);
  if (!cp) return;
  await Promise.all([checkProofs(cp, decoded, cells), showRoute(seq, jti, decoded)]);
}

// The latest checkpoint, waiting (briefly) for one that covers entry `last`; null if a newer search began.
async function coveringCheckpoint(seq, last) {
  for (let attempt = 0; ; attempt++) {
    const cp = parseCheckpoint(await api("/v1/audit/checkpoint"));
    if (cp.size > BigInt(last) || attempt >= 20) return cp;
    $("checkpoint").textContent = t("checkpoint.waiting", { last, size: cp.size });
    await new Promise((r) => setTimeout(r, 1000));
    if (seq !== searchSeq) return null;
  }
}

// Check the checkpoint's signature with the node's audit key from the manifest, then each entry's
// inclusion proof against its root.
async function checkProofs(cp, decoded, cells) {
  let sigText, sigOk = false;
  try {
    const kid = await verifyCheckpointSignature(cp, me.log.keys);
    sigText = t("checkpoint.sig_ok", { kid });
    sigOk = true;
  } catch (err) {
    sigText = t("checkpoint.sig_bad", { error: err.message });
  }
  $("checkpoint").textContent = t("checkpoint.line", { origin: cp.origin, size: cp.size, root: b64encode(cp.root),
                                                      sig: sigText });
  $("checkpoint").className = sigOk ? "ok" : "bad";
  for (const e of decoded) {
    const cell = cells.get(e.index);
    if (BigInt(e.index) >= cp.size) {
      cell.textContent = t("proof.not_yet");
      cell.className = "proof pending";
      continue;
    }
    try {
      const proof = await api(`/audit/v1/proof/inclusion?index=${e.index}&size=${cp.size}`);
      await verifyInclusion(e.index, cp.size, await leafHash(e.bytes), proof.hashes.map(b64decode), cp.root);
      cell.textContent = t("proof.ok", { n: proof.hashes.length, size: cp.size });
      cell.className = "proof verified";
    } catch (err) {
      cell.textContent = t("proof.failed", { error: err.message });
      cell.className = "proof failed";
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Route across hops (issue #6), from the message's evidence bundle (SPEC §3.3, §7.4): the origin token,
// the hop records, the acks and the receipt this node holds, in route order. Each JWS is checked here
// with its key from the bundle's keys.signing (WebCrypto Ed25519 or ECDSA P-256), the hops' `prev`
// chain and the acks' `dig` too; a row says "signature verified" only when that check passed.

const utf8 = new TextDecoder();
const b64urlDecode = (text) => b64decode(text.replace(/-/g, "+").replace(/_/g, "/"));
const b64url = (bytes) => b64encode(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const digest = async (text) => b64url(await sha256(enc.encode(text)));  // token_digest of envelope.py
const isoSeconds = (sec) => new Date(sec * 1000).toISOString().replace(/\.\d+Z$/, "Z");
const entrySeconds = (ts) => Date.parse(`${ts.slice(0, 19)}Z`) / 1000;  // audit ts: RFC 3339 UTC

const JWS_ALGS = {
  EdDSA: { key: { name: "Ed25519" }, verify: { name: "Ed25519" } },
  ES256: { key: { name: "ECDSA", namedCurve: "P-256" }, verify: { name: "ECDSA", hash: "SHA-256" } },
};

// A compact JWS decoded; `check()` resolves to the kid whose key verified it, or throws saying why.
function openJws(token, typ, keys) {
  const parts = token.split(".");
  if (parts.length !== 3) throw new Error(t("err.jws_compact", { typ }));
  const [h, p, s] = parts;
  const header = JSON.parse(utf8.decode(b64urlDecode(h)));
  const claims = JSON.parse(utf8.decode(b64urlDecode(p)));
  async function check() {
    if (header.typ !== typ) throw new Error(t("err.jws_typ", { typ: header.typ, want: typ }));
    const key = keys.find((k) => k.kid === header.kid);
    if (!key) throw new Error(t("err.jws_no_key", { kid: header.kid }));
    const alg = JWS_ALGS[key.alg];
    if (!alg || header.alg !== key.alg) throw new Error(t("err.jws_alg", { alg: header.alg, kid: key.kid, key_alg: key.alg }));
    if (key.kid.split("/")[0] !== claims.iss) throw new Error(t("err.jws_owner", { kid: key.kid, iss: claims.iss }));
    const pub = await crypto.subtle.importKey("jwk", key.jwk, alg.key, false, ["verify"]);
    if (!(await crypto.subtle.verify(alg.verify, pub, b64urlDecode(s), enc.encode(`${h}.${p}`)))) {
      throw new Error(t("err.sig_bad", { kid: key.kid }));
    }
    return key.kid;
  }
  return { claims, check };
}

// A hop record or an ack as it travelled: a compact JWS (version 1), or a batched element (protocol 1.1,
// docs/protocol.md: "tzb1.<leaf>.<index>.<path>.<batch JWS>") whose claims are the leaf's, checked through
// the batch signature and the leaf's RFC 9162 inclusion path to the signed root. Same shape as openJws.
const BATCH_KIND = { "traza-hop+jwt": "hop", "traza-ack+jwt": "ack" };

function openElement(text, typ, keys) {
  if (!text.startsWith("tzb1.")) return openJws(text, typ, keys);
  const parts = text.split(".");
  if (parts.length !== 7 || !/^(0|[1-9][0-9]{0,5})$/.test(parts[2])) throw new Error(t("err.batch_element", { typ }));
  const leaf = b64urlDecode(parts[1]);
  const claims = JSON.parse(utf8.decode(leaf));
  const batch = openJws(parts.slice(4).join("."), "traza-batch+jwt", keys);
  async function check() {
    const kid = await batch.check();
    const b = batch.claims;
    if (b.kind !== BATCH_KIND[typ]) throw new Error(t("err.batch_kind", { kid, kind: b.kind, want: BATCH_KIND[typ] }));
    if (claims.iss !== b.iss) throw new Error(t("err.jws_owner", { kid, iss: claims.iss }));
    const path = parts[3] ? parts[3].split("~").map(b64urlDecode) : [];
    // a path of the wrong shape for (index, n) is not in the batch either
    const root = await rootFromInclusionProof(Number(parts[2]), b.n, await leafHash(leaf), path).catch(() => null);
    if (root === null || b64url(root) !== b.root) throw new Error(t("err.batch_path", { kid }));
    return kid;
  }
  return { claims, check };
}

async function showRoute(seq, jti, decoded) {
  let b;
  try {
    b = await api(`/audit/v1/bundle?jti=${encodeURIComponent(jti)}`);
  } catch (err) {
    fillTable("route", [], t("route.no_bundle", { error: err.message }));
    return;
  }
  if (seq !== searchSeq) return;
  const keys = b.keys.signing, here = b.node;
  const origin = openJws(b.envelope.token, "traza-envelope+jwt", keys), o = origin.claims;
  const dig = await digest(b.envelope.token);
  const hops = b.envelope.hops.map((h) => openElement(h, "traza-hop+jwt", keys));
  const acks = b.acks.map((a) => openElement(a, "traza-ack+jwt", keys));
  // the nodes in route order: the origin, each relaying node, any other node that acknowledged, the recipient
  const order = [o.iss, ...hops.map((h) => h.claims.iss)];
  for (const a of acks) if (!order.includes(a.claims.iss)) order.push(a.claims.iss);
  if (!order.includes(o.aud)) order.push(o.aud);
  const at = (node) => order.indexOf(node);
  const forThis = (c, what) => { if (c.jti !== jti) throw new Error(t("err.other_message", { what, jti: c.jti })); };

  const rows = [{ pos: 0, rank: 0, t: o.iat, node: o.iss, what: t("route.sent", { iss: o.iss, aud: o.aud, mt: o.mt }),
    evidence: t("route.ev.token"), check: async () => {
      forThis(o, t("route.the_token"));
      return t("route.sig_ok", { kid: await origin.check() });
    } }];
  hops.forEach((h, i) => {
    const c = h.claims, before = i ? b.envelope.hops[i - 1] : b.envelope.token;
    const prevName = i ? t("route.hop_n", { n: i }) : t("route.the_token");
    rows.push({ pos: at(c.iss), rank: 1, t: c.iat, node: c.iss, what: t("route.relayed", { from: c.from, to: c.to }),
      evidence: t("route.ev.hop", { n: i + 1 }), check: async () => {
        const kid = await h.check();
        forThis(c, t("route.the_hop"));
        if (c.prev !== (await digest(before))) throw new Error(t("err.hop_chain", { kid, prev: prevName }));
        return t("route.sig_ok_chain", { kid, prev: prevName });
      } });
  });
  for (const a of acks) {
    const c = a.claims;
    rows.push({ pos: at(c.iss), rank: 2, t: c.iat, node: c.iss, what: t("route.accepted", { aud: c.aud, idx: c.idx }),
      evidence: c.iss === here ? t("route.ev.ack_here", { idx: c.idx }) : t("route.ev.ack_there", { idx: c.idx, node: c.iss }),
      check: async () => {
        const kid = await a.check();
        forThis(c, t("route.the_ack"));
        if (c.dig !== dig) throw new Error(t("err.ack_other", { kid }));
        return t("route.sig_ok_ack", { kid });
      } });
  }
  for (const e of decoded.filter((x) => x.doc.event === "envelope.delivered")) {
    rows.push({ pos: at(here), rank: 3, t: entrySeconds(e.doc.ts), node: here, what: t("route.delivered", { node: here }),
      evidence: t("route.ev.entry", { index: e.index }), log: true });
  }
  if (b.receipt) {
    const r = openJws(b.receipt.token, "traza-envelope+jwt", keys), c = r.claims;
    const payload = b64urlDecode(b.receipt.payload);
    const got = decoded.find((x) => x.doc.event === "receipt.received" && x.doc.receipt === c.jti);
    let status = got ? t("route.receipt_got", { status: got.doc.status, at: isoSeconds(entrySeconds(got.doc.ts)),
                                                index: got.index })
      : t("route.receipt_encrypted");
    const body = c.pld && c.pld.enc === null ? JSON.parse(utf8.decode(payload)) : null;
    if (body) status = t("route.receipt_status", { status: body.status, at: body.at });
    rows.push({ pos: at(c.iss), rank: 4, t: c.iat, node: c.iss, what: t("route.receipt", { status, aud: c.aud }),
      evidence: t("route.ev.receipt", { jti: c.jti }), check: async () => {
        const kid = await r.check();
        if (c.mt !== "receipt" || c.irt !== jti) throw new Error(t("err.not_receipt", { mt: c.mt, irt: c.irt, jti }));
        if (c.pld.len !== payload.length || c.pld.sha256 !== b64url(await sha256(payload))) {
          throw new Error(t("err.payload_digest", { kid }));
        }
        if (body && (body.for !== jti || body.dig !== dig)) throw new Error(t("err.receipt_other"));
        return t("route.sig_ok_receipt", { kid });
      } });
  }
  rows.sort((x, y) => x.pos - y.pos || x.rank - y.rank || x.t - y.t);

  const checks = [];
  fillTable("route", rows.map((r) => {
    const cell = el("span", r.log ? t("route.in_log") : t("check.pending"), "sig pending");
    if (!r.log) {
      checks.push(r.check().then((text) => { cell.textContent = text; cell.className = "sig verified"; },
        (err) => { cell.textContent = t("route.not_verified", { error: err.message }); cell.className = "sig failed"; }));
    }
    const tr = row([isoSeconds(r.t), r.node, r.what, r.evidence, cell], "hop");
    tr.dataset.t = String(r.t);
    return tr;
  }), t("route.empty"));

  // what this node cannot prove, and whose auditor can
  const notes = [];
  const earlier = order.slice(0, Math.max(0, at(here)));
  const list = (names, word) => names.length > 1 ? `${names.slice(0, -1).join(", ")} ${word} ${names.at(-1)}` : names[0];
  if (earlier.length > 1) {
    notes.push(t("notes.earlier", { all: list(earlier, t("word.and")), any: list(earlier, t("word.or")) }));
  }
  const mine = hops.find((h) => h.claims.iss === here);
  const next = mine ? mine.claims.to : order[at(here) + 1];
  if (here !== o.aud && next) {
    notes.push(next === o.aud ? t("notes.later_last", { next }) : t("notes.later", { next, aud: o.aud }));
  }
  if (here === o.aud) notes.push(t("notes.receipt_arrival", { iss: o.iss }));
  if (here === o.iss && !b.receipt) notes.push(t("notes.no_receipt", { aud: o.aud }));
  notes.push(t("notes.keys"));
  $("route-notes").replaceChildren(...notes.map((n) => el("li", n)));
  await Promise.all(checks);
}

// ---------------------------------------------------------------------------------------------------
// Evidence across the route (issue #16): a traza-route-evidence/v1 file holds every route node's
// traza-evidence/v1 bundle of one message. Each hop's bundle is verified here as `traza audit
// verify-bundle` does (gateway/audit/bundle.py, steps 2-7): its checkpoint signed by its node's log key, the
// witnesses' cosignatures, every entry's inclusion proof and its idx/node/jti, the token, hop records, acks
// and receipt signatures; then that every hop holds the same signed token. One more check than the CLI:
// every key a bundle brings (log, witness, signing) must be a key of that node in the manifest this node
// holds (GET /ui/api/federation-keys), and not revoked — a bundle cannot vouch for itself. One less: an
// entry's canonical-JSON form is not checked (its bytes, which the inclusion proof covers, are what counts).

const ROUTE_FORMAT = "traza-route-evidence/v1", BUNDLE_FORMAT = "traza-evidence/v1";
let fedKeys = null;

function originNode(name) {
  const parts = name.split("/");
  if (parts.length !== 3 || parts[0] !== "traza" || !/^[a-z][a-z0-9-]{1,31}$/.test(parts[2])) {
    throw new Error(t("err.origin", { name }));
  }
  return parts[2];
}

function manifestAuditKey(node, publicKey) {
  const n = fedKeys.nodes[node];
  const k = n && n.audit.find((x) => x.public_key === publicKey);
  if (!k) throw new Error(t("err.key_not_in_manifest", { what: t("hops.key.audit", { node }), version: fedKeys.manifest_version }));
  if (fedKeys.revoked_kids.includes(k.kid)) throw new Error(t("err.key_revoked", { kid: k.kid }));
  return k.kid;
}

function manifestSigningKey(key) {
  const node = key.kid.split("/")[0], n = fedKeys.nodes[node];
  const k = n && n.signing.find((x) => x.kid === key.kid);
  const same = k && k.alg === key.alg && Object.keys(k.jwk).length === Object.keys(key.jwk).length &&
    Object.entries(k.jwk).every(([name, v]) => key.jwk[name] === v);
  if (!same) throw new Error(t("err.key_not_in_manifest", { what: key.kid, version: fedKeys.manifest_version }));
  if (fedKeys.revoked_kids.includes(key.kid)) throw new Error(t("err.key_revoked", { kid: key.kid }));
}

// the witness's tlog-cosignature/v1 on the checkpoint: key id SHA-256(name || 0x0A || 0x04 || key)[:4], then
// an 8-byte timestamp and an Ed25519 signature over "cosignature/v1\ntime <t>\n" || checkpoint text
async function verifyCosignature(cp, w) {
  const pub = b64decode(w.public_key);
  const id = (await sha256(concat(enc.encode(w.name), new Uint8Array([0x0a, 0x04]), pub))).slice(0, 4);
  const sigs = cp.sigs.filter((s) => s.name === w.name && s.blob.length === 76 && equalBytes(s.blob.slice(0, 4), id));
  if (!sigs.length) throw new Error(t("err.no_cosignature", { name: w.name }));
  const key = await crypto.subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
  let newest = 0;
  for (const s of sigs) {
    const ts = new DataView(s.blob.buffer, s.blob.byteOffset + 4, 8).getBigUint64(0);
    const msg = concat(enc.encode(`cosignature/v1\ntime ${ts}\n`), enc.encode(cp.text));
    if (!(await crypto.subtle.verify({ name: "Ed25519" }, key, s.blob.slice(12), msg))) {
      throw new Error(t("err.cosignature_bad", { name: w.name }));
    }
    newest = Math.max(newest, Number(ts));
  }
  return newest;
}

// One hop's bundle; resolves to what it proves, or throws naming the part at fault.
async function verifyHopBundle(b) {
  if (!b || b.format !== BUNDLE_FORMAT) throw new Error(t("err.bundle_format", { format: b && b.format }));
  // 2. the checkpoint, signed by the node's log key (a key of that node in the manifest)
  if (originNode(b.keys.log.name) !== b.node) throw new Error(t("err.log_name", { name: b.keys.log.name, node: b.node }));
  manifestAuditKey(b.node, b.keys.log.public_key);
  const cp = parseCheckpoint(b.checkpoint);
  if (cp.origin !== b.keys.log.name) throw new Error(t("err.cp_origin", { origin: cp.origin, name: b.keys.log.name }));
  await verifyCheckpointSignature(cp, [{ kid: b.keys.log.name, public_key: b.keys.log.public_key }]);
  // 3. the witnesses' cosignatures, each with a witness key from the manifest
  let newest = null;
  for (const w of b.keys.witnesses) {
    manifestAuditKey(originNode(w.name), w.public_key);
    newest = Math.max(newest ?? 0, await verifyCosignature(cp, w));
  }
  // 4. the entries: in the checkpoint's tree, about this node and this message
  if (!b.entries.length) throw new Error(t("err.no_entries"));
  const entries = new Map();
  for (const e of b.entries) {
    const bytes = b64decode(e.entry);
    try {
      await verifyInclusion(e.index, cp.size, await leafHash(bytes), e.proof.map(b64decode), cp.root);
    } catch (err) {
      throw new Error(t("err.entry", { index: e.index, error: err.message }));
    }
    const doc = JSON.parse(utf8.decode(bytes));
    for (const [k, want] of [["idx", e.index], ["node", b.node], ["jti", b.jti]]) {
      if (doc[k] !== want) throw new Error(t("err.entry_field", { index: e.index, key: k, value: doc[k], want }));
    }
    entries.set(e.index, doc);
  }
  // 5-7. the token, the hop records, the acks and the receipt, each with a signing key from the manifest
  for (const k of b.keys.signing) manifestSigningKey(k);
  const keys = b.keys.signing;
  const tok = openJws(b.envelope.token, "traza-envelope+jwt", keys), o = tok.claims;
  await tok.check();
  if (o.jti !== b.jti) throw new Error(t("err.other_message", { what: t("route.the_token"), jti: o.jti }));
  const dig = await digest(b.envelope.token);
  let prev = b.envelope.token, sender = o.iss, sentTo = null;
  for (const [i, hop] of b.envelope.hops.entries()) {
    const h = openElement(hop, "traza-hop+jwt", keys), c = h.claims;
    await h.check();
    if (c.jti !== b.jti || c.prev !== (await digest(prev)) || c.from !== sender || (i > 0 && sentTo !== c.iss)) {
      throw new Error(t("err.hop_breaks", { n: i + 1 }));
    }
    prev = hop; sender = c.iss; sentTo = c.to;
  }
  for (const [i, ack] of b.acks.entries()) {
    const a = openElement(ack, "traza-ack+jwt", keys), c = a.claims;
    await a.check();
    if (c.jti !== b.jti || c.dig !== dig) throw new Error(t("err.ack_breaks", { n: i + 1 }));
    if (c.iss === b.node && !entries.has(c.idx)) throw new Error(t("err.ack_entry", { n: i + 1, idx: c.idx }));
  }
  if (b.receipt) {
    const r = openJws(b.receipt.token, "traza-envelope+jwt", keys), c = r.claims;
    await r.check();
    const payload = b64urlDecode(b.receipt.payload);
    if (c.mt !== "receipt" || c.irt !== b.jti || c.iss !== o.aud || c.aud !== o.iss) {
      throw new Error(t("err.not_receipt", { mt: c.mt, irt: c.irt, jti: b.jti }));
    }
    if (c.pld.len !== payload.length || c.pld.sha256 !== b64url(await sha256(payload))) {
      throw new Error(t("err.payload_digest", { kid: r.claims.iss }));
    }
    if (c.pld.enc === null) {
      const body = JSON.parse(utf8.decode(payload));
      if (body.for !== b.jti || body.dig !== dig) throw new Error(t("err.receipt_other"));
    }
  }
  const counts = new Map();  // each event once, in log order, with how many entries record it
  for (const e of entries.values()) counts.set(e.event, (counts.get(e.event) || 0) + 1);
  const events = [...counts].map(([name, n]) => (n > 1 ? `${name} ×${n}` : name));
  return { dig, size: cp.size, witnesses: b.keys.witnesses.length, newest, events, handling: o.hc };
}

// A route file, hop by hop: one row per node of the route, verified, missing (the file says why) or NOT
// verified (why); the summary says how many hops hold evidence of the same token.
async function verifyRouteFile(text) {
  showError(null);
  $("route-file-result").hidden = false;
  if (!fedKeys) fedKeys = await api("/ui/api/federation-keys");
  let doc;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    $("route-file-summary").textContent = t("hops.not_json", { error: err.message });
    $("route-file-summary").className = "bad";
    fillTable("route-hops", [], t("hops.none"));
    return;
  }
  const hops = Array.isArray(doc.hops) ? doc.hops : [];
  const route = Array.isArray(doc.route) ? doc.route : [];
  const cells = hops.map(() => el("span", t("check.pending"), "hopcheck pending"));
  fillTable("route-hops", hops.map((h, i) => row([i + 1, h.node, cells[i]], "route-hop")), t("hops.none"));
  const summary = $("route-file-summary");
  if (doc.format !== ROUTE_FORMAT || hops.map((h) => h.node).join(" ") !== route.join(" ") || !route.length) {
    summary.textContent = t("hops.not_route_file", { format: doc.format });
    summary.className = "bad";
    cells.forEach((c) => { c.textContent = t("check.skipped"); c.className = "hopcheck failed"; });
    return;
  }
  let first = null, verified = 0, failed = 0;
  for (const [i, h] of hops.entries()) {
    const cell = cells[i];
    if (h.bundle === null || h.bundle === undefined) {
      cell.textContent = t("hops.missing", { why: h.missing || t("hops.no_bundle") });
      cell.className = "hopcheck missing";
      continue;
    }
    try {
      if (h.bundle.node !== h.node || h.bundle.jti !== doc.jti) {
        throw new Error(t("err.hop_other", { node: h.bundle.node, jti: h.bundle.jti, want_node: h.node, want_jti: doc.jti }));
      }
      const r = await verifyHopBundle(h.bundle);
      if (first === null) first = { n: i + 1, dig: r.dig };
      else if (r.dig !== first.dig) throw new Error(t("err.hop_token", { n: first.n }));
      cell.textContent = t("hops.verified", { size: r.size, events: r.events.join(", "), witnesses: r.witnesses,
        newest: r.newest ? isoSeconds(r.newest) : "—" });
      cell.className = "hopcheck verified";
      verified++;
    } catch (err) {
      cell.textContent = t("hops.failed", { n: i + 1, node: h.node, error: err.message });
      cell.className = "hopcheck failed";
      failed++;
    }
  }
  const vars = { jti: doc.jti, route: route.join(" → "), verified, n: route.length, failed };
  summary.textContent = failed ? t("hops.summary_bad", vars) : t("hops.summary_ok", vars);
  summary.className = failed || !verified ? "bad" : "ok";
}

async function gatherRoute(jti) {
  const resp = await fetch(`/audit/v1/route-bundle?jti=${encodeURIComponent(jti)}`,
    { credentials: "same-origin", headers: { "X-Traza-Request": "dashboard" } });
  const text = await resp.text();
  if (!resp.ok) {
    let detail = text.slice(0, 200);
    try { detail = JSON.parse(text).detail || detail; } catch (e) { /* not problem+json */ }
    throw new ApiError(t("api.error", { method: "GET", path: "/audit/v1/route-bundle", status: resp.status, detail }),
                       resp.status, detail);
  }
  $("route-download").href = `/audit/v1/route-bundle?jti=${encodeURIComponent(jti)}`;
  $("route-download").setAttribute("download", `route-evidence-${jti}.json`);
  $("route-download").hidden = false;
  await verifyRouteFile(text);
}

// ---------------------------------------------------------------------------------------------------
// Start

let me = null;

function showWhoami() {
  $("node-name").textContent = t("header.node", { node: me.node, federation: me.federation });
  $("whoami").textContent = t("whoami.signed_in", { role: me.role, name: me.name });
  document.title = t("page.title.node", { node: me.node, role: me.role });
}

// The reader picked a language: kept for the next visits; everything on screen is written again in it.
function switchLanguage(code) {
  if (code === lang) return;
  lang = code;
  try { localStorage.setItem("traza.lang", code); } catch (e) { /* storage disabled: this page only */ }
  applyLanguage();
  if (!me) return;
  showWhoami();
  if (me.role === "operator") refreshOperator().then(() => showError(actionRefused), showError);
  else if (lastSearch) search(lastSearch).catch(showError);
}

async function main() {
  lang = pickLanguage();
  try {
    await loadCatalogues();
  } catch (err) {
    document.body.prepend(String(err.message));  // no catalogue, no words: say which file is missing
    return;
  }
  applyLanguage();
  try {
    me = await api("/ui/api/whoami");
  } catch (err) {
    $("whoami").textContent = t("whoami.not_signed_in");
    showError(err);
    return;
  }
  showWhoami();
  if (me.role === "operator") {
    $("operator-view").hidden = false;
    // a refused operator action stays on screen until the next action; a failed refresh shows until one works
    const tick = () => refreshOperator().then(() => showError(actionRefused), showError);
    await tick();
    setInterval(tick, 5000);
  } else if (me.role === "auditor") {
    $("auditor-view").hidden = false;
    $("search").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const jti = $("jti").value.trim();
      if (jti) search(jti).catch(showError);
    });
    $("log-search").addEventListener("submit", (ev) => {
      ev.preventDefault();
      showError(null);
      searchLog(ev.target).catch(showError);
    });
    $("route-gather").addEventListener("click", () => {
      const jti = $("jti").value.trim();
      if (jti) gatherRoute(jti).catch(showError);
    });
    $("route-file").addEventListener("change", async (ev) => {
      const file = ev.target.files[0];
      if (file) verifyRouteFile(await file.text()).catch(showError);
    });
    const fromUrl = new URLSearchParams(location.search).get("jti");
    if (fromUrl) { $("jti").value = fromUrl; search(fromUrl).catch(showError); }
  }
}

document.addEventListener("DOMContentLoaded", main);
