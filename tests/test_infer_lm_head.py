"""The two-thread LM head: bit-identical logits, the faster way chosen per batch size, greedy output unchanged."""

from __future__ import annotations

import threading

import pytest
import torch

from tuneforge.infer.lm_head import EXPLORE, Chooser, SplitHead, split_head


@pytest.fixture(scope="module")
def model(tiny_qwen2):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_qwen2).eval()


def test_split_logits_are_bit_identical_and_the_head_is_restored(model) -> None:
    head = model.get_output_embeddings()
    hidden = torch.randn(8, 1, head.in_features, generator=torch.Generator().manual_seed(0))
    ids = torch.randint(0, 5000, (8, 7), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        plain, whole = head(hidden), model(input_ids=ids, logits_to_keep=1).logits
        split = SplitHead(head)
        split.chooser.pick = lambda rows: True  # always split
        try:
            assert torch.equal(split.split(hidden), plain)
            assert torch.equal(model(input_ids=ids, logits_to_keep=1).logits, whole)
            few = hidden[:2]  # too few rows: the plain product
            assert torch.equal(head(few), torch.nn.functional.linear(few, head.weight))
        finally:
            split.close()
    assert "forward" not in head.__dict__


def test_chooser_measures_both_ways_then_keeps_the_faster_and_explores() -> None:
    chooser = Chooser()
    assert chooser.pick(8) is False
    chooser.record(8, False, 0.010)
    assert chooser.pick(8) is True
    chooser.record(8, True, 0.006)
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
    import tuneforge.threads
    from tuneforge.config import load_config
    from tuneforge.infer import load_engine

    monkeypatch.setenv("TUNEFORGE_NUM_THREADS", "1")
    monkeypatch.setattr(tuneforge.threads, "available_cores", lambda: 2)
    monkeypatch.setattr(Chooser, "pick", lambda self, rows: True)  # every batch of 4+ rows splits
    splits, original = [], SplitHead.split
    monkeypatch.setattr(SplitHead, "split", lambda self, hidden: splits.append(1) or original(self, hidden))
    engine = load_engine(load_config({"model_name_or_path": str(tiny_qwen2), "template": "qwen"}))
    try:
        assert engine.backend.head is not None
        prompts = [[{"role": "user", "content": f"Count to {n}."}] for n in range(6)]
        alone = [engine.chat(p, temperature=0, max_new_tokens=12).content for p in prompts]
        together: list[str | None] = [None] * len(prompts)

        def run(index: int) -> None:
            together[index] = engine.chat(prompts[index], temperature=0, max_new_tokens=12).content

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
        with engine.backend.model_lock:  # the engine waits in its first forward until every request is queued
            for thread in threads:
                thread.start()
            while engine.backend.pending() < len(prompts) - 1:
                threading.Event().wait(0.01)
        for thread in threads:
            thread.join()
        assert splits and together == alone
    finally:
        engine.close(5)
