"""`tuneforge env`: the facts a bug report needs, with absent libraries named as such."""

from __future__ import annotations

import platform
from importlib import metadata

LIBRARIES = [
    "tuneforge",
    "transformers",
    "peft",
    "datasets",
    "accelerate",
    "trl",
    "gradio",
    "bitsandbytes",
    "liger-kernel",
    "flash-attn",
    "vllm",
    "deepspeed",
]


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _torch_lines() -> list[str]:
    try:
        import torch
    except ImportError:
        return ["torch: not installed"]
    lines = [f"torch: {torch.__version__}"]
    if torch.cuda.is_available():
        lines.append(f"CUDA: {torch.version.cuda} ({torch.cuda.device_count()} GPU)")
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            lines.append(f"  GPU {i}: {props.name}, {props.total_memory / 2**30:.1f} GiB")
    else:
        lines.append("CUDA: not available (CPU only)")
    return lines


def environment_report() -> str:
    """Platform, Python, torch with CUDA and GPUs, and the versions of the libraries tuneforge uses."""
    lines = [f"platform: {platform.platform()}", f"python: {platform.python_version()}"]
    lines += _torch_lines()
    lines += [f"{name}: {_version(name)}" for name in LIBRARIES]
    return "\n".join(lines)
