"""Live engine figures for the API's /metrics: requests in flight, generated tokens, time to first token."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from tuneforge.infer.requests import Event, Failed, Finished, TextDelta

TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RATE_WINDOW = 10.0  # seconds over which tokens/s is averaged


class EngineStats:
    """Thread-safe counters fed by every request's events (`track` wraps a request's emit callback)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.tokens_total = 0
        self.requests_total = 0
        self.failed_total = 0
        self.ttft_counts = [0] * (len(TTFT_BUCKETS) + 1)  # the last slot is +Inf
        self.ttft_sum = 0.0
        self._recent: deque[tuple[float, int]] = deque()

    def track(self, emit: Callable[[Event], None]) -> Callable[[Event], None]:
        """`emit`, counting the request in flight until its Finished / Failed event."""
        started, first, streamed = time.monotonic(), [True], [0]
        with self._lock:
            self.in_flight += 1
            self.requests_total += 1

        def tracked(event: Event) -> None:
            if isinstance(event, TextDelta) and event.token_ids:
                if first[0]:
                    first[0] = False
                    self._first_token(time.monotonic() - started)
                streamed[0] += len(event.token_ids)
                self._tokens(len(event.token_ids))
            elif isinstance(event, (Finished, Failed)):
                self._done(event, streamed[0])
            emit(event)

        return tracked

    def tokens_per_second(self) -> float:
        """Generated tokens per second over the last `RATE_WINDOW` seconds."""
        with self._lock:
            self._trim(time.monotonic())
            return sum(n for _, n in self._recent) / RATE_WINDOW

    def _first_token(self, seconds: float) -> None:
        with self._lock:
            self.ttft_sum += seconds
            slot = next((i for i, bound in enumerate(TTFT_BUCKETS) if seconds <= bound), len(TTFT_BUCKETS))
            self.ttft_counts[slot] += 1

    def _tokens(self, count: int) -> None:
        now = time.monotonic()
        with self._lock:
            self.tokens_total += count
            self._recent.append((now, count))
            self._trim(now)

    def _done(self, event: Finished | Failed, streamed: int) -> None:
        with self._lock:
            self.in_flight -= 1
            if isinstance(event, Failed):
                self.failed_total += 1
        if isinstance(event, Finished) and event.completion_tokens > streamed:  # tokens that streamed no text
            self._tokens(event.completion_tokens - streamed)

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - RATE_WINDOW:
            self._recent.popleft()


class DecodeStats:
    """Where decode steps spend their time, per batch size: whole step vs model forward (/metrics, benchmarks).

    The engine thread adds one record per step; readers on other threads take a consistent `snapshot`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[int, list[float]] = {}  # batch size -> [steps, step s, forward s, engine CPU s]

    def add(self, rows: int, step: float, forward: float, cpu: float = 0.0) -> None:
        """Record one decode step of `rows` rows: `step` seconds in all, `forward` of them in the model call, and
        `cpu` seconds of CPU time the engine thread used (unlike wall time, not inflated by a busy machine)."""
        with self._lock:
            figures = self._rows.setdefault(rows, [0, 0.0, 0.0, 0.0])
            figures[0] += 1
            figures[1] += step
            figures[2] += forward
            figures[3] += cpu

    def snapshot(self) -> dict[int, tuple[int, float, float, float]]:
        """{batch size: (steps, step seconds, forward seconds, engine CPU seconds)} so far."""
        with self._lock:
            return {rows: (int(f[0]), f[1], f[2], f[3]) for rows, f in sorted(self._rows.items())}

    def outside_forward(self, rows: int) -> float | None:
        """Share of the step time spent outside the forward at this batch size (None: no such step yet)."""
        _, step, forward, _ = self.snapshot().get(rows, (0, 0.0, 0.0, 0.0))
        return (step - forward) / step if step else None
