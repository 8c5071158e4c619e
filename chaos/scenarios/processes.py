"""Faults on whole processes: kill -9 a service, stop Kafka or Redis, freeze the classifier."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from chaos.harness import Context, Outcome, under_load
from chaos.processes import devstack_up, signal_component, wait_dead


def kill_service(component: str) -> Callable[[Context], Outcome]:
    def run(ctx: Context) -> Outcome:
        outcome = Outcome(f"kill-{component}", f"kill -9 {component} under load, then `up`")
        outcome.victims.add(component)
        with under_load(ctx, outcome):
            ctx.wait(ctx.profile.warmup_s)
            pid = signal_component(component, signal.SIGKILL)
            wait_dead(pid, 10)
            outcome.notes.append(f"killed pid {pid}")
            ctx.wait(ctx.profile.fault_s)
            outcome.details["restart_s"] = round(devstack_up(ctx.log), 1)
            if ctx.profile.full:  # a second crash soon after the restart
                ctx.wait(3)
                pid = signal_component(component, signal.SIGKILL)
                wait_dead(pid, 10)
                outcome.details["restart2_s"] = round(devstack_up(ctx.log), 1)
            ctx.wait(ctx.profile.after_s)
        return outcome

    return run


def restart_infra(component: str) -> Callable[[Context], Outcome]:
    def run(ctx: Context) -> Outcome:
        sig = ctx.profile.kill_signal
        outcome = Outcome(f"restart-{component}", f"{sig.name} {component} under load, then `up`")
        outcome.victims.add(component)
        with under_load(ctx, outcome):
            ctx.wait(ctx.profile.warmup_s)
            pid = signal_component(component, sig)
            stopped = time.monotonic()
            if not wait_dead(pid, 60):
                os.kill(pid, signal.SIGKILL)
                wait_dead(pid, 10)
                outcome.notes.append(f"{component} ignored {sig.name} for 60 s: SIGKILLed")
            outcome.details["stop_s"] = round(time.monotonic() - stopped, 1)
            ctx.wait(ctx.profile.fault_s)
            outcome.details["restart_s"] = round(devstack_up(ctx.log), 1)
            ctx.wait(ctx.profile.after_s)
        return outcome

    return run


def slow_classifier(ctx: Context) -> Outcome:
    stop_s = ctx.profile.fault_s * 2
    outcome = Outcome("slow-classifier", f"SIGSTOP the classifier {stop_s:.0f} s, then SIGCONT")
    with under_load(ctx, outcome) as tracker:
        ctx.wait(ctx.profile.warmup_s)
        pid = signal_component("classifier", signal.SIGSTOP)
        try:
            ctx.wait(stop_s)
            outcome.details["backlog_at_sigcont"] = len(tracker.open_ids())
        finally:
            os.kill(pid, signal.SIGCONT)
        started = time.monotonic()
        ctx.wait(ctx.profile.after_s)
    outcome.details["drain_s"] = round(time.monotonic() - started, 1)
    outcome.checks["backlog grew while stopped"] = outcome.details["backlog_at_sigcont"] > 0
    return outcome
