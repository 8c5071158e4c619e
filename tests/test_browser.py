"""The web page and the browser extension, in a real headless Chromium against the running stack.

Chromium is Debian's package, installed once by infra/local/setup-browser.sh when missing, and
driven over the DevTools protocol (tests/cdp.py). The tests are skipped only when Chromium cannot
be installed, and under CI=true that is a failure instead (`make setup-test` installs it). Screenshots are written to the test's tmp dir (paths printed; -s shows them).
"""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cdp import chromium

from conftest import ROOT, Stack, missing_test_dependency

EXTENSION = ROOT / "clients" / "extension"
SETUP = ROOT / "infra" / "local" / "setup-browser.sh"


@pytest.fixture(scope="session")
def chromium_binary() -> str:
    """Chromium's path; installs it (idempotently) when missing, skips (CI: fails) if impossible."""
    try:
        done = subprocess.run(
            ["bash", str(SETUP)], capture_output=True, text=True, timeout=900, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        missing_test_dependency(f"Chromium could not be installed: {exc}")
    path = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not path or not shutil.which(path):
        missing_test_dependency(f"Chromium could not be installed: {done.stderr.strip()[-500:]}")
    return path


@pytest.fixture(scope="module")
def image_server(photos: dict[str, bytes]) -> Iterator[tuple[str, list[str]]]:
    """A local web site serving the photos; yields its base URL and the paths it was asked for."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            data = photos.get(self.path.lstrip("/"))
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", hits
    finally:
        server.shutdown()
        server.server_close()


_PAGE_STATE = """(() => {
  const $ = (id) => document.getElementById(id);
  return {
    status: $('status').dataset.status,
    prediction: $('prediction').textContent,
    confidence: $('confidence').textContent,
    version: $('model-version').textContent,
    arch: $('model-arch').textContent,
    demo: !$('demo-badge').classList.contains('hidden'),
    verdictShown: !$('verdict').classList.contains('hidden'),
    via: $('via').textContent,
    progress: $('progress-wrap').dataset.progress,
    requestId: $('request-id').textContent,
    doneSteps: document.querySelectorAll('#steps li.done').length,
    history: JSON.parse(localStorage.getItem('penguin12.history') || '[]'),
    historyRows: document.querySelectorAll('#history li').length,
  };
})()"""

_COMPLETED = "document.getElementById('status').dataset.status === 'COMPLETED'"


def _check_against_api(stack: Stack, state: dict, request_id: str) -> None:
    job = stack.status(request_id).json()
    assert job["status"] == "COMPLETED"
    result = job["result"]
    assert state["prediction"] == result["prediction"]
    assert state["confidence"] == f"{result['confidence'] * 100:.1f}%"
    assert state["version"] == result["model"]["version"]
    assert state["demo"] is result["demo"] is True


def test_web_page_uploads_and_shows_the_live_verdict(
    stack: Stack, chromium_binary: str, photos: dict[str, bytes], tmp_path: Path
) -> None:
    photo = tmp_path / "astronaut.jpg"
    photo.write_bytes(photos["astronaut.jpg"])
    with chromium(chromium_binary, tmp_path / "profile") as browser:
        page = browser.new_page(stack.url("preprocessor", "/"))
        assert page.evaluate("location.pathname") == "/ui/"  # / redirects to the page
        page.set_files("#file-input", [photo])
        page.wait_for(_COMPLETED, 60, "the verdict")
        state = page.evaluate(_PAGE_STATE)
        shot = page.screenshot(tmp_path / "web-page.png")
    print(f"\nscreenshot: {shot}")

    assert state["verdictShown"] and state["progress"] == "100"
    assert state["via"] == "(live)"  # followed by Server-Sent Events
    assert state["doneSteps"] == 5
    assert state["arch"] == "tiny"
    _check_against_api(stack, state, state["requestId"])
    [entry] = state["history"]
    assert entry["request_id"] == state["requestId"] and entry["name"] == "astronaut.jpg"
    assert entry["status"] == "COMPLETED" and entry["demo"] is True
    assert entry["thumb"].startswith("data:image/jpeg")
    assert state["historyRows"] == 1
    assert shot.stat().st_size > 10_000


def test_web_page_drop_with_api_key_follows_by_long_poll(
    stack: Stack, chromium_binary: str, tmp_path: Path
) -> None:
    with chromium(chromium_binary, tmp_path / "profile") as browser:
        page = browser.new_page(stack.url("preprocessor", "/ui/"))
        # With an API key set the page cannot use EventSource (no headers): it long-polls.
        page.evaluate("document.getElementById('api-key').value = 'not-checked-here'")
        page.evaluate(
            """(async () => {
              const canvas = document.createElement('canvas');
              canvas.width = 96; canvas.height = 64;
              const ctx = canvas.getContext('2d');
              ctx.fillStyle = '#3d5afe'; ctx.fillRect(0, 0, 96, 64);
              ctx.fillStyle = '#ffb300'; ctx.fillRect(20, 10, 40, 40);
              const blob = await new Promise((r) => canvas.toBlob(r, 'image/png'));
              const dt = new DataTransfer();
              dt.items.add(new File([blob], 'dropped.png', { type: 'image/png' }));
              const zone = document.getElementById('dropzone');
              zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true }));
              zone.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true }));
            })()"""
        )
        page.wait_for(_COMPLETED, 60, "the verdict")
        state = page.evaluate(_PAGE_STATE)
    assert state["via"] == "(long-poll)"
    assert state["history"][0]["name"] == "dropped.png"
    _check_against_api(stack, state, state["requestId"])


def test_extension_checks_an_image_from_its_context_menu(
    stack: Stack, chromium_binary: str, image_server: tuple[str, list[str]], tmp_path: Path
) -> None:
    site, hits = image_server
    api = stack.url("preprocessor")
    accepted = 'outcome="accepted"'
    with chromium(chromium_binary, tmp_path / "profile", extension=EXTENSION) as browser:
        worker = browser.service_worker()
        extension_id = worker.url.split("/")[2]
        assert len(extension_id) == 32

        # Configure it as a person would: the options page.
        options = browser.new_page(f"chrome-extension://{extension_id}/options.html")
        options.wait_for("document.getElementById('apiBase').value !== ''", 10)
        assert options.evaluate("document.getElementById('apiBase').value") == (
            "http://127.0.0.1:8000"
        )
        options.evaluate(
            f"document.getElementById('apiBase').value = {json.dumps(api)};"
            "document.getElementById('save').click()"
        )
        options.wait_for("document.getElementById('message').textContent === 'Saved.'", 10)
        assert worker.evaluate("self.penguin12.getSettings()")["apiBase"] == api

        # The context menu item exists (update fails for an unknown id) and is listened to.
        worker.wait_for(
            "chrome.contextMenus.update('penguin12-check', {}).then(() => true, () => false)", 10
        )
        assert worker.evaluate("chrome.contextMenus.onClicked.hasListeners()") is True

        before = stack.metric("preprocessor", "penguin12_jobs_submitted_total", accepted)
        click = {
            "menuItemId": "penguin12-check",
            "srcUrl": f"{site}/chelsea.jpg",
            "pageUrl": f"{site}/",
        }
        check = worker.evaluate(f"self.penguin12.handleMenuClick({json.dumps(click)})", 90)
        notifications = worker.evaluate("new Promise((r) => chrome.notifications.getAll(r))")

        popup = browser.new_page(f"chrome-extension://{extension_id}/popup.html", 420, 260)
        popup.wait_for("!!document.querySelector('#checks li[data-status=COMPLETED] .demo')", 10)
        popup_text = popup.evaluate("document.getElementById('checks').innerText")
        shot = popup.screenshot(tmp_path / "extension-popup.png")
    print(f"\nscreenshot: {shot}")

    # The worker read the image itself and the job reached the API.
    assert "/chelsea.jpg" in hits
    assert stack.metric("preprocessor", "penguin12_jobs_submitted_total", accepted) == before + 1
    assert check["status"] == "COMPLETED", check
    job = stack.status(check["request_id"]).json()
    assert job["status"] == "COMPLETED"
    assert check["prediction"] == job["result"]["prediction"]
    assert check["confidence"] == pytest.approx(job["result"]["confidence"])
    assert check["demo"] is True and check["model"]["version"] == job["result"]["model"]["version"]
    # The verdict came back to the extension: a notification and the popup, both marked DEMO.
    assert f"penguin12-{check['id']}" in notifications
    assert check["prediction"] in popup_text and "DEMO" in popup_text
