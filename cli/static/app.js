// ecgcore screening page: upload -> POST /api/v1/analyze -> render the JSON. No build step, no dependencies.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const API = "/api/v1";
  let maxBytes = null;
  let clinicalCols = [];  // the model's clinical variables (from /health), asked for with each upload

  function message(text, kind) {
    const m = $("message");
    m.textContent = text;
    m.className = kind || "";
  }

  function fmt(v) {
    if (v === null || v === undefined) return null;
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) < 10 ? 2 : 1);
    if (typeof v === "boolean") return v ? "yes" : "no";
    return String(v);
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function showMeasurements(m) {
    const body = $("measurements").querySelector("tbody");
    body.textContent = "";
    $("measure-error").hidden = true;
    if (!m || !m.values) {
      $("measure-error").textContent = (m && m.error) || "no measurements";
      $("measure-error").hidden = false;
      return;
    }
    const reasons = m.reasons || {};
    for (const [key, value] of Object.entries(m.values)) {
      if (value !== null && typeof value === "object") continue;
      const row = document.createElement("tr");
      cell(row, key.replace(/_/g, " "));
      const shown = fmt(value);
      cell(row, shown === null || shown === "" ? "—" : shown, shown === null ? "na" : "num");
      cell(row, reasons[key] || "", "na");
      body.appendChild(row);
    }
  }

  function showPredictions(data) {
    const body = $("predictions").querySelector("tbody");
    body.textContent = "";
    $("heat-fig").hidden = true;
    const p = data.predictions;
    if (!p) {
      $("no-model").textContent = data.prediction_error ? ("No prediction: " + data.prediction_error)
        : "No model is loaded (start the server with --model DIR).";
      return;
    }
    $("no-model").textContent = "";
    for (const [task, r] of Object.entries(p)) {
      const row = document.createElement("tr");
      cell(row, task);
      if ("value" in r) { cell(row, fmt(r.value), "num"); cell(row, ""); }
      else {
        cell(row, r.prediction === 1 ? "positive" : (r.prediction === 0 ? "negative" : String(r.prediction)),
             r.prediction === 1 ? "pos" : "");
        const probs = r.probability || {};
        const pos = "positive" in probs ? probs.positive : null;
        cell(row, pos !== null ? (100 * pos).toFixed(1) + " %" :
             Object.entries(probs).map(([k, v]) => k + " " + (100 * v).toFixed(1) + "%").join(", "), "num");
      }
      body.appendChild(row);
    }
    if (data.links && data.links.heatmap) {
      $("heatmap").src = data.links.heatmap;
      $("heat-cap").textContent = "Grad-CAM++ heat map for " + (data.explained_task || "the first task") +
        " (positive class).";
      $("heat-fig").hidden = false;
    }
  }

  function show(data) {
    const r = data.record;
    $("record-title").textContent = (r.digitized ? "Digitised " : "") + r.format + " record";
    $("record-line").textContent = r.n_leads + " leads (" + r.leads.join(", ") + "), " + r.fs + " Hz, " +
      r.duration_s + " s";
    const flagged = Object.entries(data.quality.lead_flags || {}).filter(([, f]) => f.length);
    $("quality-line").textContent = flagged.length ? "Quality flags: " +
      flagged.map(([l, f]) => l + ": " + f.join("/")).join("; ") : "Quality: no lead flagged.";
    if (data.links && data.links.ecg) $("ecg").src = data.links.ecg;
    showMeasurements(data.measurements);
    showPredictions(data);
    $("result").hidden = false;
  }

  // a multi-record file (CODE-15% HDF5): the server answers 422 with the record ids; the page offers
  // them and sends the same file again with ?record=ID
  let pickerFile = null;

  function showPicker(file, data) {
    pickerFile = file;
    const sel = $("record-select");
    sel.textContent = "";
    for (const id of data.records) {
      const o = document.createElement("option");
      o.value = String(id);
      o.textContent = String(id);
      sel.appendChild(o);
    }
    $("record-id").value = "";
    const n = data.n_records || data.records.length;
    $("picker-line").textContent = file.name + " holds " + n + " records" +
      (n > data.records.length ? " (the first " + data.records.length + " are listed; type any other exam id)" : "") +
      ": choose one to analyse.";
    $("picker").hidden = false;
  }

  function recordUrl(record) {
    return API + "/analyze" + (record === null || record === undefined ? "" :
      "?record=" + encodeURIComponent(String(record)));
  }

  $("record-go").addEventListener("click", () => {
    const typed = $("record-id").value.trim();
    const record = typed !== "" ? typed : $("record-select").value;
    if (pickerFile && record !== "") upload(pickerFile, record);
  });

  async function upload(file, record) {
    if (!file) return;
    if (record === undefined) { pickerFile = null; $("picker").hidden = true; }
    if (maxBytes !== null && file.size > maxBytes) {
      message("Rejected: " + file.name + " is larger than the limit of " + (maxBytes / 1048576).toFixed(0) +
              " MB.", "error");
      return;
    }
    message("Analysing " + file.name + (record !== undefined ? " (record " + record + ")" : "") + " …", "busy");
    $("result").hidden = true;
    const form = new FormData();
    form.append("file", file);
    if (clinicalCols.length) {
      const values = {};
      clinicalCols.forEach((c) => {
        const v = $("clin-" + c).value.trim();
        values[c] = v === "" ? null : Number(v);
      });
      form.append("clinical", JSON.stringify(values));
    }
    let resp, data;
    try {
      resp = await fetch(recordUrl(record), { method: "POST", body: form });
      data = await resp.json().catch(() => ({}));
    } catch (err) {
      message("The server could not be reached: " + err, "error");
      return;
    }
    if (!resp.ok) {
      const why = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail || data);
      message("Rejected (" + resp.status + "): " + why, "error");
      if (resp.status === 422 && Array.isArray(data.records) && data.records.length) showPicker(file, data);
      return;
    }
    $("picker").hidden = true;
    show(data);
    message("Analysed " + file.name + (record !== undefined ? " (record " + record + ")" : "") + ".", "ok");
  }

  const drop = $("drop");
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault(); drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault(); drop.classList.remove("over");
  }));
  drop.addEventListener("drop", (e) => upload(e.dataTransfer.files[0]));
  $("file").addEventListener("change", (e) => { upload(e.target.files[0]); e.target.value = ""; });

  fetch(API + "/health").then((r) => r.json()).then((h) => {
    maxBytes = h.limits ? h.limits.max_upload_bytes : null;
    if (maxBytes) $("limit").textContent = "Up to " + (maxBytes / 1048576).toFixed(0) + " MB.";
    $("model-info").textContent = h.model ? ("Model: " + h.model.model + " (" +
      h.model.tasks.map((t) => t.name).join(", ") + ")") : "No prediction model loaded.";
    clinicalCols = (h.model && Array.isArray(h.model.clinical)) ? h.model.clinical : [];
    const box = $("clinical-fields");
    clinicalCols.forEach((c) => {
      const label = document.createElement("label");
      label.textContent = c + " ";
      const input = document.createElement("input");
      input.type = "number"; input.step = "any"; input.id = "clin-" + c;
      label.appendChild(input);
      box.appendChild(label);
    });
    $("clinical").hidden = clinicalCols.length === 0;
  }).catch(() => {});
})();
