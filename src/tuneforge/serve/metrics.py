"""GET /metrics in the Prometheus text format: queue depth, running requests, tokens/s, TTFT, errors by type."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from tuneforge.infer.stats import TTFT_BUCKETS


class ApiMetrics:
    """Counters the API keeps itself (errors by OpenAI error type); the engine's figures come from its stats."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.errors: Counter[str] = Counter()

    def error(self, kind: str) -> None:
        """Count one error answer (or streamed error event) of OpenAI type `kind`."""
        with self._lock:
            self.errors[kind] += 1


def _metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    return lines + [f"{name}{labels} {value:g}" for labels, value in samples]


def render(engine: Any, metrics: ApiMetrics) -> str:
    """The whole exposition text for `engine` (any engine with `.stats` and `.backend.queue`)."""
    stats, queued = engine.stats, len(engine.backend.queue)
    running = max(0, stats.in_flight - queued)
    cumulative, buckets = 0, []
    for bound, count in zip([*TTFT_BUCKETS, float("inf")], stats.ttft_counts, strict=True):
        cumulative += count
        buckets.append((f'_bucket{{le="{"+Inf" if bound == float("inf") else f"{bound:g}"}"}}', cumulative))
    lines = [
        *_metric("tuneforge_queue_depth", "gauge", "Requests waiting for the engine.", [("", queued)]),
        *_metric("tuneforge_running_requests", "gauge", "Requests being decoded now.", [("", running)]),
        *_metric("tuneforge_requests_total", "counter", "Requests handed to the engine.", [("", stats.requests_total)]),
        *_metric("tuneforge_generated_tokens_total", "counter", "Tokens generated.", [("", stats.tokens_total)]),
        *_metric(
            "tuneforge_tokens_per_second",
            "gauge",
            "Tokens generated per second (10 s average).",
            [("", stats.tokens_per_second())],
        ),
        "# HELP tuneforge_time_to_first_token_seconds Seconds from queueing to the first streamed token.",
        "# TYPE tuneforge_time_to_first_token_seconds histogram",
        *[f"tuneforge_time_to_first_token_seconds{labels} {value:g}" for labels, value in buckets],
        f"tuneforge_time_to_first_token_seconds_sum {stats.ttft_sum:g}",
        f"tuneforge_time_to_first_token_seconds_count {cumulative}",
        *_metric(
            "tuneforge_errors_total",
            "counter",
            "Error answers by OpenAI error type.",
            [(f'{{type="{kind}"}}', count) for kind, count in sorted(metrics.errors.items())],
        ),
        *_metric(
            "tuneforge_failed_generations_total",
            "counter",
            "Generations that ended in an engine error.",
            [("", stats.failed_total)],
        ),
    ]
    return "\n".join(lines + _decode_lines(engine)) + "\n"


def _decode_lines(engine: Any) -> list[str]:
    """Decode steps by batch size, their seconds and the model forward's share (backends that measure them)."""
    stats = getattr(engine.backend, "decode_stats", None)
    if stats is None:
        return []
    snapshot = stats.snapshot()
    parts = (
        ("steps_total", "Decode steps by batch size.", 0),
        ("step_seconds_total", "Seconds spent in decode steps by batch size.", 1),
        ("forward_seconds_total", "Seconds of those steps spent in the model forward.", 2),
        ("cpu_seconds_total", "CPU seconds the engine thread used in those steps.", 3),
    )
    lines = []
    for name, help_text, index in parts:
        samples = [(f'{{batch="{rows}"}}', figures[index]) for rows, figures in snapshot.items()]
        lines += _metric(f"tuneforge_decode_{name}", "counter", help_text, samples)
    return lines
