"""Following a job: the long-poll loop's decisions and the Server-Sent Events parser.

Both are plain logic with no I/O, so the sync and the async client drive the same rules and differ
only in ``time.sleep`` vs ``asyncio.sleep`` and ``for`` vs ``async for``.
"""

from __future__ import annotations

import json
import time

from penguin12_client.models import JobState, WaitTimeout

# One long-poll request waits at most this long on the server (it caps at 30 s).
LONG_POLL_S = 25.0


class LongPoll:
    """One job's wait: the next request's parameters, and whether to pause before the next one.

    ``final_only`` asks the server to answer only with the verdict (one request instead of one per
    step) when nobody follows the intermediate states.
    """

    def __init__(self, job_id: str, timeout: float, *, final_only: bool) -> None:
        self.job_id = job_id
        self.timeout = timeout
        self.final_only = final_only
        self.deadline = time.monotonic() + timeout
        self._asked = self._wait = self._remaining = 0.0

    def request(self, state: JobState) -> tuple[dict[str, str], float]:
        """(query parameters, HTTP timeout) of the next long-poll; `WaitTimeout` past the deadline."""
        self._remaining = self.deadline - time.monotonic()
        if self._remaining <= 0:
            raise WaitTimeout(self.job_id, self.timeout, state)
        self._wait = min(LONG_POLL_S, self._remaining)
        self._asked = time.monotonic()
        params = {"wait": f"{self._wait:.1f}", "since": state.status}
        if self.final_only:
            params["until"] = "final"
        return params, self._wait + 15

    def pause(self, before: JobState, after: JobState) -> float:
        """Seconds to sleep before asking again: only when nothing changed and the answer came at
        once (a server without long-poll), so that such a server is polled gently."""
        if after.status != before.status or time.monotonic() - self._asked >= min(
            1.0, self._wait / 2
        ):
            return 0.0
        return min(0.5, max(self._remaining, 0))


class SseParser:
    """Server-Sent Events, line by line: `feed` returns a state when a `status` event ends."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> JobState | None:
        if line == "":
            event, data = self._event, self._data
            self._event, self._data = "message", []
            if event == "status" and data:
                return JobState.from_json(json.loads("\n".join(data)))
            return None
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None
