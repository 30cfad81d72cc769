"""The web UI's form, as data: which config keys it shows, in which group, and how form values become a
`tuneforge train` config. Choices come from the config schema (Literal types), descriptions from
`field_info(key).description`, so nothing here restates the schema.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tuneforge.config.stages import STAGES

NONE = "none"
BOOSTERS = (NONE, "liger_kernel")  # only boosters tuneforge implements (use_unsloth is refused)
DEEPSPEED_STAGES = (NONE, "2", "3")
COMPUTE_TYPES = ("fp32", "bf16", "fp16")
QUANT_BITS = (NONE, "8", "4")


@dataclass(frozen=True)
class FormField:
    """One input: its config key (or a `ui_` key the UI maps itself), widget kind and page group."""

    key: str
    kind: str  # text | int | float | choice | check | pixels (an int, typed as `768*768` or `589824`)
    group: str
    choices: tuple[str, ...] = ()


def _literal(key: str) -> tuple[str, ...]:
    from tuneforge.config import field_info

    args = typing.get_args(field_info(key).annotation)
    return tuple(str(a) for a in args if a is not type(None) and not typing.get_args(a)) or tuple(
        str(x) for a in args for x in typing.get_args(a)
    )


def _fields() -> list[FormField]:
    F = FormField
    return [
        F("finetuning_type", "choice", "model", _literal("finetuning_type")),
        F("ui_quantization_bit", "choice", "model", QUANT_BITS),
        F("rope_scaling", "choice", "model", (NONE, *_literal("rope_scaling"))),
        F("flash_attn", "choice", "model", _literal("flash_attn")),
        F("ui_booster", "choice", "model", BOOSTERS),
        F("stage", "choice", "main", tuple(STAGES)),
        F("learning_rate", "float", "main"),
        F("num_train_epochs", "float", "main"),
        F("max_steps", "int", "main"),
        F("max_samples", "int", "main"),
        F("cutoff_len", "int", "main"),
        F("per_device_train_batch_size", "int", "main"),
        F("gradient_accumulation_steps", "int", "main"),
        F("lr_scheduler_type", "choice", "main", ("linear", "cosine", "constant", "constant_with_warmup")),
        F("ui_compute_type", "choice", "main", COMPUTE_TYPES),
        F("logging_steps", "int", "other"),
        F("save_steps", "int", "other"),
        F("warmup_steps", "float", "other"),
        F("val_size", "float", "other"),
        F("packing", "check", "other"),
        F("use_llama_pro", "check", "other"),
        F("lora_rank", "int", "lora"),
        F("lora_alpha", "int", "lora"),
        F("lora_dropout", "float", "lora"),
        F("lora_target", "text", "lora"),
        F("use_rslora", "check", "lora"),
        F("use_dora", "check", "lora"),
        F("freeze_trainable_layers", "int", "freeze"),
        F("freeze_trainable_modules", "text", "freeze"),
        F("pref_beta", "float", "rlhf"),
        F("pref_loss", "choice", "rlhf", _literal("pref_loss")),
        F("reward_model", "text", "rlhf"),
        F("quantization_method", "choice", "quant", _literal("quantization_method")),
        F("quantization_type", "choice", "quant", _literal("quantization_type")),
        F("ui_deepspeed_stage", "choice", "deepspeed", DEEPSPEED_STAGES),
        *_optimizer_fields(),
        *_multimodal_fields(),
    ]


def _optimizer_fields() -> list[FormField]:
    """The memory-saving full-weight optimizers, one group each, with the settings LLaMA-Factory's web UI shows."""
    fields = []
    for name in ("galore", "apollo"):
        fields += [FormField(f"use_{name}", "check", name), FormField(f"{name}_rank", "int", name)]
        fields += [FormField(f"{name}_update_interval", "int", name), FormField(f"{name}_scale", "float", name)]
        fields.append(FormField(f"{name}_target", "text", name))
    badam = [("use_badam", "check"), ("badam_mode", "choice"), ("badam_switch_mode", "choice")]
    fields += [FormField(key, kind, "badam", _literal(key) if kind == "choice" else ()) for key, kind in badam]
    fields += [FormField(key, "int", "badam") for key in ("badam_switch_interval", "badam_start_block")]
    fields.append(FormField("badam_update_ratio", "float", "badam"))
    return fields


def _multimodal_fields() -> list[FormField]:
    """Vision-language settings (LLaMA-Factory's web UI has the same): what trains, and how media are sized."""
    checks = ("freeze_vision_tower", "freeze_multi_modal_projector", "freeze_language_model")
    pixels = ("image_max_pixels", "image_min_pixels", "video_max_pixels", "video_min_pixels")
    fields = [FormField(key, "check", "multimodal") for key in checks]
    fields += [FormField(key, "pixels", "multimodal") for key in pixels]
    return [*fields, FormField("video_fps", "float", "multimodal"), FormField("video_maxlen", "int", "multimodal")]


FIELDS: list[FormField] = _fields()
SWITCHED = ("galore", "apollo", "badam")  # groups whose keys count only with their `use_<group>` box ticked
GROUPS = (
    "model",
    "main",
    "other",
    "lora",
    "freeze",
    "rlhf",
    "quant",
    "deepspeed",
    "galore",
    "apollo",
    "badam",
    "multimodal",
)

# UI defaults that differ from the config defaults (quick, visible runs from the browser).
UI_DEFAULTS: dict[str, Any] = {
    "logging_steps": 5,
    "save_steps": 100,
    "max_samples": 1000,
    "cutoff_len": 1024,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 4,
    "learning_rate": 5e-5,
    "ui_quantization_bit": NONE,
    "ui_booster": NONE,
    "ui_compute_type": "fp32",
    "ui_deepspeed_stage": NONE,
    "rope_scaling": NONE,
}


def default_value(field: FormField) -> Any:
    """The value a fresh form shows for `field`."""
    if field.key in UI_DEFAULTS:
        return UI_DEFAULTS[field.key]
    from tuneforge.config import field_info

    value = field_info(field.key).default
    if field.kind == "check":
        return bool(value)
    if field.kind == "pixels":
        return pixels_text(value)
    return "" if value is None else value


def pixels_text(value: Any) -> str:
    """A pixel count as the form shows it: `768*768` for a square number, else the number."""
    if value is None or value == "":
        return ""
    root = math.isqrt(int(value))
    return f"{root}*{root}" if root * root == int(value) else str(int(value))


def parse_pixels(key: str, value: Any) -> int:
    """`768*768`, `1024 * 576` or `589824` -> the pixel count; a ConfigError naming the field otherwise."""
    from tuneforge.errors import ConfigError

    try:
        factors = [int(part) for part in str(value).replace("x", "*").split("*")]
    except ValueError:
        raise ConfigError(f"{key}: {value!r} is not a pixel count; write e.g. 768*768 or 589824.") from None
    return math.prod(factors)


def description(key: str) -> str:
    """The config field's description (the tooltip), or '' for `ui_` keys."""
    if key.startswith("ui_"):
        return ""
    from tuneforge.config import field_info

    return field_info(key).description or ""


def model_path(name_or_path: str) -> str:
    """A registry model's hub id (given its name, hub id or hub name), or the path as typed."""
    from tuneforge.models.registry import find_model

    name_or_path = (name_or_path or "").strip()
    entry = find_model(name_or_path)
    return entry.hub if entry else name_or_path


def _typed(field: FormField, value: Any) -> Any:
    if value is None or (isinstance(value, str) and value.strip() in ("", NONE)):
        return None
    if field.kind == "int":
        return int(value)
    if field.kind == "float":
        return float(value)
    if field.kind == "check":
        return bool(value)
    if field.kind == "pixels":
        return parse_pixels(field.key, value)
    return value.strip() if isinstance(value, str) else value


def _apply_ui_key(config: dict[str, Any], key: str, value: Any, state_dir: Path | None) -> None:
    if key == "ui_quantization_bit":
        config["quantization_bit"] = int(value)
    elif key == "ui_booster":
        config["enable_liger_kernel"] = value == "liger_kernel"
    elif key == "ui_compute_type" and value != "fp32":
        config[value] = True
    elif key == "ui_deepspeed_stage":
        config["deepspeed"] = str(deepspeed_file(state_dir or Path("."), int(value)))


def form_to_config(values: dict[str, Any], state_dir: Path | None = None) -> dict[str, Any]:
    """Form values (field key -> widget value, plus model/dataset/output entries) -> a flat config dict."""
    config: dict[str, Any] = {"model_name_or_path": model_path(values.get("model_name_or_path", ""))}
    for key in ("adapter_name_or_path", "dataset", "eval_dataset"):
        names = values.get(key) or []
        if isinstance(names, str):
            names = [names]
        if names:
            config[key] = ",".join(names)
    for key in ("template", "dataset_dir", "output_dir"):
        if (values.get(key) or "").strip():
            config[key] = values[key].strip()
    for field in FIELDS:
        value = _typed(field, values.get(field.key))
        if value is None or (field.group in SWITCHED and not values.get(f"use_{field.group}")):
            continue  # an optimizer's settings are written only when it is switched on
        if field.key.startswith("ui_"):
            _apply_ui_key(config, field.key, value, state_dir)
        elif field.kind != "check" or value or default_value(field):
            config[field.key] = value
    return _run_settings(config, values)


def _run_settings(config: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Settings every UI run gets: logs the UI can read, plots, no trackers, no progress bars in the log."""
    if config.get("eval_dataset") and values.get("eval_steps"):
        config.update(eval_strategy="steps", eval_steps=int(values["eval_steps"]))
    config.update(report_to="none", plot_loss=True, disable_tqdm=True)
    return config


def deepspeed_file(state_dir: Path, stage: int) -> Path:
    """The shipped ZeRO config of `stage` (as in examples/deepspeed/): the one `tuneforge train` validates with
    DeepSpeed and launches under torchrun. `state_dir` is unused (kept for callers)."""
    from tuneforge.train.ds_config import stage_file

    return stage_file(f"z{stage}")


def validate(config: dict[str, Any]) -> Any:
    """The typed config (raises ConfigError with the schema's message when a value is wrong)."""
    from tuneforge.config import load_config

    return load_config(config)


def to_yaml(config: dict[str, Any]) -> str:
    """The config as the YAML file `tuneforge train` reads."""
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def command_preview(config: dict[str, Any]) -> str:
    """What Start runs: the YAML and the command line."""
    return f"# tuneforge train train.yaml\n{to_yaml(config)}"


def config_to_form(config: dict[str, Any]) -> dict[str, Any]:
    """A saved config -> form values (the inverse of `form_to_config` for the keys the form shows)."""
    values: dict[str, Any] = {
        k: config[k] for k in ("model_name_or_path", "template", "dataset_dir", "output_dir") if k in config
    }
    for key in ("adapter_name_or_path", "dataset", "eval_dataset"):
        if config.get(key):
            values[key] = [part.strip() for part in str(config[key]).split(",") if part.strip()]
    for field in FIELDS:
        if field.key in config:
            values[field.key] = pixels_text(config[field.key]) if field.kind == "pixels" else config[field.key]
    values["ui_quantization_bit"] = str(config.get("quantization_bit") or NONE)
    values["ui_compute_type"] = "bf16" if config.get("bf16") else "fp16" if config.get("fp16") else "fp32"
    values["ui_booster"] = "liger_kernel" if config.get("enable_liger_kernel") else NONE
    return values
