/* Try it: send an image to the live service (proxied by the admin runner) and explain it with Grad-CAM. */
"use strict";
(() => {
  const IS = window.imgserve;
  const { el, $, fmt } = IS;
  let model = document.body.dataset.defaultModel;
  let versions = []; // from /models/{name}/overview
  let file = null;

  async function loadServed() {
    try {
      const m = await IS.api("/serving/model");
      model = m.name || (m.model && m.model.name) || model;
      $("#try-served").textContent = `live service: ${model} v${m.version ?? "?"}${m.variant ? " (" + m.variant + ")" : ""}`;
      return m;
    } catch (err) {
      $("#try-served").textContent = "live service: " + err.message;
      return null;
    }
  }

  async function loadVersions(prefer) {
    try {
      const o = await IS.api(`/models/${encodeURIComponent(model)}/overview`);
      versions = o.versions;
      const sel = IS.clear($("#cam-version"));
      const prod = o.aliases.production;
      for (const v of [...versions].reverse()) {
        const tags = [Number(prod) === v.version ? "production" : "", v.has_keras ? "" : "no model.keras"].filter(Boolean).join(", ");
        sel.append(el("option", { value: String(v.version) }, `v${v.version}${tags ? " — " + tags : ""}`));
      }
      sel.value = String(prefer ?? prod ?? versions[versions.length - 1].version);
      fillClasses();
      updateMissing();
    } catch (err) {
      IS.setError($("#cam-missing"), err);
    }
  }

  const current = () => versions.find((v) => String(v.version) === $("#cam-version").value);

  function fillClasses() {
    const v = current();
    const sel = IS.clear($("#cam-class"));
    sel.append(el("option", { value: "" }, "top prediction"));
    if (v) v.labels.forEach((l, i) => sel.append(el("option", { value: String(i) }, l)));
  }

  function updateMissing() {
    const v = current();
    const missing = $("#cam-missing");
    if (v && !v.has_keras) {
      missing.textContent = `Version ${v.version} has no model.keras, so there is nothing to compute Grad-CAM from ` +
        "(it was registered with ONNX files only). Pick a version that was trained here.";
      missing.className = "callout warn";
      IS.show(missing);
      IS.show($("#cam-result"), false);
    } else {
      IS.show(missing, false);
    }
    $("#cam-run").disabled = !file || !v || !v.has_keras;
  }

  async function onFile(f) {
    if (!f.type.startsWith("image/") && !/\.(png|jpe?g|webp|bmp|gif|tiff?)$/i.test(f.name)) {
      IS.toast(`${f.name} does not look like an image`, "error");
      return;
    }
    file = f;
    const img = $("#try-preview");
    img.src = URL.createObjectURL(f);
    IS.show(img);
    await predict();
    updateMissing();
    if (!$("#cam-run").disabled) explain();
  }

  async function predict() {
    IS.setError($("#try-error"), null);
    const form = new FormData();
    form.append("image", file, file.name || "image");
    form.append("top_k", $("#try-topk").value);
    try {
      const r = await IS.api("/serving/predict", { form });
      renderPrediction(r);
      const served = r.model && r.model.version;
      if (served != null && String(served) !== $("#cam-version").value && versions.some((v) => v.version === Number(served))) {
        $("#cam-version").value = String(served);
        fillClasses();
      }
    } catch (err) {
      IS.setError($("#try-error"), err);
      IS.show($("#try-result"), false);
    }
  }

  function renderPrediction(r) {
    IS.show($("#try-empty"), false);
    IS.show($("#try-result"));
    const top = r.top_k || r.topk || r.predictions || [];
    $("#try-label").textContent = r.label ?? (top[0] && top[0].label) ?? "?";
    $("#try-score").textContent = fmt.pct(r.score ?? (top[0] && top[0].score), 1);
    const m = r.model || {};
    $("#try-model").textContent = `${m.name || model} v${m.version ?? "?"}${m.variant ? " · " + m.variant : ""}` +
      (r.round_trip_ms != null ? ` · ${fmt.ms(r.round_trip_ms)} ms via the admin runner` : "");
    const list = IS.clear($("#try-topk-list"));
    for (const t of top) {
      const bar = el("span", { class: "bar-fill" });
      list.append(el("li", {}, el("span", { class: "bar-label" }, t.label), el("span", { class: "bar-track" }, bar),
        el("span", { class: "bar-value" }, fmt.pct(t.score, 1))));
      requestAnimationFrame(() => { bar.style.width = (100 * t.score).toFixed(1) + "%"; });
    }
  }

  async function explain() {
    const v = current();
    if (!file || !v) return;
    const status = $("#cam-status");
    status.textContent = "Computing Grad-CAM… (the first run starts TensorFlow in a worker process, which takes a few seconds)";
    IS.show(status);
    $("#cam-run").disabled = true;
    const form = new FormData();
    form.append("image", file, file.name || "image");
    if ($("#cam-class").value !== "") form.append("class_index", $("#cam-class").value);
    try {
      const r = await IS.api(`/models/${encodeURIComponent(model)}/versions/${v.version}/gradcam`, { form });
      $("#cam-original").src = r.original;
      $("#cam-overlay").src = r.overlay;
      $("#cam-caption").textContent = `v${r.version}: ${r.label} (${fmt.pct(r.score, 1)} by the Keras model) · ${r.method === "hirescam" ? "HiResCAM" : "Grad-CAM"} on layer ${r.layer} · ${fmt.num(r.seconds, 2)} s`;
      IS.show($("#cam-result"));
      IS.show(status, false);
    } catch (err) {
      if (err.type === "keras_model_missing") {
        IS.setError($("#cam-missing"), err);
        $("#cam-missing").className = "callout warn";
        IS.show(status, false);
      } else {
        status.textContent = "Grad-CAM failed: " + err.message;
      }
      IS.show($("#cam-result"), false);
    } finally {
      updateMissing();
    }
  }

  IS.ready(async () => {
    IS.dropzone($("#try-drop"), $("#try-file"), onFile);
    $("#cam-version").addEventListener("change", () => { fillClasses(); updateMissing(); if (!$("#cam-run").disabled) explain(); });
    $("#cam-class").addEventListener("change", () => { if (!$("#cam-run").disabled) explain(); });
    $("#cam-run").addEventListener("click", explain);
    $("#try-topk").addEventListener("change", () => { if (file) predict(); });
    const served = await loadServed();
    await loadVersions(served && served.version);
  });
})();
