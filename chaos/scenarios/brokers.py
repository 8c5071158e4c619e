"""broker-loss (issue #13, on a 3-broker cluster): lose the busiest broker, then two of three.

While one broker is gone the jobs keep completing (the stall is read against a baseline from the
same run); with two gone a submission must answer 503, never a 202 it cannot keep.
"""

from __future__ import annotations

import signal
import time
from collections import Counter

from chaos.harness import Context, Outcome, under_load, wait_until
from chaos.probes import partition_layout
from chaos.processes import devstack_up, signal_component, wait_dead
from penguin12_devstack.stack import Ports, kafka_broker_count


def broker_loss(ctx: Context) -> Outcome:
    """Issue #13 on the local cluster: one broker lost, restarted, then two lost at once."""
    from penguin12.settings import CommonSettings

    outcome = Outcome(
        "broker-loss",
        "kill -9 the busiest broker, restart it, then lose 2 of 3 (503, never 202), restore",
    )
    brokers = kafka_broker_count()
    if brokers < 3:
        outcome.error = (
            "needs a 3-broker cluster: `make stop`, then PENGUIN12_KAFKA_BROKERS=3 make chaos"
        )
        return outcome
    settings = CommonSettings(
        kafka_bootstrap=",".join(f"127.0.0.1:{p}" for p in Ports().kafka_brokers(brokers))
    )
    pipeline = [
        settings.topic_preprocessed,
        settings.topic_features,
        settings.topic_status,
        settings.topic_dead_letter,
    ]
    with under_load(ctx, outcome) as tracker:
        ctx.wait(ctx.profile.warmup_s)
        wait_until(lambda: tracker.finished_after(0), 60, "a first finished job")
        # Baseline from this run: the longest wait between completions under the same load
        # before any fault (the stall below is read against it).
        ctx.wait(ctx.profile.warmup_s)
        outcome.details["baseline_gap_s"] = round(
            tracker.longest_completion_gap(tracker.first_finished(), time.time()), 1
        )
        counts = Counter(leader for leader, _ in partition_layout(settings).values())
        victim, led = counts.most_common(1)[0]
        name = f"kafka-broker-{victim}"
        outcome.victims.add(name)
        killed_at = time.time()
        pid = signal_component(name, signal.SIGKILL)
        wait_dead(pid, 10)
        outcome.notes.append(f"killed broker {victim} (pid {pid}), leader of {led} partitions")
        wait_until(
            lambda: tracker.finished_after(killed_at, submitted_after=True) >= 3,
            180,
            "jobs submitted after the kill to finish",
        )
        ctx.wait(ctx.profile.fault_s)
        stall = tracker.longest_completion_gap(killed_at, time.time())
        outcome.details["stall_s"] = round(stall, 1)
        outcome.details["refused_during_failover"] = sum(
            c != 202 for c in tracker.answers_since(killed_at)
        )
        outcome.checks["jobs kept completing with a broker gone"] = True  # the wait above

        restarted_at = time.time()
        devstack_up(ctx.log)  # starts the missing broker on its data
        wait_until(
            lambda: all(victim in isr for _, isr in partition_layout(settings, pipeline).values()),
            240,
            f"broker {victim} back in every ISR",
        )
        outcome.details["catch_up_s"] = round(time.time() - restarted_at, 1)

        others = [b for b in range(1, brokers + 1) if b != victim][:2]
        outcome.victims.update(f"kafka-broker-{b}" for b in others)
        down_at = time.time()
        for broker in others:
            wait_dead(signal_component(f"kafka-broker-{broker}", signal.SIGKILL), 10)

        def refusing() -> bool:
            recent = tracker.answers_since(down_at)
            return len(recent) >= 3 and recent[-3:] == [503, 503, 503]

        wait_until(refusing, 120, "503 answers with 2 of 3 brokers gone")
        first_503 = next(t for t, c in tracker.answers if t > down_at and c == 503)
        outcome.details["first_503_after_s"] = round(first_503 - down_at, 1)
        ctx.wait(ctx.profile.fault_s)
        # Before the first 503 a submission may still have been stored on 2 replicas: those 202s
        # are real jobs and must complete (the zero-lost check). After it, a 202 would be a lie.
        after = tracker.answers_since(first_503)
        outcome.details["answers_with_one_broker"] = dict(Counter(after))
        outcome.checks["no 202 once refusing with one broker"] = 202 not in after
        back_at = time.time()
        outcome.details["restart_s"] = round(devstack_up(ctx.log), 1)
        wait_until(
            lambda: tracker.finished_after(back_at, submitted_after=True) >= 3,
            240,
            "jobs to complete after the brokers returned",
        )
        outcome.details["recovered_after_s"] = round(time.time() - back_at, 1)
        ctx.wait(ctx.profile.after_s)
    return outcome
