"""The optimizers the method switches ask for, built as LLaMA-Factory 0.9.5 builds them.

`optimizer_factory(cfg)` gives the Trainer a function `(model, training_args) -> optimizer`, or None for the
Trainer's own. The first switch that is on wins, in LLaMA-Factory's order (two at once are refused when the config
loads): GaLore, APOLLO, LoRA+, BAdam, Adam-mini, Muon. GaLore, APOLLO, BAdam and Adam-mini come from their
maintained packages (optional extras); Muon is `torch.optim.Muon` for the 2-D hidden weights with AdamW for the rest.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from types import MethodType
from typing import TYPE_CHECKING, Any

import torch

from tuneforge.errors import ConfigError
from tuneforge.train.optim_parts import CombinedOptimizer, LayerwiseOptimizer, keep_projectors, resumable_blocks

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

Factory = Callable[[Any, Any], torch.optim.Optimizer]
EIGHT_BIT = ("adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit")
LIBRARY_DROPS = ("fused", "foreach")  # torch AdamW switches the libraries' optimizers do not take


def optimizer_factory(cfg: TuneforgeConfig) -> Factory | None:
    """The optimizer builder the config's method switches ask for, or None for the Trainer's own optimizer."""
    m = cfg.method
    if m.use_galore or m.use_apollo:
        return lambda model, args: _projected(model, cfg, args)
    if m.loraplus_lr_ratio is not None:
        return lambda model, args: _loraplus(model, cfg, args)
    builders = {"use_badam": _badam, "use_adam_mini": _adam_mini, "use_muon": _muon}
    for key, build in builders.items():
        if getattr(m, key):
            return lambda model, args, build=build: build(model, cfg, args)
    return None


def check_optimizers(cfg: TuneforgeConfig, world: int) -> None:
    """Refuse, before any work, an optimizer this run's process count, DeepSpeed stage or torch cannot run."""
    m = cfg.method
    if m.use_muon and not hasattr(torch.optim, "Muon"):
        raise ConfigError(f"`use_muon` needs torch.optim.Muon (torch >= 2.9); this torch is {torch.__version__}.")
    if world < 2:
        return
    for key, flag in (("use_galore", "galore_layerwise"), ("use_apollo", "apollo_layerwise")):
        if getattr(m, key) and getattr(m, flag):
            raise ConfigError(f"`{flag}` runs in one process only, but this run has {world}; turn it off.")
    if m.use_badam and m.badam_mode == "ratio":
        raise ConfigError(f"`badam_mode: ratio` runs in one process only, but this run has {world}; use layer mode.")
    if m.use_badam and not _zero3(cfg):
        raise ConfigError(
            f"Layer-wise BAdam over {world} processes needs DeepSpeed ZeRO-3 (`deepspeed: z3`), as in LLaMA-Factory."
        )


def prepare_trainer(trainer: Any, cfg: TuneforgeConfig) -> None:
    """What BAdam needs from the Trainer: its callback, and gradient clipping that takes sparse gradients."""
    if not cfg.method.use_badam:
        return
    from badam import BAdamCallback, clip_grad_norm_old_version

    trainer.accelerator.clip_grad_norm_ = MethodType(clip_grad_norm_old_version, trainer.accelerator)
    trainer.add_callback(BAdamCallback)


# ---- parameter groups ---------------------------------------------------------------------------------------
def decay_parameter_names(model: Any) -> set[str]:
    """Names of the parameters that get weight decay: weights outside normalization layers, not biases."""
    from transformers.pytorch_utils import ALL_LAYERNORM_LAYERS
    from transformers.trainer_pt_utils import get_parameter_names

    return {n for n in get_parameter_names(model, ALL_LAYERNORM_LAYERS) if "bias" not in n}


def _decay_split(model: Any, skip: set[int]) -> tuple[list[Any], list[Any]]:
    """(no-decay, decay) trainable parameters, leaving out those whose id is in `skip`."""
    names, nodecay, decay = decay_parameter_names(model), [], []
    for name, param in model.named_parameters():
        if param.requires_grad and id(param) not in skip:
            (decay if name in names else nodecay).append(param)
    return nodecay, decay


def target_weights(model: Any, spec: str, key: str) -> list[torch.nn.Parameter]:
    """Trainable matrices of the linear layers whose name contains a target (`all`: every one but the head)."""
    from tuneforge.config.lists import split_list
    from tuneforge.models.adapters import linear_module_names

    targets = split_list(spec)
    targets = linear_module_names(model) if targets == ["all"] else targets
    found = [
        param
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and any(t in name for t in targets)
        for param in module.parameters()
        if param.requires_grad and param.ndim > 1
    ]
    if not found:
        raise ConfigError(
            f"`{key}: {spec}` matches no trainable linear weight of this model; its linear layers: "
            f"{', '.join(linear_module_names(model))} (or use `all`)."
        )
    return found


def trainer_optimizer(args: Any, model: Any = None) -> tuple[type, dict[str, Any]]:
    """The optimizer class and keyword arguments transformers' Trainer would use for `args.optim`."""
    from transformers import Trainer

    return Trainer.get_optimizer_cls_and_kwargs(args, model)


def _loraplus(model: Any, cfg: TuneforgeConfig, args: Any) -> torch.optim.Optimizer:
    from tuneforge.models.adapters import build_loraplus_optimizer

    _, kwargs = trainer_optimizer(args, model)
    return build_loraplus_optimizer(model, cfg, kwargs | {"weight_decay": args.weight_decay})


# ---- GaLore / APOLLO ----------------------------------------------------------------------------------------
def _projected(model: Any, cfg: TuneforgeConfig, args: Any) -> torch.optim.Optimizer:
    """GaLore or APOLLO: projected groups for the target weights, plain decay / no-decay groups for the rest."""
    m, t = cfg.method, cfg.training
    galore = m.use_galore
    name, prefix = ("GaLore", "galore") if galore else ("APOLLO", "apollo")
    optim_class = _galore_class(t.optim) if galore else _apollo_class()
    extra = _projection_settings(cfg)
    projected = target_weights(model, getattr(m, f"{prefix}_target"), f"{prefix}_target")
    nodecay, decay = _decay_split(model, {id(p) for p in projected})
    groups = [
        ([*nodecay], {"weight_decay": 0.0}),
        ([*decay], {"weight_decay": t.weight_decay}),
        ([*projected], {"weight_decay": t.weight_decay, **extra}),
    ]
    own = {k: v for k, v in trainer_optimizer(args, model)[1].items() if k not in LIBRARY_DROPS}
    if not m.pure_bf16:
        logger.warning("%s with mixed precision (no pure_bf16) may use much more GPU memory.", name)
    logger.info("Using %s on %d weight matrices with %s.", name, len(projected), extra)
    if getattr(m, f"{prefix}_layerwise"):
        logger.warning("Layer-wise %s: the logged grad_norm is 0 (gradients are freed during the backward).", name)
        per_param = {p: optim_class([{"params": [p], **group}], **own) for params, group in groups for p in params}
        per_param = {p: keep_projectors(optimizer) for p, optimizer in per_param.items()}
        return LayerwiseOptimizer(per_param, lr=t.learning_rate)
    return keep_projectors(optim_class([{"params": params, **group} for params, group in groups], **own))


def _projection_settings(cfg: TuneforgeConfig) -> dict[str, Any]:
    m = cfg.method
    if m.use_galore:
        return {
            "rank": m.galore_rank,
            "update_proj_gap": m.galore_update_interval,
            "scale": m.galore_scale,
            "proj_type": m.galore_proj_type,
        }
    return {
        "rank": m.apollo_rank,
        "proj": m.apollo_proj,
        "proj_type": m.apollo_proj_type,
        "update_proj_gap": m.apollo_update_interval,
        "scale": m.apollo_scale,
        "scale_type": m.apollo_scale_type,
        "scale_front": m.apollo_scale_front,
    }


def _galore_class(optim: str) -> Any:
    import galore_torch

    if optim in EIGHT_BIT:
        return galore_torch.GaLoreAdamW8bit
    if optim == "adafactor":
        return galore_torch.GaLoreAdafactor
    return _quiet_adamw(galore_torch.GaLoreAdamW)  # adamw_torch, adamw_torch_fused (the config checks the rest)


def _apollo_class() -> Any:
    from apollo_torch import APOLLOAdamW

    return _quiet_adamw(APOLLOAdamW)


def _quiet_adamw(cls: Any) -> Callable[..., torch.optim.Optimizer]:
    """The libraries' AdamW warns it is deprecated in favour of torch's (which has no projection): not for us."""
    return lambda groups, **kwargs: cls(groups, no_deprecation_warning=True, **kwargs)


# ---- BAdam, Adam-mini, Muon ---------------------------------------------------------------------------------
def _badam(model: Any, cfg: TuneforgeConfig, args: Any) -> torch.optim.Optimizer:
    """BAdam: Adam on one block of layers at a time (layer mode) or on a share of every weight (ratio mode)."""
    import badam

    m, t = cfg.method, cfg.training
    nodecay, decay = _decay_split(model, set())
    groups = [{"params": nodecay, "weight_decay": 0.0}, {"params": decay, "weight_decay": t.weight_decay}]
    named = list(model.named_parameters())
    optim_class, kwargs = trainer_optimizer(args)
    if m.badam_mode == "ratio":
        logger.info("Using BAdam, ratio mode: update ratio %s, mask %s.", m.badam_update_ratio, m.badam_mask_mode)
        return badam.BlockOptimizerRatio(
            param_groups=groups,
            named_parameters_list=named,
            update_ratio=m.badam_update_ratio,
            mask_mode=m.badam_mask_mode,
            verbose=m.badam_verbose,
            include_embedding=False,
            include_lm_head=not any("lm_head" in n for n, _ in named),  # tied head: it is the (frozen) embedding
            **{k: v for k, v in kwargs.items() if k in ("lr", "betas", "eps")},
        )
    interval = m.badam_switch_interval if m.badam_switch_interval != -1 else sys.maxsize
    logger.info("Using BAdam, layer mode: %s blocks, switching every %s steps.", m.badam_switch_mode, interval)
    block = badam.BlockOptimizer(
        base_optimizer=optim_class(groups, **kwargs),
        named_parameters_list=named,
        block_prefix_list=None,
        switch_block_every=interval,
        start_block=m.badam_start_block,
        switch_mode=m.badam_switch_mode,
        verbose=m.badam_verbose,
    )
    return block if _zero3(cfg) else resumable_blocks(block)


def _adam_mini(model: Any, cfg: TuneforgeConfig, args: Any) -> torch.optim.Optimizer:
    """Adam-mini, told the model's hidden size and (query, key-value) head counts."""
    from adam_mini import Adam_mini

    t, config = cfg.training, model.config
    logger.info("Using Adam-mini.")
    return Adam_mini(
        named_parameters=model.named_parameters(),
        lr=t.learning_rate,
        betas=(t.adam_beta1, t.adam_beta2),
        eps=t.adam_epsilon,
        weight_decay=t.weight_decay,
        dim=getattr(config, "hidden_size", None),
        n_heads=getattr(config, "num_attention_heads", None),
        n_kv_heads=getattr(config, "num_key_value_heads", None),
        verbose=False,
    )


def muon_split(model: Any) -> tuple[list[Any], list[Any]]:
    """(Muon, AdamW) trainable parameters: Muon takes 2-D weights that are not embeddings or the output head."""
    muon, adamw = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            hidden = param.ndim == 2 and "embed" not in name and "lm_head" not in name
            (muon if hidden else adamw).append(param)
    return muon, adamw


def _muon(model: Any, cfg: TuneforgeConfig, args: Any) -> torch.optim.Optimizer:
    """torch's Muon with the learning rate scaled to match AdamW's update size, AdamW for the rest."""
    t = cfg.training
    muon, adamw = muon_split(model)
    logger.info("Using Muon for %d weight matrices and AdamW for %d other parameters.", len(muon), len(adamw))
    parts: dict[str, torch.optim.Optimizer] = {}
    if muon:
        parts["muon"] = torch.optim.Muon(
            muon, lr=t.learning_rate, weight_decay=t.weight_decay, adjust_lr_fn="match_rms_adamw"
        )
    if adamw:
        betas = (t.adam_beta1, t.adam_beta2)
        parts["adamw"] = torch.optim.AdamW(
            adamw, lr=t.learning_rate, betas=betas, eps=t.adam_epsilon, weight_decay=t.weight_decay
        )
    return CombinedOptimizer(parts)


def _zero3(cfg: TuneforgeConfig) -> bool:
    if not cfg.training.deepspeed:
        return False
    from tuneforge.train.ds_config import load_deepspeed

    return load_deepspeed(cfg.training.deepspeed).get("zero_optimization", {}).get("stage") == 3
