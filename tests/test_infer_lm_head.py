"""The two-thread LM head: the same logits either way, the faster way chosen per batch size, greedy output unchanged."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from tuneforge.infer.lm_head import (
    EXPLORE,
    WARMUP,
    Chooser,
    HalfProduct,
    SplitHead,
    _screens,
    half_products,
    split_head,
)


@pytest.fixture(scope="module")
def model(tiny_qwen2):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_qwen2).eval()


def split_engine(tiny_qwen2, monkeypatch: pytest.MonkeyPatch):
    """An engine on the tiny Qwen2 as the split head wants it: one intra-op thread, two cores."""
    import tuneforge.threads
    from tuneforge.config import load_config
    from tuneforge.infer import load_engine

    monkeypatch.setenv("TUNEFORGE_NUM_THREADS", "1")
    monkeypatch.setattr(tuneforge.threads, "available_cores", lambda: 2)
    return load_engine(load_config({"model_name_or_path": str(tiny_qwen2), "template": "qwen"}))


def test_both_ways_give_the_same_logits_and_the_head_is_restored(model) -> None:
    head = model.get_output_embeddings()
    hidden = torch.randn(8, 1, head.in_features, generator=torch.Generator().manual_seed(0))
    ids = torch.randint(0, 5000, (8, 7), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        layer, whole = head(hidden), model(input_ids=ids, logits_to_keep=1).logits
        split = SplitHead(head)
        try:
            for rows in (8, 3, 1):  # a lone row splits too: its product is bound by reading the weight
                part = hidden[:rows]
                assert torch.equal(split.split(part), split.plain(part))  # the way picked never changes a logit
                torch.testing.assert_close(split.split(part), layer[:rows], atol=1e-6, rtol=0)
            torch.testing.assert_close(model(input_ids=ids, logits_to_keep=1).logits, whole, atol=1e-6, rtol=0)
        finally:
            split.close()
    assert "forward" not in head.__dict__


def test_a_head_above_the_copy_limit_splits_its_own_weight(model, monkeypatch: pytest.MonkeyPatch) -> None:
    import tuneforge.infer.lm_head as lm_head

    monkeypatch.setattr(lm_head, "COPY_LIMIT", 0)
    head = model.get_output_embeddings()
    hidden = torch.randn(4, head.in_features, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        layer = head(hidden)
        split = SplitHead(head)
        try:
            assert all(p.__name__ == "<lambda>" for p in split.products)  # the layer's own weight, no copy
            assert torch.equal(split.split(hidden), layer) and torch.equal(split.plain(hidden), layer)
        finally:
            split.close()


def test_chooser_measures_both_ways_then_keeps_the_faster_and_explores() -> None:
    chooser = Chooser()
    warmup = []
    for _ in range(WARMUP):  # the ways take turns; a slow first timing (a cold thread) does not stick
        for seconds in (0.010, 0.030):
            way = chooser.pick(8)
            warmup.append(way)
            chooser.record(8, way, seconds if not way else (0.030 if len(warmup) == 2 else 0.006))
    assert warmup == [False, True] * WARMUP
    picks = [chooser.pick(8) for _ in range(2 * EXPLORE)]
    assert picks.count(False) == 2 and picks.count(True) == 2 * EXPLORE - 2
    for _ in range(20):  # the split becomes slower (a busy second core): the chooser follows
        chooser.record(8, True, 0.030)
    assert [chooser.pick(8) for _ in range(EXPLORE)].count(False) == EXPLORE - 1
    assert chooser.pick(16) is False  # each batch size measures on its own


def test_only_a_plain_fp32_head_on_one_thread_with_two_cores_is_split(model) -> None:
    assert split_head(model, threads=2, cores=2) is None
    assert split_head(model, threads=1, cores=1) is None
    head = split_head(model, threads=1, cores=2)
    try:
        assert isinstance(head, SplitHead)
    finally:
        head.close()


def test_batched_greedy_output_is_unchanged_by_the_split(tiny_qwen2, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Chooser, "pick", lambda self, rows: True)  # every batch splits
    splits, original = [], SplitHead.split
    monkeypatch.setattr(SplitHead, "split", lambda self, hidden: splits.append(1) or original(self, hidden))
    engine = split_engine(tiny_qwen2, monkeypatch)
    try:
        assert engine.backend.head is not None
        prompts = [[{"role": "user", "content": f"Count to {n}."}] for n in range(6)]
        alone = [engine.chat(p, temperature=0, max_new_tokens=12).content for p in prompts]
        together: list[str | None] = [None] * len(prompts)

        def run(index: int) -> None:
            together[index] = engine.chat(prompts[index], temperature=0, max_new_tokens=12).content

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
        submitted = engine.stats.requests_total + len(prompts)
        with engine.backend.model_lock:  # the engine waits in its first forward until every request is submitted
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 60  # (counting queued requests hung when the engine took two at once)
            while engine.stats.requests_total < submitted and time.monotonic() < deadline:
                threading.Event().wait(0.01)
        for thread in threads:
            thread.join()
        assert splits and together == alone
    finally:
        engine.close(5)


def test_greedy_search_in_the_halves_equals_the_argmax_of_the_logits(model) -> None:
    head = model.get_output_embeddings()
    hidden = torch.randn(6, head.in_features, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        split = SplitHead(head)
        try:
            for rows in (6, 3, 1):  # 1-3 rows are screened by the int8 copies where this torch has them
                expected = split.plain(hidden[:rows]).argmax(-1).tolist()
                for way in (True, False):
                    split.chooser.pick = lambda key, way=way: way
                    assert split.greedy(hidden[:rows]) == expected
            # a tie across the halves: the first index wins, as in torch's argmax
            weight = head.weight
            twin = torch.zeros(1, head.in_features)
            twin[0, 0] = 1.0
            column = weight[:, 0].clone()
            try:
                weight[:, 0] = 0.0
                weight[5, 0] = weight[split.cut + 7, 0] = 9.0
                split.products = half_products(weight, split.cut)  # products of the edited weight
                split.screens = _screens(weight, split.cut, split.products)
                assert split.greedy(twin) == [5] == split.plain(twin).argmax(-1).tolist()
            finally:
                weight[:, 0] = column
        finally:
            split.close()


def test_onednn_takes_over_only_row_counts_where_it_gives_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    half = torch.randn(4096, 64, generator=torch.Generator().manual_seed(4)) * 0.02
    product = HalfProduct(half)
    if product.packed is None:
        pytest.skip("this torch build has no oneDNN packed product")
    hidden = torch.randn(8, 64, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        expected = {rows: torch.mm(hidden[:rows], product.columns) for rows in range(1, 9)}
        for rows in range(1, 9):  # first call per row count: MKL's bits, oneDNN compared beside them
            assert torch.equal(product(hidden[:rows]), expected[rows])
        assert 1 not in product.verified and set(product.verified) == set(range(2, 9))
        assert any(product.verified.values())  # batches of 4+ at least: one GEMM kernel family
        calls: list[int] = []
        onednn = product._onednn
        monkeypatch.setattr(product, "_onednn", lambda flat: calls.append(flat.shape[0]) or onednn(flat))
        for rows in range(1, 9):  # later calls: oneDNN exactly where verified, the same bits either way
            assert torch.equal(product(hidden[:rows]), expected[rows])
        assert calls == [rows for rows in range(2, 9) if product.verified[rows]]


def test_on_product_runs_on_the_installing_thread_as_each_product_starts(model) -> None:
    head = model.get_output_embeddings()
    hidden = torch.randn(2, head.in_features, generator=torch.Generator().manual_seed(6))
    split = SplitHead(head)
    calls: list[str] = []
    split.on_product = lambda: calls.append(threading.current_thread().name)
    try:
        with torch.inference_mode():
            split.plain(hidden), split.split(hidden)
            for way in (True, False):
                split.chooser.pick = lambda key, way=way: way
                split.greedy(hidden)
            assert calls == [threading.current_thread().name] * 4
            other = threading.Thread(target=lambda: head(hidden), name="other")
            other.start()
            other.join()
            assert "other" not in calls and len(calls) == 4  # another thread's call leaves the hook alone
    finally:
        split.close()


def test_decode_steps_post_their_text_while_the_next_head_product_runs(tiny_qwen2, monkeypatch) -> None:
    engine = split_engine(tiny_qwen2, monkeypatch)
    try:
        backend = engine.backend
        assert backend.head is not None and backend.head.on_product == backend._post_outbox
        posted: list[int] = []
        post = backend._post_outbox
        backend.head.on_product = lambda: posted.append(len(backend._outbox)) or post()
        messages = [{"role": "user", "content": "Count to ten."}]
        stream = list(engine.stream_chat(messages, temperature=0, max_new_tokens=12))
        whole = engine.chat(messages, temperature=0, max_new_tokens=12)
        assert whole.content and "".join(d.content or "" for d in stream) == whole.content  # none lost or reordered
        assert sum(1 for n in posted if n) >= 8  # decode steps' text went out from inside the head's product
    finally:
        engine.close(5)


def test_top_k_in_the_halves_equals_topk_of_the_logits(model, one_thread) -> None:
    head = model.get_output_embeddings()
    hidden = torch.randn(5, head.in_features, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        split = SplitHead(head)
        try:
            logits = split.plain(hidden)
            expected = torch.topk(logits, 50).values
            for way in (True, False):
                split.chooser.pick = lambda key, way=way: way
                values, ids = split.top(hidden, 50)
                assert torch.equal(values, expected) and torch.equal(logits.gather(1, ids), values)
                assert bool((ids >= split.cut).any())  # both halves contribute
        finally:
            split.close()


def test_top_k_sampling_steps_end_in_the_head_threads_and_draw_the_same_tokens(tiny_qwen2, monkeypatch) -> None:
    from tuneforge.infer.hf_backend import HFBackend

    engine = split_engine(tiny_qwen2, monkeypatch)
    messages = [{"role": "user", "content": "Tell me a story."}]
    settings = {"temperature": 0.9, "top_k": 40, "top_p": 0.9, "max_new_tokens": 16}
    try:
        tops: list[int] = []
        top = engine.backend.head.top
        monkeypatch.setattr(engine.backend.head, "top", lambda hidden, k: tops.append(k) or top(hidden, k))
        fused = [engine.chat(messages, seed=seed, **settings).content for seed in (1, 2, 3)]
        assert tops and set(tops) == {40}
        monkeypatch.setattr(HFBackend, "_fusable", lambda self, batch: False)  # the whole logits, as before
        whole = [engine.chat(messages, seed=seed, **settings).content for seed in (1, 2, 3)]
        assert fused == whole and len(set(fused)) > 1
    finally:
        engine.close(5)
