/* Models page: versions with metrics, production/previous, promote and roll back, confusion matrices. */
"use strict";
(() => {
  const IS = window.imgserve;
  const { el, $, fmt } = IS;
  const params = new URLSearchParams(location.search);
  let model = params.get("model") || document.body.dataset.defaultModel;
  let data = null;
  let opened = null; // versions whose details are open; null = not chosen yet (open production)
  const confusionCache = new Map();

  async function load() {
    try {
      data = await IS.api(`/models/${encodeURIComponent(model)}/overview`);
    } catch (err) {
      if (err.status === 404) {
        const models = await IS.api("/models");
        const other = models.find((m) => m.versions.length && m.name !== model);
        if (other) { model = other.name; return load(); }
        IS.setError($("#models-error"), new Error(`No model has any registered version yet (looked for “${model}”).`));
        return;
      }
      IS.setError($("#models-error"), err);
      return;
    }
    IS.setError($("#models-error"), null);
    if (opened === null) opened = new Set(data.aliases.production != null ? [Number(data.aliases.production)] : []);
    render();
  }

  function render() {
    const select = IS.clear($("#model-select"));
    for (const name of data.models) select.append(el("option", { value: name, selected: name === data.name }, name));

    const summary = IS.clear($("#alias-summary"));
    const prod = data.aliases.production, prev = data.aliases.previous;
    summary.append(
      el("span", { class: "badge production", id: "production-badge" }, "production ", prod != null ? "v" + prod : "none"),
      prev != null ? el("span", { class: "badge previous" }, "previous v" + prev) : "",
    );
    const rb = $("#rollback");
    rb.disabled = prev == null;
    rb.textContent = prev != null ? `Roll back to v${prev}` : "Roll back";

    const versions = data.versions;
    IS.lineChart($("#accuracy-chart"), {
      series: [
        { name: "fp32", color: IS.palette[0], points: versions.map((v) => ({ x: v.version, y: v.accuracy.fp32 })) },
        { name: "int8", color: IS.palette[1], points: versions.map((v) => ({ x: v.version, y: v.accuracy.int8 })), dashed: true },
      ],
      xTicks: versions.map((v) => v.version),
      xFormat: (x) => "v" + x,
      yFormat: (y) => (100 * y).toFixed(1) + "%",
      marks: prod != null ? [{ x: Number(prod), label: "production" }] : [],
      empty: "no accuracy recorded in these versions' metadata",
    });

    const tbody = IS.clear($("#versions tbody"));
    for (const v of [...versions].reverse()) {
      const isProd = prod != null && Number(prod) === v.version;
      const open = opened.has(v.version);
      const row = el("tr", { id: `version-${v.version}`, class: isProd ? "is-production" : "", dataset: { version: v.version } },
        el("td", {}, el("strong", {}, "v" + v.version)),
        el("td", { title: v.created_at || "" }, fmt.when(v.created_at)),
        el("td", {}, v.architecture || "–"),
        el("td", {}, v.parent_version != null ? "v" + v.parent_version : "–"),
        el("td", { class: "num" }, fmt.pct(v.accuracy.fp32)),
        el("td", { class: "num" }, fmt.pct(v.accuracy.int8)),
        el("td", {}, v.aliases.map((a) => el("span", { class: "badge " + a }, a))),
        el("td", { class: "actions" },
          el("button", { type: "button", class: "ghost small", "aria-expanded": String(open), on: { click: () => toggle(v.version) } },
            open ? "Hide details" : "Details"),
          isProd ? "" : el("button", { type: "button", class: "small promote", on: { click: () => promote(v.version) } }, "Promote"),
        ),
      );
      tbody.append(row);
      if (open) tbody.append(detailRow(v));
    }

    const hist = IS.clear($("#history tbody"));
    if (!data.history.length) hist.append(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "no alias changes yet")));
    for (const h of data.history.slice(0, 12)) {
      hist.append(el("tr", {}, el("td", { title: h.at }, fmt.when(h.at)), el("td", {}, h.action), el("td", {}, "v" + h.version), el("td", {}, h.reason || "")));
    }
  }

  function detailRow(v) {
    const perClass = v.per_class || [];
    const cols = ["accuracy", "precision", "recall", "f1", "fp32", "int8"].filter((c) => perClass.some((r) => typeof r[c] === "number"));
    const barCol = cols.includes("recall") ? "recall" : cols[0];
    const table = perClass.length
      ? el("table", { class: "table compact per-class" },
        el("thead", {}, el("tr", {}, el("th", {}, "Class"), cols.map((c) => el("th", { class: "num" }, c === "recall" ? "recall (accuracy)" : c)),
          perClass.some((r) => typeof r.support === "number") ? el("th", { class: "num" }, "support") : "")),
        el("tbody", {}, perClass.map((r) => el("tr", {},
          el("td", {}, r.label),
          cols.map((c) => el("td", { class: "num" + (c === barCol ? " with-bar" : "") },
            c === barCol && typeof r[c] === "number" ? el("span", { class: "cellbar", dataset: { w: r[c] } }) : "",
            el("span", { class: "cellval" }, fmt.pct(r[c], 1)))),
          typeof r.support === "number" ? el("td", { class: "num" }, fmt.int(r.support)) : "",
        ))))
      : el("p", { class: "muted" }, "No per-class metrics in this version's metadata.");

    const img = el("img", { class: "confusion", alt: `confusion matrix of v${v.version}`, id: `confusion-${v.version}` });
    const cm = v.confusion
      ? el("figure", {}, img, el("figcaption", { class: "muted small" }, v.confusion === "png" ? "from training's evaluation" : "drawn from the metadata"))
      : el("p", { class: "muted" }, "No confusion matrix recorded for this version.");
    if (v.confusion) loadConfusion(v.version, img);

    const decision = v.promotion ? promotionView(v.promotion) : null;
    const facts = el("dl", { class: "facts" },
      el("dt", {}, "Input"), el("dd", {}, `${v.input.width}×${v.input.height}×${v.input.channels}`),
      el("dt", {}, "Classes"), el("dd", {}, String(v.labels.length)),
      el("dt", {}, "Folder names"), el("dd", { class: "label-folders" }, (v.label_folders || []).join(", ")),
      el("dt", {}, "Keras model"), el("dd", { class: v.has_keras ? "ok" : "muted" }, v.has_keras ? "model.keras present (Grad-CAM available)" : "none (ONNX only; no Grad-CAM)"),
      v.dataset && Object.keys(v.dataset).length ? [el("dt", {}, "Dataset"), el("dd", {}, compact(v.dataset))] : "",
      v.training && Object.keys(v.training).length ? [el("dt", {}, "Training"), el("dd", {}, compact(v.training))] : "",
      v.command ? [el("dt", {}, "Command"), el("dd", {}, el("code", {}, v.command))] : "",
    );
    const cell = el("td", { colspan: 8 }, el("div", { class: "details" },
      el("div", {}, decision || "", el("h3", {}, "Per class"), table),
      el("div", {}, el("h3", {}, "Confusion matrix"), cm, el("h3", {}, "About"), facts)));
    const tr = el("tr", { class: "detail", id: `details-${v.version}` }, cell);
    requestAnimationFrame(() => tr.querySelectorAll(".cellbar").forEach((b) => { b.style.width = (100 * Number(b.dataset.w)).toFixed(1) + "%"; }));
    return tr;
  }

  /* The promotion decision stored with a candidate (promotion.json): both accuracies on the same held-out
     images, per-class deltas, the held-out set's fingerprint, and any warning of a forced promotion. */
  function promotionView(d) {
    const rows = Object.entries(d.per_class || {});
    const delta = (x) => (typeof x === "number" ? (x > 0 ? "+" : "") + (100 * x).toFixed(1) + " pt" : "–");
    return el("div", { class: "promotion", id: `promotion-${d.candidate}` },
      el("h3", {}, "Promotion decision"),
      el("p", { class: "callout " + ((d.warnings || []).length ? "warn" : d.promote ? "ok" : "info") },
        el("strong", {}, d.promote ? "promoted" : "not promoted"), ` (policy ${d.policy}) — ${d.reason}`,
        ...(d.warnings || []).map((w) => el("span", { class: "decision-warning" }, " Warning: " + w))),
      el("p", { class: "small" },
        `candidate ${fmt.pct(d.candidate_accuracy)} vs production` + (d.production != null ? ` v${d.production}` : "") +
        ` ${fmt.pct(d.production_accuracy)} on ${d.heldout_images} held-out images (${d.variant}); ` +
        (d.comparable === false ? "not comparable; " : "") + "held-out set ",
        el("code", { title: d.heldout_fingerprint || "" }, (d.heldout_fingerprint || "–").slice(0, 12))),
      rows.length ? el("table", { class: "table compact per-class-delta" },
        el("thead", {}, el("tr", {}, el("th", {}, "Class"), el("th", { class: "num" }, "images"),
          el("th", { class: "num" }, "candidate"), el("th", { class: "num" }, "production"), el("th", { class: "num" }, "delta"))),
        el("tbody", {}, rows.map(([label, r]) => el("tr", {}, el("td", {}, label), el("td", { class: "num" }, fmt.int(r.images)),
          el("td", { class: "num" }, fmt.pct(r.candidate, 1)), el("td", { class: "num" }, fmt.pct(r.production, 1)),
          el("td", { class: "num " + (r.delta < 0 ? "neg" : r.delta > 0 ? "pos" : "") }, delta(r.delta)))))) : "");
  }

  function compact(obj) {
    return Object.entries(obj).filter(([, val]) => val !== null && typeof val !== "object").slice(0, 8)
      .map(([k, val]) => `${k}: ${val}`).join(" · ") || JSON.stringify(obj).slice(0, 200);
  }

  async function loadConfusion(version, img) {
    const key = `${data.name}/${version}`;
    try {
      if (!confusionCache.has(key)) confusionCache.set(key, await IS.imageURL(`/models/${encodeURIComponent(data.name)}/versions/${version}/confusion.png`));
      img.src = confusionCache.get(key);
    } catch (err) {
      img.replaceWith(el("p", { class: "error" }, err.message));
    }
  }

  function toggle(version) {
    if (opened.has(version)) opened.delete(version); else opened.add(version);
    render();
  }

  async function promote(version) {
    const prod = data.aliases.production;
    const ok = await IS.confirm(`Promote v${version} to production?`,
      `Production of “${data.name}” will point at v${version}` + (prod != null ? ` instead of v${prod} (which becomes “previous”).` : ".") +
      " The inference service picks it up within seconds.", `Promote v${version}`, "primary");
    if (!ok) return;
    try {
      const r = await IS.api(`/models/${encodeURIComponent(data.name)}/promote`, { json: { version, policy: "force", reason: "promoted from the dashboard" } });
      IS.toast(`v${r.aliases.production} is now production` + serviceNote(r.service), "ok");
    } catch (err) { IS.toast(err.message, "error", 8000); }
    load();
  }

  async function rollback() {
    const prod = data.aliases.production, prev = data.aliases.previous;
    if (prev == null) return;
    const ok = await IS.confirm(`Roll back “${data.name}” to v${prev}?`,
      `Production will point at v${prev} instead of v${prod}. The inference service reloads it within seconds.`, `Roll back to v${prev}`, "warn");
    if (!ok) return;
    try {
      const r = await IS.api(`/models/${encodeURIComponent(data.name)}/rollback`, { json: { reason: "rollback from the dashboard" } });
      IS.toast(`Rolled back: production is v${r.aliases.production}` + serviceNote(r.service), "ok");
    } catch (err) { IS.toast(err.message, "error", 8000); }
    load();
  }

  function serviceNote(s) {
    if (!s) return "";
    return s.notified ? " (service reloaded)" : ` (service not notified: ${s.reason || "HTTP " + s.status}; it polls the alias)`;
  }

  IS.ready(() => {
    $("#model-select").addEventListener("change", (e) => {
      model = e.target.value;
      opened = null;
      history.replaceState(null, "", "?model=" + encodeURIComponent(model));
      load();
    });
    $("#rollback").addEventListener("click", rollback);
    load();
    setInterval(() => { if (!document.hidden && !$("#confirm-dialog").open) load(); }, 15000);
  });
})();
