"""DeepSpeed configs: the shipped ZeRO stages by name, user JSON files, and validation before any work starts.

The Trainer fills the `auto` values itself at run time (from the training arguments and the model); to validate
before launch, a copy gets the same values here and goes through DeepSpeed's own config class.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.files import json_object

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

SHIPPED = Path(__file__).with_name("ds_configs")
STAGE_NAMES = ("z0", "z2", "z3", "z3_offload")
EXTRA = "pip install 'tuneforge[deepspeed]'"


def stage_file(name: str) -> Path:
    """The shipped config of a ZeRO stage name (z0, z2, z3, z3_offload); also in examples/deepspeed/."""
    return SHIPPED / f"ds_{name}_config.json"


def load_deepspeed(value: dict | str) -> dict[str, Any]:
    """The DeepSpeed config `deepspeed:` names: a dict, a JSON string, a stage name or a JSON file."""
    if isinstance(value, dict):
        return copy.deepcopy(value)
    text = value.strip()
    if text in STAGE_NAMES:
        return json.loads(stage_file(text).read_text())
    if text.startswith("{"):
        return _parse(text, "`deepspeed:` (inline JSON)")
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"`deepspeed: {value}`: no such file. Give a DeepSpeed JSON file or a stage name: {', '.join(STAGE_NAMES)}."
        )
    return _parse(path.read_text(encoding="utf-8"), str(path))


def _parse(text: str, where: str) -> dict[str, Any]:
    return json_object(text, where, "a DeepSpeed config object")


def fill_auto(ds: dict[str, Any], cfg: TuneforgeConfig, world_size: int, hidden_size: int) -> dict[str, Any]:
    """A copy of `ds` with the `auto` values the Trainer would fill (batch, clipping, precision, optimizer, ZeRO
    buckets); an `auto` left elsewhere is an error naming its key."""
    t = cfg.training
    micro, accum = t.per_device_train_batch_size, t.gradient_accumulation_steps
    values = {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accum,
        "train_batch_size": micro * accum * world_size,
        "gradient_clipping": t.max_grad_norm,
        "bf16.enabled": bool(t.bf16),
        "fp16.enabled": bool(t.fp16),
        "optimizer.params.lr": t.learning_rate,
        "optimizer.params.betas": [t.adam_beta1, t.adam_beta2],
        "optimizer.params.eps": t.adam_epsilon,
        "optimizer.params.weight_decay": t.weight_decay,
        "scheduler.params.warmup_min_lr": 0,
        "scheduler.params.warmup_max_lr": t.learning_rate,
        "scheduler.params.warmup_num_steps": int(t.warmup_steps or 0),
        "scheduler.params.total_num_steps": max(t.max_steps, 1),
        "zero_optimization.reduce_bucket_size": hidden_size * hidden_size,
        "zero_optimization.stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
        "zero_optimization.stage3_param_persistence_threshold": 10 * hidden_size,
    }
    filled = copy.deepcopy(ds)
    _fill(filled, values, "")
    return filled


def _fill(node: dict[str, Any], values: dict[str, Any], prefix: str) -> None:
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            _fill(value, values, f"{name}.")
        elif value == "auto":
            if name not in values:
                raise ConfigError(f"DeepSpeed config key `{name}` is `auto`, tuneforge cannot fill it: give a value.")
            node[key] = values[name]


def check_deepspeed(cfg: TuneforgeConfig, world_size: int, cuda: bool) -> dict[str, Any] | None:
    """Stop before any work when `deepspeed:` cannot run: package missing, invalid config (checked by DeepSpeed's
    own `DeepSpeedConfig`), or no CUDA device. Returns the validated (filled) config, or None without `deepspeed:`."""
    value = cfg.training.deepspeed
    if not value:
        return None
    if importlib.util.find_spec("deepspeed") is None:
        raise TuneforgeError(f"`deepspeed:` needs the DeepSpeed package, which is not installed: {EXTRA}.")
    filled = fill_auto(load_deepspeed(value), cfg, world_size, _hidden_size(cfg))
    from deepspeed.runtime.config import DeepSpeedConfig

    try:
        DeepSpeedConfig(_one_process_view(filled, world_size))
    except Exception as err:  # DeepSpeed raises pydantic, assertion and type errors alike
        lines = [line.strip() for line in str(err).splitlines() if line.strip() and "errors.pydantic.dev" not in line]
        raise ConfigError(f"`deepspeed: {_short(value)}` is not a valid DeepSpeed config: {'; '.join(lines)}") from None
    if not cuda:
        raise TuneforgeError(
            f"`deepspeed: {_short(value)}` is valid, but DeepSpeed ZeRO trains on CUDA GPUs and this machine has none. "
            "Run it on a GPU machine, or remove `deepspeed:` (CPU runs use plain DDP with gloo: FORCE_TORCHRUN=1)."
        )
    return filled


def _one_process_view(filled: dict[str, Any], world_size: int) -> dict[str, Any]:
    """`filled` as DeepSpeed checks it outside a process group (world size 1): the global batch per process,
    after checking that a given global batch is micro batch x accumulation x processes."""
    probe = copy.deepcopy(filled)
    micro, accum = probe.get("train_micro_batch_size_per_gpu"), probe.get("gradient_accumulation_steps")
    total = probe.get("train_batch_size")
    if isinstance(total, int) and isinstance(micro, int) and isinstance(accum, int):
        if total != micro * accum * world_size:
            raise ConfigError(
                f"DeepSpeed `train_batch_size: {total}` is not train_micro_batch_size_per_gpu ({micro}) x "
                f"gradient_accumulation_steps ({accum}) x processes ({world_size}); set it to `auto`."
            )
        probe["train_batch_size"] = micro * accum
    return probe


def _short(value: dict | str) -> str:
    return value if isinstance(value, str) else "{...}"


def _hidden_size(cfg: TuneforgeConfig) -> int:
    """The model's hidden size from a local config.json (the ZeRO bucket sizes scale with it); 4096 otherwise."""
    path = Path(cfg.model.model_name_or_path or "") / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return 4096
    size = config.get("hidden_size") or config.get("text_config", {}).get("hidden_size")
    return int(size) if size else 4096
