"""Sampling completions for PPO and GRPO, and scoring them with reward models and reward functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from tuneforge.train.losses import IGNORE
from tuneforge.train.rewards import call_reward_func

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig


@dataclass
class Rollout:
    """Prompts (left-padded) with sampled completions, as one right-aligned batch."""

    sequences: torch.Tensor  # [N, P + L]: prompt then completion
    attention_mask: torch.Tensor  # [N, P + L]
    completion_mask: torch.Tensor  # [N, L]: completion tokens up to and including the first end token
    prompt_len: int
    prompts: list[str]
    completions: list[str]
    answers: list[str]

    def labels(self) -> torch.Tensor:
        """Token ids with everything but the completion set to -100 (for `token_logps`)."""
        labels = self.sequences.clone()
        labels[:, : self.prompt_len] = IGNORE
        labels[:, self.prompt_len :][self.completion_mask == 0] = IGNORE
        return labels

    def scored_ids(self) -> list[list[int]]:
        """Each prompt + completion without padding (what a reward model scores)."""
        rows = []
        for seq, mask in zip(self.sequences, self.attention_mask, strict=True):
            rows.append(seq[mask.bool()].tolist())
        return rows


def end_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The ids that end a completion: the generation config's eos ids and the tokenizer's."""
    config = getattr(model, "generation_config", None)
    ids = getattr(config, "eos_token_id", None) if config is not None else None
    ids = list(ids) if isinstance(ids, (list, tuple)) else ([ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def sample(model: Any, tokenizer: Any, batch: dict[str, Any], cfg: TuneforgeConfig, repeats: int = 1) -> Rollout:
    """Sample `repeats` completions per prompt with the generation settings; the model is left in train mode."""
    g = cfg.generation
    model = getattr(model, "module", model)  # DDP: generate on the wrapped model (no gradients, no all-reduce)
    ids = batch["input_ids"].repeat_interleave(repeats, 0)
    mask = batch["attention_mask"].repeat_interleave(repeats, 0)
    ends = end_token_ids(model, tokenizer)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=g.do_sample,
            temperature=g.temperature,
            top_p=g.top_p,
            top_k=g.top_k,
            max_new_tokens=g.max_new_tokens,
            repetition_penalty=g.repetition_penalty,
            eos_token_id=ends,
            pad_token_id=tokenizer.pad_token_id,
            use_cache=True,
        )
    model.train(was_training)
    completion = out[:, ids.shape[1] :]
    completion_mask = _until_end(completion, ends)
    full_mask = torch.cat([mask, completion_mask], dim=1)
    return Rollout(
        sequences=out,
        attention_mask=full_mask,
        completion_mask=completion_mask,
        prompt_len=ids.shape[1],
        prompts=tokenizer.batch_decode(ids, skip_special_tokens=True),
        completions=tokenizer.batch_decode(completion * completion_mask, skip_special_tokens=True),
        answers=_answers(batch, tokenizer, repeats),
    )


def _until_end(completion: torch.Tensor, ends: list[int]) -> torch.Tensor:
    """1 for tokens up to and including the first end token of each row, 0 after."""
    is_end = torch.isin(completion, torch.tensor(ends, device=completion.device))
    after = (is_end.long().cumsum(1) - is_end.long()) > 0
    return (~after).long()


def _answers(batch: dict[str, Any], tokenizer: Any, repeats: int) -> list[str]:
    labels = batch.get("labels")
    if labels is None:
        return [""] * (batch["input_ids"].shape[0] * repeats)
    labels = labels.clamp(min=0).repeat_interleave(repeats, 0)
    return tokenizer.batch_decode(labels, skip_special_tokens=True)


def score(
    rollout: Rollout, reward_model: Any, funcs: list[tuple[str, Any]], tokenizer: Any
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total reward per completion (reward model + every reward function) and the mean of each part."""
    parts: dict[str, list[float]] = {}
    if reward_model is not None:
        texts = tokenizer.batch_decode(rollout.scored_ids(), skip_special_tokens=False)
        parts["reward_model"] = reward_model(rollout.scored_ids(), texts)
    for name, fn in funcs:
        parts[name] = call_reward_func(name, fn, rollout.prompts, rollout.completions, rollout.answers)
    total = torch.tensor([sum(values) for values in zip(*parts.values(), strict=True)], dtype=torch.float32)
    return total, {f"rewards/{name}": sum(v) / len(v) for name, v in parts.items()}
