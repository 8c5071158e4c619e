"""A small Chrome DevTools Protocol driver for the browser tests (Debian's Chromium, headless).

Chromium is started with ``--remote-debugging-port=0``; the port it picks is read from
``DevToolsActivePort`` in its fresh profile. Everything else is CDP over one WebSocket with
flattened target sessions: pages and the extension's service worker are attached the same way.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--no-default-browser-check",
    "--disable-dev-shm-usage",
    "--window-size=1000,1300",
)


class CDPError(RuntimeError):
    pass


class Connection:
    """Request/response over the browser's WebSocket; events are kept for `wait_event`."""

    def __init__(self, ws_url: str):
        self._stack = contextlib.ExitStack()
        self._ws: ClientConnection = self._stack.enter_context(
            connect(ws_url, max_size=None, open_timeout=10)
        )
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        self._next_id += 1
        message_id = self._next_id
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer to {method} within {timeout}s")
            data = json.loads(self._ws.recv(timeout=remaining))
            if data.get("id") == message_id:
                if "error" in data:
                    raise CDPError(f"{method}: {data['error']}")
                result: dict[str, Any] = data.get("result", {})
                return result
            self.events.append(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()


class Target:
    """A page or worker, attached through a flattened session."""

    def __init__(self, conn: Connection, target_id: str, session: str, url: str = ""):
        self.conn = conn
        self.target_id = target_id
        self.session = session
        self.url = url

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        return self.conn.send(method, params, self.session, timeout)

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """Evaluate JS (promises awaited) and return its JSON value; JS exceptions raise."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CDPError(f"JS error: {text}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0, what: str = "") -> Any:
        """Poll a JS expression until it is truthy (no fixed sleeps)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or expression}")
            time.sleep(0.05)


class Page(Target):
    def navigate(self, url: str, timeout: float = 30.0) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait_for(
            f"location.href.startsWith({json.dumps(url.split('#')[0][:40])}) && "
            "document.readyState === 'complete'",
            timeout,
            f"{url} to load",
        )

    def set_files(self, selector: str, paths: list[Path]) -> None:
        root = self.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        node = self.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        if not node:
            raise CDPError(f"no element matches {selector!r}")
        self.send("DOM.setFileInputFiles", {"nodeId": node, "files": [str(p) for p in paths]})

    def screenshot(self, path: Path) -> Path:
        data = self.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
        )["data"]
        path.write_bytes(base64.b64decode(data))
        return path


class Chromium:
    """A headless Chromium with a fresh profile; optionally with an unpacked extension loaded."""

    def __init__(self, binary: str, profile: Path, extension: Path | None = None):
        args = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0"]
        if extension is not None:
            args += [
                f"--disable-extensions-except={extension}",
                f"--load-extension={extension}",
            ]
        args.append("about:blank")
        profile.mkdir(parents=True, exist_ok=True)
        self.profile = profile
        self.log = profile.parent / f"{profile.name}.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=os.environ
            )
        try:
            self.conn = Connection(self._ws_url())
        except BaseException:
            self.close()
            raise

    def _ws_url(self, timeout: float = 30.0) -> str:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"chromium exited with {self.process.returncode}: "
                    + self.log.read_text(errors="replace")[-2000:]
                )
            if marker.is_file():
                lines = marker.read_text().split()
                if len(lines) >= 2:
                    return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            time.sleep(0.05)
        raise TimeoutError("chromium did not open its DevTools port")

    def _attach(self, target_id: str) -> str:
        session: str = self.conn.send(
            "Target.attachToTarget", {"targetId": target_id, "flatten": True}
        )["sessionId"]
        return session

    def new_page(self, url: str = "about:blank", width: int = 960, height: int = 1200) -> Page:
        target_id = self.conn.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        page = Page(self.conn, target_id, self._attach(target_id))
        page.send("Page.enable")
        page.send("Runtime.enable")
        page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        if url != "about:blank":
            page.navigate(url)
        return page

    def targets(self) -> list[dict[str, Any]]:
        infos: list[dict[str, Any]] = self.conn.send("Target.getTargets")["targetInfos"]
        return infos

    def service_worker(
        self, url_prefix: str = "chrome-extension://", timeout: float = 30.0
    ) -> Target:
        """Attach to the (extension) service worker whose URL starts with ``url_prefix``."""
        deadline = time.monotonic() + timeout
        while True:
            for info in self.targets():
                if info["type"] == "service_worker" and info["url"].startswith(url_prefix):
                    session = self._attach(info["targetId"])
                    return Target(self.conn, info["targetId"], session, info["url"])
            if time.monotonic() > deadline:
                raise AssertionError("the extension's service worker did not start")
            time.sleep(0.1)

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.send("Browser.close", timeout=5)
            conn.close()
        with contextlib.suppress(Exception):
            self.process.wait(timeout=10)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@contextlib.contextmanager
def chromium(binary: str, profile: Path, extension: Path | None = None) -> Iterator[Chromium]:
    browser = Chromium(binary, profile, extension)
    try:
        yield browser
    finally:
        browser.close()
