"""Stage ppo: our own PPO loop (TRL 1.x has no PPO trainer): rollouts -> rewards -> GAE -> clipped updates.

Per step: `ppo_buffer_size` batches of prompts are completed by the policy and scored by the reward model
(`reward_model_type` lora / full / api); the per-token reward is -kl_coef * (log pi - log ref) plus the score at the
last token (`ppo_score_norm` normalises scores with running moments, `ppo_whiten_rewards` whitens the rewards);
then `ppo_epochs` passes of clipped policy + value loss over the buffer. The KL coefficient adapts towards
`ppo_target` (Ziegler et al. 2019). The policy carries a value head on its last hidden state.
Logs go to `trainer_log.jsonl` through the same callback as the other stages; start, resume and the output-dir
checks are the Trainer recipe's; mid-run checkpoints (`save_steps`) hold the value head, optimizer and scheduler
(see `ppo_state.py`), and a SIGINT / SIGTERM saves one before stopping.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerControl, TrainerState, get_scheduler, set_seed

from tuneforge.models.adapters import apply_finetuning
from tuneforge.models.loader import load_model, load_tokenizer
from tuneforge.train import checkpoint as ckpt
from tuneforge.train.callbacks import GracefulStop, LogCallback
from tuneforge.train.losses import clipped_policy_loss, clipped_value_loss, gae, masked_mean, token_logps, whiten
from tuneforge.train.ppo_state import LoopState, restore_checkpoint, save_checkpoint, save_policy
from tuneforge.train.profiling import profiler_callbacks
from tuneforge.train.recipe import (
    RunStart,
    attach_chat_template,
    begin_log,
    finish_run,
    method_identity,
    stage_data,
    start_run,
)
from tuneforge.train.reference import load_reference, reference_logits
from tuneforge.train.rewards import load_reward_model
from tuneforge.train.rollout import Rollout, sample, score
from tuneforge.train.swanlab_log import swanlab_callbacks
from tuneforge.train.value_head import attach_value_head, unwrap

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

CLIP = 0.2  # policy ratio and value clipping range
VF_COEF = 0.1
INIT_KL_COEF = 0.2
KL_HORIZON = 10000


class AdaptiveKL:
    """KL coefficient that grows when the measured KL exceeds `target` and shrinks below it."""

    def __init__(self, target: float, init: float = INIT_KL_COEF, horizon: int = KL_HORIZON) -> None:
        self.value, self.target, self.horizon = init, target, horizon

    def update(self, kl: float, n_steps: int) -> None:
        """Move the coefficient by a clipped proportional error."""
        error = min(max(kl / self.target - 1, -0.2), 0.2)
        self.value *= 1 + error * n_steps / self.horizon


class RunningMoments:
    """Running mean and standard deviation of reward scores (`ppo_score_norm`)."""

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def normalise(self, scores: torch.Tensor) -> torch.Tensor:
        """Update with the batch, then return the batch scaled to the running moments."""
        n, mean, var = scores.numel(), float(scores.mean()), float(scores.var(unbiased=False))
        delta, total = mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.var = (self.var * self.count + var * n + delta**2 * self.count * n / total) / total
        self.count = total
        return (scores - self.mean) / math.sqrt(self.var + 1e-8)


def policy_forward(model: Any, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-token log-probs, completion mask, values) of the completion tokens; all [N, P+L-1]."""
    out = model(input_ids=rollout.sequences, attention_mask=rollout.attention_mask, output_hidden_states=True)
    logps, mask = token_logps(out.logits, rollout.labels())
    values = model.v_head(out.hidden_states[-1])[:, :-1]  # the value of the state before each predicted token
    return logps, mask, values


class PPO:
    """The PPO state: policy (+ value head), reference, reward scorer, optimizer, KL controller."""

    def __init__(self, cfg: TuneforgeConfig, model: Any, tokenizer: Any, reward: Any, ref: Any) -> None:
        self.cfg, self.model, self.tokenizer, self.reward, self.ref = cfg, model, tokenizer, reward, ref
        self.kl = AdaptiveKL(cfg.rlhf.ppo_target)
        self.moments = RunningMoments()

    def experience(self, batch: dict[str, Any]) -> dict[str, Any]:
        """One batch of rollouts with old log-probs, values, rewards, advantages and returns."""
        r = self.cfg.rlhf
        rollout = sample(self.model, self.tokenizer, batch, self.cfg)
        scores, parts = score(rollout, self.reward, [], self.tokenizer)
        if r.ppo_score_norm:
            scores = self.moments.normalise(scores)
        with torch.no_grad():
            logps, mask, values = policy_forward(self.model, rollout)
            inputs = {"input_ids": rollout.sequences, "attention_mask": rollout.attention_mask}
            ref_logps, _ = token_logps(reference_logits(self.model, self.ref, **inputs), rollout.labels())
        kl = (logps - ref_logps) * mask
        rewards = -self.kl.value * kl
        last = mask.long().cumsum(1).argmax(1)  # position of each row's last completion token
        rewards[torch.arange(len(last)), last] += scores.to(rewards.device)
        if r.ppo_whiten_rewards:
            rewards = whiten(rewards, mask, shift_mean=False) * mask
        advantages, returns = gae(rewards, values, mask.float())
        advantages = whiten(advantages, mask) * mask
        stats = {"rewards/mean": scores.mean(), "objective/kl": kl.sum(1).mean(), **parts}
        return {"rollout": rollout, "logps": logps, "values": values, "mask": mask, "adv": advantages,
                "returns": returns, "stats": stats}  # fmt: skip

    def loss(self, exp: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Clipped policy loss + VF_COEF * clipped value loss on one experience batch."""
        logps, mask, values = policy_forward(self.model, exp["rollout"])
        policy_losses, clipped = clipped_policy_loss(logps, exp["logps"], exp["adv"], CLIP)
        value_losses = clipped_value_loss(values, exp["values"], exp["returns"], CLIP)
        policy_loss, value_loss = masked_mean(policy_losses, mask), masked_mean(value_losses, mask)
        stats = {
            "ppo/policy_loss": policy_loss,
            "ppo/value_loss": value_loss,
            "ppo/clipfrac": masked_mean(clipped, mask),
        }
        return policy_loss + VF_COEF * value_loss, stats


def run_ppo(cfg: TuneforgeConfig, tokenizer: Any = None) -> dict[str, Any]:
    """Train with PPO as `cfg` says; returns the final metrics. Resumes like the Trainer stages do."""
    run = start_run(cfg)
    args = run.args
    set_seed(args.seed)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg)
    reward = load_reward_model(cfg, tokenizer)  # the config checks make sure `reward_model` is set
    data = stage_data(cfg, tokenizer)
    attach_chat_template(tokenizer, data.template)
    model = apply_finetuning(load_model(cfg, tokenizer, trainable=True), cfg, trainable=True)
    model.to(args.device)
    attach_value_head(model)
    ppo = PPO(cfg, model, tokenizer, reward, load_reference(cfg, model, tokenizer))
    fingerprint = ckpt.fingerprint(cfg.model.model_name_or_path, method_identity(cfg), data.train)
    begin_log(cfg, run, fingerprint)
    metrics = _train_loop(cfg, run, ppo, data.train, fingerprint)
    unwrap(model).config.use_cache = True  # the saved model generates with a KV cache
    save_policy(model, run.out)
    tokenizer.save_pretrained(str(run.out))
    finish_run(cfg, run.out, ("rewards/mean", "objective/kl"))
    return metrics


def _batches(train: Any, cfg: TuneforgeConfig, args: Any, tokenizer: Any) -> Any:
    from tuneforge.data.collate import PaddingCollator

    generator = torch.Generator().manual_seed(args.seed)
    collator = PaddingCollator(tokenizer.pad_token_id, padding_side="left")
    columns = [c for c in ("input_ids", "labels") if c in train.column_names]
    return torch.utils.data.DataLoader(
        train.select_columns(columns), batch_size=args.per_device_train_batch_size, shuffle=True,
        collate_fn=collator, generator=generator, drop_last=False,
    )  # fmt: skip


def _total_steps(args: Any, loader: Any, buffer: int) -> int:
    if args.max_steps and args.max_steps > 0:
        return int(args.max_steps)
    return max(math.ceil(len(loader) / buffer * args.num_train_epochs), 1)


def _train_loop(
    cfg: TuneforgeConfig, run: RunStart, ppo: PPO, train: Any, fingerprint: dict[str, str]
) -> dict[str, Any]:
    r, args = cfg.rlhf, run.args
    loader = _batches(train, cfg, args, ppo.tokenizer)
    total = _total_steps(args, loader, r.ppo_buffer_size)
    params = [p for p in ppo.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
    warmup = args.get_warmup_steps(total)
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=total)
    parts = {"optimizer": optimizer, "scheduler": scheduler}
    loop = restore_checkpoint(ppo, parts, run.resume) if run.resume else LoopState()
    batches = _endless(loader)
    for _ in range(loop.step * r.ppo_buffer_size):  # the batches the resumed run already trained on
        next(batches)
    state, log, stop = TrainerState(max_steps=total), LogCallback(str(args.output_dir)), GracefulStop()
    trackers, profilers = swanlab_callbacks(cfg), profiler_callbacks(cfg)
    state.global_step, state.num_input_tokens_seen = loop.step, loop.tokens
    for callback in (log, stop, *trackers, *profilers):
        callback.on_train_begin(args, state, TrainerControl(), model=ppo.model)
    epoch_steps = max(len(loader) / r.ppo_buffer_size, 1)
    try:
        while loop.step < total and not stop.requested:
            buffer = [ppo.experience(_to(next(batches), args.device)) for _ in range(r.ppo_buffer_size)]
            stats = _optimise(ppo, buffer, optimizer, params, args.max_grad_norm, r.ppo_epochs)
            scheduler.step()
            ppo.kl.update(float(stats["objective/kl"]), args.per_device_train_batch_size * r.ppo_buffer_size)
            loop.step += 1
            loop.tokens += sum(int(e["rollout"].attention_mask.sum()) for e in buffer)
            loop.losses.append(stats["loss"])
            state.global_step, state.num_input_tokens_seen = loop.step, loop.tokens
            state.epoch = loop.step / epoch_steps
            for callback in profilers:
                callback.on_step_end(args, state, TrainerControl())
            if loop.step % max(int(args.logging_steps), 1) == 0 or loop.step == total:
                logs = {**stats, "learning_rate": scheduler.get_last_lr()[0], "epoch": state.epoch}
                for callback in (log, *trackers, *profilers):
                    callback.on_log(args, state, TrainerControl(), logs=logs | {"objective/kl_coef": ppo.kl.value})
            if _should_save(args, loop.step, total) or stop.requested:
                save_checkpoint(ppo, loop, parts, args, fingerprint)
    finally:
        for callback in (stop, *profilers):
            callback.on_train_end(args, state, TrainerControl())
    mean_loss = sum(loop.losses) / len(loop.losses) if loop.losses else 0.0
    return {"train_loss": mean_loss, "epoch": loop.step / epoch_steps, "train_steps": loop.step}


def _should_save(args: Any, step: int, total: int) -> bool:
    """Mid-run checkpoints as `save_strategy: steps` / `save_steps` ask (the final weights are saved anyway)."""
    return args.save_strategy == "steps" and step < total and step % max(int(args.save_steps), 1) == 0


def _optimise(ppo: PPO, buffer: list[dict], optimizer: Any, params: list, max_norm: float, epochs: int) -> dict:
    sums: dict[str, float] = {}
    count = 0
    ppo.model.train()
    for _ in range(epochs):
        for exp in buffer:
            loss, stats = ppo.loss(exp)
            optimizer.zero_grad()
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if max_norm else torch.tensor(0.0)
            optimizer.step()
            for key, value in {"loss": loss, "grad_norm": grad_norm, **stats}.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach() if torch.is_tensor(value) else value)
            count += 1
    out = {key: value / count for key, value in sums.items()}
    for key in buffer[0]["stats"]:
        out[key] = sum(float(e["stats"][key]) for e in buffer) / len(buffer)
    return out


def _endless(loader: Any) -> Any:
    while True:
        yield from loader


def _to(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
