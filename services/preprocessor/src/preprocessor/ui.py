"""The web page: plain HTML/CSS/JS served from ``static/`` at ``/ui/`` (and ``/`` redirects there).

No build step and no request leaves for the internet at run time: the page only talks to this
preprocessor (same origin) and to the provenance ``status_url`` each 202 answer names.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"


def install_ui(app: FastAPI) -> None:
    app.mount("/ui", StaticFiles(directory=STATIC_DIR, html=True), name="ui")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/")
