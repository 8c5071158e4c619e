"""The ``penguin12`` command.

    penguin12 submit IMAGE... [--wait] [--json] [--callback-url URL]
    penguin12 status ID... [--wait] [--json]

IMAGE is a file path or an http(s) URL (downloaded by the service). Exit status, with ``--wait``
(and for ``status``): 0 when every image is REAL, 1 when any is FAKE, 2 on any error (refused
upload, FAILED job, timeout, unknown id). Without ``--wait``: 0 when every image was accepted.

Configuration: ``--api`` / ``PENGUIN12_API_URL`` (default http://127.0.0.1:8000), ``--status-api``
/ ``PENGUIN12_STATUS_URL``, ``--api-key`` / ``PENGUIN12_API_KEY``.

Other packages may add subcommands: ``penguin12_model.cli.register(subparsers)`` is called when
that module exists; each subcommand sets ``func`` (``args -> exit code``) with ``set_defaults``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from penguin12_client.client import Penguin12Client
from penguin12_client.models import JobState, Penguin12Error, Ticket, WaitTimeout
from penguin12_client.wire import DEFAULT_BASE_URL

EXIT_REAL, EXIT_FAKE, EXIT_ERROR = 0, 1, 2
BUILTIN_COMMANDS = frozenset({"submit", "status"})
# Progress steps of one image: uploaded, features, classifying, done.
_STEP = {"PENDING": 1, "PROCESSING_FEATURES": 2, "CLASSIFYING": 3, "COMPLETED": 4, "FAILED": 4}
DEMO_NOTE = (
    "DEMO: made by a demo model with random weights; these verdicts mean nothing "
    "(load the real Penguin-12 weights for meaningful results)."
)


@dataclass
class Outcome:
    """One image (or id) from the command line, and what became of it."""

    source: str
    ticket: Ticket | None = None
    state: JobState | None = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or (self.state is not None and self.state.status == "FAILED")

    @property
    def fake(self) -> bool:
        return bool(self.state and self.state.result and self.state.result.is_fake)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source}
        if self.ticket:
            out["request_id"] = self.ticket.request_id
            out["status_url"] = self.ticket.status_url
        if self.state:
            out.update(self.state.raw)
        if self.error:
            out["error"] = self.error
        return out


def build_parser() -> tuple[argparse.ArgumentParser, Any]:
    parser = argparse.ArgumentParser(
        prog="penguin12",
        description="Check images for deepfakes with a Penguin12 service.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit status with --wait: 0 all REAL, 1 any FAKE, 2 any error.",
    )
    parser.add_argument(
        "--api",
        default=os.environ.get("PENGUIN12_API_URL", DEFAULT_BASE_URL),
        help="preprocessor URL (env PENGUIN12_API_URL; default %(default)s)",
    )
    parser.add_argument(
        "--status-api",
        default=os.environ.get("PENGUIN12_STATUS_URL") or None,
        help="provenance URL for bare request ids (env PENGUIN12_STATUS_URL; default: the "
        "preprocessor URL with port 8001)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("PENGUIN12_API_KEY") or None,
        help="API key, sent as X-API-Key (env PENGUIN12_API_KEY)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait per job (default 120)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress display")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    submit = subparsers.add_parser(
        "submit", help="submit images (paths or http(s) URLs)", description="Submit images."
    )
    submit.add_argument("images", nargs="+", metavar="IMAGE", help="file path or http(s) URL")
    submit.add_argument("--wait", action="store_true", help="wait for the verdicts")
    submit.add_argument("--json", action="store_true", help="print JSON instead of a table")
    submit.add_argument("--callback-url", help="URL to POST each final state to (webhook)")
    submit.set_defaults(func=cmd_submit)

    status = subparsers.add_parser(
        "status", help="show jobs' status", description="Show the status of jobs."
    )
    status.add_argument("ids", nargs="+", metavar="ID", help="request id (or status URL)")
    status.add_argument("--wait", action="store_true", help="wait until the jobs finish")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(func=cmd_status)
    return parser, subparsers


def register_plugins(subparsers: Any) -> None:
    """Subcommands from other packages (offline ``detect``/``eval`` in penguin12_model)."""
    try:
        module = importlib.import_module("penguin12_model.cli")
    except ImportError:
        return
    register = getattr(module, "register", None)
    if callable(register):
        register(subparsers)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser, subparsers = build_parser()
    # Plugins may import heavy packages (torch): load them only when a builtin is not asked for.
    if not BUILTIN_COMMANDS.intersection(args_list):
        register_plugins(subparsers)
    args = parser.parse_args(args_list)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


def _client(args: argparse.Namespace) -> Penguin12Client:
    return Penguin12Client(args.api, args.status_api, args.api_key)


def _progress(args: argparse.Namespace, err: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=args.no_progress or not err.is_terminal,
    )


def cmd_submit(args: argparse.Namespace) -> int:
    out, err = Console(), Console(stderr=True)
    outcomes = [Outcome(source) for source in args.images]
    with _client(args) as client, _progress(args, err) as progress:
        tasks: dict[int, TaskID] = {}
        for i, outcome in enumerate(outcomes):
            name = _short(outcome.source)
            task = progress.add_task(f"{name}: uploading", total=4)
            tasks[i] = task
            try:
                if outcome.source.startswith(("http://", "https://")):
                    outcome.ticket = client.submit_url(
                        outcome.source, callback_url=args.callback_url
                    )
                else:
                    outcome.ticket = client.submit(outcome.source, callback_url=args.callback_url)
                progress.update(task, completed=1, description=f"{name}: queued")
            except (Penguin12Error, OSError, httpx.HTTPError) as exc:
                outcome.error = _describe(exc)
                progress.update(task, completed=4, description=f"{name}: refused")
        if args.wait:
            for i, outcome in enumerate(outcomes):
                if outcome.ticket is not None:
                    _wait(client, outcome, args.timeout, progress, tasks[i])
    _report(outcomes, args.json, out, err, waited=args.wait)
    if not args.wait:
        return EXIT_ERROR if any(o.error for o in outcomes) else EXIT_REAL
    return _exit_code(outcomes)


def cmd_status(args: argparse.Namespace) -> int:
    out, err = Console(), Console(stderr=True)
    outcomes = [Outcome(ref) for ref in args.ids]
    with _client(args) as client, _progress(args, err) as progress:
        for outcome in outcomes:
            ref = outcome.source
            if ref.startswith(("http://", "https://")):
                outcome.ticket = Ticket(ref.rstrip("/").rsplit("/", 1)[-1], ref)
            else:
                outcome.ticket = Ticket(ref, client.status_url(ref))
            task = progress.add_task(_short(outcome.ticket.request_id), total=4)
            if args.wait:
                _wait(client, outcome, args.timeout, progress, task)
            else:
                try:
                    outcome.state = client.status(outcome.ticket)
                except (Penguin12Error, httpx.HTTPError) as exc:
                    outcome.error = _describe(exc)
    _report(outcomes, args.json, out, err, waited=True)
    return _exit_code(outcomes)


def _wait(
    client: Penguin12Client, outcome: Outcome, timeout: float, progress: Progress, task: TaskID
) -> None:
    assert outcome.ticket is not None
    name = _short(outcome.source)

    def on_change(state: JobState) -> None:
        progress.update(
            task, completed=_STEP.get(state.status, 1), description=f"{name}: {state.status}"
        )

    try:
        outcome.state = client.wait(outcome.ticket, timeout, on_change=on_change)
    except WaitTimeout as exc:
        outcome.state = exc.last_state
        outcome.error = str(exc)
    except (Penguin12Error, httpx.HTTPError) as exc:
        outcome.error = _describe(exc)
    progress.update(task, completed=4)


def _exit_code(outcomes: list[Outcome]) -> int:
    if any(o.failed for o in outcomes):
        return EXIT_ERROR
    if any(o.fake for o in outcomes):
        return EXIT_FAKE
    return EXIT_REAL


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.HTTPError):
        return f"could not reach the service: {exc}"
    return str(exc)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def _report(
    outcomes: list[Outcome], as_json: bool, out: Console, err: Console, *, waited: bool
) -> None:
    if as_json:
        out.print_json(json.dumps([o.to_json() for o in outcomes]))
        return
    table = Table(show_lines=False, header_style="bold")
    for column in ("Image", "Request id", "Status", "Verdict", "Confidence", "Model"):
        table.add_column(column, overflow="fold")
    demo = False
    caveats: set[str] = set()
    for o in outcomes:
        state = o.state
        result = state.result if state else None
        verdict, confidence, model = "", "", ""
        if result is not None:
            style = "red" if result.is_fake else "green"
            verdict = f"[{style}]{result.prediction}[/{style}]"
            if result.declared_ai:
                verdict += " (declared)"
            if result.demo:
                verdict += " [yellow]DEMO[/yellow]"
                demo = True
            if result.assessment:  # the model's abstain-band reading: likely real/inconclusive/...
                verdict += f"\n[dim]{result.assessment.replace('_', ' ')}[/dim]"
            confidence = f"{result.confidence:.1%}"
            model = result.model.version if result.model else ""
            if result.model and result.model.caveat:
                caveats.add(result.model.caveat)
        status = state.status if state else ("refused" if o.error else "submitted")
        if o.error or (state and state.error):
            status += f"\n[red]{o.error or (state.error if state else '')}[/red]"
        table.add_row(
            o.source,
            o.ticket.request_id if o.ticket else "",
            status,
            verdict,
            confidence,
            model,
        )
    out.print(table)
    _print_evidence(outcomes, out)
    for caveat in sorted(caveats):
        err.print(f"[dim]{caveat}[/dim]", highlight=False)
    if demo:
        err.print(f"[yellow]{DEMO_NOTE}[/yellow]")
    if not waited and any(o.ticket for o in outcomes):
        err.print("Follow them with: penguin12 status --wait ID")


def _print_evidence(outcomes: list[Outcome], out: Console) -> None:
    """Each image's findings under the table, in words; the file's text is never markup."""
    for o in outcomes:
        result = o.state.result if o.state else None
        if result is None or not result.evidence:
            continue
        out.print(f"[bold]{escape(o.source)}[/bold]: what the file says about itself")
        for finding in result.evidence:
            out.print(f"  • [bold]{escape(finding.source_words)}[/bold]: {escape(finding.detail)}")
        if result.declared_ai:
            out.print(
                "  The file declares AI generation, so the verdict is FAKE; the confidence is "
                "still the pixel model's own."
            )


if __name__ == "__main__":
    sys.exit(main())
