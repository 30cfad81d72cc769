"""Prompt/response boundaries: every answer's first token is trained and the training prompt ids are the ids
inference builds (issue #22); efficient_eos, tool-schema forms and truncation (issue #12)."""

from __future__ import annotations

import pytest

from tuneforge.data.loading import RawRows
from tuneforge.data.process import IGNORE, ProcessOptions, process_rows
from tuneforge.data.report import RowReport
from tuneforge.data.templates import get_template, list_templates

CHAT = [
    {"role": "user", "content": "Name a fast car."},
    {"role": "assistant", "content": "The car accelerated quickly."},
    {"role": "user", "content": "And a slow one?"},
    {"role": "assistant", "content": "Tractors are slow."},
]
FUNCTION = {
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def tokenizer(request):
    from tuneforge.models.tokenizer import build_qwen_tokenizer

    return build_qwen_tokenizer(request.param)


def _example(messages: list[dict], system: str | None = None, tools: list | None = None) -> dict:
    return {"messages": messages, "system": system, "tools": tools, "chosen": None, "rejected": None}


def _process(template, tokenizer, examples: list[dict], **options) -> list[dict]:
    rows = RawRows("t", examples, list(range(1, len(examples) + 1)))
    report = RowReport()
    table = process_rows(rows, template, tokenizer, ProcessOptions(**options), report)
    assert not report.problems, report.problems
    return table.to_pylist()


# The official template's generation prompt adds text that no training turn has; checked at text level.
GEN_PROMPT_ADDS = {"command_r_tools": "the tool-use instruction turn"}


def _check_prompt(template, tokenizer, history: list[dict], system: str | None, trained: list[int]) -> None:
    """The ids training puts before an answer equal `encode_prompt`'s ids for the same history. Templates whose
    generation prompt opens a reasoning block (deepseekr1, qwq, glm47, ...) add only that opener: checked as text,
    since the test tokenizers lack those templates' special tokens and BPE may merge across the opener."""
    ids = template.encode_prompt(tokenizer, history, system)
    text = template.render(history, system, add_generation_prompt=True)
    thinking = template.spec.thinking
    opener = thinking.gen_on if thinking is not None and template.enable_thinking else ""
    if template.name in GEN_PROMPT_ADDS:
        header = template.spec.assistant_start
        assert text.startswith(tokenizer.decode(trained).removesuffix(header)) and text.endswith(header)
    elif opener and text.endswith(opener):
        assert tokenizer.decode(trained) + opener == text
    else:
        assert trained == ids


@pytest.mark.parametrize("name", list_templates())
def test_training_prompt_is_the_inference_prompt(tokenizer, name: str) -> None:
    """(a) the first answer token is trained, (b) the ids before each answer are `encode_prompt`'s ids."""
    template = get_template(name, tokenizer)
    system = None if template.spec.system_mode == "final_user" else "Be brief."  # see README differences
    pairs = template.encode_turns(tokenizer, CHAT, system=system)
    assert len(pairs) == 2
    done: list[int] = []
    for turn, (prompt, response) in enumerate(pairs):
        history = CHAT[: 2 * turn + 1]
        _check_prompt(template, tokenizer, history, system, done + prompt)
        assert CHAT[2 * turn + 1]["content"] in tokenizer.decode(response)
        done += prompt + response
    (row,) = _process(template, tokenizer, [_example(CHAT, system)], kind="sft")
    trained = tokenizer.decode([i for i in row["labels"] if i != IGNORE])
    assert CHAT[1]["content"] in trained and CHAT[3]["content"] in trained


@pytest.mark.parametrize("name", ["default", "vicuna", "alpaca", "llama2", "mistral"])
def test_answer_after_plain_text_header_keeps_its_first_word(tokenizer, name: str) -> None:
    """The issue's case: "Assistant:" + "The" must not merge into ":The" (masked)."""
    template = get_template(name, tokenizer)
    (row,) = _process(template, tokenizer, [_example(CHAT[:2])], kind="sft")
    labels = [label for label in row["labels"] if label != IGNORE]
    assert tokenizer.decode(labels).lstrip().startswith("The car accelerated")


def test_stages_share_the_inference_prompt(qwen_tokenizer) -> None:
    """sft, pairwise (chosen and rejected), kto and unsupervised rows start with the same prompt ids."""
    template = get_template("default", qwen_tokenizer)
    prompt = template.encode_prompt(qwen_tokenizer, CHAT[:3])
    history, reply = CHAT[:3], CHAT[3]
    pair = {**_example(history), "chosen": reply, "rejected": {"role": "assistant", "content": "Bikes."}}
    (sft,) = _process(template, qwen_tokenizer, [_example(CHAT)], kind="sft")
    (dpo,) = _process(template, qwen_tokenizer, [pair], kind="pairwise")
    (kto,) = _process(template, qwen_tokenizer, [{**_example(CHAT), "kto_tag": True}], kind="kto")
    (ppo,) = _process(template, qwen_tokenizer, [_example(history)], kind="unsupervised")
    for ids in (sft["input_ids"], dpo["chosen_input_ids"], dpo["rejected_input_ids"], kto["input_ids"]):
        assert ids[: len(prompt)] == prompt
        assert qwen_tokenizer.decode(ids[len(prompt)]).strip() in ("Tr", "Tract", "Tractors", "B", "Bikes")
    assert ppo["input_ids"] == prompt


@pytest.mark.parametrize("name", [n for n in list_templates() if get_template(n).spec.efficient_eos])
def test_efficient_eos_trains_on_the_inference_context(qwen_tokenizer, name: str) -> None:
    """GLM family: no eos inside the input (the inference prompt has none); eos is the label after each
    answer and ends the sequence, as LLaMA-Factory does."""
    template = get_template(name, qwen_tokenizer)
    eos = qwen_tokenizer.eos_token_id
    (row,) = _process(template, qwen_tokenizer, [_example(CHAT)], kind="sft")
    ids, labels = row["input_ids"], row["labels"]
    first, second = template.encode_turns(qwen_tokenizer, CHAT)
    _check_prompt(template, qwen_tokenizer, CHAT[:3], None, ids[: len(first[0] + first[1] + second[0])])
    assert eos not in ids[:-1] and ids[-1] == eos and labels[-1] == eos
    assert labels[len(first[0] + first[1])] == eos  # predicted after the first answer, not fed as input


def test_tool_schema_forms_render_alike(qwen_tokenizer) -> None:
    """A bare (glaive) function dict and the OpenAI-wrapped form give the same text for every tool format, except
    those that list the schemas as the data gave them (Seed-OSS, as LLaMA-Factory does)."""
    wrapped = [{"type": "function", "function": FUNCTION}]
    for name in list_templates():
        template = get_template(name, qwen_tokenizer)
        if template.spec.tools_in == "none" or "{raw_json}" in template.tool_format.tool:
            continue
        ask = [{"role": "user", "content": "Weather in Paris?"}]
        assert template.render(ask, tools=[FUNCTION]) == template.render(ask, tools=wrapped), name
    own = get_template(None, qwen_tokenizer)  # `template:` unset: the tokenizer's Jinja template
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    assert own.render(ask, tools=[FUNCTION], add_generation_prompt=True) == own.render(
        ask, tools=wrapped, add_generation_prompt=True
    )


def test_data_pipeline_and_api_build_the_same_prompt(qwen_tokenizer) -> None:
    """Same conversation + tools: the prompt the data pipeline trains on equals the API engine's prompt."""
    from tuneforge.infer.engine import Engine

    template = get_template("qwen", qwen_tokenizer)
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    (row,) = _process(template, qwen_tokenizer, [_example(ask, tools=[FUNCTION])], kind="unsupervised")
    engine = Engine(None, qwen_tokenizer, template, None, "m")
    api = engine.encode_chat(ask, None, [{"type": "function", "function": FUNCTION}])
    assert api.ids == row["input_ids"]


def test_over_long_prompt_keeps_its_end(qwen_tokenizer) -> None:
    """The assistant header survives truncation (the prompt is cut from the left; LLaMA-Factory cuts its end)."""
    template = get_template("qwen", qwen_tokenizer)
    long = [{"role": "user", "content": "word " * 400}, {"role": "assistant", "content": "Short answer."}]
    (row,) = _process(template, qwen_tokenizer, [_example(long)], kind="sft", cutoff_len=64)
    assert len(row["input_ids"]) == 64
    text = qwen_tokenizer.decode(row["input_ids"])
    assert text.endswith("<|im_start|>assistant\nShort answer.<|im_end|>")


def test_no_stray_fragment_of_a_cut_turn(qwen_tokenizer) -> None:
    """With mask_history the last turn is kept first; an earlier turn that no longer fits with any of its
    answer is dropped, not left as a few leading prompt tokens."""
    template = get_template("qwen", qwen_tokenizer)
    last = template.encode_turns(qwen_tokenizer, CHAT)[-1]
    budget = len(last[0]) + len(last[1]) + 1
    (row,) = _process(template, qwen_tokenizer, [_example(CHAT)], kind="sft", cutoff_len=budget, mask_history=True)
    assert row["input_ids"] == last[0] + last[1]


def test_cache_key_follows_the_encoding(monkeypatch) -> None:
    """Tokenized data cached under another encoding of turns is never reused."""
    from tuneforge.data import cache
    from tuneforge.data.templates import template as template_module

    record = cache.template_record(get_template("default"))
    before = cache.make_key({"template": record})
    monkeypatch.setattr(template_module, "ENCODING", "another")
    assert cache.make_key({"template": cache.template_record(get_template("default"))}) != before


def test_efficient_eos_with_mask_history_labels_only_the_trained_answer(qwen_tokenizer) -> None:
    """README difference: no eos label after an earlier, untrained answer; the final eos is trained."""
    template = get_template("chatglm3", qwen_tokenizer)
    eos = qwen_tokenizer.eos_token_id
    (row,) = _process(template, qwen_tokenizer, [_example(CHAT)], kind="sft", mask_history=True)
    first = template.encode_turns(qwen_tokenizer, CHAT)[0]
    assert row["labels"][len(first[0] + first[1])] == IGNORE
    assert row["labels"].count(eos) == 1 and row["labels"][-1] == eos


@pytest.mark.parametrize("name", ["qwen", "llama3", "mistral"])
def test_glaive_rows_train_on_the_prompt_the_api_builds(shared_dir, qwen_tokenizer, name: str) -> None:
    """Every glaive_toolcall_en_demo row (bare function schemas): the ids before its first answer equal the API
    engine's prompt for the same question with the schemas in OpenAI's wrapped form."""
    from tuneforge.data.convert import convert_rows
    from tuneforge.data.loading import read_dataset
    from tuneforge.data.registry import resolve_datasets
    from tuneforge.infer.engine import Engine

    template = get_template(name, qwen_tokenizer)
    engine = Engine(None, qwen_tokenizer, template, None, "m")
    report = RowReport()
    (attr,) = resolve_datasets("glaive_toolcall_en_demo", shared_dir / "lf-data")
    examples = convert_rows(read_dataset(attr, report), attr, report).rows
    checked = 0
    for ex in examples:
        first = next(i for i, m in enumerate(ex["messages"]) if m["role"] == "assistant")
        history, tools = ex["messages"][:first], ex["tools"]
        (row,) = _process(
            template, qwen_tokenizer, [{**ex, "messages": history}], kind="unsupervised", cutoff_len=10**6
        )
        wrapped = [{"type": "function", "function": t} for t in tools or []]
        assert engine.encode_chat(history, ex["system"], wrapped).ids == row["input_ids"]
        checked += bool(tools)
    assert checked >= 19
