"""The one stage table: for each training stage its recipe, the kind of data it trains on, the column that proves
the data fits, what to give instead, and what a finished run writes.

Read by the config (the `stage` choices), the runner (which recipe), the data pipeline (which processing kind)
and the web UI (the stage selector). Plain data, so every layer may import it.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

StageName = Literal["pt", "sft", "rm", "ppo", "dpo", "kto", "grpo"]
DataKind = Literal["pt", "sft", "pairwise", "kto", "unsupervised"]

_PREFERENCE = "preference data (`ranking: true` with chosen/rejected)"
_PROMPTS = "prompts (any sft or preference dataset)"


@dataclass(frozen=True)
class Stage:
    """One training stage as the rest of tuneforge sees it."""

    name: str
    recipe: str  # "module:function(cfg) -> metrics"
    data_kind: DataKind
    proof_column: str  # a column only data of the right kind has
    wanted: str  # what to give when the data is of the wrong kind
    writes: tuple[str, ...]  # what a finished run leaves beside the log, metrics and config


_WEIGHTS = ("adapter or model",)
STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("pt", "tuneforge.train.sft:run_sft", "pt", "input_ids", "plain text", _WEIGHTS),
        Stage("sft", "tuneforge.train.sft:run_sft", "sft", "input_ids", "conversations or instructions", _WEIGHTS),
        Stage("rm", "tuneforge.train.rm:run_rm", "pairwise", "chosen_input_ids", _PREFERENCE,
              (*_WEIGHTS, "value head")),
        Stage("ppo", "tuneforge.train.ppo:run_ppo", "unsupervised", "input_ids", _PROMPTS, (*_WEIGHTS, "value head")),
        Stage("dpo", "tuneforge.train.dpo:run_dpo", "pairwise", "chosen_input_ids", _PREFERENCE, _WEIGHTS),
        Stage("kto", "tuneforge.train.kto:run_kto", "kto", "kto_tags",
              "KTO data (a boolean `kto_tag` column mapped in dataset_info.json)", _WEIGHTS),
        Stage("grpo", "tuneforge.train.grpo:run_grpo", "unsupervised", "input_ids", _PROMPTS, _WEIGHTS),
    )
}  # fmt: skip

if tuple(STAGES) != typing.get_args(StageName):  # pragma: no cover - a table edit without the Literal
    raise AssertionError("STAGES and StageName disagree; edit both together")


def stage(name: str) -> Stage:
    """The table row of stage `name` (names are validated by the config's `stage` Literal)."""
    return STAGES[name]
