"use strict";

const DEFAULTS = { apiBase: "http://127.0.0.1:8000", apiKey: "" };
const $ = (id) => document.getElementById(id);

async function load() {
  const stored = await chrome.storage.sync.get(DEFAULTS);
  $("apiBase").value = stored.apiBase;
  $("apiKey").value = stored.apiKey;
}

function say(text, ok) {
  $("message").textContent = text;
  $("message").className = ok ? "ok" : "bad";
}

$("options").addEventListener("submit", async (e) => {
  e.preventDefault();
  const apiBase = $("apiBase").value.trim().replace(/\/+$/, "");
  try {
    const url = new URL(apiBase);
    if (!/^https?:$/.test(url.protocol)) throw new Error("not http(s)");
  } catch (err) {
    say("Enter an http:// or https:// URL.", false);
    return;
  }
  await chrome.storage.sync.set({ apiBase, apiKey: $("apiKey").value.trim() });
  say("Saved.", true);
});

$("test").addEventListener("click", async () => {
  const apiBase = $("apiBase").value.trim().replace(/\/+$/, "");
  try {
    const response = await fetch(apiBase + "/livez", { cache: "no-store" });
    say(response.ok ? "Connected." : `The service answered ${response.status}.`, response.ok);
  } catch (err) {
    say("Could not reach the service.", false);
  }
});

load();
