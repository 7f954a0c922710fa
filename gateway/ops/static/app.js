// Traza dashboard: the operator and auditor views of one node. No framework, no build step.
// Every piece of data goes into the page through textContent (never innerHTML).
"use strict";

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
  if (value < 0n || value > MAX_SIZE) throw new Error(`${name} ${value} is not an integer in 0..2^64-1`);
}

// The root implied by an inclusion proof (RFC 9162 §2.1.3.2); throws on any malformed input.
async function rootFromInclusionProof(index, size, leaf, proof) {
  index = BigInt(index); size = BigInt(size);
  checkSize("index", index); checkSize("size", size);
  if (index >= size) throw new Error(`index ${index} is beyond the tree size ${size}`);
  if (leaf.length !== 32) throw new Error("leaf hash is not 32 bytes");
  const inner = bitLength(index ^ (size - 1n));
  const border = popCount(index >> BigInt(inner));
  if (proof.length !== inner + border) {
    throw new Error(`inclusion proof has ${proof.length} hashes, the tree shape needs ${inner + border}`);
  }
  proof.forEach((h, i) => { if (h.length !== 32) throw new Error(`proof hash ${i} is not 32 bytes`); });
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
    throw new Error(`inclusion proof of index ${index} does not lead to the root of size ${size}`);
  }
}

// A served checkpoint: note text (origin, size, base64 root), a blank line, signature lines "— name sig".
function parseCheckpoint(note) {
  const cut = note.indexOf("\n\n");
  if (cut < 0) throw new Error("checkpoint has no signature block");
  const text = note.slice(0, cut + 1);
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3) throw new Error(`checkpoint has ${lines.length} lines, needs origin, size and root hash`);
  if (!/^(0|[1-9][0-9]*)$/.test(lines[1])) throw new Error(`checkpoint size ${JSON.stringify(lines[1])} is not a decimal`);
  const root = b64decode(lines[2]);
  if (root.length !== 32) throw new Error("checkpoint root hash is not 32 bytes");
  const sigs = [];
  for (const line of note.slice(cut + 2).split("\n")) {
    if (!line) continue;
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) throw new Error(`malformed signature line ${JSON.stringify(line)}`);
    sigs.push({ name: m[1], blob: b64decode(m[2]) });
  }
  return { text, origin: lines[0], size: BigInt(lines[1]), root, sigs };
}

// The log's Ed25519 signature (key id = first 4 bytes of SHA-256(name || 0x0A || 0x01 || key)).
async function verifyCheckpointSignature(cp, keys) {
  if (!crypto.subtle || !("verify" in crypto.subtle)) throw new Error("this browser has no WebCrypto");
  for (const k of keys) {
    const pub = b64decode(k.public_key);
    const id = (await sha256(concat(enc.encode(cp.origin), new Uint8Array([0x0a, 0x01]), pub))).slice(0, 4);
    const sig = cp.sigs.find((s) => s.name === cp.origin && s.blob.length === 68 && equalBytes(s.blob.slice(0, 4), id));
    if (!sig) continue;
    let key;
    try {
      key = await crypto.subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
    } catch (e) {
      throw new Error(`this browser cannot check Ed25519 signatures (${e.message})`);
    }
    if (await crypto.subtle.verify({ name: "Ed25519" }, key, sig.blob.slice(4), enc.encode(cp.text))) return k.kid;
    throw new Error(`the signature by ${k.kid} does not verify`);
  }
  throw new Error(`no signature of ${cp.origin} by an audit key of the manifest`);
}

window.TrazaProofs = { rootFromInclusionProof, verifyInclusion, parseCheckpoint, verifyCheckpointSignature,
                       leafHash, b64decode, b64encode };

// ---------------------------------------------------------------------------------------------------
// Plumbing

const $ = (id) => document.getElementById(id);

class ApiError extends Error {}

async function api(path, options = {}) {
  const resp = await fetch(path, { credentials: "same-origin", ...options });
  const type = resp.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) {
    const detail = body && body.detail ? body.detail : String(body).slice(0, 200);
    throw new ApiError(`${options.method || "GET"} ${path}: ${resp.status} ${detail}`);
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

const ms = (v) => (v === null || v === undefined ? "—" : `${v} ms`);

function age(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function shortId(text) {
  return text && text.length > 60 ? `${text.slice(0, 57)}…` : text;
}

// ---------------------------------------------------------------------------------------------------
// Operator view

async function refreshOperator() {
  const [status, peers, queues, dead, rejections, expiry, tp] = await Promise.all([
    api("/ops/v1/status"), api("/ui/api/peers"), api("/ops/v1/queues"), api("/ops/v1/dead-letters"),
    api("/ui/api/rejections"), api("/ui/api/expiry"), api("/ui/api/throughput"),
  ]);
  fillList("status", [
    ["federation", status.federation],
    ["manifest version", status.manifest_version],
    ["manifest expires", status.manifest_expires_at],
    ["queued envelopes", status.queue_depth],
    ["messages by state", Object.entries(status.messages || {}).map(([k, v]) => `${k} ${v}`).join(", ") || "none"],
  ]);
  const warn = expiry.items.filter((i) => i.level !== "ok");
  $("warnings").replaceChildren(...(warn.length ? warn.map((i) => el("li",
    `${i.level === "expired" ? "EXPIRED" : "expires soon"}: ${i.what}, not after ${i.not_after} (${i.days_left} days)`,
    i.level)) : [el("li", `nothing expires within ${expiry.warn_days} days (first: ${expiry.items[0] ? `${expiry.items[0].what}, in ${Math.floor(expiry.items[0].days_left)} days` : "—"})`, "ok")]));

  fillTable("peers", peers.peers.map((p) => row([
    p.id, p.kind, p.state, p.up === null ? "none yet" : p.up ? "ok" : "failed",
    ms(p.recent_ms), ms(p.mean_ms), p.failures,
  ], `peer state-${p.state}`)), "no linked peers");

  fillTable("queues", queues.queues.map((q) => row([q.peer, q.depth, age(q.oldest_age_s), q.retrying], "queue")),
    "every queue is empty");

  fillTable("dead-letters", dead.dead_letters.map((d) => {
    const actions = el("span");
    const retry = el("button", "Retry", "retry");
    retry.type = "button";
    retry.addEventListener("click", () => deadLetter(d.id, "retry"));
    const discard = el("button", "Discard", "discard");
    discard.type = "button";
    discard.addEventListener("click", () => {
      if (window.confirm(`Discard dead letter ${d.id} (message ${d.jti})? This is audited.`)) deadLetter(d.id, "discard");
    });
    actions.append(retry, " ", discard);
    const tr = row([d.id, d.jti, d.type, d.peer, d.code, d.detail, new Date(d.at * 1000).toISOString(), actions],
      "dead-letter");
    tr.dataset.id = d.id;
    return tr;
  }), "no dead letters");

  fillTable("rejections", rejections.rejections.map((r) => row(
    [r.index, r.ts, r.code, r.from, r.jti, r.detail], "rejection")), "no rejections");

  drawChart(tp);
}

async function deadLetter(id, action) {
  try {
    const res = await api(`/ops/v1/dead-letters/${encodeURIComponent(id)}/${action}`, { method: "POST" });
    notify(`dead letter ${res.id} (message ${res.jti}): ${action === "retry" ? "queued again" : "discarded"}; audited as operator.action`);
    await refreshOperator();
  } catch (err) {
    showError(err);
  }
}

function svg(tag, attrs, text) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

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
    svg("text", { x: L, y: H - 4, class: "tick" }, `${Math.round(tp.window_s / 60)} min ago`),
    svg("text", { x: W - 10, y: H - 4, class: "tick", "text-anchor": "end" }, "now"),
  ];
  for (const s of tp.series) {
    const line = pts.map((p, i) => `${x(i).toFixed(1)},${y(p[s]).toFixed(1)}`).join(" ");
    if (pts.length > 1) parts.push(svg("polyline", { points: line, class: `series s-${s}` }));
    pts.forEach((p, i) => { if (p[s]) parts.push(svg("circle", { cx: x(i), cy: y(p[s]), r: 3, class: `dot s-${s}` })); });
  }
  chart.replaceChildren(...parts);
  $("legend").replaceChildren(...tp.series.map((s) => el("span", s, `key s-${s}`)));
  const total = (s) => pts.reduce((n, p) => n + p[s], 0);
  const minutes = Math.max(1, Math.round((pts.length * tp.interval_s) / 60));
  $("throughput-note").textContent = pts.length
    ? `envelopes per ${tp.interval_s} s; last ${minutes} min: ` + tp.series.map((s) => `${s} ${total(s)}`).join(", ")
    : "collecting the first samples…";
}

// ---------------------------------------------------------------------------------------------------
// Auditor view

let searchSeq = 0;

async function search(jti) {
  const seq = ++searchSeq;
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
    fillList("msg-summary", [["on this node", status.missing]]);
    fillTable("timeline", [], "no timeline: the message is not stored on this node");
  } else {
    fillList("msg-summary", [["type", status.type], ["from", status.from], ["to", status.to],
      ["state", status.state], ["conversation", status.conversation], ["reply to", status.reply_to || "—"]]);
    fillTable("timeline", status.timeline.map((t) => row([t.at, t.state, t.node, shortId(t.detail)], "step")),
      "no timeline");
  }
  const decoded = entries.entries.map((e) => {
    const bytes = b64decode(e.entry);
    return { index: e.index, bytes, doc: JSON.parse(new TextDecoder().decode(bytes)) };
  });
  const cells = new Map();
  fillTable("entries", decoded.map((e) => {
    const cell = el("span", "checking…", "proof pending");
    cells.set(e.index, cell);
    return row([e.index, e.doc.ts, e.doc.event, e.doc.from, e.doc.to, e.doc.code, cell], "entry");
  }), "no audit entries name this message");
  if (decoded.length) await checkProofs(seq, decoded, cells);
}

// Fetch the latest checkpoint, check its signature with the node's audit key from the manifest, then
// each entry's inclusion proof against its root. Waits (briefly) for a checkpoint covering new entries.
async function checkProofs(seq, decoded, cells) {
  const last = decoded[decoded.length - 1].index;
  let cp;
  for (let attempt = 0; ; attempt++) {
    cp = parseCheckpoint(await api("/v1/audit/checkpoint"));
    if (cp.size > BigInt(last) || attempt >= 20) break;
    $("checkpoint").textContent = `waiting for a checkpoint that covers entry ${last} (latest size ${cp.size})…`;
    await new Promise((r) => setTimeout(r, 1000));
    if (seq !== searchSeq) return;
  }
  let sigText;
  try {
    const kid = await verifyCheckpointSignature(cp, me.log.keys);
    sigText = `signature verified with ${kid}`;
  } catch (err) {
    sigText = `SIGNATURE NOT VERIFIED: ${err.message}`;
  }
  $("checkpoint").textContent = `checkpoint ${cp.origin}, size ${cp.size}, root ${b64encode(cp.root)}: ${sigText}`;
  $("checkpoint").className = sigText.startsWith("signature verified") ? "ok" : "bad";
  for (const e of decoded) {
    const cell = cells.get(e.index);
    if (BigInt(e.index) >= cp.size) {
      cell.textContent = "not yet in a checkpoint";
      cell.className = "proof pending";
      continue;
    }
    try {
      const proof = await api(`/audit/v1/proof/inclusion?index=${e.index}&size=${cp.size}`);
      await verifyInclusion(e.index, cp.size, await leafHash(e.bytes), proof.hashes.map(b64decode), cp.root);
      cell.textContent = `proof verified (${proof.hashes.length} hashes, tree size ${cp.size})`;
      cell.className = "proof verified";
    } catch (err) {
      cell.textContent = `proof FAILED: ${err.message}`;
      cell.className = "proof failed";
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Start

let me = null;

async function main() {
  try {
    me = await api("/ui/api/whoami");
  } catch (err) {
    $("whoami").textContent = "not signed in";
    showError(err);
    return;
  }
  $("node-name").textContent = `${me.node} (${me.federation})`;
  $("whoami").textContent = `signed in as ${me.role} ${me.name}`;
  document.title = `Traza ${me.node}: ${me.role}`;
  if (me.role === "operator") {
    $("operator-view").hidden = false;
    const tick = () => refreshOperator().then(() => showError(null), showError);
    await tick();
    setInterval(tick, 5000);
  } else if (me.role === "auditor") {
    $("auditor-view").hidden = false;
    $("search").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const jti = $("jti").value.trim();
      if (jti) search(jti).catch(showError);
    });
    const fromUrl = new URLSearchParams(location.search).get("jti");
    if (fromUrl) { $("jti").value = fromUrl; search(fromUrl).catch(showError); }
  }
}

document.addEventListener("DOMContentLoaded", main);
