"""The HTTP request metrics: one series per route template, the status the client really got."""

from __future__ import annotations

import uuid

from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from penguin12.web import ApiSettings, install_common


def _count(route: str, method: str, status: str) -> float:
    labels = {"route": route, "method": method, "status": status}
    return REGISTRY.get_sample_value("penguin12_http_requests_total", labels) or 0.0


def _observations(route: str, method: str) -> float:
    labels = {"route": route, "method": method}
    return REGISTRY.get_sample_value("penguin12_http_request_duration_seconds_count", labels) or 0.0


def test_requests_are_counted_by_template_and_final_status() -> None:
    app = FastAPI()
    install_common(app, ApiSettings())

    @app.get("/v1/things/{thing_id}")
    def thing(thing_id: str) -> dict[str, str]:
        if thing_id == "missing":
            raise HTTPException(status_code=404, detail="no such thing")
        if thing_id == "broken":
            raise RuntimeError("a bug")
        return {"id": thing_id}

    route = "/v1/things/{thing_id}"
    before = {s: _count(route, "GET", s) for s in ("200", "404", "500")}
    timed_before = _observations(route, "GET")
    unmatched_before = _count("unmatched", "GET", "404")

    with TestClient(app, raise_server_exceptions=False) as client:
        for _ in range(3):
            assert client.get(f"/v1/things/{uuid.uuid4()}").status_code == 200
        assert client.get("/v1/things/missing").status_code == 404
        assert client.get("/v1/things/broken").status_code == 500
        assert client.get("/nowhere/at/all").status_code == 404

    assert _count(route, "GET", "200") - before["200"] == 3  # not one series per id
    assert _count(route, "GET", "404") - before["404"] == 1
    assert _count(route, "GET", "500") - before["500"] == 1  # an exception counts as the 500 sent
    assert _observations(route, "GET") - timed_before == 5
    assert _count("unmatched", "GET", "404") - unmatched_before == 1
