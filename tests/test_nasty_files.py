"""Hostile uploads against the running preprocessor: bombs, truncations, polyglots, odd encodings.

Only 202, 413, 415 and 422 are acceptable answers, never a 5xx; the service stays ready, every
accepted nasty image still completes, and the preprocessor's memory stays bounded.
"""

from __future__ import annotations

import sys

import httpx
import pytest
from corpus.nasty import NastyFile, build

from conftest import ROOT, Stack, wait_for

sys.path.insert(0, str(ROOT))
from bench.hostile_uploads import memory  # the benchmark's own reading of RSS and its peak

MAX_PIXELS = 4_000_000  # the module-scoped `stack` fixture's PENGUIN12_MAX_IMAGE_PIXELS
MAX_UPLOAD = 10 * 2**20
RSS_BUDGET_BYTES = 300 * 2**20
CORPUS = build(MAX_PIXELS, MAX_UPLOAD)
ACCEPTED: dict[str, str] = {}  # corpus name -> request id


@pytest.fixture(scope="module")
def baseline(stack: Stack) -> dict[str, int]:
    return memory(stack.processes["preprocessor"].process.pid)


@pytest.mark.parametrize("item", CORPUS, ids=[item.name for item in CORPUS])
def test_nasty_file_is_processed_or_refused_cleanly(
    stack: Stack, baseline: dict[str, int], item: NastyFile
) -> None:
    response = stack.submit(item.data, item.filename, item.content_type)
    assert response.status_code < 500, f"{item.name}: {response.status_code} {response.text}"
    assert response.status_code in item.expect, (
        f"{item.name}: got {response.status_code}, expected one of {sorted(item.expect)}: "
        f"{response.text[:300]}"
    )
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if response.status_code == 202:
        ACCEPTED[item.name] = body["request_id"]
    else:
        assert isinstance(body["detail"], str) and body["detail"], body
        assert item.filename not in body["detail"]  # never echoes what the client sent


@pytest.mark.parametrize(
    ("files", "data"),
    [
        (None, {"file": "not a file, a text field"}),
        ({"other": ("a.jpg", b"\xff\xd8\xff", "image/jpeg")}, None),
        ({"file": ("", b"", "")}, None),
    ],
    ids=["file-as-text-field", "wrong-field-name", "empty-part"],
)
def test_malformed_multipart_is_refused(
    stack: Stack, files: dict[str, tuple[str, bytes, str]] | None, data: dict[str, str] | None
) -> None:
    response = httpx.post(
        stack.url("preprocessor", "/v1/infer"), files=files, data=data, timeout=30
    )
    assert response.status_code in (415, 422), response.text


def test_service_survives_the_corpus(
    stack: Stack, baseline: dict[str, int], photos: dict[str, bytes]
) -> None:
    assert httpx.get(stack.url("preprocessor", "/readyz"), timeout=5).status_code == 200
    pid = stack.processes["preprocessor"].process.pid
    after = memory(pid)
    grown_peak = after["VmHWM"] - baseline["VmRSS"]
    grown_now = after["VmRSS"] - baseline["VmRSS"]
    print(
        f"preprocessor RSS: baseline {baseline['VmRSS'] >> 20} MiB, now {after['VmRSS'] >> 20} "
        f"MiB, peak {after['VmHWM'] >> 20} MiB"
    )
    assert grown_peak < RSS_BUDGET_BYTES, after
    assert grown_now < RSS_BUDGET_BYTES, after

    # Every nasty-but-valid image goes all the way through the pipeline.
    assert len(ACCEPTED) >= 30, sorted(ACCEPTED)
    finals = {name: stack.wait_final(rid, timeout=120)["status"] for name, rid in ACCEPTED.items()}
    assert set(finals.values()) == {"COMPLETED"}, finals

    # And an ordinary photo still works.
    response = stack.submit(photos["chelsea.jpg"])
    assert response.status_code == 202
    final = wait_for(
        lambda: stack.wait_final(response.json()["request_id"]), 60, 0.1, "the photo to finish"
    )
    assert final["status"] == "COMPLETED"
