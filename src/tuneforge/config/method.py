"""The training stage and the fine-tuning method: full, freeze, LoRA family, OFT, optimizers."""

from __future__ import annotations

from typing import Literal

from tuneforge.config.fields import ACTS, F, Section, only_with, refused
from tuneforge.config.lists import CommaList, CommaListStr, split_list
from tuneforge.config.stages import StageName


class MethodSection(Section):
    """The training stage and the fine-tuning method: full, freeze, LoRA family, OFT, optimizers."""

    freeze_trainable_layers: int = F(
        2,
        "Freeze tuning: number of layers left trainable; positive counts from the last layer, negative from the "
        "first; with use_llama_pro, the number of expanded blocks.",
        wiring=ACTS,
    )
    freeze_trainable_modules: str = F(
        "all", "Freeze tuning: comma-separated module names inside the trainable layers to train, or all.", wiring=ACTS
    )
    freeze_extra_modules: str | None = F(
        None, "Freeze tuning: comma-separated extra modules outside the hidden layers to train as well.", wiring=ACTS
    )
    additional_target: CommaList = F(
        None,
        "Comma-separated modules besides the adapter layers to train fully and save (e.g. embed_tokens,lm_head).",
        wiring=ACTS,
    )
    module_dropout: float = F(0.0, "OFT: probability of dropping whole adapter blocks during training.", wiring=ACTS)
    oft_rank: int = F(0, "OFT: number of orthogonal blocks per layer; 0 derives it from oft_block_size.", wiring=ACTS)
    oft_block_size: int = F(32, "OFT: size of each orthogonal block; 0 derives it from oft_rank.", wiring=ACTS)
    oft_target: str = F(
        "all", "OFT: comma-separated module names to adapt, or all for every linear layer.", wiring=ACTS
    )
    create_new_adapter: bool = F(
        False,
        "Start a fresh adapter on top of the adapters loaded from adapter_name_or_path instead of "
        "continuing the last one.",
        wiring=ACTS,
    )
    lora_alpha: int | None = F(
        None,
        "LoRA scaling numerator; the update is scaled by lora_alpha / lora_rank. Unset means lora_rank * 2.",
        wiring=ACTS,
    )
    lora_dropout: float = F(0.0, "LoRA: dropout probability applied to the adapter's input.", wiring=ACTS)
    lora_rank: int = F(
        8, "LoRA: rank of the low-rank update matrices; higher means more trainable parameters.", wiring=ACTS
    )
    lora_target: CommaListStr = F(
        "all",
        "LoRA: comma-separated module names to adapt, or all for every linear layer. Routed MoE experts are "
        "fused weights, not linear layers: name them `experts` (or one weight, e.g. `experts.gate_up_proj`).",
        wiring=ACTS,
    )
    loraplus_lr_ratio: float | None = F(
        None, "LoRA+: learning-rate multiplier for the B matrices relative to A; unset disables LoRA+.", wiring=ACTS
    )
    loraplus_lr_embedding: float = F(1e-06, "LoRA+: learning rate for LoRA embedding layers.", wiring=ACTS)
    use_rslora: bool = F(
        False, "Use rank-stabilised LoRA scaling (alpha / sqrt(rank)) instead of alpha / rank.", wiring=ACTS
    )
    use_dora: bool = F(False, "Use DoRA, which splits each weight update into magnitude and direction.", wiring=ACTS)
    pissa_init: bool = F(
        False,
        "Initialise LoRA from the principal singular vectors of the weights (PiSSA) instead of zeros.",
        wiring=ACTS,
    )
    pissa_iter: int = F(16, "PiSSA: iterations of fast SVD; -1 uses the exact SVD.", wiring=ACTS)
    pissa_convert: bool = F(
        False,
        "PiSSA: also save the trained adapter converted to a plain LoRA adapter (twice the rank) for the original "
        "base model, in output_dir/pissa_converted (the initial adapter goes to output_dir/pissa_init); "
        "needs pissa_init, stages pt/sft.",
        wiring=ACTS,
    )
    use_galore: bool = F(
        False,
        "Train with GaLore: the gradients of the galore_target linear weights are projected to rank galore_rank "
        "before the Adam update (full/freeze tuning; optim adamw_torch[_fused], adamw_8bit or adafactor; "
        "pip install 'tuneforge[galore]').",
        wiring=ACTS,
    )
    galore_target: str = F(
        "all",
        "GaLore: comma-separated module names (a linear layer whose name contains one) whose weight gradients are "
        "projected, or all for every linear layer but the output head.",
        wiring=ACTS,
    )
    galore_rank: int = F(
        16,
        "GaLore: rank of the gradient projection.",
        wiring=ACTS,
    )
    galore_update_interval: int = F(
        200,
        "GaLore: optimizer steps between recomputations of the projection (an SVD of the gradient).",
        wiring=ACTS,
    )
    galore_scale: float = F(
        2.0,
        "GaLore: scaling factor applied to the update projected back to full rank.",
        wiring=ACTS,
    )
    galore_proj_type: Literal["std", "reverse_std", "right", "left", "full"] = F(
        "std",
        "GaLore: which side(s) of the gradient are projected.",
        wiring=ACTS,
    )
    galore_layerwise: bool = F(
        False,
        "GaLore: update each weight right after its gradient is ready, saving gradient memory; needs "
        "gradient_accumulation_steps 1 and one process (the logged grad_norm is then 0).",
        wiring=ACTS,
    )
    use_apollo: bool = F(
        False,
        "Train with APOLLO, AdamW whose states live in a low-rank auxiliary space of the apollo_target linear weights "
        "(full/freeze tuning; optim adamw_torch[_fused]; pip install 'tuneforge[apollo]').",
        wiring=ACTS,
    )
    apollo_target: str = F(
        "all",
        "APOLLO: comma-separated module names it applies to, or all.",
        wiring=ACTS,
    )
    apollo_rank: int = F(
        16,
        "APOLLO: rank of the auxiliary low-rank space.",
        wiring=ACTS,
    )
    apollo_update_interval: int = F(
        200,
        "APOLLO: steps between refreshes of the projection.",
        wiring=ACTS,
    )
    apollo_scale: float = F(
        32.0,
        "APOLLO: scaling factor applied to the update.",
        wiring=ACTS,
    )
    apollo_proj: Literal["svd", "random"] = F(
        "random",
        "APOLLO: projection built by SVD or at random.",
        wiring=ACTS,
    )
    apollo_proj_type: Literal["std", "right", "left"] = F(
        "std",
        "APOLLO: which side of the gradient is projected.",
        wiring=ACTS,
    )
    apollo_scale_type: Literal["channel", "tensor"] = F(
        "channel",
        "APOLLO: compute the update scaling per channel or per tensor.",
        wiring=ACTS,
    )
    apollo_layerwise: bool = F(
        False,
        "APOLLO: update each weight right after its gradient is ready, saving gradient memory; needs "
        "gradient_accumulation_steps 1 and one process (the logged grad_norm is then 0).",
        wiring=ACTS,
    )
    apollo_scale_front: bool = F(
        False,
        "APOLLO: apply the norm-growth limiter before scaling the gradient rather than after.",
        wiring=ACTS,
    )
    use_badam: bool = F(
        False,
        "Train with BAdam, block coordinate descent: Adam updates one block (decoder layer) at a time, or a "
        "badam_update_ratio share of each weight (full/freeze tuning; pip install 'tuneforge[badam]').",
        wiring=ACTS,
    )
    badam_mode: Literal["layer", "ratio"] = F(
        "layer",
        "BAdam: layer-wise block switching, or ratio-wise sparse updates.",
        wiring=ACTS,
    )
    badam_start_block: int | None = F(
        None,
        "BAdam layer mode: index of the first block to update; unset picks per badam_switch_mode.",
        wiring=ACTS,
    )
    badam_switch_mode: Literal["ascending", "descending", "random", "fixed"] | None = F(
        "ascending",
        "BAdam layer mode: order in which blocks take turns being updated.",
        wiring=ACTS,
    )
    badam_switch_interval: int | None = F(
        50,
        "BAdam layer mode: steps between block switches; -1 never switches.",
        wiring=ACTS,
    )
    badam_update_ratio: float = F(
        0.05,
        "BAdam ratio mode: fraction of parameters updated at each step.",
        wiring=ACTS,
    )
    badam_mask_mode: Literal["adjacent", "scatter"] = F(
        "adjacent",
        "BAdam ratio mode: choose the updated parameters as adjacent runs or scattered.",
        wiring=ACTS,
    )
    badam_verbose: int = F(
        0,
        "BAdam: log verbosity; 0 silent, 1 prints the active block, 2 also prints trainable parameters.",
        wiring=ACTS,
    )
    pure_bf16: bool = F(
        False,
        "Train entirely in bfloat16 with no float32 master weights (saves memory, needs bf16 hardware).",
        wiring=ACTS,
    )
    stage: StageName = F(
        "sft",
        "Training stage: pt (pre-training), sft, rm (reward model), ppo, dpo (and other preference losses), kto, grpo.",
        wiring=ACTS,
    )
    finetuning_type: Literal["lora", "oft", "freeze", "full"] = F(
        "lora",
        "Which parameters are trained: lora adapters, oft adapters, freeze (only some layers) or full.",
        wiring=ACTS,
    )
    use_llama_pro: bool = F(
        False,
        "LLaMA Pro: train only the expanded blocks of a model written by `tuneforge expand-layers` (freeze or "
        "lora/oft tuning); freeze_trainable_layers gives their number (num_expand).",
        wiring=ACTS,
    )
    use_adam_mini: bool = F(
        False,
        "Use the Adam-mini optimizer, which shares one second-moment estimate per head / neuron block "
        "(pip install 'tuneforge[adam-mini]').",
        wiring=ACTS,
    )
    use_mca: bool = F(
        False,
        "Train through Megatron-Core via mcore_adapter (multi-GPU, optional package).",
        wiring=refused(
            "MCoreAdapter (Megatron-Core) is not implemented in tuneforge yet (multi-GPU, planned); remove `use_mca`"
        ),
    )
    use_hyper_parallel: bool = F(
        False,
        "Use the hyper-parallel distributed training backend (multi-GPU, optional package).",
        wiring=refused(
            "Hyper-parallel training is not implemented in tuneforge yet (multi-GPU, planned); remove "
            "`use_hyper_parallel`"
        ),
    )
    hyper_parallel_args: str | None = F(
        None,
        "Path to a YAML or JSON file of settings for the hyper-parallel backend.",
        wiring=only_with("hyper-parallel training", "use_hyper_parallel"),
    )
    use_muon: bool = F(
        False,
        "Use torch.optim.Muon (learning rate scaled by 0.2 * sqrt(max(rows, cols))) for the 2-D weights except "
        "embeddings and the output head, and AdamW for the other parameters; weight_decay applies to all.",
        wiring=ACTS,
    )
    use_dft_loss: bool = F(
        False,
        "SFT: use the Dynamic Fine-Tuning loss, each label token's cross-entropy weighted by the model's "
        "probability of that token (no gradient through the weight); token-weighted like the plain loss.",
        wiring=ACTS,
    )
    use_asft_loss: bool = F(
        False,
        "SFT: use the anchored SFT loss, the DFT loss plus asft_alpha times KL(reference || model) per label "
        "token; the reference is ref_model if set, else the base model (LoRA: the adapter disabled).",
        wiring=ACTS,
    )
    asft_alpha: float = F(
        0.1, "Anchored SFT (use_asft_loss): weight of the KL term towards the reference model.", wiring=ACTS
    )
    use_eaft_loss: bool = F(
        False,
        "SFT: use the entropy-adaptive fine-tuning loss, each label token's cross-entropy weighted by "
        "(entropy of the softmax over the 20 most likely tokens / 3) ** eaft_alpha (no gradient through the weight).",
        wiring=ACTS,
    )
    eaft_alpha: float = F(
        1.0, "EAFT (use_eaft_loss): exponent of the entropy weight; 0 gives the plain loss.", wiring=ACTS
    )
    freeze_vision_tower: bool = F(
        True,
        "Multimodal models: keep the vision encoder frozen.",
        wiring=ACTS,
    )
    freeze_multi_modal_projector: bool = F(
        True,
        "Multimodal models: keep the projector between vision encoder and language model frozen.",
        wiring=ACTS,
    )
    freeze_language_model: bool = F(
        False,
        "Multimodal models: keep the language model frozen, training only the other parts.",
        wiring=ACTS,
    )

    @property
    def lora_targets(self) -> list[str]:
        """`lora_target` as a list (`["all"]` for every linear layer)."""
        return split_list(self.lora_target)

    @property
    def additional_targets(self) -> list[str]:
        """`additional_target` as a list."""
        return split_list(self.additional_target)
