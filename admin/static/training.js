/* Training page: upload datasets, start retrain jobs, follow one job's progress, curves and log. */
"use strict";
(() => {
  const IS = window.imgserve;
  const { el, $, fmt } = IS;
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  let selected = null; // job id
  let jobs = [];
  let detailTimer = null;

  /* ---- datasets ---- */
  async function loadDatasets(selectId) {
    const datasets = await IS.api("/datasets");
    const tbody = IS.clear($("#datasets tbody"));
    if (!datasets.length) tbody.append(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "no datasets uploaded yet")));
    for (const d of [...datasets].reverse()) {
      const classes = Object.entries(d.classes).map(([k, n]) => `${k} (${n})`).join(", ");
      tbody.append(el("tr", { dataset: { id: d.id } }, el("td", {}, el("code", {}, d.id)), el("td", { class: "wrap" }, classes),
        el("td", { class: "num" }, fmt.int(d.num_images)), el("td", { title: d.created_at }, fmt.when(d.created_at))));
    }
    const sel = $("#job-datasets");
    const chosen = new Set([...sel.selectedOptions].map((o) => o.value));
    IS.clear(sel);
    [...datasets].reverse().forEach((d, i) => {
      const on = selectId ? d.id === selectId : chosen.size ? chosen.has(d.id) : i === 0;
      sel.append(el("option", { value: d.id, selected: on }, `${d.id} — ${Object.keys(d.classes).length} classes, ${d.num_images} images`));
    });
  }

  async function uploadZip(file) {
    const status = $("#upload-status"), bar = $("#upload-progress"), text = $("#upload-text");
    if (!/\.zip$/i.test(file.name)) { IS.toast(`${file.name} is not a .zip`, "error"); return; }
    IS.show(status);
    bar.value = 0;
    text.textContent = `uploading ${file.name}…`;
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      const ds = await IS.upload("/datasets", form, (f) => { bar.value = Math.round(100 * f); if (f >= 1) text.textContent = "validating images…"; });
      bar.value = 100;
      text.textContent = `uploaded ${ds.id}: ${ds.num_images} images in ${Object.keys(ds.classes).length} classes`;
      text.className = "ok";
      IS.toast(`Dataset ${ds.id} uploaded`, "ok");
      await loadDatasets(ds.id);
    } catch (err) {
      text.textContent = "upload refused: " + err.message;
      text.className = "error";
    }
  }

  /* ---- base versions: warm start needs the version's model.keras ---- */
  async function loadVersions() {
    const sel = $("#job-base");
    const name = $("#job-model").value.trim();
    const keep = sel.value;
    IS.clear(sel);
    let usable = false;
    try {
      const o = await IS.api(`/models/${encodeURIComponent(name)}/overview`);
      const prod = o.aliases.production != null ? Number(o.aliases.production) : null;
      const prodV = o.versions.find((v) => v.version === prod);
      if (prodV) {
        usable = prodV.has_keras;
        sel.append(el("option", { value: "production", disabled: !prodV.has_keras },
          `production (v${prod})` + (prodV.has_keras ? "" : " — no model.keras to start from")));
      }
      for (const v of [...o.versions].reverse()) {
        sel.append(el("option", { value: String(v.version), disabled: !v.has_keras }, `v${v.version}` + (v.has_keras ? "" : " — no model.keras")));
      }
    } catch (err) {
      if (err.status !== 404) IS.toast(err.message, "error");
    }
    sel.append(el("option", { value: "scratch" }, "nothing (train from scratch)"));
    const keepOpt = [...sel.options].find((o) => o.value === keep && !o.disabled);
    sel.value = keepOpt ? keep : usable ? "production" : "scratch";
  }

  async function startJob(e) {
    e.preventDefault();
    const err = $("#job-error");
    IS.setError(err, null);
    const datasets = [...$("#job-datasets").selectedOptions].map((o) => o.value);
    if (!datasets.length) return IS.setError(err, new Error("Choose at least one dataset (upload one first)."));
    const body = {
      model: $("#job-model").value.trim(),
      datasets,
      architecture: $("#job-arch").value,
      epochs: Number($("#job-epochs").value),
      base_version: $("#job-base").value,
      promote: $("#job-promote").value,
    };
    $("#job-start").disabled = true;
    try {
      const job = await IS.api("/jobs", { json: body });
      IS.toast(`Job ${job.id} queued`, "ok");
      selected = job.id;
      await loadJobs();
      watch(job.id);
    } catch (e2) {
      IS.setError(err, e2);
    } finally {
      $("#job-start").disabled = false;
    }
  }

  /* ---- jobs ---- */
  function outcome(j) {
    if (j.state === "succeeded") {
      const r = j.result || {};
      const v = r.version ?? r.candidate_version ?? r.registered_version ?? (r.decision && r.decision.candidate);
      const d = r.decision || {};
      return (v != null ? `v${v} registered` : "done") + (d.promote === undefined ? "" : d.promote ? ", promoted" : ", not promoted") +
        (d.comparable === false ? " (not comparable with production)" : "") + ((d.warnings || []).length ? " ⚠" : "");
    }
    if (j.state === "failed" || j.state === "cancelled") return j.error || j.state;
    return "";
  }

  async function loadJobs() {
    jobs = await IS.api("/jobs");
    const tbody = IS.clear($("#jobs tbody"));
    if (!jobs.length) tbody.append(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "no jobs yet")));
    for (const j of [...jobs].reverse()) {
      tbody.append(el("tr", { id: "job-" + j.id, class: j.id === selected ? "selected" : "", on: { click: () => watch(j.id) } },
        el("td", {}, el("code", {}, j.id)), el("td", {}, el("span", { class: "badge state-" + j.state }, j.state)),
        el("td", { title: j.created_at }, fmt.when(j.created_at)), el("td", { class: "wrap" }, j.params.datasets.join(", ")),
        el("td", {}, j.params.architecture), el("td", { class: "num" }, String(j.params.epochs)), el("td", { class: "wrap" }, outcome(j))));
    }
    if (!selected && jobs.length) {
      const running = [...jobs].reverse().find((j) => !TERMINAL.has(j.state));
      watch((running || jobs[jobs.length - 1]).id);
    }
  }

  function watch(id) {
    selected = id;
    document.querySelectorAll("#jobs tbody tr").forEach((tr) => tr.classList.toggle("selected", tr.id === "job-" + id));
    if (detailTimer) detailTimer.stop();
    detailTimer = IS.poll(async () => {
      const job = await IS.api(`/jobs/${id}?log_lines=80`);
      if (selected !== id) return;
      renderJob(job);
      if (TERMINAL.has(job.state)) { detailTimer.stop(); loadJobs(); loadVersions(); }
    }, 1200);
  }

  function flat(line) {
    const out = {};
    for (const [k, v] of Object.entries(line)) if (typeof v === "number") out[k] = v;
    if (line.metrics && typeof line.metrics === "object") Object.assign(out, line.metrics);
    return out;
  }

  function renderJob(job) {
    IS.show($("#job-detail"));
    $("#jd-id").textContent = job.id;
    const st = $("#jd-state");
    st.textContent = job.state;
    st.className = "badge state-" + job.state;
    const epochs = (job.history || []).filter((l) => typeof l.epoch === "number");
    const last = epochs[epochs.length - 1];
    const total = (last && (last.epochs || last.total_epochs)) || job.params.epochs;
    const bar = $("#jd-progress");
    bar.max = total;
    bar.value = job.state === "succeeded" ? total : last ? last.epoch : 0;
    $("#jd-epoch").textContent = last ? `epoch ${last.epoch} / ${total}` : job.state === "queued" ? "waiting for a free slot" : "starting…";
    const tail = (job.history || [])[job.history.length - 1] || {};
    const stage = tail.stage || tail.phase || (tail.event && tail.event !== "epoch" ? tail.event : "") || tail.message || "";
    $("#jd-stage").textContent = TERMINAL.has(job.state) ? "" : stage ? "· " + stage : "";

    const keys = new Set();
    epochs.forEach((l) => Object.keys(flat(l)).forEach((k) => keys.add(k)));
    const series = (pred) => [...keys].filter(pred).sort().map((k, i) => ({
      name: k, color: IS.palette[i % IS.palette.length], dashed: k.startsWith("val_"),
      points: epochs.map((l) => ({ x: l.epoch, y: flat(l)[k] })),
    }));
    const xFormat = (x) => String(x);
    IS.lineChart($("#jd-loss"), { series: series((k) => k.includes("loss")), xFormat, integerX: true, yFormat: (y) => y.toFixed(2), empty: "no epoch finished yet" });
    IS.lineChart($("#jd-acc"), { series: series((k) => k.includes("acc")), xFormat, integerX: true, yFormat: (y) => (100 * y).toFixed(0) + "%", empty: "no epoch finished yet" });

    const out = $("#jd-outcome");
    const text = outcome(job);
    const reason = job.result && job.result.decision && job.result.decision.reason;
    const warnings = (job.result && job.result.decision && job.result.decision.warnings) || [];
    out.textContent = text + (reason ? ` — ${reason}` : "");
    if (warnings.length) out.append(el("strong", { class: "job-warning" }, " Warning: " + warnings.join("; ")));
    out.className = "callout " + (warnings.length ? "warn" : job.state === "succeeded" ? "ok" : job.state === "failed" ? "error" : "info");
    IS.show(out, TERMINAL.has(job.state));

    const log = $("#jd-log");
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 30;
    log.textContent = (job.log_tail || []).join("\n") || "(no output yet)";
    if (atBottom) log.scrollTop = log.scrollHeight;

    const cancel = $("#jd-cancel");
    IS.show(cancel, !TERMINAL.has(job.state));
    cancel.onclick = async () => {
      if (!(await IS.confirm(`Cancel job ${job.id}?`, "The training process is stopped; nothing is registered and production stays as it is.", "Cancel job"))) return;
      try {
        const r = await IS.api(`/jobs/${job.id}`, { method: "DELETE" });
        IS.toast(`Job ${job.id}: ${r.state}`, "ok");
      } catch (err) { IS.toast(err.message, "error"); }
      watch(job.id);
      loadJobs();
    };
  }

  IS.ready(async () => {
    IS.dropzone($("#dropzone"), $("#dataset-file"), uploadZip);
    $("#job-form").addEventListener("submit", startJob);
    $("#job-model").addEventListener("change", loadVersions);
    await Promise.all([loadDatasets(), loadVersions(), loadJobs()]);
    setTimeout(() => IS.poll(() => loadJobs(), 3000), 3000);
  });
})();
