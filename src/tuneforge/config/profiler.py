"""LLaMA-Factory's PyTorch profiler keys (`enable_torch_profiler`, `profiler_*`, `profile_modules`).

tuneforge does not wire the profiler: turning it on is refused with what to use instead, and the other keys warn
that they have no effect without it. Kept in their own section so training.py stays about the Trainer.
"""

from __future__ import annotations

from tuneforge.config.fields import F, Section, only_with, refused


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
        wiring=only_with("the torch profiler", "enable_torch_profiler"),
    )
    profiler_wait_steps: int = F(
        1,
        "Profiler: steps to skip before each recording cycle.",
        wiring=only_with("the torch profiler", "enable_torch_profiler"),
    )
    profiler_warmup_steps: int = F(
        1,
        "Profiler: steps traced but discarded before recording in each cycle.",
        wiring=only_with("the torch profiler", "enable_torch_profiler"),
    )
    profiler_active_steps: int = F(
        1,
        "Profiler: steps recorded in each cycle.",
        wiring=only_with("the torch profiler", "enable_torch_profiler"),
    )
    profiler_repeat: int = F(
        1,
        "Profiler: number of wait/warmup/active cycles; 0 repeats until training ends.",
        wiring=only_with("the torch profiler", "enable_torch_profiler"),
    )
    profiler_record_shapes: bool = F(
        True,
        "Profiler: record the input shapes of each operator.",
        wiring=only_with("the torch profiler", "enable_torch_profiler"),
    )
    profiler_profile_memory: bool = F(
        True,
        "Profiler: track memory allocations.",
        wiring=only_with("the torch profiler", "enable_torch_profiler"),
    )
    profiler_with_stack: bool = F(
        True,
        "Profiler: record Python stack traces of operators (larger traces).",
        wiring=only_with("the torch profiler", "enable_torch_profiler"),
    )
    profile_modules: str | None = F(
        None,
        "Profiler: comma-separated module names to label separately in traces; unset profiles the whole model.",
        wiring=only_with("the torch profiler", "enable_torch_profiler"),
    )
