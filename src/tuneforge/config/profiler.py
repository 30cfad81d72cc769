"""LLaMA-Factory's PyTorch profiler keys (`enable_torch_profiler`, `profiler_*`, `profile_modules`).

tuneforge does not wire the profiler: turning it on is refused with what to use instead, and the other keys warn
that they have no effect without it. Kept in their own section so training.py stays about the Trainer.
"""

from __future__ import annotations

from tuneforge.config.fields import F, Section, only_with, refused

_PROFILER_ONLY = only_with("the torch profiler", "enable_torch_profiler")  # the wiring of every key but the switch


class ProfilerSection(Section):
    """PyTorch profiler (LLaMA-Factory's keys; not wired in tuneforge, so enabling it is refused)."""

    enable_torch_profiler: bool = F(
        False,
        "Record a PyTorch profiler trace during training.",
        wiring=refused(
            "the torch profiler is not wired in tuneforge; profile with `python -m torch.utils.bottleneck` or "
            "the benchmarks/ scripts"
        ),
    )
    profiler_output_dir: str | None = F(
        None,
        "Directory for profiler traces; unset uses a folder inside output_dir.",
        wiring=_PROFILER_ONLY,
    )
    profiler_wait_steps: int = F(
        1,
        "Profiler: steps to skip before each recording cycle.",
        wiring=_PROFILER_ONLY,
    )
    profiler_warmup_steps: int = F(
        1,
        "Profiler: steps traced but discarded before recording in each cycle.",
        wiring=_PROFILER_ONLY,
    )
    profiler_active_steps: int = F(
        1,
        "Profiler: steps recorded in each cycle.",
        wiring=_PROFILER_ONLY,
    )
    profiler_repeat: int = F(
        1,
        "Profiler: number of wait/warmup/active cycles; 0 repeats until training ends.",
        wiring=_PROFILER_ONLY,
    )
    profiler_record_shapes: bool = F(
        True,
        "Profiler: record the input shapes of each operator.",
        wiring=_PROFILER_ONLY,
    )
    profiler_profile_memory: bool = F(
        True,
        "Profiler: track memory allocations.",
        wiring=_PROFILER_ONLY,
    )
    profiler_with_stack: bool = F(
        True,
        "Profiler: record Python stack traces of operators (larger traces).",
        wiring=_PROFILER_ONLY,
    )
    profile_modules: str | None = F(
        None,
        "Profiler: comma-separated module names to label separately in traces; unset profiles the whole model.",
        wiring=_PROFILER_ONLY,
    )
