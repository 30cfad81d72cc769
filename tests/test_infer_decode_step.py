"""The lean decode step: block arg-max / top-k equal torch's, partial top-p is exact, the thread count is chosen."""

from __future__ import annotations

import pytest
import torch

from tuneforge.infer.params import SamplingParams
from tuneforge.infer.sampling import argmax, make_generator, sample_batch, topk
from tuneforge.threads import candidates, choose, tune_threads, user_threads


@pytest.mark.parametrize("vocab", [151_936, 32_000, 1_001])
def test_block_argmax_and_topk_equal_torch(vocab: int) -> None:
    logits = torch.randn(5, vocab, generator=torch.Generator().manual_seed(vocab))
    logits[0, 7] = logits[0, vocab - 3] = 50.0  # a tie: the first index wins, as in torch
    assert argmax(logits) == logits.argmax(-1).tolist()
    values, ids = topk(logits, 40)
    expected_values, _ = torch.topk(logits, 40)
    assert torch.equal(values, expected_values)
    assert torch.equal(logits.gather(1, ids), values)


def test_top_p_only_rows_sample_exactly_inside_the_nucleus() -> None:
    flat = torch.zeros(1, 4096)  # mass spread evenly: 64 candidates are not enough, the exact path runs
    peaked = torch.full((1, 4096), -30.0)
    peaked[0, :3] = torch.tensor([5.0, 4.0, 3.0])
    params = [SamplingParams(top_k=0, top_p=0.5, temperature=1.0)] * 2
    draws = {tuple(sample_batch(torch.cat([flat, peaked]), params, [None] * 2, [None] * 2)) for _ in range(200)}
    flat_tokens = {d[0] for d in draws}
    peaked_tokens = {d[1] for d in draws}
    assert peaked_tokens == {0}  # p(0) ~ 0.67 crosses top_p alone: nothing else is kept
    assert len(flat_tokens) > 50  # the flat row really samples from about half the vocabulary


def test_mixed_greedy_and_sampled_rows_keep_their_order() -> None:
    logits = torch.randn(3, 2000, generator=torch.Generator().manual_seed(1))
    greedy, hot = SamplingParams(temperature=0.0), SamplingParams(temperature=1.0, top_k=5, top_p=1.0, seed=3)
    tokens = sample_batch(logits, [greedy, hot, greedy], [None] * 3, [None, make_generator(3), None])
    assert tokens[0] == int(logits[0].argmax()) and tokens[2] == int(logits[2].argmax())
    assert tokens[1] in torch.topk(logits[1], 5).indices.tolist()


def test_grouped_top_k_draws_follow_the_distribution_and_never_leave_the_nucleus() -> None:
    logits = torch.full((1, 1000), -20.0)
    logits[0, [10, 20, 30, 40]] = torch.tensor([2.0, 1.0, 0.5, -1.0])
    params = SamplingParams(temperature=1.0, top_k=8, top_p=0.9, seed=5)
    generator = make_generator(5)
    draws = [sample_batch(logits, [params], [None], [generator])[0] for _ in range(4000)]
    probs = torch.tensor([2.0, 1.0, 0.5, -1.0]).softmax(-1)  # 0.61, 0.22, 0.14, 0.03: top_p 0.9 drops 40
    kept = probs[:3] / probs[:3].sum()
    counts = torch.tensor([draws.count(token) for token in (10, 20, 30)], dtype=torch.float)
    assert set(draws) == {10, 20, 30}  # nothing past top_p, nothing outside the top-k
    assert torch.allclose(counts / len(draws), kept, atol=0.03)


def test_a_seeded_row_draws_the_same_tokens_alone_or_in_a_batch() -> None:
    logits = torch.randn(4, 5000, generator=torch.Generator().manual_seed(2))
    params = [SamplingParams(temperature=0.8, top_k=40, top_p=0.9, seed=seed) for seed in (1, 2, 3, 4)]
    alone = [sample_batch(logits[i : i + 1], [params[i]], [None], [make_generator(i + 1)])[0] for i in range(4)]
    together = sample_batch(logits, params, [None] * 4, [make_generator(i + 1) for i in range(4)])
    assert together == alone
    assert sample_batch(logits, params, [None] * 4, [make_generator(i + 1) for i in range(4)]) == together


def test_a_uniform_draw_at_the_top_of_its_range_stays_inside_the_kept_candidates(monkeypatch) -> None:
    logits = torch.full((2, 3000), -50.0)
    logits[:, :4] = torch.tensor([3.0, 2.0, 1.0, 0.0])
    monkeypatch.setattr(torch, "rand", lambda *shape, **kw: torch.ones(shape[0], 1))  # even u = 1 (rounding)
    params = [SamplingParams(temperature=1.0, top_k=20, top_p=0.8)] * 2  # keeps tokens 0 and 1; 18 are ~0
    assert sample_batch(logits, params, [None] * 2, [None] * 2) == [1, 1]


def test_thread_choice_prefers_fewer_threads_within_tolerance() -> None:
    assert candidates(1) == [1] and candidates(6) == [1, 2, 4, 6] and candidates(8) == [1, 2, 4, 8]
    assert choose({1: 1.00, 2: 0.97, 4: 0.60}) == 4
    assert choose({1: 1.00, 2: 0.97, 4: 0.99}) == 1


def test_tune_threads_measures_or_respects_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("TUNEFORGE_NUM_THREADS", "1")
        assert user_threads() == 1 and tune_threads(lambda: None, cores=4) == 1
        calls = []
        chosen = tune_threads(lambda: calls.append(torch.get_num_threads()), cores=2, respect_env=False)
        assert chosen in (1, 2) and {1, 2} <= set(calls) and torch.get_num_threads() == chosen
    finally:
        torch.set_num_threads(before)


def test_chat_prints_time_to_first_token_on_the_timings_stream() -> None:
    import io

    from tuneforge.infer.chat_cli import ChatSession, run_chat
    from tuneforge.infer.chat_stream import ChatDelta

    class Engine:
        def stream_chat(self, history: list, system: str | None = None):
            yield ChatDelta(content="Hi")
            yield ChatDelta(content=" there", finish_reason="stop", completion_tokens=2)

    stdout, timings = io.StringIO(), io.StringIO()
    run_chat(Engine(), ChatSession(), io.StringIO("hello\n"), stdout, timings=timings)
    assert "Hi there" in stdout.getvalue() and "first token" not in stdout.getvalue()
    assert timings.getvalue().startswith("[first token ") and "2 tokens" in timings.getvalue()


def test_breakdown_names_each_part_in_order() -> None:
    from tuneforge.timing import Breakdown

    timing = Breakdown()
    with timing.part("tokenizer"):
        pass
    with timing.part("data"):
        pass
    names = [name for name, _ in timing.parts]
    assert names[-2:] == ["tokenizer", "data"] and names[0] in ("start-up", "tokenizer")
    assert str(timing).endswith("s") and "tokenizer 0.00 s" in str(timing)


def test_engine_reports_first_token_decode_split_and_threads(tiny_qwen2, capsys: pytest.CaptureFixture) -> None:
    from tuneforge.config import load_config
    from tuneforge.infer import load_engine
    from tuneforge.serve.server import report_first_token

    engine = load_engine(load_config({"model_name_or_path": str(tiny_qwen2), "template": "qwen"}))
    try:
        seen: list[float] = []
        engine.backend.on_first_token = seen.append
        engine.chat([{"role": "user", "content": "hi"}], max_new_tokens=4, temperature=0)
        report_first_token(engine)  # what `tuneforge api` installs: prints the first request's figure only
        for _ in range(2):
            engine.chat([{"role": "user", "content": "hi"}], max_new_tokens=2, temperature=0)
    finally:
        engine.close(5)
    assert len(seen) == 1 and 0 < seen[0] < 60
    assert capsys.readouterr().out.count("First request: first token after") == 1
    stats = engine.backend.decode_stats
    steps, step_s, forward_s, cpu_s = stats.snapshot()[1]
    assert steps >= 3 and 0 < forward_s < step_s and cpu_s > 0 and 0 < stats.outside_forward(1) < 1
    from tuneforge.serve.metrics import ApiMetrics, render

    text = render(engine, ApiMetrics())  # the same figures reach /metrics, by batch size
    assert f'tuneforge_decode_steps_total{{batch="1"}} {steps}' in text
    assert 'tuneforge_decode_forward_seconds_total{batch="1"}' in text
    fixed = user_threads()  # a thread count set in the environment is used as given; otherwise one is measured
    assert engine.backend.threads == fixed if fixed is not None else engine.backend.threads >= 1


def test_loaded_line_names_parts_and_threads() -> None:
    from types import SimpleNamespace

    from tuneforge.timing import Breakdown, loaded_line

    timing = Breakdown()
    with timing.part("weights"):
        pass
    assert loaded_line(timing, SimpleNamespace(backend=SimpleNamespace(threads=1))).endswith(
        "weights 0.00 s; 1 CPU thread"
    )
    assert loaded_line(timing, SimpleNamespace(backend=SimpleNamespace(threads=None))).endswith("weights 0.00 s")


def test_greedy_rows_read_half_precision_logits_without_widening_them() -> None:
    logits = torch.randn(4, 151_936, generator=torch.Generator().manual_seed(5)).bfloat16()
    logits[1, 11] = logits[1, 151_000] = 40.0  # a tie in bf16: the first index wins, as over the fp32 copy
    greedy = SamplingParams(temperature=0.0)
    tokens = sample_batch(logits, [greedy] * 4, [None] * 4, [None] * 4)
    assert tokens == logits.float().argmax(-1).tolist() and tokens[1] == 11
    hot = SamplingParams(temperature=1.0, top_k=3, top_p=1.0, seed=1)  # a sampled row still works on bf16 input
    mixed = sample_batch(logits, [greedy, hot, greedy, greedy], [None] * 4, [None, make_generator(1), None, None])
    assert mixed[0] == tokens[0] and mixed[1] in torch.topk(logits[1].float(), 3).indices.tolist()


def test_packed_candidates_draw_what_the_whole_logits_draw() -> None:
    from tuneforge.infer.sampling import pack_candidates, sample_candidates

    logits = torch.randn(3, 151_936, generator=torch.Generator().manual_seed(9))
    params = [SamplingParams(temperature=t, top_k=k, top_p=p, seed=s) for t, k, p, s in
              ((0.7, 50, 0.9, 1), (1.0, 20, 1.0, 2), (0.7, 50, 0.9, 3))]  # fmt: skip
    packed = pack_candidates(*torch.topk(logits, 50))
    for _ in range(5):
        whole = sample_batch(logits, params, [None] * 3, [make_generator(p.seed) for p in params])
        assert sample_candidates(packed, params, [None] * 3, [make_generator(p.seed) for p in params]) == whole
    with pytest.raises(ValueError, match="top-k sampling without penalties"):
        sample_candidates(packed, [SamplingParams(temperature=0.0)], [None], [None])
