/* Serving page: live figures from the inference service's /metrics, summarised by the admin runner. */
"use strict";
(() => {
  const IS = window.imgserve;
  const { el, $, fmt } = IS;
  const MAX_POINTS = 150;
  const series = []; // {t, rps, p50, p99}
  let paused = false;

  const clock = (t) => new Date(t).toTimeString().slice(0, 8);

  async function refresh() {
    if (paused) return;
    let s;
    try {
      s = await IS.api(`/serving/metrics?window=${$("#window").value}`);
    } catch (err) {
      IS.setError($("#serving-error"), err);
      document.querySelectorAll(".kpi-value").forEach((n) => { n.textContent = "–"; });
      $("#served-model").textContent = "";
      return;
    }
    IS.setError($("#serving-error"), null);
    const win = s.latency && s.latency.window;
    const life = s.latency && s.latency.lifetime;
    const lat = win || life;
    $("#kpi-rps").textContent = fmt.num(s.throughput_rps, s.throughput_rps >= 100 ? 0 : 1);
    $("#kpi-p50").textContent = fmt.ms(lat && lat.p50_ms);
    $("#kpi-p99").textContent = fmt.ms(lat && lat.p99_ms);
    ["#kpi-p50", "#kpi-p99"].forEach((id) => { $(id).title = win ? "in the window" : "since the service started (no requests in the window)"; });
    $("#kpi-queue").textContent = s.queue_depth == null ? "–" : fmt.int(s.queue_depth);
    $("#kpi-inflight").textContent = s.in_flight == null ? "–" : fmt.int(s.in_flight);
    const errWin = s.errors.reduce((a, e) => a + e.window, 0);
    $("#kpi-errors").textContent = s.error_rate == null ? (errWin ? fmt.int(errWin) : "0") : (100 * s.error_rate).toFixed(1);
    $("#kpi-errors-unit").textContent = s.error_rate == null ? "errors in the window" : `% of requests (${fmt.int(errWin)})`;
    $("#served-model").textContent = s.models.length
      ? "serving " + s.models.map((m) => `${m.model || m.name || "?"} v${m.version}${m.variant ? " (" + m.variant + ")" : ""}`).join(", ")
      : "";

    series.push({ t: Date.now(), rps: s.throughput_rps, p50: win ? win.p50_ms : null, p99: win ? win.p99_ms : null });
    while (series.length > MAX_POINTS) series.shift();
    IS.lineChart($("#chart-rps"), {
      series: [{ name: "requests/s", color: IS.palette[0], points: series.map((p) => ({ x: p.t, y: p.rps })) }],
      yMin: 0, timeAxis: true, xFormat: clock, yFormat: (y) => fmt.num(y, y < 10 ? 1 : 0), empty: "waiting for the first window…",
    });
    IS.lineChart($("#chart-latency"), {
      series: [
        { name: "p50 ms", color: IS.palette[2], points: series.map((p) => ({ x: p.t, y: p.p50 })) },
        { name: "p99 ms", color: IS.palette[3], points: series.map((p) => ({ x: p.t, y: p.p99 })) },
      ],
      yMin: 0, timeAxis: true, xFormat: clock, yFormat: (y) => (y >= 10 ? y.toFixed(0) : y.toFixed(1)), empty: "no requests in the window",
    });

    const b = s.batch_size;
    if (b) {
      const useWin = b.batches_window > 0;
      IS.barChart($("#chart-batch"), {
        bars: b.buckets.map((x) => ({ label: x.label, value: useWin ? x.window : x.total, title: `${x.label} rows: ${fmt.int(useWin ? x.window : x.total)} batches` })),
        color: IS.palette[4], yFormat: (v) => fmt.int(v), empty: "no batches yet",
      });
      $("#batch-note").textContent = useWin
        ? `${fmt.int(b.batches_window)} batches in the window, mean ${fmt.num(b.mean_window, 2)} rows`
        : b.batches_total ? `no batches in the window; showing all ${fmt.int(b.batches_total)} since start (mean ${fmt.num(b.mean_lifetime, 2)} rows)` : "";
    } else {
      IS.barChart($("#chart-batch"), { bars: [], empty: "the service exports no batch-size histogram" });
    }

    const et = IS.clear($("#errors tbody"));
    if (!s.errors.length) et.append(el("tr", {}, el("td", { colspan: 3, class: "muted" }, "no errors")));
    for (const e of s.errors) et.append(el("tr", { dataset: { code: e.code } }, el("td", {}, el("span", { class: "badge err" }, e.code)),
      el("td", { class: "num" }, fmt.int(e.window)), el("td", { class: "num" }, fmt.int(e.total))));
    const ep = IS.clear($("#endpoints tbody"));
    if (!s.by_endpoint.length) ep.append(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "no requests yet")));
    for (const e of s.by_endpoint) ep.append(el("tr", {}, el("td", {}, el("code", {}, e.endpoint)),
      el("td", { class: "num" }, fmt.num(e.rps, 1)), el("td", { class: "num" }, fmt.int(e.total)), el("td", { class: "num" }, fmt.int(e.errors_total))));

    const src = Object.entries(s.sources).filter(([, v]) => v).map(([k, v]) => `${k}: ${v}`).join(" · ");
    $("#sources").textContent = `From ${s.service_url}/metrics, window ${fmt.num(s.window_seconds, 1)} s — ${src || "no known metrics found"}`;
  }

  IS.ready(() => {
    $("#pause").addEventListener("click", () => {
      paused = !paused;
      $("#pause").textContent = paused ? "Resume" : "Pause";
    });
    $("#window").addEventListener("change", () => { series.length = 0; refresh(); });
    IS.poll(refresh, 2000);
  });
})();
