/* Rollouts page: canary and shadow controls, per-version figures, shadow agreement, drift PSI, history. */
"use strict";
(() => {
  const IS = window.imgserve;
  const { el, $, fmt } = IS;
  const SVGNS = "http://www.w3.org/2000/svg";
  let data = null;

  const model = () => $("#model").value.trim();
  const path = (suffix) => `/models/${encodeURIComponent(model())}${suffix}`;
  const num = (s) => Number(String(s).trim());

  function row(cells, cls) { return el("tr", { class: cls }, cells.map((c) => el("td", { class: typeof c === "number" ? "num" : undefined }, c))); }

  function driftChart(container, drift, threshold) {
    IS.clear(container);
    const width = Math.max(container.clientWidth || 480, 320), barH = 18, gap = 6, left = 170, right = 60;
    const height = Math.max(60, drift.length * (barH + gap) + 30);
    const root = document.createElementNS(SVGNS, "svg");
    root.setAttribute("viewBox", `0 0 ${width} ${height}`);
    root.setAttribute("width", "100%");
    root.setAttribute("height", height);
    const add = (tag, attrs, text) => {
      const n = document.createElementNS(SVGNS, tag);
      Object.entries(attrs).forEach(([k, v]) => n.setAttribute(k, v));
      if (text !== undefined) n.textContent = text;
      root.append(n);
      return n;
    };
    if (!drift.length) {
      add("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, "no drift gauges yet (a version needs reference.json and enough traffic)");
      container.append(root);
      return;
    }
    const top = Math.max(threshold * 2, ...drift.map((d) => d.psi)) * 1.05;
    const X = (v) => left + (v / top) * (width - left - right);
    drift.forEach((d, i) => {
      const y = 8 + i * (barH + gap);
      add("text", { x: left - 8, y: y + barH - 5, "text-anchor": "end", class: "tick" }, `v${d.version} ${d.signal}`);
      const bar = add("rect", { x: left, y, width: Math.max(1, X(d.psi) - left), height: barH, rx: 2,
        fill: d.significant ? IS.palette[3] : IS.palette[2], class: "bar" });
      bar.append(Object.assign(document.createElementNS(SVGNS, "title"), { textContent: `PSI ${d.psi.toFixed(3)}` }));
      add("text", { x: X(d.psi) + 4, y: y + barH - 5, class: "tick" }, d.psi.toFixed(3));
    });
    const bottom = 8 + drift.length * (barH + gap);
    add("line", { x1: X(threshold), x2: X(threshold), y1: 2, y2: bottom, stroke: IS.palette[3], "stroke-dasharray": "4 3" });
    add("text", { x: X(threshold), y: bottom + 14, "text-anchor": "middle", class: "tick" }, `alert ${threshold}`);
    container.append(root);
  }

  function render() {
    const d = data, live = d.live || { versions: [], shadow: [], drift: [], canary_aborts: [], psi_threshold: 0.25 };
    $("#rollout-summary").textContent = `production v${d.production ?? "–"}`
      + (d.canary ? ` · canary v${d.canary.version} at ${d.canary.weight} %` : "")
      + (d.shadow ? ` · shadow v${d.shadow.version} at ${d.shadow.share} %` : "");
    IS.setError($("#live-error"), d.live_error ? { message: "live figures unavailable: " + d.live_error } : null);
    $("#canary-state").textContent = d.canary
      ? `v${d.canary.version} answers ${d.canary.weight} % of requests beside production v${d.production}.`
      : "No canary. " + (d.automatic_aborts.length ? `Last automatic abort: v${d.automatic_aborts[0].version}, ${fmt.when(d.automatic_aborts[0].at)}.` : "");
    $("#canary-promote").disabled = $("#canary-abort").disabled = !d.canary;
    $("#shadow-state").textContent = d.shadow
      ? `${d.shadow.share} % of requests mirrored to v${d.shadow.version}; answers stay production's.` : "No shadow.";
    $("#shadow-stop").disabled = !d.shadow;

    const role = (v) => (String(v) === String(d.production) ? "production" : d.canary && String(v) === String(d.canary.version) ? "canary" : "");
    IS.clear($("#versions tbody")).append(...live.versions.map((v) =>
      row([`v${v.version}`, role(v.version), fmt.int(v.requests), fmt.int(v.errors), fmt.pct(v.error_rate, 1), fmt.ms(v.mean_latency_ms)])));
    IS.clear($("#shadow tbody")).append(...live.shadow.map((s) =>
      row([`v${s.version}`, fmt.int(s.compared), fmt.pct(s.agreement, 1), fmt.num(s.mean_confidence.production, 3),
        fmt.num(s.mean_confidence.shadow, 3), fmt.int(s.shed)])));
    driftChart($("#chart-drift"), live.drift, live.psi_threshold);
    $("#drift-note").textContent = `Population stability index of each live signal against the version's reference; above ${live.psi_threshold} (dashed) is a significant shift and fires the drift alert.`;
    IS.clear($("#events tbody")).append(...d.events.map((e) =>
      row([fmt.when(e.at), e.action, `v${e.version}`, e.reason || ""], String(e.reason || "").startsWith("automatic abort") ? "alert-row" : undefined)));
  }

  async function load() {
    try {
      data = await IS.api(path("/rollout"));
      IS.setError($("#rollout-error"), null);
      render();
    } catch (err) { IS.setError($("#rollout-error"), err); }
  }

  async function act(suffix, json, done, confirmText) {
    if (confirmText && !(await IS.confirm(confirmText[0], confirmText[1], confirmText[0].replace("?", ""), "warn"))) return;
    try {
      await IS.api(path(suffix), { json });
      IS.toast(done, "ok");
    } catch (err) { IS.toast(err.message, "error", 8000); }
    load();
  }

  IS.ready(() => {
    const params = new URLSearchParams(location.search);
    if (params.get("model")) $("#model").value = params.get("model");
    $("#model").addEventListener("change", load);
    $("#canary-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      act("/canary", { version: $("#canary-version").value.trim(), weight: num($("#canary-weight").value), reason: "canary from the dashboard" }, "canary started");
    });
    $("#shadow-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      act("/shadow", { version: $("#shadow-version").value.trim(), share: num($("#shadow-share").value), reason: "shadow from the dashboard" }, "shadow started");
    });
    $("#canary-promote").addEventListener("click", () => act("/canary/promote", {}, "canary promoted", ["Promote the canary?", "It becomes production for every request."]));
    $("#canary-abort").addEventListener("click", () => act("/canary/abort", {}, "canary aborted", ["Abort the canary?", "Production answers every request again."]));
    $("#shadow-stop").addEventListener("click", () => act("/shadow/stop", {}, "shadow stopped"));
    IS.poll(load, 5000);
  });
})();
