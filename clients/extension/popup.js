"use strict";

const WORDS = {
  UPLOADING: "Uploading…", PENDING: "Queued", PROCESSING_FEATURES: "Extracting features",
  CLASSIFYING: "Classifying", COMPLETED: "Done", FAILED: "Failed", ERROR: "Error",
};

async function render() {
  const { checks = [] } = await chrome.storage.local.get({ checks: [] });
  const list = document.getElementById("checks");
  list.replaceChildren();
  document.getElementById("empty").hidden = checks.length > 0;
  for (const check of checks) {
    const li = document.createElement("li");
    li.dataset.requestId = check.request_id || "";
    li.dataset.status = check.status;
    const img = document.createElement("img");
    img.src = check.srcUrl;
    img.alt = "";
    const body = document.createElement("div");
    body.className = "body";
    const verdict = document.createElement("div");
    verdict.className = "verdict";
    if (check.status === "COMPLETED") {
      const label = document.createElement("span");
      label.className = "label " + check.prediction;
      label.textContent = check.prediction;
      const conf = document.createElement("span");
      conf.className = "confidence";
      conf.textContent = (check.confidence * 100).toFixed(1) + "%";
      verdict.append(label, conf);
      if (check.assessment) {
        const assessment = document.createElement("span");
        assessment.className = "assessment " + check.assessment;
        assessment.textContent = check.assessment.replace("_", " ");
        if (check.model && check.model.caveat) assessment.title = check.model.caveat;
        verdict.append(assessment);
      }
      if (check.demo) {
        const demo = document.createElement("span");
        demo.className = "demo";
        demo.title = "A demo model with random weights made this verdict: it means nothing.";
        demo.textContent = "DEMO";
        verdict.append(demo);
      }
    } else {
      verdict.textContent = WORDS[check.status] || check.status;
    }
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = check.error
      ? check.error
      : check.model ? `model ${check.model.version}` : new URL(check.srcUrl).hostname || "image";
    body.append(verdict, meta);
    li.append(img, body);
    list.append(li);
  }
}

chrome.storage.onChanged.addListener((changes, area) => {
  if (area === "local" && changes.checks) render();
});
render();
