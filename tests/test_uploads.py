"""Upload validation through the API, on the real system: what a person sends, and what they
are told when it is refused; request bodies held to their limits as they stream in. (How an
accepted image is decoded: test_image_decoding.py.)"""

from __future__ import annotations

import hashlib
import json
import re
import select
import socket
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from support.images import encode, prepare

from conftest import Stack, read_topic
from penguin12.schemas import FRAME_MAGIC, ImageJob, decode


def test_format_is_judged_by_content_not_name(stack: Stack) -> None:
    png = encode(Image.new("RGB", (64, 64), (10, 200, 30)), "PNG")
    response = stack.submit(png, filename="holiday.jpg", content_type="image/jpeg")
    assert response.status_code == 202, response.text
    assert stack.wait_final(response.json()["request_id"])["status"] == "COMPLETED"


@pytest.mark.parametrize(
    ("data", "status", "phrase"),
    [
        (b"", 422, "empty"),
        (b"hello, I am a text file", 415, "not a supported image"),
        (encode(Image.new("RGB", (8, 8)), "GIF"), 415, "image/jpeg, image/png"),
        (encode(Image.new("L", (2500, 2500)), "PNG"), 413, "limit is 4,000,000"),
    ],
)
def test_api_refuses_bad_uploads_clearly(
    stack: Stack, data: bytes, status: int, phrase: str
) -> None:
    response = stack.submit(data)
    assert response.status_code == status, response.text
    assert phrase in response.json()["detail"]


def test_truncated_jpeg_fails_after_the_202_with_the_decode_message(
    stack: Stack, photos: dict[str, bytes]
) -> None:
    """Deferred decode (the default): the header is fine, so the upload is queued; the feature
    extractor finds the pixels cut short and the job ends FAILED with what a 422 would have
    said. (With PENGUIN12_DEFER_DECODE=false it is a 422 at once: tests/test_nasty_files.py.)"""
    data = photos["chelsea.jpg"]
    response = stack.submit(data[: len(data) // 3])
    assert response.status_code == 202, response.text
    final = stack.wait_final(response.json()["request_id"])
    assert final["status"] == "FAILED"
    assert "truncated or corrupt" in final["error"], final
    # Nothing dead-lettered: a corrupt upload is the client's error, not a poison record.
    assert stack.metric("feature_extractor-0", "penguin12_messages_total", "dead_lettered") == 0
    # And the next image goes through.
    ok = stack.submit(photos["coffee.jpg"])
    assert stack.wait_final(ok.json()["request_id"])["status"] == "COMPLETED"


def test_oversized_file_is_413(stack: Stack) -> None:
    response = stack.submit(b"\xff\xd8\xff" + b"\0" * (10 * 2**20))
    assert response.status_code == 413
    assert "MiB limit" in response.json()["detail"]


def test_missing_file_field_is_422(stack: Stack) -> None:
    response = httpx.post(stack.url("preprocessor", "/v1/infer"), data={"x": "1"}, timeout=10)
    assert response.status_code == 422


def test_maximum_size_upload_flows_through_kafka(stack: Stack) -> None:
    # Random noise does not compress: a PNG just under the 10 MiB limit.
    noise = np.random.default_rng(0).integers(0, 256, (1800, 1900, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "PNG", compress_level=0)
    assert 9 * 2**20 < len(data) <= 10 * 2**20
    response = stack.submit(data, "noise.png", "image/png")
    assert response.status_code == 202, response.text
    assert stack.wait_final(response.json()["request_id"])["status"] == "COMPLETED"


def test_an_animated_upload_is_judged_on_its_first_frame(stack: Stack) -> None:
    """What the pipeline judges is the first frame: read the job the preprocessor queued."""
    frames = [Image.new("RGB", (96, 96), c) for c in ((230, 30, 30), (30, 30, 230), (30, 230, 30))]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    response = stack.submit(data, "animated.webp", "image/webp")
    assert response.status_code == 202, response.text
    request_id = response.json()["request_id"]
    assert stack.wait_final(request_id)["status"] == "COMPLETED"
    [record] = [
        m
        for m in read_topic(stack.infra.bootstrap, stack.topic("preprocessed"), quiet_s=1)
        if m.key().decode() == request_id
    ]
    assert record.value()[:4] == FRAME_MAGIC  # the image as raw bytes, not base64 in JSON
    job = decode(ImageJob, record.value())
    if job.upload is not None:  # deferred decode: queued as uploaded, decoded the same way
        assert job.upload == data
        assert job.content_sha256 == hashlib.sha256(data).hexdigest()
        pixels = prepare(job.upload)
    else:
        pixels = job.array()
        assert job.content_sha256 == hashlib.sha256(pixels.tobytes()).hexdigest()  # cache key
    assert np.abs(pixels.reshape(-1, 3).mean(0) - (230, 30, 30)).max() <= 3


def test_a_door_still_sending_json_records_is_served_alike(
    make_stack: Any, photos: dict[str, bytes]
) -> None:
    """Mid-upgrade, a preprocessor kept at PENGUIN12_IMAGE_RECORD_FORMAT=json queues the image as
    base64 inside JSON, as releases before the binary frame did; today's extractors serve it."""
    stack: Stack = make_stack(PENGUIN12_IMAGE_RECORD_FORMAT="json").start_all()
    data = photos["coffee.jpg"]
    response = stack.submit(data, "coffee.jpg")
    assert response.status_code == 202, response.text
    request_id = response.json()["request_id"]
    body = stack.wait_final(request_id)
    assert body["status"] == "COMPLETED", body
    [record] = [
        m
        for m in read_topic(stack.infra.bootstrap, stack.topic("preprocessed"), quiet_s=1)
        if m.key().decode() == request_id
    ]
    assert json.loads(record.value())["upload"]  # base64 text inside the JSON
    assert decode(ImageJob, record.value()).upload == data


# --- request bodies held to their limits as they stream in (issue #11, item 2) --------------


def _open_post(port: int, path: str, headers: dict[str, str]) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode())
    return sock


def _read_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, object]]:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ", 2)[1]), json.loads(body)


@pytest.mark.parametrize(
    ("path", "declared"), [("/v1/infer", 60 * 2**20), ("/v1/infer/batch", 200 * 2**20)]
)
def test_oversized_body_is_refused_from_its_content_length(
    stack: Stack, path: str, declared: int
) -> None:
    # Only the headers are sent: the answer must come without the server waiting for the body.
    sock = _open_post(
        stack.ports["preprocessor"],
        path,
        {"Content-Type": "multipart/form-data; boundary=xyz", "Content-Length": str(declared)},
    )
    with sock:
        status, body = _read_response(sock, timeout=20)
    assert status == 413, body
    assert f"{declared:,} bytes" in str(body["detail"]) and "Nothing was read" in str(
        body["detail"]
    )


def test_streamed_body_is_cut_off_at_the_limit(stack: Stack) -> None:
    # A chunked upload (no Content-Length) that never ends: the server must stop reading and
    # answer once the body passes the limit, not wait for the end and spool it all first.
    sock = _open_post(
        stack.ports["preprocessor"],
        "/v1/infer",
        {"Content-Type": "multipart/form-data; boundary=xyz", "Transfer-Encoding": "chunked"},
    )
    part = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
    sent = 0
    answer = None
    with sock:
        sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        megabyte = b"\xff" * 2**20
        while sent < 40 * 2**20 and answer is None:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(megabyte), megabyte))
                sent += len(megabyte)
            except OSError:
                pass
            readable, _, _ = select.select([sock], [], [], 0.05 if sent < 12 * 2**20 else 1)
            if readable:
                answer = _read_response(sock, timeout=10)
    assert answer is not None, f"no answer after {sent:,} bytes"
    status, body = answer
    assert status == 413, body
    assert "stopped reading" in str(body["detail"])
    assert sent < 20 * 2**20


def test_too_many_form_parts_are_refused(stack: Stack) -> None:
    png = encode(Image.new("RGB", (8, 8)), "PNG")
    fields = {f"field{i}": "x" for i in range(200)}
    response = httpx.post(
        stack.url("preprocessor", "/v1/infer"),
        files={"file": ("a.png", png, "image/png")},
        data=fields,
        timeout=30,
    )
    assert response.status_code == 413, response.text
    assert "more than 8 parts" in response.json()["detail"]
