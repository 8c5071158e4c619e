"""The dead-letter tool on the real broker: list what failed and why, then re-drive it after a fix."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer

from conftest import Stack, read_topic, wait_for
from penguin12.security import verify_webhook
from penguin12_devstack.ports import free_port
from penguin12_ops.dlq import DlqSettings, parse_since, read_replay_log


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny bundle: same architecture, other weights, so another model version."""
    from penguin12_model import generate_demo_bundle

    return generate_demo_bundle(
        tmp_path_factory.mktemp("model-b") / "demo-tiny-1", architecture="tiny", seed=1
    )


def dlq(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **stack.env,
        "PENGUIN12_DLQ_REPLAYER_GROUP": f"dlq-replayer-{stack.suffix}",
    }
    return subprocess.run(
        # The operator's command, as installed: the console script next to this interpreter.
        [str(Path(sys.executable).with_name("penguin12-dlq")), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def dlq_json(stack: Stack, *args: str) -> Any:
    result = dlq(stack, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def dlq_list(stack: Stack) -> list[dict[str, Any]]:
    result = dlq(stack, "list", "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture
def hook_calls() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A webhook receiver on 127.0.0.1 that records every call."""
    calls: list[tuple[dict[str, str], bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            calls.append((dict(self.headers.items()), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", calls
    finally:
        server.shutdown()
        server.server_close()


def test_list_then_replay_after_a_fix_completes_the_job(
    make_stack: Callable[..., Stack],
    other_model_dir: Path,
    photos: dict[str, bytes],
    hook_calls: tuple[str, list[tuple[dict[str, str], bytes]]],
) -> None:
    hook_url, calls = hook_calls
    stack = make_stack(
        PENGUIN12_MAX_BATCH_SIZE="1",
        PENGUIN12_URL_ALLOWED_NETWORKS="127.0.0.1/32",
        PENGUIN12_WEBHOOK_SECRET="dlq-test-secret",
    )
    stack.ports["provenance"] = free_port()
    for name in ("provenance", "preprocessor", "feature_extractor-0"):
        stack.start(name, wait=False)
    # The fault: a classifier deployed with another model than the feature extractor.
    stack.extra_env["PENGUIN12_MODEL_DIR"] = str(other_model_dir)
    stack.start("classifier", wait=False)
    for proc in stack.processes.values():
        proc.wait_ready(120)

    response = httpx.post(
        stack.url("preprocessor", "/v1/infer"),
        files={"file": ("a.jpg", photos["chelsea.jpg"], "image/jpeg")},
        data={"callback_url": hook_url},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    request_id = response.json()["request_id"]
    failed = stack.wait_final(request_id)
    assert failed["status"] == "FAILED"
    assert "features come from model" in failed["error"], failed
    wait_for(lambda: calls, 30, 0.1, "the FAILED webhook")

    # `list` tells what failed, where and why, in plain words.
    records = wait_for(lambda: dlq_list(stack), 30, 0.5, "the dead letter to be listed")
    assert len(records) == 1, records
    record = records[0]
    assert record["request_id"] == request_id
    assert record["service"] == "classifier"
    assert record["source"].startswith(stack.topic("features") + ":")
    assert "features come from model" in record["reason"]
    assert record["replayed"] is False
    assert 0 <= record["age_s"] < 120
    human = dlq(stack, "list")
    assert human.returncode == 0 and request_id in human.stdout and "REASON" in human.stdout

    # A filter that matches nothing replays nothing; a dry run replays nothing either.
    none = dlq_json(stack, "replay", "--reason-contains", "no such reason")
    assert none["selected"] == [] and none["replayed"] == []
    dry = dlq_json(stack, "replay", "--reason-contains", "FEATURES COME FROM", "--dry-run")
    assert [r["request_id"] for r in dry["selected"]] == [request_id]
    assert dry["replayed"] == [] and dry["dry_run"] is True

    # The fix: the classifier runs the feature extractor's model again. Then re-drive.
    stack.processes["classifier"].stop()
    stack.extra_env.pop("PENGUIN12_MODEL_DIR")
    stack.start("classifier")
    report = dlq_json(stack, "replay", "--reason-contains", "features come from", "--since", "10m")
    assert report["replayed"] == [f"{record['partition']}:{record['offset']}"], report

    final = stack.wait_final(request_id, timeout=60)
    assert final["status"] == "COMPLETED", final
    assert final["result"]["prediction"] in ("REAL", "FAKE")
    assert "error" not in final
    # The re-opened run's end is sent to the webhook too, as a new (signed) delivery.
    wait_for(lambda: len(calls) >= 2, 30, 0.1, "the webhook of the re-opened run")
    (first_headers, _), (headers, body) = calls[0], calls[-1]
    assert first_headers["X-Penguin12-Event"] == "job.failed"
    assert headers["X-Penguin12-Event"] == "job.completed"
    assert json.loads(body) == stack.status(request_id).json()
    assert headers["X-Penguin12-Delivery"] != first_headers["X-Penguin12-Delivery"]
    assert verify_webhook(
        response.json()["webhook_secret"],
        headers["X-Penguin12-Signature"],
        headers["X-Penguin12-Delivery"],
        body,
    )

    # Replayed once: the replayer's consumer group remembers it, whatever the filter.
    again = dlq_json(stack, "replay")
    assert again["replayed"] == [] and again["skipped_already_replayed"] == 1, again
    assert [r["replayed"] for r in dlq_list(stack)] == [True]
    settings = DlqSettings(
        kafka_bootstrap=stack.infra.bootstrap,
        topic_dead_letter=stack.topic("dead-letter"),
        dlq_replayer_group=f"dlq-replayer-{stack.suffix}",
    )
    assert read_replay_log(settings).replayed(record["partition"], record["offset"])


def test_replay_log_is_exact_under_filters() -> None:
    from penguin12_ops.dlq.replay_log import ReplayLog, _decode_ranges

    log = ReplayLog(floors={0: 3}, above={})
    for offset in (3, 4, 7, 9, 10):
        log.add(0, offset)
    [commit] = log.commits("dlq")
    assert commit.offset == 5  # 0..4 replayed
    assert _decode_ranges(commit.metadata) == [(7, 7), (9, 10)]
    reread = ReplayLog({0: commit.offset}, {0: {7, 9, 10}})
    assert [o for o in range(12) if reread.replayed(0, o)] == [0, 1, 2, 3, 4, 7, 9, 10]


def test_since_accepts_durations_iso_and_epoch() -> None:
    now = 1_000_000.0
    assert parse_since("90s", now) == now - 90
    assert parse_since("2h", now) == now - 7200
    assert parse_since("1d", now) == now - 86400
    assert parse_since("12345.5", now) == 12345.5
    assert parse_since("2026-01-01T00:00:00Z", now) == 1767225600.0


def test_a_truncated_dead_letter_is_refused_for_replay(make_stack: Callable[..., Stack]) -> None:
    """A record over the size limit is dead-lettered as a truncated copy; replaying that copy
    would queue a broken job, so `replay` refuses it, says why, and exits non-zero."""
    stack = make_stack()
    stack.start("provenance")
    stack.start("feature_extractor-0")
    request_id = str(uuid.uuid4())
    # Over the 1 MB record limit, yet past the broker: it compresses to almost nothing.
    producer = Producer(
        {
            "bootstrap.servers": stack.infra.bootstrap,
            "compression.type": "lz4",
            "message.max.bytes": 3_000_000,
        }
    )
    producer.produce(stack.topic("preprocessed"), b"{" + b" " * 2_000_000 + b"}", key=request_id)
    assert producer.flush(10) == 0
    assert stack.wait_final(request_id)["status"] == "FAILED"
    [record] = wait_for(lambda: dlq_list(stack), 30, 0.5, "the dead letter to be listed")
    assert record["request_id"] == request_id

    result = dlq(stack, "replay", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["replayed"] == []
    assert report["unreplayable"] == [
        {
            "record": f"{record['partition']}:{record['offset']}",
            "why": "the dead letter holds only a truncated copy",
        }
    ]
    # Nothing went back to the source topic: it still holds only the original record.
    source = read_topic(stack.infra.bootstrap, stack.topic("preprocessed"))
    assert [m.key().decode() for m in source] == [request_id]
    assert stack.status(request_id).json()["status"] == "FAILED"  # not re-opened
