"""Choose what trains: full fine-tuning, freeze (a few layers), LoRA and its variants, or OFT, through PEFT.

`apply_finetuning(model, cfg, trainable=True)` is the one entry point; `build_loraplus_optimizer` makes the
LoRA+ parameter groups (B matrices at `loraplus_lr_ratio` times the learning rate); `PissaConversion` saves a
trained PiSSA adapter converted to plain LoRA (`pissa_convert`).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from tuneforge.config.lists import split_list
from tuneforge.errors import TuneforgeError
from tuneforge.models.expand import expanded_layer_ids
from tuneforge.models.expert_targets import expert_hint, explain_fused_targets, split_expert_targets, warn_unadapted
from tuneforge.models.multimodal import freeze_parts, lora_module_names, open_projector
from tuneforge.models.new_tokens import embedding_modules

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

OUTPUT_LAYERS = ("lm_head", "output_layer", "embed_out")
EMBEDDING_LAYERS = ("embed_tokens", "wte", "word_embeddings", *OUTPUT_LAYERS)


def apply_finetuning(model: PreTrainedModel, cfg: TuneforgeConfig, *, trainable: bool = True) -> Any:
    """Set which parameters train (or load adapters for inference) per `finetuning_type`; returns the model."""
    kind = cfg.method.finetuning_type
    if kind in ("lora", "oft"):
        model = _apply_peft(model, cfg, kind, trainable)
    elif not trainable:
        model.requires_grad_(False)
    elif kind == "full":
        model.requires_grad_(True)
        freeze_parts(model, cfg.method)
    else:
        _apply_freeze(model, cfg)
        open_projector(model, cfg.method)
        freeze_parts(model, cfg.method)
    if trainable:
        _upcast_trainable(model, cfg)
        logger.info("%s", describe_trainable(model))
    if cfg.model.print_param_status:
        print(param_status(model))
    return model


def param_status(model: Any) -> str:
    """One line per parameter: name, dtype, device and whether it trains (`print_param_status`)."""
    return "\n".join(
        f"name: {name}, dtype: {p.dtype}, device: {p.device}, trainable: {p.requires_grad}"
        for name, p in model.named_parameters()
    )


def describe_trainable(model: Any) -> str:
    """`trainable params: N || all params: M || trainable%: P` as LLaMA-Factory prints it."""
    total = sum(p.numel() for p in model.parameters())
    train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"trainable params: {train:,} || all params: {total:,} || trainable%: {100 * train / max(total, 1):.4f}"


# ---- freeze -------------------------------------------------------------------------------------------------


def freeze_trainable_names(model: Any, cfg: TuneforgeConfig) -> list[str]:
    """Names of the parameters left trainable by freeze tuning."""
    m = cfg.method
    layers = _num_layers(model)
    count = m.freeze_trainable_layers
    if count == 0:
        raise TuneforgeError(
            "`freeze_trainable_layers: 0` trains no layer; give the number of layers to train "
            "(positive counts from the last layer, negative from the first)."
        )
    if m.use_llama_pro:
        ids: Any = expanded_layer_ids(layers, count)
    else:
        if abs(count) > layers:
            logger.warning("`freeze_trainable_layers: %s`: the model has %s layers; training all.", count, layers)
            count = layers if count > 0 else -layers
        ids = range(layers - count, layers) if count > 0 else range(-count)
    modules = None if m.freeze_trainable_modules.strip() == "all" else split_list(m.freeze_trainable_modules)
    extras = split_list(m.freeze_extra_modules)
    names = [n for n, _ in model.named_parameters() if _freeze_keeps(n, set(ids), modules, extras)]
    if not names:
        raise TuneforgeError(
            f"Freeze tuning left no trainable parameter: check `freeze_trainable_modules: "
            f"{m.freeze_trainable_modules}` and `freeze_extra_modules` against the model's module names."
        )
    return names


def _freeze_keeps(name: str, ids: set[int], modules: list[str] | None, extras: list[str]) -> bool:
    match = re.search(r"\.layers\.(\d+)\.(.+)$", name)
    if match and int(match.group(1)) in ids:
        return modules is None or any(match.group(2).startswith(f"{mod}.") for mod in modules)
    return any(extra in name for extra in extras)  # as LLaMA-Factory: `norm` also trains every layer's norms


def _apply_freeze(model: Any, cfg: TuneforgeConfig) -> None:
    keep = set(freeze_trainable_names(model, cfg))
    for name, param in model.named_parameters():
        param.requires_grad_(name in keep)


def _num_layers(model: Any) -> int:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for key in ("num_hidden_layers", "num_layers", "n_layer"):
        if getattr(config, key, None):
            return int(getattr(config, key))
    raise TuneforgeError("Freeze tuning: the model config does not say how many layers it has.")


# ---- LoRA / OFT ---------------------------------------------------------------------------------------------


def linear_module_names(model: Any) -> list[str]:
    """Leaf names of every linear layer except the output head: what `lora_target: all` adapts."""
    names = set()
    for full_name, module in model.named_modules():
        leaf = full_name.split(".")[-1]
        if "Linear" in type(module).__name__ and "lora" not in full_name and leaf not in OUTPUT_LAYERS:
            names.add(leaf)
    return sorted(names)


def _targets(model: Any, spec: str) -> tuple[list[str], list[str]]:
    """(target modules, target parameters) of a `lora_target` / `oft_target` list; `all` is every linear layer."""
    targets = split_list(spec)
    if targets == ["all"]:
        return linear_module_names(model), []
    if "all" in targets:  # `all` beside expert weights: every linear layer plus those
        targets = [*linear_module_names(model), *(t for t in targets if t != "all")]
    modules, parameters = split_expert_targets(model, targets)
    known = {name.split(".")[-1] for name, _ in model.named_modules()}
    missing = [t for t in modules if t not in known]
    if missing:
        raise TuneforgeError(
            f"Adapter target(s) {', '.join(missing)} are not modules of this model; "
            f"linear layers it has: {', '.join(linear_module_names(model))} (or use `all`)."
            + expert_hint(model, missing)
        )
    return modules, parameters


def _method_targets(model: Any, cfg: TuneforgeConfig, spec: str) -> tuple[list[str], list[str]]:
    """(modules, parameters) to adapt; with `use_llama_pro`, only modules inside the expanded blocks (full names)."""
    targets, parameters = _targets(model, spec)
    if not cfg.method.use_llama_pro:
        return _outside_frozen_parts(model, cfg, spec, targets), parameters
    if parameters:
        raise TuneforgeError(
            f"`use_llama_pro` adapts the expanded blocks' linear layers; drop the expert weights "
            f"({', '.join(parameters)}) from the adapter targets."
        )
    ids = set(expanded_layer_ids(_num_layers(model), cfg.method.freeze_trainable_layers))
    logger.info("LLaMA Pro: adapters on layers %s", ", ".join(map(str, sorted(ids))))
    modules = [
        name
        for name, _ in model.named_modules()
        if name.split(".")[-1] in targets and (hit := re.search(r"\.layers\.(\d+)\.", name)) and int(hit[1]) in ids
    ]
    return modules, []


def _outside_frozen_parts(model: Any, cfg: TuneforgeConfig, spec: str, leaves: list[str]) -> list[str]:
    """Vision-language models: the full names of the target modules outside the frozen parts (text models: `leaves`)."""
    names = lora_module_names(model, leaves, cfg.method)
    if names is None:
        return leaves
    if not names:
        raise TuneforgeError(
            f"Adapter targets {spec!r} match no module outside the frozen parts of this vision-language model; "
            "unset `freeze_language_model` (or `freeze_vision_tower`) so the adapter has something to train."
        )
    return names


def peft_config(model: Any, cfg: TuneforgeConfig, kind: str) -> Any:
    """The PEFT LoraConfig / OFTConfig for the method settings."""
    from peft import LoraConfig, OFTConfig, TaskType

    m = cfg.method
    extra = m.additional_targets or embedding_modules(model, cfg.model.resize_vocab)
    if kind == "oft":
        modules, parameters = _method_targets(model, cfg, m.oft_target)
        if parameters:
            raise TuneforgeError(
                f"OFT cannot adapt fused expert weights ({', '.join(parameters)}); use `finetuning_type: lora`."
            )
        return OFTConfig(
            task_type=TaskType.CAUSAL_LM,
            r=m.oft_rank,
            oft_block_size=m.oft_block_size,
            module_dropout=m.module_dropout,
            target_modules=modules,
            modules_to_save=extra,
        )
    modules, parameters = _method_targets(model, cfg, m.lora_target)
    init: Any = True
    if m.pissa_init:
        init = "pissa" if m.pissa_iter == -1 else f"pissa_niter_{m.pissa_iter}"
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=m.lora_rank,
        lora_alpha=m.lora_alpha if m.lora_alpha is not None else m.lora_rank * 2,
        lora_dropout=m.lora_dropout,
        target_modules=modules,
        target_parameters=parameters or None,
        modules_to_save=extra,
        use_rslora=m.use_rslora,
        use_dora=m.use_dora,
        init_lora_weights=init,
        ensure_weight_tying=ties_embeddings(model, extra),
    )


def ties_embeddings(model: Any, modules_to_save: list[str] | None) -> bool:
    """True when the model ties input and output embeddings and one of them is trained in full (`additional_target`).

    PEFT then keeps the trained copies tied (the head predicts with the trained embedding), and records it in
    `adapter_config.json` so a plain `PeftModel.from_pretrained` ties them again.
    """
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    tied = bool(getattr(config, "tie_word_embeddings", False))
    return tied and any(name in EMBEDDING_LAYERS for name in modules_to_save or ())


def _apply_peft(model: Any, cfg: TuneforgeConfig, kind: str, trainable: bool) -> Any:
    from peft import PeftModel, get_peft_model

    adapters = cfg.model.adapters
    resume_last = trainable and adapters and not cfg.method.create_new_adapter
    to_merge = adapters[:-1] if resume_last else adapters
    with _quiet_peft():
        for path in to_merge:
            model = PeftModel.from_pretrained(model, path).merge_and_unload()
            logger.info("Merged adapter %s into the base model", path)
        if resume_last:
            model = PeftModel.from_pretrained(model, adapters[-1], is_trainable=True)
            logger.info("Continuing to train adapter %s", adapters[-1])
            return model
        if not trainable:
            return model.requires_grad_(False)
        checkpointing = getattr(model, "is_activation_checkpointing", None)
        if checkpointing is None:  # transformers before the activation-checkpointing rename
            checkpointing = getattr(model, "is_gradient_checkpointing", False)
        if checkpointing or getattr(model, "is_quantized", False):
            model.enable_input_require_grads()
        config = peft_config(model, cfg, kind)
        requested = set(config.target_modules or ())
        with explain_fused_targets():
            peft_model = get_peft_model(model, config)
        warn_unadapted(peft_model, requested)
        return peft_model


@contextmanager
def _quiet_peft() -> Iterator[None]:
    """Silence the FutureWarning PEFT triggers by reading transformers' deprecated `is_gradient_checkpointing`
    (peft/peft_model.py, `PeftModel.__init__`); nothing of ours reads it on transformers >= 5.2x."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def _upcast_trainable(model: Any, cfg: TuneforgeConfig) -> None:
    """Trainable weights stay float32 unless pure_bf16 asks for half-precision weights throughout, or BAdam keeps
    its own float32 copy of the active block (as in LLaMA-Factory)."""
    import torch

    if cfg.method.pure_bf16 or cfg.method.use_badam:
        return
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.to(torch.float32)


def build_loraplus_optimizer(model: Any, cfg: TuneforgeConfig, optim_kwargs: dict[str, Any]) -> torch.optim.Optimizer:
    """AdamW with LoRA+ parameter groups: B matrices learn `loraplus_lr_ratio` times faster."""
    import torch
    from peft.optimizers import create_loraplus_optimizer

    if cfg.method.finetuning_type != "lora":
        raise TuneforgeError("`loraplus_lr_ratio` only applies to `finetuning_type: lora`.")
    kwargs = {k: v for k, v in optim_kwargs.items() if k != "lr"}
    return create_loraplus_optimizer(
        model,
        torch.optim.AdamW,
        lr=cfg.training.learning_rate,
        loraplus_lr_ratio=cfg.method.loraplus_lr_ratio,
        loraplus_lr_embedding=cfg.method.loraplus_lr_embedding,
        **kwargs,
    )


# ---- PiSSA conversion ---------------------------------------------------------------------------------------

PISSA_INIT, PISSA_CONVERTED = "pissa_init", "pissa_converted"


@contextmanager
def _plain_lora_config(model: Any) -> Iterator[None]:
    """Save with `init_lora_weights: true`, so loading the adapter does not redo the PiSSA SVD on the base."""
    config = model.peft_config["default"]
    init = config.init_lora_weights
    config.init_lora_weights = True
    try:
        yield
    finally:
        config.init_lora_weights = init


def save_pissa_initial(model: Any, folder: str | Path) -> Path:
    """Save the PiSSA adapter as initialised (before any step): the conversion subtracts it later."""
    path = Path(folder)
    with _plain_lora_config(model), _quiet_peft():
        model.save_pretrained(str(path))
    return path


def save_pissa_converted(model: Any, folder: str | Path, initial: str | Path) -> Path:
    """Save the trained PiSSA adapter converted to a plain LoRA adapter (twice the rank) for the original base.

    PiSSA trains on a residual base W - A0 B0; the converted adapter [A | A0] [B | -B0] on the original W gives
    the same weights, so it works wherever a LoRA adapter does (merge, vLLM, other adapters' bases).
    """
    path = Path(folder)
    with _quiet_peft():  # PEFT loads the initial adapter beside the trained one for the conversion, and warns
        warnings.filterwarnings("ignore", message="PiSSA changes the base weights", category=UserWarning)
        model.save_pretrained(str(path), path_initial_model_for_weight_conversion=str(initial))
    return path


class PissaConversion(TrainerCallback):
    """`pissa_convert`: save the initial adapter to `output_dir/pissa_init` when training starts and the converted
    plain-LoRA adapter to `output_dir/pissa_converted` when it ends (the output folder keeps the PiSSA adapter)."""

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        initial = Path(args.output_dir) / PISSA_INIT
        if not args.should_save:
            return
        if state.global_step > 0:  # resumed: the initial adapter was saved by the run that started from step 0
            if not (initial / "adapter_config.json").is_file():
                raise TuneforgeError(
                    f"`pissa_convert` needs the initial PiSSA adapter in {initial}, which the resumed run did not "
                    "leave; train from the start (remove `resume_from_checkpoint`) or drop `pissa_convert`."
                )
            return
        save_pissa_initial(model, initial)
        logger.info("Initial PiSSA adapter saved to %s", initial)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if args.should_save:
            out = Path(args.output_dir)
            path = save_pissa_converted(model, out / PISSA_CONVERTED, out / PISSA_INIT)
            logger.info("PiSSA adapter converted to plain LoRA (for the original base model) in %s", path)


def pissa_callbacks(cfg: TuneforgeConfig) -> list[TrainerCallback]:
    """[PissaConversion()] when `pissa_convert` is set, else []."""
    return [PissaConversion()] if cfg.method.pissa_convert else []
