"""One bad row never harms its batch; sampling ranges keep the maths finite; cancelled requests free the queue."""

from __future__ import annotations

import queue

import pytest

from server_helpers import tiny_engine
from tuneforge.errors import TuneforgeError
from tuneforge.infer.params import SamplingParams
from tuneforge.infer.requests import (
    Failed,
    Finished,
    GenerationRequest,
    QueueFullError,
    RequestQueue,
    SamplingError,
    TextDelta,
)

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def engine(tiny_qwen2):
    eng = tiny_engine(tiny_qwen2, max_new_tokens=12, max_batch_size=8)
    yield eng
    eng.close()


def _run_together(engine, jobs):
    """Submit every (ids, params) at once (so they share batches); returns each one's list of events."""
    sinks = [queue.Queue() for _ in jobs]
    engine.backend.submit(*[GenerationRequest(ids, p, sink.put) for (ids, p), sink in zip(jobs, sinks, strict=True)])
    out = []
    for sink in sinks:
        events = [sink.get(timeout=60)]
        while not isinstance(events[-1], (Finished, Failed)):
            events.append(sink.get(timeout=60))
        out.append(events)
    return out


def _text(events):
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def test_a_row_whose_settings_break_sampling_fails_alone(engine):
    ids = engine.tokenizer.encode("hello there", add_special_tokens=False)
    greedy = engine.sampling(temperature=0, max_new_tokens=8)
    seeded = engine.sampling(temperature=1.0, top_p=1.0, top_k=0, seed=7, max_new_tokens=8)
    # built without validation: a penalty this small divides logits by ~0 and makes them infinite
    broken = SamplingParams(max_new_tokens=8, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1e-300)
    alone = [_run_together(engine, [(ids, p)])[0] for p in (greedy, seeded)]
    mixed = _run_together(engine, [(ids, greedy), (ids, broken), (ids, seeded), (ids, broken)])
    assert _text(mixed[0]) == _text(alone[0]) and _text(mixed[2]) == _text(alone[1])
    assert isinstance(mixed[0][-1], Finished) and isinstance(mixed[2][-1], Finished)
    for events in (mixed[1], mixed[3]):
        assert isinstance(events[-1], Failed) and isinstance(events[-1].error, SamplingError)
        assert "repetition_penalty" in str(events[-1].error)


def test_non_finite_logits_are_a_server_fault_not_the_request():
    from tuneforge.infer.isolation import row_error

    error = row_error(ValueError("x"), torch.tensor([float("nan"), 1.0]), SamplingParams())
    assert not isinstance(error, TuneforgeError) and "non-finite logits" in str(error)
    assert isinstance(row_error(ValueError("x"), torch.tensor([0.0, 1.0]), SamplingParams()), SamplingError)


def test_sampler_refuses_non_finite_probabilities():
    from tuneforge.infer.sampling import sample_batch

    logits = torch.tensor([[float("inf"), 1.0, float("inf")]])
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0)
    with pytest.raises(ValueError, match="not finite"):
        sample_batch(logits, [params], [None], [None])


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("repetition_penalty", 1e-300),
        ("repetition_penalty", 1e300),
        ("temperature", float("nan")),
        ("temperature", 1e308),
        ("top_p", float("nan")),
        ("presence_penalty", float("inf")),
        ("seed", 2**64),
    ],
)
def test_sampling_ranges_keep_the_maths_finite(setting, value):
    with pytest.raises(TuneforgeError, match=setting):
        SamplingParams().with_overrides(**{setting: value})


def test_a_tiny_top_p_keeps_the_top_token_instead_of_failing(engine):
    _, reason = engine.generate("hello", temperature=1.0, top_p=1e-300, seed=1, max_new_tokens=3)
    assert reason in ("stop", "length") and SamplingParams().with_overrides(top_p=1e-300).top_p == 1e-6


def _request(events=None):
    return GenerationRequest([1, 2], SamplingParams(), (events if events is not None else []).append)


def test_queue_takes_all_or_nothing_and_frees_cancelled_places():
    waiting = RequestQueue(3)
    first, events = _request(), []
    cancelled = _request(events)
    waiting.put(first, cancelled)
    with pytest.raises(QueueFullError):
        waiting.put(_request(), _request())  # room for 1, asked for 2: none is queued
    assert len(waiting) == 2
    cancelled.cancel()
    waiting.discard_cancelled()
    assert len(waiting) == 1 and events == [Finished("cancelled", 2, 0)]
    waiting.put(_request(), _request())  # the cancelled place is free again
    with pytest.raises(TuneforgeError, match="at most 3"):
        RequestQueue(3).put(*[_request() for _ in range(4)])  # can never fit: a 400, not a 429


def test_engine_counts_in_flight_and_tokens(engine):
    before = engine.stats.tokens_total, engine.stats.requests_total
    engine.generate("hi", temperature=0, max_new_tokens=3)
    assert engine.stats.tokens_total > before[0] and engine.stats.requests_total == before[1] + 1
    assert engine.stats.in_flight == 0
