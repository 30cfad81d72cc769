"""Preference and reinforcement-learning stages: reward model, DPO family, KTO, PPO, GRPO."""

from __future__ import annotations

from typing import Literal

from tuneforge.config.fields import ACTS, F, Section
from tuneforge.config.lists import CommaList, split_list


class RlhfSection(Section):
    """Preference and reinforcement-learning stages: reward model, DPO family, KTO, PPO, GRPO."""

    pref_beta: float = F(
        0.1, "DPO family: beta, the strength of the implicit KL constraint towards the reference model.", wiring=ACTS
    )
    pref_ftx: float = F(
        0.0,
        "Weight of an extra SFT (NLL) loss on the chosen responses during preference training; 0 disables it.",
        wiring=ACTS,
    )
    pref_bco_weight: float = F(0.0, "Weight of the BCO loss mixed into DPO training; 0 disables it.", wiring=ACTS)
    pref_loss: Literal["sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo"] = F(
        "sigmoid", "Preference loss used in the dpo stage; orpo and simpo need no reference model.", wiring=ACTS
    )
    dpo_label_smoothing: float = F(
        0.0,
        "Robust DPO label smoothing in [0, 0.5): assumed probability that a preference label is flipped.",
        wiring=ACTS,
    )
    kto_chosen_weight: float = F(1.0, "KTO: loss weight of desirable examples.", wiring=ACTS)
    kto_rejected_weight: float = F(1.0, "KTO: loss weight of undesirable examples.", wiring=ACTS)
    simpo_gamma: float = F(0.5, "SimPO: target reward margin between chosen and rejected responses.", wiring=ACTS)
    ppo_buffer_size: int = F(
        1, "PPO: number of mini-batches of experience collected per optimisation step.", wiring=ACTS
    )
    ppo_epochs: int = F(4, "PPO: optimisation epochs over each batch of experience.", wiring=ACTS)
    ppo_score_norm: bool = F(False, "PPO: normalise reward-model scores.", wiring=ACTS)
    ppo_target: float = F(6.0, "PPO: target KL divergence for the adaptive KL controller.", wiring=ACTS)
    ppo_whiten_rewards: bool = F(
        False, "PPO: whiten (zero-mean, unit-variance) rewards before computing advantages.", wiring=ACTS
    )
    ref_model: str | None = F(
        None,
        "Path or Hub id of the reference model for DPO/KTO/PPO; unset uses the base model (or the policy "
        "with adapters disabled).",
        wiring=ACTS,
    )
    ref_model_adapters: CommaList = F(None, "Comma-separated adapters to apply to the reference model.", wiring=ACTS)
    ref_model_quantization_bit: int | None = F(
        None, "Bits to quantize the reference model to on the fly (4 or 8); unset keeps full precision.", wiring=ACTS
    )
    reward_model: str | None = F(
        None, "Path or Hub id of the reward model for PPO, or the API URL when reward_model_type is api.", wiring=ACTS
    )
    reward_model_adapters: CommaList = F(None, "Comma-separated adapters to apply to the reward model.", wiring=ACTS)
    reward_model_quantization_bit: int | None = F(
        None, "Bits to quantize the reward model to on the fly (4 or 8); unset keeps full precision.", wiring=ACTS
    )
    reward_model_type: Literal["lora", "full", "api"] = F(
        "lora",
        "PPO reward model kind: a LoRA adapter on the policy, a separate full model, or an HTTP API.",
        wiring=ACTS,
    )
    ld_alpha: float | None = F(
        None,
        "LD-DPO: weight (0 to 1) of response tokens beyond the shared length, reducing length bias; unset disables.",
        wiring=ACTS,
    )
    num_generations: int = F(
        4,
        "GRPO: completions sampled per prompt; rewards are normalised within each group.",
        lf_default=None,
        wiring=ACTS,
    )
    grpo_beta: float = F(
        0.04,
        "GRPO: weight of the KL penalty towards the reference model (0 disables the reference).",
        lf_default=None,
        wiring=ACTS,
    )
    grpo_epsilon: float = F(0.2, "GRPO: clipping range of the policy ratio.", lf_default=None, wiring=ACTS)
    reward_funcs: CommaList = F(
        None,
        "GRPO: comma-separated reward functions as `module:function`, applied with the reward model if any.",
        lf_default=None,
        wiring=ACTS,
    )

    @property
    def ref_adapters(self) -> list[str]:
        """`ref_model_adapters` as a list."""
        return split_list(self.ref_model_adapters)

    @property
    def reward_adapters(self) -> list[str]:
        """`reward_model_adapters` as a list."""
        return split_list(self.reward_model_adapters)

    @property
    def reward_func_specs(self) -> list[str]:
        """`reward_funcs` as a list of `module:function` specs."""
        return split_list(self.reward_funcs)
