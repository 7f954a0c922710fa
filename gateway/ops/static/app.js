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
    throw new ApiError(`${options.method || "GET"} ${path}: ${resp.status} ${detail}`, resp.status, detail);
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
    ["witness cosignatures", (status.witnesses || []).map((w) => `${w.id} ${w.age_s === null ? "none yet" : age(w.age_s)}${w.stale ? " STALE" : ""}`).join(", ") || "no witness"],
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
    if (d.expired) {
      // a signed expiry cannot be extended: the node refuses such a retry (409 expired)
      retry.disabled = true;
      retry.title = `Message ${d.jti} expired at ${d.exp}; a signed expiry cannot be extended: ` +
        "discard it, and have the origin send a new message.";
    } else {
      retry.title = `Queue message ${d.jti} again for ${d.peer} (expires at ${d.exp})`;
    }
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
    [r.index, r.ts, r.code, r.from, r.jti ?? (r.claimed_jti ? `${r.claimed_jti} (claimed, not verified)` : ""),
     r.detail], "rejection")), "no rejections");

  drawChart(tp);
}

let actionRefused = null;  // the node's refusal of the last dead-letter action, if it refused it

async function deadLetter(id, action) {
  try {
    const res = await api(`/ops/v1/dead-letters/${encodeURIComponent(id)}/${action}`, { method: "POST" });
    actionRefused = null;
    showError(null);
    notify(`dead letter ${res.id} (message ${res.jti}): ${action === "retry" ? "queued again" : "discarded"}; audited as operator.action`);
    await refreshOperator();
  } catch (err) {
    if (err instanceof ApiError && err.detail) {
      // e.g. 409 expired: the server's own words; the dead letter is still there
      notify(null);
      actionRefused = `dead letter ${id}: ${action} refused: ${err.detail}`;
      showError(actionRefused);
      await refreshOperator().catch(() => {});  // the 5 s refresh reports a failing view
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
  $("route-notes").replaceChildren();
  if (!decoded.length) {
    fillTable("route", [], "no audit entries name this message: this node has no evidence of its route");
    return;
  }
  fillTable("route", [], "waiting for a checkpoint that covers the message's entries…");
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
    $("checkpoint").textContent = `waiting for a checkpoint that covers entry ${last} (latest size ${cp.size})…`;
    await new Promise((r) => setTimeout(r, 1000));
    if (seq !== searchSeq) return null;
  }
}

// Check the checkpoint's signature with the node's audit key from the manifest, then each entry's
// inclusion proof against its root.
async function checkProofs(cp, decoded, cells) {
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
  if (parts.length !== 3) throw new Error(`a ${typ} is not a compact JWS`);
  const [h, p, s] = parts;
  const header = JSON.parse(utf8.decode(b64urlDecode(h)));
  const claims = JSON.parse(utf8.decode(b64urlDecode(p)));
  async function check() {
    if (header.typ !== typ) throw new Error(`typ ${header.typ} is not ${typ}`);
    const key = keys.find((k) => k.kid === header.kid);
    if (!key) throw new Error(`key ${header.kid} is not in the bundle`);
    const alg = JWS_ALGS[key.alg];
    if (!alg || header.alg !== key.alg) throw new Error(`header alg ${header.alg} does not fit ${key.kid} (${key.alg})`);
    if (key.kid.split("/")[0] !== claims.iss) throw new Error(`key ${key.kid} does not belong to ${claims.iss}`);
    const pub = await crypto.subtle.importKey("jwk", key.jwk, alg.key, false, ["verify"]);
    if (!(await crypto.subtle.verify(alg.verify, pub, b64urlDecode(s), enc.encode(`${h}.${p}`)))) {
      throw new Error(`the signature by ${key.kid} does not verify`);
    }
    return key.kid;
  }
  return { claims, check };
}

async function showRoute(seq, jti, decoded) {
  let b;
  try {
    b = await api(`/audit/v1/bundle?jti=${encodeURIComponent(jti)}`);
  } catch (err) {
    fillTable("route", [], `no evidence bundle: ${err.message}`);
    return;
  }
  if (seq !== searchSeq) return;
  const keys = b.keys.signing, here = b.node;
  const origin = openJws(b.envelope.token, "traza-envelope+jwt", keys), o = origin.claims;
  const dig = await digest(b.envelope.token);
  const hops = b.envelope.hops.map((h) => openJws(h, "traza-hop+jwt", keys));
  const acks = b.acks.map((a) => openJws(a, "traza-ack+jwt", keys));
  // the nodes in route order: the origin, each relaying node, any other node that acknowledged, the recipient
  const order = [o.iss, ...hops.map((h) => h.claims.iss)];
  for (const a of acks) if (!order.includes(a.claims.iss)) order.push(a.claims.iss);
  if (!order.includes(o.aud)) order.push(o.aud);
  const at = (node) => order.indexOf(node);
  const forThis = (c, what) => { if (c.jti !== jti) throw new Error(`${what} is for message ${c.jti}`); };

  const rows = [{ pos: 0, rank: 0, t: o.iat, node: o.iss, what: `signed and sent by ${o.iss} to ${o.aud} (${o.mt})`,
    evidence: "origin token", check: async () => { forThis(o, "the token"); return `signature verified (${await origin.check()})`; } }];
  hops.forEach((h, i) => {
    const c = h.claims, before = i ? b.envelope.hops[i - 1] : b.envelope.token;
    const prevName = i ? `hop record ${i}` : "the origin token";
    rows.push({ pos: at(c.iss), rank: 1, t: c.iat, node: c.iss, what: `received from ${c.from} and relayed to ${c.to}`,
      evidence: `hop record ${i + 1} (time: received)`, check: async () => {
        const kid = await h.check();
        forThis(c, "the hop record");
        if (c.prev !== (await digest(before))) throw new Error(`signed by ${kid}, but prev does not chain to ${prevName}`);
        return `signature verified (${kid}), chains to ${prevName}`;
      } });
  });
  for (const a of acks) {
    const c = a.claims;
    rows.push({ pos: at(c.iss), rank: 2, t: c.iat, node: c.iss, what: `accepted from ${c.aud} (ack idx ${c.idx})`,
      evidence: `ack: entry ${c.idx} of ${c.iss === here ? "this node's log (above)" : `${c.iss}'s log`}`, check: async () => {
        const kid = await a.check();
        forThis(c, "the ack");
        if (c.dig !== dig) throw new Error(`signed by ${kid}, but it acknowledges another token`);
        return `signature verified (${kid}), acknowledges this token`;
      } });
  }
  for (const e of decoded.filter((x) => x.doc.event === "envelope.delivered")) {
    rows.push({ pos: at(here), rank: 3, t: entrySeconds(e.doc.ts), node: here, what: `delivered to ${here}'s national system`,
      evidence: `entry ${e.index} of this node's log`, log: true });
  }
  if (b.receipt) {
    const r = openJws(b.receipt.token, "traza-envelope+jwt", keys), c = r.claims;
    const payload = b64urlDecode(b.receipt.payload);
    const got = decoded.find((x) => x.doc.event === "receipt.received" && x.doc.receipt === c.jti);
    let status = got ? `${got.doc.status}, received here at ${isoSeconds(entrySeconds(got.doc.ts))} (entry ${got.index})`
      : "status in its encrypted body";
    const body = c.pld && c.pld.enc === null ? JSON.parse(utf8.decode(payload)) : null;
    if (body) status = `${body.status} at ${body.at}`;
    rows.push({ pos: at(c.iss), rank: 4, t: c.iat, node: c.iss, what: `receipt ${status}, sent to ${c.aud}`,
      evidence: `receipt ${c.jti}`, check: async () => {
        const kid = await r.check();
        if (c.mt !== "receipt" || c.irt !== jti) throw new Error(`a ${c.mt} replying to ${c.irt}, not a receipt for ${jti}`);
        if (c.pld.len !== payload.length || c.pld.sha256 !== b64url(await sha256(payload))) {
          throw new Error(`signed by ${kid}, but the payload does not match its digest`);
        }
        if (body && (body.for !== jti || body.dig !== dig)) throw new Error("the receipt body is for another message or token");
        return `signature verified (${kid}), payload digest matches`;
      } });
  }
  rows.sort((x, y) => x.pos - y.pos || x.rank - y.rank || x.t - y.t);

  const checks = [];
  fillTable("route", rows.map((r) => {
    const cell = el("span", r.log ? "in this node's log: see its inclusion proof above" : "checking…", "sig pending");
    if (!r.log) {
      checks.push(r.check().then((text) => { cell.textContent = text; cell.className = "sig verified"; },
        (err) => { cell.textContent = `NOT verified: ${err.message}`; cell.className = "sig failed"; }));
    }
    const tr = row([isoSeconds(r.t), r.node, r.what, r.evidence, cell], "hop");
    tr.dataset.t = String(r.t);
    return tr;
  }), "the evidence bundle holds nothing about the route");

  // what this node cannot prove, and whose auditor can
  const notes = [];
  const earlier = order.slice(0, Math.max(0, at(here)));
  const list = (names, word) => names.length > 1 ? `${names.slice(0, -1).join(", ")} ${word} ${names.at(-1)}` : names[0];
  if (earlier.length > 1) {
    notes.push(`Earlier hops: the acks exchanged among ${list(earlier, "and")} are in their logs: ask the auditor of ${list(earlier, "or")}.`);
  }
  const mine = hops.find((h) => h.claims.iss === here);
  const next = mine ? mine.claims.to : order[at(here) + 1];
  if (here !== o.aud && next) {
    notes.push(`Later hops: ask the auditor of ${next}, the next node${next === o.aud ? "" : `, then onwards to ${o.aud}`}.`);
  }
  if (here === o.aud) notes.push(`The receipt's arrival at ${o.iss}: ask the auditor of ${o.iss}.`);
  if (here === o.iss && !b.receipt) notes.push(`No receipt from ${o.aud} in this node's log yet.`);
  notes.push("Signatures are checked with the keys in the bundle as this node serves it; "
    + "traza audit verify-bundle checks the downloaded file offline.");
  $("route-notes").replaceChildren(...notes.map((n) => el("li", n)));
  await Promise.all(checks);
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
    const fromUrl = new URLSearchParams(location.search).get("jti");
    if (fromUrl) { $("jti").value = fromUrl; search(fromUrl).catch(showError); }
  }
}

document.addEventListener("DOMContentLoaded", main);
