"""Checks that span several keys (contradictions) and checks of the paths a config names.

Each check returns `(keys, message)` pairs; the loader adds where each key was set.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tuneforge.config.optim_checks import optimizer_conflicts

if TYPE_CHECKING:
    from tuneforge.config.root import TuneforgeConfig

Conflict = tuple[tuple[str, ...], str]
_WINDOWS_PATH = re.compile(r"^[A-Za-z]:[\\/]|\\")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_QUANT_BITS = {"bnb": {4, 8}, "hqq": {1, 2, 3, 4, 5, 6, 8}, "eetq": {8}}


def _precision(cfg: TuneforgeConfig) -> Iterator[Conflict]:
    t = cfg.training
    if t.bf16 and t.fp16:
        yield (
            ("bf16", "fp16"),
            "choose one mixed precision: set either `bf16: true` or `fp16: true`, not both.",
        )
    if cfg.method.pure_bf16 and t.fp16:
        yield (
            ("pure_bf16", "fp16"),
            "`pure_bf16` trains in bfloat16 throughout; it cannot be combined with fp16.",
        )


def _quantization(cfg: TuneforgeConfig) -> Iterator[Conflict]:
    bits, ftype = cfg.quantization.quantization_bit, cfg.method.finetuning_type
    if bits is None:
        return
    if ftype in ("full", "freeze"):
        yield (
            ("quantization_bit", "finetuning_type"),
            f"a quantized model can only be trained with adapters (QLoRA); `finetuning_type: {ftype}` updates "
            "the quantized weights themselves. Use `finetuning_type: lora` or remove `quantization_bit`.",
        )
    allowed = _QUANT_BITS.get(cfg.quantization.quantization_method)
    if allowed and bits not in allowed:
        yield (
            ("quantization_bit", "quantization_method"),
            f"{cfg.quantization.quantization_method} supports {sorted(allowed)} bits, not {bits}.",
        )
    if cfg.method.create_new_adapter:
        yield ("quantization_bit", "create_new_adapter"), "cannot create a new adapter on a quantized model."


def _data(cfg: TuneforgeConfig) -> Iterator[Conflict]:
    d, stage = cfg.data, cfg.method.stage
    if d.streaming and cfg.training.max_steps <= 0:
        yield (
            ("streaming", "max_steps"),
            "a streamed dataset has no known length; set `max_steps` to the number of optimizer steps.",
        )
    if d.streaming and d.val_size and 0 < d.val_size < 1:
        yield (
            ("streaming", "val_size"),
            "with streaming, `val_size` must be a row count (an integer), not a fraction.",
        )
    if d.neat_packing and stage != "sft":
        yield (
            ("neat_packing", "stage"),
            f"`neat_packing` applies to supervised fine-tuning only, not `stage: {stage}`.",
        )
    if d.packing and stage not in ("pt", "sft"):
        yield ("packing", "stage"), f"`packing` applies to stages pt and sft only, not `stage: {stage}`."
    if d.train_on_prompt and d.mask_history:
        yield (
            ("train_on_prompt", "mask_history"),
            "`mask_history` trains only the last turn while `train_on_prompt` trains every token; pick one.",
        )
    if d.val_size and d.val_size > 1 and d.val_size != int(d.val_size):
        yield ("val_size",), "use a fraction below 1 (share of rows) or a whole number of rows."


def _method(cfg: TuneforgeConfig) -> Iterator[Conflict]:
    m = cfg.method
    if cfg.model.adapter_name_or_path and m.finetuning_type not in ("lora", "oft"):
        yield (
            ("adapter_name_or_path", "finetuning_type"),
            f"adapters are loaded for `finetuning_type: lora` or `oft`, not `{m.finetuning_type}`.",
        )
    if m.use_llama_pro and m.finetuning_type == "full":
        yield ("use_llama_pro", "finetuning_type"), "LLaMA Pro trains the expanded blocks with freeze or lora tuning."
    if m.use_dora and m.pissa_init:
        yield ("use_dora", "pissa_init"), "PiSSA initialisation is not available for DoRA adapters."


def _sft_extras(cfg: TuneforgeConfig) -> Iterator[Conflict]:
    m, stage = cfg.method, cfg.method.stage
    losses = tuple(k for k in ("use_dft_loss", "use_eaft_loss", "use_asft_loss") if getattr(m, k))
    if len(losses) > 1:
        yield losses, "these sft losses replace each other; enable only one."
    if losses and stage != "sft":
        yield (*losses, "stage"), f"the DFT/EAFT/ASFT losses apply to `stage: sft` only, not `{stage}`."
    if m.pissa_convert and not (m.pissa_init and m.finetuning_type == "lora"):
        yield (
            ("pissa_convert", "pissa_init"),
            "`pissa_convert` converts a PiSSA adapter: it needs `finetuning_type: lora` with `pissa_init: true`.",
        )
    for key in ("neat_packing", "max_tokens_per_batch"):
        if cfg.model.mixture_of_depths and cfg.get(key):
            yield (
                ("mixture_of_depths", key),
                f"mixture of depths routes the top tokens of each padded row; it cannot be combined with `{key}` "
                "(padding-free rows of several samples). Remove one of them.",
            )
    fp8 = cfg.training.fp8 or cfg.training.fp8_enable_fsdp_float8_all_gather
    if fp8 and cfg.quantization.quantization_bit:
        yield ("fp8", "quantization_bit"), "FP8 training cannot be combined with a quantized model; drop one."
    for key, on in (("fp8", fp8), ("pissa_convert", m.pissa_convert)):
        if on and stage not in ("pt", "sft"):
            yield (key, "stage"), f"`{key}` applies to stages pt and sft in tuneforge, not `{stage}`."


def _stages(cfg: TuneforgeConfig) -> Iterator[Conflict]:
    stage, r = cfg.method.stage, cfg.rlhf
    if stage == "ppo" and not r.reward_model:
        yield ("stage", "reward_model"), "PPO needs `reward_model` (a path, adapter or API URL)."
    if stage == "ppo" and r.reward_model_type == "api" and not str(r.reward_model or "").startswith("http"):
        yield (
            ("reward_model", "reward_model_type"),
            "`reward_model_type: api` needs `reward_model: http://...`.",
        )
    if stage == "grpo" and not (r.reward_model or r.reward_funcs):
        yield ("stage", "reward_funcs"), "GRPO needs `reward_funcs` (module:function) and/or `reward_model`."


def _evaluation(cfg: TuneforgeConfig) -> Iterator[Conflict]:
    t, d = cfg.training, cfg.data
    if t.eval_strategy != "no" and cfg.training.do_train and not (d.eval_dataset or d.val_size):
        yield (
            ("eval_strategy", "eval_dataset", "val_size"),
            "evaluation is scheduled but there is no evaluation data: set `eval_dataset` or `val_size`.",
        )
    if t.early_stopping_steps is not None and not (t.load_best_model_at_end and t.eval_strategy != "no"):
        yield (
            ("early_stopping_steps", "load_best_model_at_end", "eval_strategy"),
            "early stopping compares evaluations and keeps the best checkpoint: set `eval_strategy: steps` "
            "(or epoch), `load_best_model_at_end: true` and a matching `save_strategy`.",
        )
    if t.do_predict and cfg.method.stage == "sft" and not t.predict_with_generate:
        yield (
            ("do_predict", "predict_with_generate"),
            "prediction generates answers: set `predict_with_generate: true` with `do_predict: true`.",
        )
    if t.do_predict and cfg.method.stage != "sft":
        yield ("do_predict", "stage"), f"`do_predict` generates answers for stage sft only, not `{cfg.method.stage}`."
    if cfg.export.export_quantization_bit and cfg.model.adapter_name_or_path:
        yield (
            ("export_quantization_bit", "adapter_name_or_path"),
            "merge the adapter into a model first, then quantize the merged model in a second export.",
        )


def _template(cfg: TuneforgeConfig) -> Iterator[Conflict]:
    """An unknown chat template or tool format is reported now (with the closest names), not when training starts."""
    from tuneforge.data.templates.registry import PRESERVE_NEEDS_NAME, get_spec, list_tool_formats
    from tuneforge.errors import ConfigError

    if cfg.data.template not in (None, "auto"):  # auto: resolve_auto_template reports its own problem
        try:
            get_spec(cfg.data.template)
        except ConfigError as error:
            yield ("template",), str(error).removeprefix("template: ")
    if cfg.data.template is None and cfg.data.preserve_thinking:
        yield ("preserve_thinking", "template"), PRESERVE_NEEDS_NAME
    fmt, known = cfg.data.tool_format, list_tool_formats()
    if fmt is not None and fmt not in known:
        yield ("tool_format",), f"unknown tool format {fmt!r}; known: {', '.join(known)}."


def _new_tokens(cfg: TuneforgeConfig) -> Iterator[Conflict]:
    """A `new_special_tokens_config` file that cannot be read is reported before anything loads."""
    from tuneforge.errors import ConfigError
    from tuneforge.models.new_tokens import token_descriptions

    if cfg.model.new_special_tokens_config is not None:
        try:
            token_descriptions(cfg.model.new_special_tokens_config)
        except ConfigError as error:
            yield ("new_special_tokens_config",), str(error).removeprefix("new_special_tokens_config: ")


CHECKS: list[Callable[[TuneforgeConfig], Iterator[Conflict]]] = [
    _template,
    _new_tokens,
    _precision,
    _quantization,
    _data,
    _method,
    optimizer_conflicts,
    _sft_extras,
    _stages,
    _evaluation,
]


def check_consistency(cfg: TuneforgeConfig) -> list[Conflict]:
    """Every contradiction between keys of a config."""
    return [conflict for check in CHECKS for conflict in check(cfg)]


def check_paths(cfg: TuneforgeConfig) -> list[Conflict]:
    """Problems with the model path: Windows paths on other systems, missing folders, impossible hub ids."""
    problems: list[Conflict] = []
    for key in ("model_name_or_path", "adapter_name_or_path"):
        value = cfg.get(key)
        for part in [p.strip() for p in str(value).split(",")] if value else []:
            message = _path_problem(key, part)
            if message:
                problems.append(((key,), message))
    return problems


def _path_problem(key: str, value: str) -> str | None:
    if sys.platform != "win32" and _WINDOWS_PATH.search(value):
        return (
            f"`{value}` is a Windows path, but tuneforge is running on {sys.platform}. "
            "Copy the model to this machine and give its local folder (e.g. `/data/models/Qwen3-0.6B`), "
            "or give a Hugging Face hub id such as `Qwen/Qwen3-0.6B`."
        )
    path = Path(os.path.expanduser(value))
    if path.is_dir():
        return None
    looks_local = value.startswith(("/", ".", "~")) or value.count("/") > 1 or path.exists()
    if looks_local or not _HUB_ID.match(value):
        what = "model" if key == "model_name_or_path" else "adapter"
        return (
            f"`{value}` is neither a local {what} folder nor a hub id (`organisation/name`). "
            "Check the path (it is resolved relative to the directory you run tuneforge from)."
        )
    return None
