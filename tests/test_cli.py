"""The `penguin12` command against the real stack (conftest.py's ``client_stack``), and its
offline `detect` through the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from conftest import Stack
from penguin12_client import (
    Penguin12Client,
)


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a person runs it."""
    script = Path(sys.executable).parent / "penguin12"
    return subprocess.run(
        [
            str(script),
            "--api",
            stack.url("preprocessor"),
            "--status-api",
            stack.url("provenance"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _expected_exit(results: list[dict[str, Any]]) -> int:
    if any(r.get("status") != "COMPLETED" for r in results):
        return 2
    return 1 if any(r["result"]["prediction"] == "FAKE" for r in results) else 0


def test_cli_submit_wait_json_and_exit_code(
    client_stack: Stack, photo_files: dict[str, Path]
) -> None:
    done = _cli(
        client_stack,
        "submit",
        str(photo_files["astronaut.jpg"]),
        str(photo_files["rocket.jpg"]),
        "--wait",
        "--json",
    )
    results = json.loads(done.stdout)
    assert [r["source"] for r in results] == [
        str(photo_files["astronaut.jpg"]),
        str(photo_files["rocket.jpg"]),
    ]
    for r in results:
        assert r["status"] == "COMPLETED" and r["result"]["demo"] is True
        assert r["status_url"].endswith(r["request_id"])
    assert done.returncode == _expected_exit(results), done.stderr


def test_cli_table_marks_demo_verdicts(client_stack: Stack, photo_files: dict[str, Path]) -> None:
    done = _cli(client_stack, "--no-progress", "submit", str(photo_files["chelsea.jpg"]), "--wait")
    assert done.returncode in (0, 1), done.stderr
    assert "COMPLETED" in done.stdout and "DEMO" in done.stdout
    assert ("FAKE" in done.stdout) == (done.returncode == 1)
    assert "random weights" in done.stderr


def test_cli_errors_exit_2(client_stack: Stack, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    done = _cli(client_stack, "submit", str(text), str(tmp_path / "missing.jpg"), "--json")
    assert done.returncode == 2
    results = json.loads(done.stdout)
    assert "not a supported image" in results[0]["error"]
    assert "No such file" in results[1]["error"]
    unknown = _cli(client_stack, "status", str(uuid.uuid4()), "--json")
    assert unknown.returncode == 2 and "404" in json.loads(unknown.stdout)[0]["error"]


def test_cli_submit_then_status(client_stack: Stack, photo_files: dict[str, Path]) -> None:
    submitted = _cli(client_stack, "submit", str(photo_files["retina.jpg"]), "--json")
    assert submitted.returncode == 0, submitted.stderr
    [ticket] = json.loads(submitted.stdout)
    done = _cli(client_stack, "status", ticket["request_id"], "--wait", "--json")
    [state] = json.loads(done.stdout)
    assert state["status"] == "COMPLETED"
    assert done.returncode == _expected_exit([state])


def test_sdk_and_cli_report_the_evidence(
    client: Penguin12Client, client_stack: Stack, tmp_path: Path
) -> None:
    from corpus import provenance

    declared = provenance.xmp_jpeg(provenance.xmp_packet("trainedAlgorithmicMedia"), seed=21)
    result = client.check(declared, timeout=60).result
    assert result is not None and result.declared_ai and result.is_fake
    assert result.evidence is not None
    [finding] = result.evidence
    assert (finding.source, finding.finding) == ("xmp", "ai_declared")
    assert finding.source_words == "IPTC metadata (XMP)"

    tagged = tmp_path / "tagged.png"
    tagged.write_bytes(provenance.a1111_png(22))
    done = _cli(client_stack, "--no-progress", "submit", str(tagged), "--wait")
    assert done.returncode in (0, 1), done.stderr
    text = " ".join(done.stdout.split())  # rich wraps long lines
    assert "what the file says about itself" in text
    assert "PNG text: A 'parameters' text chunk as the Stable Diffusion web UIs" in text
    plain = client.check(provenance.jpeg(23), timeout=60).result
    assert plain is not None and plain.evidence == () and not plain.declared_ai


def test_cli_detect_runs_the_model_through_the_installed_console_script(
    model_dir: Path, photo_files: dict[str, Path]
) -> None:
    """`penguin12 detect` as a person runs it: the entry point installed in the environment, which
    finds the model package's subcommands and runs the model offline (no services)."""
    script = Path(sys.executable).parent / "penguin12"
    env = {
        **os.environ,
        "PENGUIN12_MODEL_SOURCE": "local",
        "PENGUIN12_MODEL_DIR": str(model_dir),
        "PENGUIN12_MODEL_NUM_THREADS": "1",
    }
    listed = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert listed.returncode == 0 and "detect" in listed.stdout, listed.stdout + listed.stderr
    images = [photo_files["chelsea.jpg"], photo_files["coffee.jpg"]]
    done = subprocess.run(
        [str(script), "detect", *map(str, images), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    assert report["model"]["architecture"] == "tiny" and report["model"]["demo"] is True
    assert [r["path"] for r in report["results"]] == [str(p) for p in images]
    for r in report["results"]:
        assert 0.0 <= r["fake_probability"] <= 1.0
        assert r["prediction"] == (
            "FAKE" if r["fake_probability"] >= report["threshold"] else "REAL"
        )
    any_fake = any(r["prediction"] == "FAKE" for r in report["results"])
    assert done.returncode == (1 if any_fake else 0)
    assert report["summary"] == {**report["summary"], "images": 2, "errors": 0}
