"""Optional packages: which features need which, and one check that stops before any work when one is missing.

Every message names the setting that asked for the package and the extra to install
(`pip install 'tuneforge[wandb]'`), so a missing package never ends in a traceback halfway through a run.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tuneforge.errors import ConfigError

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig


@dataclass(frozen=True)
class Need:
    """One optional package a setting needs: the module to import and the tuneforge extra that installs it."""

    setting: str
    module: str
    extra: str

    def missing(self) -> bool:
        """Whether the module cannot be imported here."""
        return importlib.util.find_spec(self.module) is None

    def message(self) -> str:
        """The line telling the user what to install."""
        return f"`{self.setting}` needs the `{self.module}` package: pip install 'tuneforge[{self.extra}]'"


# report_to value -> (module, extra); the values transformers' Trainer accepts that need a package.
REPORT_TO: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
    "trackio": ("trackio", "trackio"),
    "comet_ml": ("comet_ml", "comet"),
    "clearml": ("clearml", "clearml"),
    "dvclive": ("dvclive", "dvclive"),
    "neptune": ("neptune", "neptune"),
    "codecarbon": ("codecarbon", "codecarbon"),
    "dagshub": ("dagshub", "dagshub"),
    "azure_ml": ("azureml", "azureml"),
    "flyte": ("flytekit", "flyte"),
    "swanlab": ("swanlab", "swanlab"),
}
QUANTIZERS: dict[str, tuple[str, str]] = {
    "bnb": ("bitsandbytes", "bnb"),
    "eetq": ("eetq", "eetq"),
}
BACKENDS: dict[str, tuple[str, str]] = {"vllm": ("vllm", "vllm"), "sglang": ("sglang", "sglang")}
# method switch -> (module, extra): the optimizers of maintained libraries (Muon is torch's own).
OPTIMIZERS: dict[str, tuple[str, str]] = {
    "use_galore": ("galore_torch", "galore"),
    "use_apollo": ("apollo_torch", "apollo"),
    "use_badam": ("badam", "badam"),
    "use_adam_mini": ("adam_mini", "adam-mini"),
}


# module -> extra, for checks made elsewhere (the model loader's quantizers).
EXTRA_OF: dict[str, str] = {
    module: extra
    for module, extra in [*REPORT_TO.values(), *QUANTIZERS.values(), *BACKENDS.values(), *OPTIMIZERS.values()]
} | {"deepspeed": "deepspeed", "liger_kernel": "liger", "gptqmodel": "quantize", "ray": "ray", "PIL": "vision"}
EXTRA_OF["av"] = "video"  # PyAV decodes the videos of a dataset (data/mm/video.py)
EXTRA_OF |= {"soundfile": "audio", "soxr": "audio"}  # audio files in datasets (data/mm/audio.py)
# Pre-quantized checkpoints: the extras are named by models/quantization.PREQUANTIZED (gptq, awq, aqlm,
# compressed-tensors, quanto, torchao), checked when the checkpoint's config.json is read.


def require(module: str, setting: str) -> None:
    """Raise ConfigError naming `setting` and the extra when `module` cannot be imported."""
    need = Need(setting, module, EXTRA_OF.get(module, module))
    if need.missing():
        raise ConfigError(need.message() + ".")


def _report_to(cfg: TuneforgeConfig) -> list[Need]:
    value = cfg.training.report_to
    names = [value] if isinstance(value, str) else list(value or [])
    names = [n for part in names for n in str(part).split(",") if n.strip()]
    return [Need(f"report_to: {n.strip()}", *REPORT_TO[n.strip()]) for n in names if n.strip() in REPORT_TO]


def _training(cfg: TuneforgeConfig) -> list[Need]:
    t, m = cfg.training, cfg.model
    needs = _report_to(cfg)
    if t.deepspeed:
        needs.append(Need("deepspeed", "deepspeed", "deepspeed"))
    if cfg.swanlab.use_swanlab:
        needs.append(Need("use_swanlab: true", "swanlab", "swanlab"))
    for setting, on in (
        ("use_liger_kernel: true", t.use_liger_kernel),
        ("enable_liger_kernel: true", m.enable_liger_kernel),
        ("speed_kernels: liger", t.speed_kernels == "liger"),
    ):
        if on:
            needs.append(Need(setting, "liger_kernel", "liger"))
    needs += [Need(f"{key}: true", *OPTIMIZERS[key]) for key in OPTIMIZERS if getattr(cfg.method, key)]
    return needs + _quantization(cfg)


def _quantization(cfg: TuneforgeConfig) -> list[Need]:
    q = cfg.quantization
    if q.quantization_bit is None or q.quantization_method not in QUANTIZERS:
        return []
    return [Need(f"quantization_method: {q.quantization_method}", *QUANTIZERS[q.quantization_method])]


def _inference(cfg: TuneforgeConfig) -> list[Need]:
    backend = cfg.inference.infer_backend
    needs = [Need(f"infer_backend: {backend}", *BACKENDS[backend])] if backend in BACKENDS else []
    needs += [Need(f"{key}: true", *OPTIMIZERS[key]) for key in OPTIMIZERS if getattr(cfg.method, key)]
    return needs + _quantization(cfg)


def _export(cfg: TuneforgeConfig) -> list[Need]:
    if cfg.export.export_quantization_bit is None:
        return []
    return [Need(f"export_quantization_bit: {cfg.export.export_quantization_bit}", "gptqmodel", "quantize")]


NEEDS = {"train": _training, "infer": _inference, "export": _export}


def missing_extras(cfg: TuneforgeConfig, verb: str) -> list[Need]:
    """The optional packages `verb` ("train", "infer" or "export") needs for this config and cannot import."""
    return [need for need in NEEDS[verb](cfg) if need.missing()]


def check_extras(cfg: TuneforgeConfig, verb: str) -> None:
    """Stop before any work when a package the config needs is missing, naming every missing one."""
    missing = missing_extras(cfg, verb)
    if missing:
        lines = "\n".join(f"  - {need.message()}" for need in missing)
        raise ConfigError(f"Optional packages are missing for this config:\n{lines}")
