"""The whole pipeline on a real Kafka broker and Redis: submit, poll, verdict."""

from __future__ import annotations

import httpx

from conftest import Stack, wait_for


def test_photo_flows_to_a_labelled_demo_verdict(stack: Stack, photos: dict[str, bytes]) -> None:
    response = stack.submit(photos["astronaut.jpg"])
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"request_id", "status_url"}
    assert body["status_url"] == stack.url("provenance", f"/v1/status/{body['request_id']}")

    # Polled at once, the status URL already knows the job: never a 404.
    first = httpx.get(body["status_url"], timeout=10)
    assert first.status_code == 200, first.text
    assert first.json()["status"] in ("PENDING", "PROCESSING_FEATURES", "CLASSIFYING", "COMPLETED")

    final = stack.wait_final(body["request_id"])
    assert final["status"] == "COMPLETED", final
    assert set(final) == {"request_id", "status", "submitted_at", "last_updated", "result"}
    assert final["submitted_at"] <= final["last_updated"]
    result = final["result"]
    assert result["prediction"] in ("REAL", "FAKE")
    assert 0.5 <= result["confidence"] <= 1.0
    assert result["demo"] is True and result["model"]["demo"] is True
    assert result["model"]["architecture"] == "tiny"
    assert len(result["model"]["version"]) >= 12


def test_job_moves_forward_through_every_stage(stack: Stack, photos: dict[str, bytes]) -> None:
    request_id = stack.submit(photos["coffee.jpg"]).json()["request_id"]
    seen: list[str] = []

    def finished() -> bool:
        status = stack.status(request_id).json()["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        return status in ("COMPLETED", "FAILED")

    wait_for(finished, 60, 0.005, "job to finish")
    order = ["PENDING", "PROCESSING_FEATURES", "CLASSIFYING", "COMPLETED"]
    assert seen[-1] == "COMPLETED"
    assert [order.index(s) for s in seen] == sorted(order.index(s) for s in seen), seen


def test_unknown_request_id_is_a_json_404(stack: Stack) -> None:
    response = stack.status("00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert "never submitted or has expired" in response.json()["detail"]


def test_repeated_image_skips_the_backbone(stack: Stack, photos: dict[str, bytes]) -> None:
    image = photos["rocket.jpg"]
    fe = "feature_extractor-0"
    first = stack.wait_final(stack.submit(image).json()["request_id"])
    runs_before = stack.metric(fe, "penguin12_backbone_images_total")
    hits_before = stack.metric(fe, "penguin12_embedding_cache_total", 'result="hit"')

    second = stack.wait_final(stack.submit(image).json()["request_id"])

    assert stack.metric(fe, "penguin12_backbone_images_total") == runs_before
    assert stack.metric(fe, "penguin12_embedding_cache_total", 'result="hit"') == hits_before + 1
    assert second["result"]["fake_probability"] == first["result"]["fake_probability"]


def test_every_photo_completes(stack: Stack, photos: dict[str, bytes]) -> None:
    ids = [stack.submit(data, name).json()["request_id"] for name, data in photos.items()]
    finals = [stack.wait_final(i) for i in ids]
    assert [f["status"] for f in finals] == ["COMPLETED"] * len(ids)


def test_health_and_metrics_on_every_service(stack: Stack) -> None:
    for name in stack.processes:
        assert httpx.get(stack.url(name, "/readyz"), timeout=5).status_code == 200, name
        assert httpx.get(stack.url(name, "/livez"), timeout=5).status_code == 200, name
        metrics = httpx.get(stack.url(name, "/metrics"), timeout=5)
        assert metrics.status_code == 200 and "penguin12_" in metrics.text, name


def test_cors_allows_localhost_apps_and_extensions_only(stack: Stack) -> None:
    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            stack.url("preprocessor", "/v1/infer"),
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key, idempotency-key",
            },
            timeout=5,
        )

    for origin in (
        "http://localhost:3000",
        "http://127.0.0.1:5173",
        "http://[::1]:8080",
        "chrome-extension://" + "a" * 32,
        "moz-extension://0b8e6a4e-5c1d-4f7a-9e1b-2d3c4b5a6f70",
    ):
        response = preflight(origin)
        assert response.status_code == 200, origin
        assert response.headers["access-control-allow-origin"] == origin
        # An extension sends its API key in X-API-Key: the preflight must allow that header.
        allowed = response.headers["access-control-allow-headers"].lower()
        assert "x-api-key" in allowed, (origin, allowed)
    for origin in (
        "https://evil.example",
        "http://localhost.evil.example",
        "http://[::2]:8080",
        "moz-extension://",
    ):
        assert "access-control-allow-origin" not in preflight(origin).headers, origin


def test_the_extractor_hashes_the_pixels_itself(stack: Stack, photos: dict[str, bytes]) -> None:
    """Anyone who can write to Kafka could otherwise name another image's cache key in
    ``content_sha256`` and have a job answered with that image's embedding (issue #11)."""
    import time
    import uuid

    from confluent_kafka import Producer

    from penguin12.imaging import prepare_image
    from penguin12.schemas import ImageJob, encode
    from preprocessor.settings import PreprocessorSettings

    def verdict(name: str) -> float:
        final = stack.wait_final(stack.submit(photos[name]).json()["request_id"])
        assert final["status"] == "COMPLETED", final
        return float(final["result"]["fake_probability"])

    cached, honest = verdict("astronaut.jpg"), verdict("rocket.jpg")
    assert cached != honest  # two different images, two different answers
    # What the stack's preprocessor uses.
    prep = PreprocessorSettings(preprocessing=stack.env["PENGUIN12_PREPROCESSING"]).prepare_as
    astronaut = prepare_image(photos["astronaut.jpg"], preprocessing=prep, max_pixels=40_000_000)
    rocket = prepare_image(photos["rocket.jpg"], preprocessing=prep, max_pixels=40_000_000)
    request_id = str(uuid.uuid4())
    forged = ImageJob(
        request_id=request_id,
        submitted_at=time.time(),
        pixels=rocket.pixels.tobytes(),
        height=rocket.pixels.shape[0],
        width=rocket.pixels.shape[1],
        content_sha256=astronaut.sha256,  # the lie: the astronaut's (cached) key
        source_format="JPEG",
        preprocessing=prep.key,
    )
    producer = Producer({"bootstrap.servers": stack.infra.bootstrap})
    producer.produce(stack.topic("preprocessed"), encode(forged), key=request_id)
    assert producer.flush(30) == 0
    final = stack.wait_final(request_id)
    assert final["status"] == "COMPLETED", final.get("error")
    assert final["result"]["fake_probability"] == honest
