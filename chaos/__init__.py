"""`make chaos`: prove the locally running system under faults, load and poison.

Runs against the stack `make run` starts (it starts it when it is not running), on 127.0.0.1 only.
Each scenario runs under steady load: a bounded, closed-loop submitter of real photos (a few
concurrent clients, each waiting for its answer before sending the next), while a poller follows
every accepted job's status and records the sequence of statuses it saw. Then a fault:

    kill-<service>      kill -9 a service, then `python -m penguin12_devstack up` (starts what is missing)
    restart-kafka       stop the broker (SIGTERM; kill -9 in CHAOS_FULL), then `up`
    restart-redis       stop Redis (SIGTERM; kill -9 in CHAOS_FULL), then `up`
    broker-loss         (a Kafka cluster: PENGUIN12_KAFKA_BROKERS=3) kill -9 the broker leading the
                        most partitions (reports the seconds completions stalled), restart it and
                        wait until it is back in every ISR, then kill two of three: submissions
                        must answer 503, never 202, until the brokers return
    slow-classifier     SIGSTOP the classifier for a while (backlog grows), then SIGCONT (it drains)
    flush-state         FLUSHDB on Redis DB0 (job state) mid-run: provenance must rebuild it from the
                        status topic, and every job must answer again, never lower than before
    poison              garbage, wrong schema version, missing fields and ~2 MB records written
                        straight into every topic: consumers survive, the dead-letter topic gets
                        them with a reason, their jobs (where the id is readable) are FAILED
    decode-bombs        32 (CHAOS_FULL: 64) small files that decode big, sent at once: the
                        preprocessor stays under 1 GiB, answers each (202, 413, or 503 with
                        Retry-After), and every bomb it accepts completes like the load's jobs

Per scenario it prints: submitted, accepted (202), refused (503/429: allowed while a dependency is
down), unavailable (no HTTP answer: the preprocessor itself was down), completed, failed, lost
(accepted, not terminal by the recovery deadline) and backwards (a job whose observed status
moved back, e.g. CLASSIFYING after COMPLETED, or 404 after it had a status). Targets: zero lost,
zero backwards, and the scenario's own checks. Exit status 1 when any target is missed.

    uv run python -m chaos                  # quick: every scenario, a few minutes (= make chaos)
    CHAOS_FULL=1 uv run python -m chaos     # longer phases, more load, kill -9 everywhere
    uv run python -m chaos --only kill-classifier,poison
    uv run python -m chaos --list
    PENGUIN12_KAFKA_BROKERS=3 uv run python -m chaos   # on a 3-broker cluster (`make stop` first)

On a cluster, `broker-loss` replaces `restart-kafka` in the default list; on one broker it is left out.

A JSON summary goes to chaos/results/chaos-<time>.json (and latest.json). The load sends the
benchmarks' photo variants (bench/corpus.py, made from PENGUIN12_PHOTOS, ../shared/data/photos by
default). The package: processes.py (pid files, signals, `up`), load.py and tracking.py (steady
load, every job's statuses), harness.py (a scenario's frame and common checks), scenarios/ (the
faults), report.py (table and JSON).
"""
