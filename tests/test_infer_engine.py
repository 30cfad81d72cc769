"""The inference engine: detokenization, stop strings, sampling, batching, reasoning / tool-call assembly."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from tuneforge.infer.chat_stream import ChatAssembler, ChatResult, MarkerSplitter
from tuneforge.infer.detok import IncrementalDetokenizer, StopMatcher
from tuneforge.infer.params import SamplingParams
from tuneforge.infer.requests import Finished, TextDelta

torch = pytest.importorskip("torch")


# ---- pure pieces ----------------------------------------------------------------------------------------------


def test_detokenizer_never_emits_broken_utf8(qwen_tokenizer):
    text = "你好，世界！🙂 Grüße 東京"
    ids = qwen_tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) > len(text) // 3  # byte-level pieces split characters
    detok = IncrementalDetokenizer(qwen_tokenizer)
    deltas = [detok.push(i) for i in ids] + [detok.flush()]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == text


def test_stop_string_spanning_chunks_is_cut_and_not_emitted():
    matcher = StopMatcher(["STOP", "<|end|>"])
    out = []
    for piece in ["Hel", "lo S", "T", "OP and more"]:
        text, stopped = matcher.feed(piece)
        out.append(text)
        if stopped:
            break
    assert "".join(out) == "Hello " and stopped


def test_stop_matcher_releases_false_prefix():
    matcher = StopMatcher(["STOP"])
    first, _ = matcher.feed("a ST")
    second, stopped = matcher.feed("ART")
    assert (first, second, stopped) == ("a ", "START", False)


def test_marker_splitter_across_pieces():
    splitter = MarkerSplitter("<tool_call>")
    assert splitter.feed("Sure <tool") == ("Sure ", None)
    assert splitter.feed("_call>\n{") == ("", "\n{")


def test_presence_and_frequency_penalties_follow_openai():
    from tuneforge.infer.sampling import apply_penalties

    logits = torch.zeros(4)
    counts = torch.tensor([0.0, 1.0, 3.0, 0.0])
    params = SamplingParams(presence_penalty=0.5, frequency_penalty=0.25)
    assert apply_penalties(logits, counts, params).tolist() == [0.0, -0.75, -1.25, 0.0]


def test_sample_batch_top_k_one_is_greedy_and_seed_reproducible():
    from tuneforge.infer.sampling import make_generator, sample_batch

    logits = torch.randn(3, 1000, generator=torch.Generator().manual_seed(0))
    greedy = SamplingParams(top_k=1, temperature=1.0)
    assert sample_batch(logits, [greedy] * 3, [None] * 3, [None] * 3) == logits.argmax(-1).tolist()
    hot = SamplingParams(temperature=2.0, top_p=1.0, top_k=0)
    draws = [sample_batch(logits, [hot] * 3, [None] * 3, [make_generator(7)] * 3) for _ in range(2)]
    assert draws[0] == draws[1]


def test_sampling_params_reject_out_of_range():
    from tuneforge.errors import TuneforgeError

    with pytest.raises(TuneforgeError, match="top_p"):
        SamplingParams().with_overrides(top_p=1.5)


# ---- chat assembly --------------------------------------------------------------------------------------------


def _assemble(template, pieces, *, tools=False, in_reasoning=False) -> ChatResult:
    assembler = ChatAssembler(template, tools=tools, in_reasoning=in_reasoning)
    result = ChatResult()
    for event in [*(TextDelta(p) for p in pieces), Finished("stop", 3, len(pieces))]:
        for delta in assembler.on_event(event):
            result.add(delta)
    return result


def test_reasoning_is_separated_from_content(qwen_tokenizer):
    from tuneforge.data.templates import get_template

    template = get_template("qwen3", qwen_tokenizer)
    result = _assemble(template, ["<thi", "nk>\nI think", " hard\n</th", "ink>\n\n", "Hello", " there"])
    assert (result.reasoning, result.content) == ("I think hard", "Hello there")


def test_tool_calls_are_parsed_from_a_stream(qwen_tokenizer):
    from tuneforge.data.templates import get_template

    template = get_template("qwen", qwen_tokenizer)
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    result = _assemble(template, ["Sure. <tool_", call[6:20], call[20:]], tools=True)
    assert result.content == "Sure. "
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == [
        {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    ]


# ---- engine on a tiny model -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tiny_qwen2):
    from tuneforge.config import load_config
    from tuneforge.infer import load_engine

    cfg = load_config({"model_name_or_path": str(tiny_qwen2), "template": "qwen", "max_new_tokens": 24})
    eng = load_engine(cfg)
    yield eng
    eng.close()


MESSAGES = [{"role": "user", "content": "Say something."}]


def test_greedy_matches_transformers_generate(engine):
    prompt = engine.encode_chat(MESSAGES)
    out = engine.backend.model.generate(torch.tensor([prompt.ids]), do_sample=False, max_new_tokens=12)
    expected = engine.tokenizer.decode(out[0][len(prompt.ids) :], skip_special_tokens=True)
    assert engine.chat(MESSAGES, temperature=0, max_new_tokens=12).content == expected


def test_stream_equals_non_stream_and_seed_reproduces(engine):
    streamed = "".join(d.content for d in engine.stream_chat(MESSAGES, seed=3, temperature=1.5))
    again = engine.chat(MESSAGES, seed=3, temperature=1.5)
    assert streamed == again.content
    assert again.completion_tokens == 24 and again.finish_reason == "length"


def test_stop_string_cuts_output(engine):
    sampled = {"seed": 5, "temperature": 1.0, "top_p": 1.0, "top_k": 0}
    full = engine.chat(MESSAGES, **sampled).content
    stop = next(full[i : i + 3] for i in range(4, len(full)) if full[i : i + 3].strip() == full[i : i + 3])
    cut = engine.chat(MESSAGES, stop=[stop], **sampled)
    assert cut.content == full[: full.index(stop)]
    assert cut.finish_reason == "stop"


def test_concurrent_requests_are_batched(engine):
    results = [None] * 6

    def run(index: int) -> None:
        results[index] = engine.chat(MESSAGES, seed=index, max_new_tokens=16)

    engine.backend.peak_batch = 0
    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.completion_tokens == 16 for r in results)
    assert engine.backend.peak_batch > 1
    alone = engine.chat(MESSAGES, seed=2, max_new_tokens=16)
    assert alone.content == results[2].content  # left padding does not change a row's output


def test_cancelled_stream_frees_the_engine(engine):
    stream = engine.stream_chat(MESSAGES, max_new_tokens=24)
    next(stream)
    stream.close()
    assert engine.chat(MESSAGES, max_new_tokens=3).completion_tokens == 3


def test_score_needs_a_value_head(engine):
    from tuneforge.infer.engine import NotARewardModelError

    with pytest.raises(NotARewardModelError, match="not a reward model"):
        engine.score(["hello"])


def test_value_head_scores(tiny_qwen2, tmp_path: Path):
    from safetensors.torch import save_file

    from tuneforge.config import load_config
    from tuneforge.infer import load_engine

    model_dir = tmp_path / "rm"
    shutil.copytree(tiny_qwen2, model_dir)
    hidden = 64
    save_file(
        {"v_head.summary.weight": torch.ones(1, hidden), "v_head.summary.bias": torch.tensor([0.5])},
        str(model_dir / "value_head.safetensors"),
    )
    eng = load_engine(load_config({"model_name_or_path": str(model_dir), "template": "qwen"}))
    try:
        scores = eng.score(["hello world", "a different text"])
    finally:
        eng.close()
    assert len(scores) == 2 and scores[0] != scores[1]


def test_beam_search_is_refused_not_ignored() -> None:
    from tuneforge.config import load_config
    from tuneforge.errors import TuneforgeError
    from tuneforge.infer.params import GenerationDefaults

    with pytest.raises(TuneforgeError, match="num_beams"):
        GenerationDefaults.from_config(load_config({"num_beams": 4}, paths=False).generation)
