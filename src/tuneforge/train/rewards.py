"""Rewards for PPO and GRPO: a reward model (LoRA adapter or full model with a value head), an HTTP endpoint in
LLaMA-Factory's `/v1/score/evaluation` format, or Python callables named `module:function` in `reward_funcs`.

A reward callable is `fn(prompts, completions, answers, **kwargs) -> list[float]` over lists of strings, where
`answers` are the datasets' reference responses (empty strings when a row has none). `exact_match`,
`contains_answer` and `think_format` below are ready-made examples.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tuneforge.errors import ConfigError, TuneforgeError

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

RewardFunc = Callable[..., list[float]]
SCORE_PATH = "/v1/score/evaluation"


# ---- example reward functions -------------------------------------------------------------------------------


def exact_match(prompts: list[str], completions: list[str], answers: list[str], **kwargs: Any) -> list[float]:
    """1.0 where the completion equals the reference answer (surrounding whitespace ignored), else 0.0."""
    return [float(c.strip() == a.strip()) for c, a in zip(completions, answers, strict=True)]


def contains_answer(prompts: list[str], completions: list[str], answers: list[str], **kwargs: Any) -> list[float]:
    """1.0 where the (non-empty) reference answer appears in the completion, else 0.0."""
    return [float(bool(a.strip()) and a.strip() in c) for c, a in zip(completions, answers, strict=True)]


_THINK = re.compile(r"\s*<think>.*?</think>\s*\S.*", re.DOTALL)


def think_format(prompts: list[str], completions: list[str], answers: list[str], **kwargs: Any) -> list[float]:
    """1.0 where the completion is `<think>...</think>` followed by a non-empty answer, else 0.0."""
    return [float(_THINK.fullmatch(c) is not None) for c in completions]


def load_reward_funcs(specs: list[str]) -> list[tuple[str, RewardFunc]]:
    """(name, callable) for each `module:function` in the comma-separated `reward_funcs`."""
    funcs = []
    for item in specs:
        module_name, _, function = item.partition(":")
        if not module_name or not function:
            raise ConfigError(
                f"`reward_funcs: {','.join(specs)}`: {item!r} is not `module:function` (e.g. {__name__}:exact_match)."
            )
        try:
            fn = getattr(importlib.import_module(module_name), function)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"`reward_funcs`: cannot load {item!r} ({err}); is the module importable?") from err
        if not callable(fn):
            raise ConfigError(f"`reward_funcs`: {item!r} is not callable.")
        funcs.append((function, fn))
    return funcs


def call_reward_func(name: str, fn: RewardFunc, prompts: list[str], completions: list[str], answers: list[str]) -> list:
    """The scores of one reward callable, checked to be one number per completion."""
    scores = list(fn(prompts=prompts, completions=completions, answers=answers))
    if len(scores) != len(completions):
        raise TuneforgeError(
            f"reward function {name} returned {len(scores)} scores for {len(completions)} completions."
        )
    return [float(s) for s in scores]


# ---- reward models ------------------------------------------------------------------------------------------


class ModelScorer:
    """A frozen causal LM + value head scoring token sequences at their last token."""

    def __init__(self, model: Any, head: Any, pad_id: int) -> None:
        self.model, self.head, self.pad_id = model, head, pad_id

    def __call__(self, sequences: list[list[int]], texts: list[str]) -> list[float]:
        import torch

        from tuneforge.train.value_head import backbone

        device = next(self.model.parameters()).device
        longest = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), longest), self.pad_id, dtype=torch.long, device=device)
        mask = torch.zeros_like(ids)
        for i, seq in enumerate(sequences):
            ids[i, : len(seq)] = torch.tensor(seq, device=device)
            mask[i, : len(seq)] = 1
        with torch.no_grad():
            hidden = backbone(self.model)(input_ids=ids, attention_mask=mask).last_hidden_state
            last = mask.sum(-1) - 1
            picked = hidden[torch.arange(len(sequences), device=device), last]
            return [float(v) for v in self.head.to(device)(picked.float()).squeeze(-1)]


class ApiScorer:
    """Scores texts with a running reward-model server (`tuneforge api` / LLaMA-Factory API) over HTTP."""

    def __init__(self, url: str, timeout: float = 120.0) -> None:
        self.url = url if "/score/" in url else url.rstrip("/").removesuffix("/v1") + SCORE_PATH
        self.timeout = timeout

    def __call__(self, sequences: list[list[int]], texts: list[str]) -> list[float]:
        body = json.dumps({"model": "reward", "messages": texts}).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {os.environ.get('API_KEY', '')}"}
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                scores = json.loads(response.read())["scores"]
        except (urllib.error.URLError, OSError, KeyError, ValueError) as err:
            raise TuneforgeError(
                f"`reward_model: {self.url}` (reward_model_type: api) did not return scores: {err}. Start the reward "
                "model with `tuneforge api` (a model with value_head.safetensors) and check the URL and API_KEY."
            ) from err
        if len(scores) != len(texts):
            raise TuneforgeError(f"{self.url} returned {len(scores)} scores for {len(texts)} texts.")
        return [float(s) for s in scores]


def load_reward_model(cfg: TuneforgeConfig, tokenizer: Any) -> Callable[[list[list[int]], list[str]], list] | None:
    """The scorer for `reward_model` / `reward_model_type`, or None when no reward model is set."""
    r = cfg.rlhf
    if not r.reward_model:
        return None
    if r.reward_model_type == "api":
        logger.info("Reward model: the HTTP endpoint %s", r.reward_model)
        return ApiScorer(r.reward_model)
    from pathlib import Path

    from tuneforge.infer.loading import VALUE_HEAD_FILE, load_value_head
    from tuneforge.train.reference import load_frozen
    from tuneforge.train.value_head import hidden_size

    if r.reward_model_type == "lora":  # an adapter trained with stage rm on this base model
        base, adapters, head_dir = cfg.model.model_name_or_path, [r.reward_model], r.reward_model
    else:
        base, adapters = r.reward_model, r.reward_adapters
        head_dir = adapters[-1] if adapters else r.reward_model
    head_file = Path(head_dir) / VALUE_HEAD_FILE
    if not head_file.is_file():
        raise ConfigError(
            f"`reward_model: {r.reward_model}` (reward_model_type: {r.reward_model_type}) has no {VALUE_HEAD_FILE} "
            f"in {head_dir}; train it with `stage: rm` first."
        )
    model = load_frozen(cfg, tokenizer, base, adapters, r.reward_model_quantization_bit)
    logger.info("Reward model: %s (%s)", r.reward_model, r.reward_model_type)
    return ModelScorer(model, load_value_head(head_file, hidden_size(model)), tokenizer.pad_token_id)
