"""Preference and reinforcement-learning stages: reward model, DPO family, KTO, PPO, GRPO."""

from __future__ import annotations

from typing import Literal

from tuneforge.config.fields import F, Section


class RlhfSection(Section):
    """Preference and reinforcement-learning stages: reward model, DPO family, KTO, PPO, GRPO."""

    pref_beta: float = F(0.1, "")
    pref_ftx: float = F(0.0, "")
    pref_bco_weight: float = F(0.0, "")
    pref_loss: Literal['sigmoid', 'hinge', 'ipo', 'kto_pair', 'orpo', 'simpo'] = F('sigmoid', "")
    dpo_label_smoothing: float = F(0.0, "")
    kto_chosen_weight: float = F(1.0, "")
    kto_rejected_weight: float = F(1.0, "")
    simpo_gamma: float = F(0.5, "")
    ppo_buffer_size: int = F(1, "")
    ppo_epochs: int = F(4, "")
    ppo_score_norm: bool = F(False, "")
    ppo_target: float = F(6.0, "")
    ppo_whiten_rewards: bool = F(False, "")
    ref_model: str | None = F(None, "")
    ref_model_adapters: str | None = F(None, "")
    ref_model_quantization_bit: int | None = F(None, "")
    reward_model: str | None = F(None, "")
    reward_model_adapters: str | None = F(None, "")
    reward_model_quantization_bit: int | None = F(None, "")
    reward_model_type: Literal['lora', 'full', 'api'] = F('lora', "")
    ld_alpha: float | None = F(None, "")
    num_generations: int = F(4, "GRPO: completions sampled per prompt; rewards are normalised within each group.", lf_default=None)
    grpo_beta: float = F(0.04, "GRPO: weight of the KL penalty towards the reference model (0 disables the reference).", lf_default=None)
    grpo_epsilon: float = F(0.2, "GRPO: clipping range of the policy ratio.", lf_default=None)
    reward_funcs: str | None = F(None, "GRPO: comma-separated reward functions as `module:function`, applied with the reward model if any.", lf_default=None)
