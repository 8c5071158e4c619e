// Penguin12 web page: upload (with progress), follow the job live (Server-Sent Events, falling back
// to long-poll), show the verdict, keep a short history in localStorage. No build step, no
// third-party code, no request to anything but this service and the status_url it hands out.
"use strict";

(() => {
  const SUBMIT_URL = "/v1/infer";
  const HISTORY_KEY = "penguin12.history";
  const API_KEY_KEY = "penguin12.apiKey";
  const HISTORY_MAX = 20;
  const TERMINAL = new Set(["COMPLETED", "FAILED"]);
  const STEPS = ["UPLOAD", "PENDING", "PROCESSING_FEATURES", "CLASSIFYING", "DONE"];
  const STATUS_WORDS = {
    UPLOADING: "Uploading…",
    PENDING: "Queued",
    PROCESSING_FEATURES: "Extracting features",
    CLASSIFYING: "Classifying",
    COMPLETED: "Done",
    FAILED: "Failed",
  };

  const $ = (id) => document.getElementById(id);
  const el = {
    dropzone: $("dropzone"), fileInput: $("file-input"), urlForm: $("url-form"), urlInput: $("url-input"),
    apiKey: $("api-key"), jobCard: $("job-card"), preview: $("preview"), fileName: $("file-name"),
    progressWrap: $("progress-wrap"), progressFill: $("progress-fill"), progressText: $("progress-text"),
    requestId: $("request-id"), steps: $("steps"), status: $("status"), via: $("via"), verdict: $("verdict"),
    demoBadge: $("demo-badge"), prediction: $("prediction"), confidence: $("confidence"),
    fakeMeter: $("fake-meter"), fakeProbability: $("fake-probability"), modelName: $("model-name"),
    modelVersion: $("model-version"), modelArch: $("model-arch"), error: $("error"),
    assessment: $("assessment"), modelLicense: $("model-license"), modelCaveat: $("model-caveat"),
    history: $("history"), historyEmpty: $("history-empty"), clearHistory: $("clear-history"),
  };

  // Each submission gets a token; updates for an older one are ignored.
  let current = null;

  // ------------------------------------------------------------------ settings

  el.apiKey.value = localStorage.getItem(API_KEY_KEY) || "";
  el.apiKey.addEventListener("change", () => localStorage.setItem(API_KEY_KEY, el.apiKey.value.trim()));
  const apiKey = () => el.apiKey.value.trim();
  const authHeaders = () => (apiKey() ? { "X-API-Key": apiKey() } : {});

  // ------------------------------------------------------------------ input

  el.dropzone.addEventListener("click", () => el.fileInput.click());
  el.dropzone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); el.fileInput.click(); }
  });
  el.fileInput.addEventListener("change", () => {
    if (el.fileInput.files.length) submitFile(el.fileInput.files[0]);
    el.fileInput.value = "";
  });
  for (const type of ["dragenter", "dragover"]) {
    el.dropzone.addEventListener(type, (e) => { e.preventDefault(); el.dropzone.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    el.dropzone.addEventListener(type, (e) => { e.preventDefault(); el.dropzone.classList.remove("over"); });
  }
  el.dropzone.addEventListener("drop", (e) => {
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) submitFile(file);
  });
  // Dropping next to the zone must not navigate away from the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  el.urlForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const url = el.urlInput.value.trim();
    if (url) submitUrl(url);
  });
  el.clearHistory.addEventListener("click", () => { localStorage.removeItem(HISTORY_KEY); renderHistory(); });

  // ------------------------------------------------------------------ submitting

  function startJob(name, previewSrc) {
    if (current && current.close) current.close();
    current = { token: Symbol(name), name, entry: null, close: null };
    el.jobCard.classList.remove("hidden");
    el.fileName.textContent = name;
    el.preview.src = previewSrc || "";
    el.preview.classList.toggle("hidden", !previewSrc);
    el.requestId.textContent = "—";
    el.verdict.classList.add("hidden");
    el.error.classList.add("hidden");
    el.progressWrap.classList.remove("hidden");
    setProgress(0);
    setStatus("UPLOADING");
    return current;
  }

  function setProgress(fraction) {
    const pct = Math.round(Math.max(0, Math.min(1, fraction)) * 100);
    el.progressFill.style.width = pct + "%";
    el.progressText.textContent = pct + "%";
    el.progressWrap.dataset.progress = String(pct);
  }

  async function submitFile(file) {
    const job = startJob(file.name, URL.createObjectURL(file));
    const thumb = await thumbnail(file).catch(() => "");
    const form = new FormData();
    form.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", SUBMIT_URL);
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable && job === current) setProgress(e.loaded / e.total);
    });
    xhr.addEventListener("load", () => accepted(job, xhr.status, xhr.response, thumb));
    xhr.addEventListener("error", () => fail(job, "The upload failed: the service could not be reached."));
    xhr.send(form);
  }

  async function submitUrl(url) {
    const job = startJob(url, url);
    el.progressText.textContent = "fetching…";
    const form = new FormData();
    form.append("url", url);
    try {
      const response = await fetch(SUBMIT_URL, { method: "POST", body: form, headers: authHeaders() });
      const body = await response.json().catch(() => null);
      accepted(job, response.status, body, "");
    } catch (err) {
      fail(job, "The service could not be reached.");
    }
  }

  function accepted(job, status, body, thumb) {
    if (job !== current) return;
    if (status !== 202 || !body || !body.status_url) {
      const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail))
        : `The service answered ${status}.`;
      fail(job, detail);
      return;
    }
    setProgress(1);
    el.requestId.textContent = body.request_id;
    job.entry = {
      request_id: body.request_id, status_url: body.status_url, name: job.name, thumb,
      at: Date.now(), status: "PENDING",
    };
    saveEntry(job.entry);
    render({ status: "PENDING" });
    follow(job, body.status_url);
  }

  function fail(job, message) {
    if (job !== current) return;
    setStatus("FAILED");
    el.error.textContent = message;
    el.error.classList.remove("hidden");
  }

  // ------------------------------------------------------------------ following the job

  function follow(job, statusUrl) {
    if (window.EventSource && !apiKey()) {
      followEvents(job, statusUrl);
    } else {
      longPoll(job, statusUrl, null);
    }
  }

  // Server-Sent Events: the page's first choice (EventSource cannot send an API key header).
  function followEvents(job, statusUrl) {
    el.via.textContent = "(live)";
    const source = new EventSource(statusUrl + "/events");
    let last = null;
    job.close = () => source.close();
    source.addEventListener("status", (e) => {
      if (job !== current) { source.close(); return; }
      const state = JSON.parse(e.data);
      last = state.status;
      update(job, state);
      if (TERMINAL.has(state.status)) source.close();
    });
    source.addEventListener("error", () => {
      if (TERMINAL.has(last) || job !== current) return;
      source.close();
      longPoll(job, statusUrl, last);
    });
  }

  // Long-poll: each request returns as soon as the status moves on (or after `wait` seconds).
  async function longPoll(job, statusUrl, since) {
    el.via.textContent = "(long-poll)";
    let stopped = false;
    job.close = () => { stopped = true; };
    let failures = 0;
    while (!stopped && job === current) {
      const query = "?wait=25" + (since ? "&since=" + encodeURIComponent(since) : "");
      try {
        const response = await fetch(statusUrl + query, { headers: authHeaders(), cache: "no-store" });
        if (!response.ok) {
          const body = await response.json().catch(() => ({}));
          fail(job, body.detail || `The status service answered ${response.status}.`);
          return;
        }
        const state = await response.json();
        failures = 0;
        since = state.status;
        update(job, state);
        if (TERMINAL.has(state.status)) return;
      } catch (err) {
        failures += 1;
        await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** failures, 10000)));
      }
    }
  }

  function update(job, state) {
    if (job !== current) return;
    render(state);
    if (job.entry) {
      Object.assign(job.entry, summary(state));
      saveEntry(job.entry);
    }
  }

  function summary(state) {
    const out = { status: state.status };
    if (state.result) {
      out.prediction = state.result.prediction;
      out.confidence = state.result.confidence;
      out.demo = !!state.result.demo;
    }
    if (state.error) out.error = state.error;
    return out;
  }

  // ------------------------------------------------------------------ rendering

  function setStatus(status) {
    el.status.textContent = STATUS_WORDS[status] || status;
    el.status.dataset.status = status;
    const reached = {
      UPLOADING: 0, PENDING: 1, PROCESSING_FEATURES: 2, CLASSIFYING: 3, COMPLETED: 5, FAILED: -1,
    }[status];
    el.steps.querySelectorAll("li").forEach((li, i) => {
      li.classList.remove("done", "active", "failed");
      if (status === "FAILED") {
        const at = STEPS.indexOf(el.steps.dataset.reached || "UPLOAD");
        if (i < at) li.classList.add("done");
        if (i === at) li.classList.add("failed");
      } else if (i < reached) {
        li.classList.add("done");
      } else if (i === reached) {
        li.classList.add("active");
      }
    });
    if (status !== "FAILED") el.steps.dataset.reached = STEPS[Math.min(reached, STEPS.length - 1)];
  }

  function render(state) {
    setStatus(state.status);
    if (state.status === "COMPLETED" && state.result) showVerdict(state.result);
    if (state.status === "FAILED") {
      el.error.textContent = state.error || "The job failed.";
      el.error.classList.remove("hidden");
    }
  }

  function showVerdict(result) {
    const demo = !!result.demo || !!(result.model && result.model.demo);
    el.verdict.classList.remove("hidden");
    el.verdict.classList.toggle("demo", demo);
    el.demoBadge.classList.toggle("hidden", !demo);
    el.prediction.textContent = result.prediction;
    el.prediction.className = "label " + result.prediction;
    el.confidence.textContent = percent(result.confidence);
    el.fakeMeter.style.width = percent(result.fake_probability);
    el.fakeProbability.textContent = "P(fake) = " + percent(result.fake_probability);
    const model = result.model || {};
    el.modelName.textContent = model.name || "—";
    el.modelVersion.textContent = model.version || "—";
    el.modelArch.textContent = model.architecture || "—";
    el.modelLicense.textContent = model.license || "—";
    el.modelCaveat.textContent = model.caveat || "";
    el.assessment.textContent = result.assessment ? result.assessment.replace("_", " ") : "";
    el.assessment.className = "assessment " + (result.assessment || "");
  }

  const percent = (x) => (typeof x === "number" ? (x * 100).toFixed(1) + "%" : "—");

  // ------------------------------------------------------------------ history

  function loadHistory() {
    try {
      const items = JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]");
      return Array.isArray(items) ? items : [];
    } catch (err) {
      return [];
    }
  }

  function saveEntry(entry) {
    const items = loadHistory().filter((i) => i.request_id !== entry.request_id);
    items.unshift(entry);
    const kept = items.slice(0, HISTORY_MAX);
    try {
      localStorage.setItem(HISTORY_KEY, JSON.stringify(kept));
    } catch (err) {
      // Storage full: keep the entries without their thumbnails.
      localStorage.setItem(HISTORY_KEY, JSON.stringify(kept.map((i) => ({ ...i, thumb: "" }))));
    }
    renderHistory();
  }

  function renderHistory() {
    const items = loadHistory();
    el.history.replaceChildren();
    el.historyEmpty.classList.toggle("hidden", items.length > 0);
    for (const item of items) {
      const li = document.createElement("li");
      li.dataset.requestId = item.request_id;
      const img = document.createElement("img");
      img.alt = "";
      if (item.thumb) img.src = item.thumb;
      const name = document.createElement("span");
      name.className = "h-name";
      name.textContent = item.name;
      name.title = item.request_id;
      const when = document.createElement("span");
      when.className = "h-when";
      when.textContent = new Date(item.at).toLocaleString();
      const pill = document.createElement("span");
      const word = item.prediction || item.status;
      pill.className = "pill " + word;
      pill.textContent = item.prediction ? `${item.prediction} ${percent(item.confidence)}` : (STATUS_WORDS[word] || word);
      li.append(img, name, when, pill);
      if (item.demo) {
        const demo = document.createElement("span");
        demo.className = "pill demo";
        demo.textContent = "DEMO";
        li.append(demo);
      }
      li.addEventListener("click", () => reopen(item));
      el.history.append(li);
    }
  }

  async function reopen(item) {
    const job = startJob(item.name, item.thumb);
    el.progressWrap.classList.add("hidden");
    el.requestId.textContent = item.request_id;
    job.entry = item;
    try {
      const response = await fetch(item.status_url, { headers: authHeaders(), cache: "no-store" });
      if (!response.ok) {
        fail(job, response.status === 404 ? "This job has expired." : `The status service answered ${response.status}.`);
        return;
      }
      const state = await response.json();
      update(job, state);
      if (!TERMINAL.has(state.status)) follow(job, item.status_url);
    } catch (err) {
      fail(job, "The status service could not be reached.");
    }
  }

  // A small JPEG data URL for the history list (kept small: localStorage holds ~5 MB).
  function thumbnail(file) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      const url = URL.createObjectURL(file);
      img.onload = () => {
        const side = 72;
        const scale = side / Math.min(img.naturalWidth, img.naturalHeight);
        const canvas = document.createElement("canvas");
        canvas.width = canvas.height = side;
        const ctx = canvas.getContext("2d");
        const w = img.naturalWidth * scale;
        const h = img.naturalHeight * scale;
        ctx.drawImage(img, (side - w) / 2, (side - h) / 2, w, h);
        URL.revokeObjectURL(url);
        resolve(canvas.toDataURL("image/jpeg", 0.7));
      };
      img.onerror = () => { URL.revokeObjectURL(url); reject(new Error("not an image")); };
      img.src = url;
    });
  }

  renderHistory();
  window.penguin12 = { submitFile, submitUrl, loadHistory };
})();
