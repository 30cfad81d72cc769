"""The one stage table: every stage has a recipe, a data kind the pipeline knows, and is what the config offers."""

from __future__ import annotations

import typing


def test_table_matches_the_config_and_the_pipeline() -> None:
    from tuneforge.config import field_info
    from tuneforge.config.stages import STAGES, DataKind
    from tuneforge.data.process import KINDS

    assert tuple(STAGES) == typing.get_args(field_info("stage").annotation)
    assert set(typing.get_args(DataKind)) == set(KINDS)
    assert {row.data_kind for row in STAGES.values()} <= set(KINDS)


def test_pipeline_kind_defaults_to_the_stage_row(tmp_path, qwen_tokenizer) -> None:
    from tuneforge.config import load_config
    from tuneforge.config.stages import STAGES
    from tuneforge.data.pipeline import make_plan

    data = tmp_path / "rows.json"
    data.write_text('[{"instruction": "q", "output": "a"}]', encoding="utf-8")
    for name in ("pt", "sft", "grpo"):
        cfg = load_config({"stage": name, "dataset": str(data), "template": None if name == "pt" else "qwen",
                           "reward_funcs": "tuneforge.train.rewards:exact_match"})  # fmt: skip
        assert make_plan(cfg, qwen_tokenizer).kind == STAGES[name].data_kind
    sft = load_config({"stage": "sft", "dataset": str(data), "template": "qwen"})
    assert make_plan(sft, qwen_tokenizer, kind="unsupervised").kind == "unsupervised"  # prediction's prompt rows
