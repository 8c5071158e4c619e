"""`python -m chaos` (`make chaos`): pick the scenarios, run each from a healthy stack, report."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time

import httpx

import chaos
from chaos.config import RESULTS, Profile
from chaos.harness import Context, Outcome
from chaos.load import photos
from chaos.processes import devstack_up
from chaos.report import print_outcome, table, write_summary
from chaos.scenarios import SCENARIOS, default_scenarios
from penguin12_devstack.stack import kafka_broker_count


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _run_one(ctx: Context, name: str) -> Outcome:
    print(f"\n--- {name}", flush=True)
    t0 = time.monotonic()
    try:
        outcome = SCENARIOS[name](ctx)
    except KeyboardInterrupt:
        print("interrupted; bringing the stack back up")
        with contextlib.suppress(Exception):
            devstack_up(ctx.log)
        raise
    except Exception as exc:
        outcome = Outcome(name, "crashed", error=f"{type(exc).__name__}: {exc}")
    outcome.seconds = round(time.monotonic() - t0, 1)
    print_outcome(outcome)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description=chaos.__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(SCENARIOS))
        return 0
    names = (
        [n.strip() for n in args.only.split(",")]
        if args.only
        else default_scenarios(kafka_broker_count())
    )
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; see --list")

    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C, so a SIGSTOPped classifier gets SIGCONT.
    signal.signal(signal.SIGTERM, _interrupt)
    profile = Profile.from_env()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log = RESULTS / f"devstack-{stamp}.log"
    print(f"chaos: {'FULL' if profile.full else 'quick'} mode, scenarios: {', '.join(names)}")
    images = photos(300 if profile.full else 120)
    outcomes: list[Outcome] = []
    started = time.monotonic()
    with httpx.Client(timeout=5) as http:
        ctx = Context(profile, images, log, http)
        print("chaos: making sure the stack is up (`python -m penguin12_devstack up`) ...")
        ctx.ensure_up()
        for index, name in enumerate(names):
            if index:
                try:
                    ctx.ensure_up()  # every scenario starts from a healthy stack
                except Exception as exc:
                    print(f"\ncould not restore the stack, stopping here: {exc}")
                    break
            outcomes.append(_run_one(ctx, name))
    print("\n" + table(outcomes))
    passed = all(o.passed for o in outcomes) and len(outcomes) == len(names)
    seconds = time.monotonic() - started
    out = write_summary(profile, stamp, seconds, passed, outcomes)
    print(f"\nsummary: {out}  ({'PASS' if passed else 'FAIL'}, {seconds:.1f} s)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
