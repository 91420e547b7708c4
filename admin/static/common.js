/* imgserve admin dashboard: shared helpers (auth, API calls, DOM, SVG charts, dialogs).
 *
 * Auth: the admin token lives in sessionStorage (this tab only, gone when it closes) and is sent as
 * "Authorization: Bearer …" on every API call. Nothing is rendered with innerHTML: data only ever becomes
 * text nodes, and the page's CSP allows scripts from this origin only.
 */
"use strict";

const IS = (window.imgserve = {});
const TOKEN_KEY = "imgserve.adminToken";

IS.getToken = () => sessionStorage.getItem(TOKEN_KEY) || "";
IS.setToken = (t) => sessionStorage.setItem(TOKEN_KEY, t);
IS.clearToken = () => sessionStorage.removeItem(TOKEN_KEY);
IS.authHeaders = () => (IS.getToken() ? { Authorization: "Bearer " + IS.getToken() } : {});

IS.toLogin = (reason) => {
  const next = location.pathname + location.search;
  const q = new URLSearchParams({ next });
  if (reason) q.set("reason", reason);
  location.replace("/ui/login?" + q.toString());
};

class ApiError extends Error {
  constructor(status, message, type, body) {
    super(message);
    this.status = status;
    this.type = type;
    this.body = body;
  }
}
IS.ApiError = ApiError;

async function parseError(r) {
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  const msg = (body && (body.error || body.detail || body.message)) || `HTTP ${r.status}`;
  return new ApiError(r.status, typeof msg === "string" ? msg : JSON.stringify(msg), body && body.type, body);
}

/* fetch a JSON API path with the bearer token. opts: {method, json, form, signal, raw} */
IS.api = async (path, opts = {}) => {
  const init = { method: opts.method || (opts.json || opts.form ? "POST" : "GET"), headers: IS.authHeaders(), signal: opts.signal };
  if (opts.json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.json);
  } else if (opts.form) {
    init.body = opts.form;
  }
  const r = await fetch(path, init);
  if (r.status === 401) {
    IS.clearToken();
    IS.toLogin("expired");
    throw new ApiError(401, "signed out", "unauthorized");
  }
  if (!r.ok) throw await parseError(r);
  if (opts.raw) return r;
  return r.status === 204 ? null : r.json();
};

/* an authenticated image (e.g. a PNG endpoint) as an object URL for <img src> */
IS.imageURL = async (path) => URL.createObjectURL(await (await IS.api(path, { raw: true })).blob());

/* multipart upload with progress (fetch has no upload progress) */
IS.upload = (path, form, onProgress) => new Promise((resolve, reject) => {
  const xhr = new XMLHttpRequest();
  xhr.open("POST", path);
  const h = IS.authHeaders();
  Object.keys(h).forEach((k) => xhr.setRequestHeader(k, h[k]));
  xhr.upload.onprogress = (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total); };
  xhr.onerror = () => reject(new ApiError(0, "network error during upload"));
  xhr.onload = () => {
    let body = null;
    try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status === 401) { IS.clearToken(); IS.toLogin("expired"); }
    if (xhr.status >= 200 && xhr.status < 300) resolve(body);
    else reject(new ApiError(xhr.status, (body && body.error) || `HTTP ${xhr.status}`, body && body.type, body));
  };
  xhr.send(form);
});

/* ---- DOM ---------------------------------------------------------------------------------------- */
IS.$ = (sel, root = document) => root.querySelector(sel);
IS.el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "on") Object.entries(v).forEach(([ev, fn]) => node.addEventListener(ev, fn));
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
};
IS.clear = (node) => { while (node.firstChild) node.removeChild(node.firstChild); return node; };
IS.show = (node, on = true) => { node.hidden = !on; return node; };
IS.setError = (node, err) => {
  if (!err) { node.hidden = true; node.textContent = ""; return; }
  node.textContent = err.message || String(err);
  node.hidden = false;
};

/* ---- formatting --------------------------------------------------------------------------------- */
IS.fmt = {
  pct: (x, d = 2) => (typeof x === "number" ? (100 * x).toFixed(d) + " %" : "–"),
  num: (x, d = 1) => (typeof x === "number" && isFinite(x) ? x.toFixed(d) : "–"),
  int: (x) => (typeof x === "number" ? Math.round(x).toLocaleString("en-US") : "–"),
  ms: (x) => (typeof x !== "number" ? "–" : x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : Math.round(x).toString()),
  when: (iso) => {
    if (!iso) return "–";
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    const s = (Date.now() - d.getTime()) / 1000;
    if (s < 60) return "just now";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return d.toISOString().slice(0, 16).replace("T", " ");
  },
};

/* ---- toasts and confirmation -------------------------------------------------------------------- */
IS.toast = (message, kind = "info", ms = 4000) => {
  const t = IS.el("div", { class: "toast " + kind, role: kind === "error" ? "alert" : "status", text: message });
  IS.$("#toasts").append(t);
  setTimeout(() => t.remove(), ms);
};

IS.confirm = (title, message, okLabel = "Confirm", kind = "danger") => new Promise((resolve) => {
  const dlg = IS.$("#confirm-dialog");
  IS.$("#confirm-title").textContent = title;
  IS.$("#confirm-message").textContent = message;
  const ok = IS.$("#confirm-ok");
  ok.textContent = okLabel;
  ok.className = kind;
  dlg.returnValue = "";
  dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
  dlg.showModal();
  IS.$("#confirm-cancel").focus();
});

/* ---- drop zones ----------------------------------------------------------------------------------- */
IS.dropzone = (zone, input, onFile) => {
  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  input.addEventListener("change", () => { if (input.files.length) onFile(input.files[0]); input.value = ""; });
  ["dragenter", "dragover"].forEach((ev) => zone.addEventListener(ev, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((ev) => zone.addEventListener(ev, (e) => { e.preventDefault(); zone.classList.remove("over"); }));
  zone.addEventListener("drop", (e) => {
    const f = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
    if (f) onFile(f);
  });
};

/* ---- SVG charts ---------------------------------------------------------------------------------- */
const SVG = "http://www.w3.org/2000/svg";
const svg = (tag, attrs = {}, text) => {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) n.setAttribute(k, v);
  if (text !== undefined) n.textContent = text;
  return n;
};
IS.palette = ["#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0891b2", "#db2777", "#65a30d"];

function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) { hi = lo + 1; }
  const span = hi - lo;
  const step0 = Math.pow(10, Math.floor(Math.log10(span / count)));
  const err = (span / count) / step0;
  const step = step0 * (err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(+v.toFixed(10));
  return ticks;
}

/* ticks on a time axis (ms since the epoch) at whole 1/2/5/10/15/30 s… steps */
function timeTicks(t0, t1, count) {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600].map((s) => s * 1000);
  const step = steps.find((s) => (t1 - t0) / s <= count) || steps[steps.length - 1];
  const ticks = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) ticks.push(t);
  return ticks;
}

function frame(container, height) {
  IS.clear(container);
  const width = Math.max(260, container.clientWidth || 600);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", height, class: "svgchart" });
  container.append(root);
  return { root, width, height };
}

/* series: [{name, color, points: [{x, y, label?}], dashed?}] */
IS.lineChart = (container, { series, height = 220, yMin, yMax, yFormat = (v) => String(v), xFormat = (v) => String(v),
  xTicks, timeAxis = false, integerX = false, marks = [], empty = "no data yet" }) => {
  const { root, width } = frame(container, height);
  const pts = series.flatMap((s) => s.points.filter((p) => typeof p.y === "number" && isFinite(p.y)));
  if (!pts.length) {
    root.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, empty));
    return;
  }
  const m = { l: 52, r: 14, t: 26, b: 28 };
  let x0 = Math.min(...pts.map((p) => p.x)), x1 = Math.max(...pts.map((p) => p.x));
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  let y0 = yMin !== undefined ? yMin : Math.min(...pts.map((p) => p.y));
  let y1 = yMax !== undefined ? yMax : Math.max(...pts.map((p) => p.y));
  if (y0 === y1) { y0 = y0 - (Math.abs(y0) || 1) * 0.1; y1 = y1 + (Math.abs(y1) || 1) * 0.1; }
  const pad = (y1 - y0) * 0.08;
  if (yMin === undefined) y0 -= pad;
  if (yMax === undefined) y1 += pad;
  const X = (v) => m.l + ((v - x0) / (x1 - x0)) * (width - m.l - m.r);
  const Y = (v) => height - m.b - ((v - y0) / (y1 - y0)) * (height - m.t - m.b);
  for (const t of niceTicks(y0, y1, 4)) {
    if (t < y0 || t > y1) continue;
    root.append(svg("line", { x1: m.l, x2: width - m.r, y1: Y(t), y2: Y(t), class: "grid" }));
    root.append(svg("text", { x: m.l - 6, y: Y(t) + 4, "text-anchor": "end", class: "tick" }, yFormat(t)));
  }
  const maxTicks = Math.min(8, Math.max(2, Math.floor((width - m.l) / 80)));
  let xs = xTicks || (timeAxis ? timeTicks(x0, x1, maxTicks) : niceTicks(x0, x1, maxTicks));
  if (integerX) xs = xs.filter((t) => Number.isInteger(t));
  if (xs.length > 2 * maxTicks) { const every = Math.ceil(xs.length / maxTicks); xs = xs.filter((_, i) => i % every === 0); }
  for (const t of xs) {
    if (t < x0 || t > x1) continue;
    root.append(svg("text", { x: X(t), y: height - 8, "text-anchor": "middle", class: "tick" }, xFormat(t)));
  }
  root.append(svg("line", { x1: m.l, x2: width - m.r, y1: height - m.b, y2: height - m.b, class: "axis" }));
  for (const mk of marks) {
    const g = svg("g", { class: "mark" });
    g.append(svg("line", { x1: X(mk.x), x2: X(mk.x), y1: m.t - 4, y2: height - m.b, class: "markline" }));
    g.append(svg("text", { x: X(mk.x), y: m.t - 8, "text-anchor": "middle", class: "marklabel" }, mk.label));
    root.append(g);
  }
  series.forEach((s, i) => {
    const color = s.color || IS.palette[i % IS.palette.length];
    const p = s.points.filter((q) => typeof q.y === "number" && isFinite(q.y));
    if (!p.length) return;
    root.append(svg("polyline", {
      points: p.map((q) => `${X(q.x).toFixed(1)},${Y(q.y).toFixed(1)}`).join(" "),
      fill: "none", stroke: color, "stroke-width": 2, "stroke-dasharray": s.dashed ? "5 4" : null, class: "series",
      "data-series": s.name,
    }));
    if (p.length <= 60) {
      for (const q of p) {
        const c = svg("circle", { cx: X(q.x), cy: Y(q.y), r: 3.2, fill: color, class: "point" });
        c.append(svg("title", {}, `${s.name} @ ${xFormat(q.x)}: ${yFormat(q.y)}`));
        root.append(c);
      }
    }
  });
  let lx = m.l;
  series.forEach((s, i) => {
    const color = s.color || IS.palette[i % IS.palette.length];
    root.append(svg("rect", { x: lx, y: 6, width: 12, height: 4, fill: color, rx: 1 }));
    const t = svg("text", { x: lx + 16, y: 12, class: "legend" }, s.name);
    root.append(t);
    lx += 26 + 7 * s.name.length;
  });
};

/* bars: [{label, value, title?}] */
IS.barChart = (container, { bars, height = 200, color = IS.palette[0], yFormat = (v) => String(v), empty = "no data yet" }) => {
  const { root, width } = frame(container, height);
  if (!bars.length || !bars.some((b) => b.value > 0)) {
    root.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, empty));
    return;
  }
  const m = { l: 44, r: 10, t: 14, b: 30 };
  const max = Math.max(...bars.map((b) => b.value));
  const ticks = niceTicks(0, max, 4);
  const top = Math.max(max, ticks[ticks.length - 1]);
  const Y = (v) => height - m.b - (v / top) * (height - m.t - m.b);
  for (const t of ticks) {
    root.append(svg("line", { x1: m.l, x2: width - m.r, y1: Y(t), y2: Y(t), class: "grid" }));
    root.append(svg("text", { x: m.l - 6, y: Y(t) + 4, "text-anchor": "end", class: "tick" }, yFormat(t)));
  }
  const slot = (width - m.l - m.r) / bars.length;
  const bw = Math.max(4, Math.min(48, slot * 0.7));
  bars.forEach((b, i) => {
    const x = m.l + slot * i + (slot - bw) / 2;
    const r = svg("rect", { x, y: Y(b.value), width: bw, height: Math.max(0, Y(0) - Y(b.value)), fill: color, rx: 2, class: "bar" });
    r.append(svg("title", {}, b.title || `${b.label}: ${yFormat(b.value)}`));
    root.append(r);
    root.append(svg("text", { x: x + bw / 2, y: height - 12, "text-anchor": "middle", class: "tick" }, b.label));
  });
};

/* ---- page boot ------------------------------------------------------------------------------------ */
IS.health = async () => {
  try {
    const r = await fetch("/health");
    return await r.json();
  } catch (_) {
    return { status: "unreachable", auth: true };
  }
};

/* Runs fn() once the tab has a token (or the runner needs none); otherwise goes to the login page. */
IS.ready = (fn) => {
  const start = async () => {
    const page = document.body.dataset.page;
    if (page === "login") return fn();
    const health = await IS.health();
    IS.authRequired = health.auth !== false;
    if (IS.authRequired && !IS.getToken()) return IS.toLogin();
    const mode = IS.$("#auth-mode");
    if (mode) mode.textContent = IS.authRequired ? "signed in (token)" : "no token configured: loopback only";
    const out = IS.$("#logout");
    if (out) {
      out.hidden = !IS.authRequired;
      out.addEventListener("click", () => { IS.clearToken(); location.replace("/ui/login"); });
    }
    return fn();
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
};

/* polling that pauses while the tab is hidden */
IS.poll = (fn, ms) => {
  let timer = null, stopped = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) { try { await fn(); } catch (e) { console.warn(e); } }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return { stop: () => { stopped = true; clearTimeout(timer); } };
};
