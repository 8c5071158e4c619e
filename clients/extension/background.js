// Penguin12 extension service worker (Manifest V3).
//
// Right-click an image → "Check for deepfake": the worker fetches the image bytes (the extension's
// host permission lets it read images from any site, with the page's cookies), POSTs them to the
// configured preprocessor, follows the returned status_url by long-poll, then shows the verdict in
// a notification and keeps it for the popup. When the bytes cannot be read (a blocked or odd URL),
// it asks the service to download the image itself (`url` form field; public addresses only).
"use strict";

const MENU_ID = "penguin12-check";
const DEFAULTS = { apiBase: "http://127.0.0.1:8000", apiKey: "" };
const HISTORY_KEY = "checks";
const HISTORY_MAX = 20;
const TERMINAL = new Set(["COMPLETED", "FAILED"]);
const WAIT_S = 20; // per long-poll request: short enough to keep the worker alive between calls
const DEADLINE_MS = 5 * 60 * 1000;
const MAX_IMAGE_BYTES = 10 * 1024 * 1024;

chrome.runtime.onInstalled.addListener(() => {
  chrome.contextMenus.removeAll(() => {
    chrome.contextMenus.create({ id: MENU_ID, title: "Check for deepfake", contexts: ["image"] });
  });
});

chrome.contextMenus.onClicked.addListener((info) => {
  handleMenuClick(info);
});

function handleMenuClick(info) {
  if (info.menuItemId !== MENU_ID || !info.srcUrl) return Promise.resolve(null);
  return checkImage(info.srcUrl, { pageUrl: info.pageUrl });
}

async function getSettings() {
  const stored = await chrome.storage.sync.get(DEFAULTS);
  return { apiBase: (stored.apiBase || DEFAULTS.apiBase).replace(/\/+$/, ""), apiKey: stored.apiKey || "" };
}

// ------------------------------------------------------------------------------ history

async function loadChecks() {
  const stored = await chrome.storage.local.get({ [HISTORY_KEY]: [] });
  return Array.isArray(stored[HISTORY_KEY]) ? stored[HISTORY_KEY] : [];
}

async function saveCheck(check) {
  const checks = (await loadChecks()).filter((c) => c.id !== check.id);
  checks.unshift(check);
  await chrome.storage.local.set({ [HISTORY_KEY]: checks.slice(0, HISTORY_MAX) });
}

// ------------------------------------------------------------------------------ the check

async function checkImage(srcUrl, extra = {}) {
  const settings = await getSettings();
  const check = {
    id: crypto.randomUUID(),
    srcUrl,
    pageUrl: extra.pageUrl || null,
    at: Date.now(),
    status: "UPLOADING",
    apiBase: settings.apiBase,
  };
  await saveCheck(check);
  try {
    const ticket = await submit(srcUrl, settings);
    Object.assign(check, { request_id: ticket.request_id, status_url: ticket.status_url, status: "PENDING" });
    await saveCheck(check);
    const state = await follow(ticket.status_url, settings, async (s) => {
      check.status = s.status;
      await saveCheck(check);
    });
    Object.assign(check, summarize(state));
  } catch (err) {
    Object.assign(check, { status: "ERROR", error: String((err && err.message) || err) });
  }
  check.finishedAt = Date.now();
  await saveCheck(check);
  await announce(check);
  return check;
}

function authHeaders(settings) {
  return settings.apiKey ? { "X-API-Key": settings.apiKey } : {};
}

async function readImage(srcUrl) {
  const response = await fetch(srcUrl, { credentials: "include" });
  if (!response.ok) throw new Error(`the image answered ${response.status}`);
  const blob = await response.blob();
  if (blob.size > MAX_IMAGE_BYTES) throw new Error("the image is larger than 10 MiB");
  return blob;
}

async function submit(srcUrl, settings) {
  const form = new FormData();
  let blob = null;
  try {
    blob = await readImage(srcUrl);
  } catch (err) {
    if (!/^https?:/i.test(srcUrl)) throw new Error(`could not read the image: ${err.message || err}`);
  }
  if (blob) {
    form.append("file", blob, filenameOf(srcUrl, blob.type));
  } else {
    form.append("url", srcUrl); // the service downloads it (public addresses only)
  }
  let response;
  try {
    response = await fetch(settings.apiBase + "/v1/infer", {
      method: "POST", body: form, headers: authHeaders(settings),
    });
  } catch (err) {
    throw new Error(`the Penguin12 service at ${settings.apiBase} could not be reached`);
  }
  const body = await response.json().catch(() => ({}));
  if (response.status !== 202) {
    const detail = typeof body.detail === "string" ? body.detail : `the service answered ${response.status}`;
    throw new Error(detail);
  }
  return body;
}

// Long-poll the status URL until the job is final.
async function follow(statusUrl, settings, onChange) {
  const deadline = Date.now() + DEADLINE_MS;
  let since = null;
  let failures = 0;
  while (Date.now() < deadline) {
    const query = `?wait=${WAIT_S}` + (since ? `&since=${encodeURIComponent(since)}` : "");
    let state;
    try {
      const response = await fetch(statusUrl + query, { headers: authHeaders(settings), cache: "no-store" });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) throw Object.assign(new Error(body.detail || `status answered ${response.status}`), { fatal: true });
      state = body;
      failures = 0;
    } catch (err) {
      if (err.fatal || ++failures > 5) throw err;
      await new Promise((r) => setTimeout(r, 500 * 2 ** failures));
      continue;
    }
    if (state.status !== since) {
      since = state.status;
      await onChange(state);
    }
    if (TERMINAL.has(state.status)) return state;
  }
  throw new Error("no verdict after 5 minutes");
}

function summarize(state) {
  const out = { status: state.status, last_updated: state.last_updated };
  if (state.result) {
    out.prediction = state.result.prediction;
    out.confidence = state.result.confidence;
    out.fake_probability = state.result.fake_probability;
    out.assessment = state.result.assessment || null;
    out.demo = !!(state.result.demo || (state.result.model && state.result.model.demo));
    out.model = state.result.model || null;
  }
  if (state.error) out.error = state.error;
  return out;
}

function filenameOf(srcUrl, type) {
  try {
    const name = new URL(srcUrl).pathname.split("/").pop();
    if (name && name.length < 100 && /\.[a-z0-9]{2,5}$/i.test(name)) return name;
  } catch (err) { /* data: or odd URL */ }
  const ext = { "image/png": "png", "image/webp": "webp", "image/bmp": "bmp" }[type] || "jpg";
  return "image." + ext;
}

// ------------------------------------------------------------------------------ telling the user

function headline(check) {
  if (check.status === "COMPLETED") {
    const pct = (check.confidence * 100).toFixed(1) + "%";
    const assessment = check.assessment ? `, ${check.assessment.replace("_", " ")}` : "";
    return `${check.prediction} (${pct} confidence${assessment})` + (check.demo ? " — DEMO" : "");
  }
  if (check.status === "FAILED") return "The check failed";
  return "Could not check the image";
}

function details(check) {
  if (check.status === "COMPLETED") {
    const version = check.model ? `model ${check.model.name} ${check.model.version}` : "";
    return check.demo
      ? `DEMO model with random weights: this verdict means nothing. ${version}`
      : `Penguin12 ${version}. ${(check.model && check.model.caveat) || ""}`.trim();
  }
  return check.error || "Unknown error";
}

async function announce(check) {
  const color = check.status !== "COMPLETED" ? "#6b7385" : check.prediction === "FAKE" ? "#c62828" : "#1b8a4c";
  const text = check.status === "COMPLETED" ? (check.demo ? "DEMO" : check.prediction) : "ERR";
  try {
    await chrome.action.setBadgeBackgroundColor({ color });
    await chrome.action.setBadgeText({ text });
  } catch (err) { /* no action UI (tests) */ }
  try {
    await chrome.notifications.create("penguin12-" + check.id, {
      type: "basic",
      iconUrl: chrome.runtime.getURL("icons/icon128.png"),
      title: "Penguin12: " + headline(check),
      message: details(check),
      priority: 1,
    });
  } catch (err) {
    console.warn("notification failed", err);
  }
}

chrome.notifications.onClicked.addListener(() => {
  chrome.action.openPopup?.().catch(() => {});
});

// For the popup and for tests (evaluated in this worker through the DevTools protocol).
self.penguin12 = { checkImage, handleMenuClick, getSettings, loadChecks, MENU_ID };
