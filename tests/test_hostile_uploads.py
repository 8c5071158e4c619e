"""32 decompression-bomb uploads at once against a real preprocessor with its default limits.

The same burst `make bench` measures (bench/hostile_uploads.py, scenario 8): every file is within
the documented upload and pixel limits and decodes to 80-640 MB. Before the decode budget, eight
of them at once took the process from 100 MB to 2.7 GB; forty would get it killed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from conftest import ROOT, Stack

sys.path.insert(0, str(ROOT))
from bench.hostile_uploads import build_mix, burst, topic_records

PEAK_RSS_LIMIT = 2**30


def test_a_burst_of_bombs_keeps_the_preprocessor_under_1_gib(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack()  # the documented defaults: 10 MiB, 40 MP, the decode budgets
    process = stack.start("preprocessor")
    result = burst(stack.url("preprocessor"), process.process.pid, build_mix(32))

    statuses = result.statuses
    print(f"statuses {statuses}, peak RSS {result.peak_rss >> 20} MiB")
    assert result.alive_after and result.ready_after, "the preprocessor did not survive"
    assert result.unanswered == 0, [o for o in result.outcomes if o.status is None]
    assert result.peak_rss < PEAK_RSS_LIMIT, f"peak RSS {result.peak_rss >> 20} MiB"
    for outcome in result.outcomes:
        # 202, or a refusal that says why: 413 (the per-image budget), 503 with Retry-After.
        assert outcome.status in (202, 413, 503), outcome
        if outcome.status == 503:
            assert outcome.retry_after, outcome
        if outcome.status == 413:
            assert "MiB of memory" in outcome.detail, outcome
    assert statuses.get("202", 0) >= 16, statuses  # most are decoded, not refused
    # No 202 without a queued job.
    assert topic_records(stack.infra.bootstrap, stack.topic("preprocessed")) == result.accepted
