"""LLaMA-Factory's PyTorch profiler keys (`enable_torch_profiler`, `profiler_*`, `profile_modules`).

They drive train/profiling.py: a `torch.profiler` trace on a step schedule, and per-module forward/backward
times. Kept in their own section so training.py stays about the Trainer.
"""

from __future__ import annotations

from tuneforge.config.fields import ACTS, F, Section

_NEEDS_SWITCH = " Read only with enable_torch_profiler (a warning says so otherwise)."


class ProfilerSection(Section):
    """PyTorch profiler trace and per-module timing during training (LLaMA-Factory's keys)."""

    enable_torch_profiler: bool = F(
        False,
        "Record PyTorch profiler traces during training, per rank, as Chrome-trace JSON in profiler_output_dir "
        "(open with Perfetto, chrome://tracing or TensorBoard); the profiler_* keys set its schedule.",
        wiring=ACTS,
    )
    profiler_output_dir: str | None = F(
        None,
        "Directory for profiler traces (a rank_<N> folder per rank); unset uses output_dir/profiler." + _NEEDS_SWITCH,
        wiring=ACTS,
    )
    profiler_wait_steps: int = F(
        1,
        "Profiler: optimizer steps skipped at the start of each cycle." + _NEEDS_SWITCH,
        wiring=ACTS,
        ge=0,
    )
    profiler_warmup_steps: int = F(
        1,
        "Profiler: steps traced but discarded before recording in each cycle." + _NEEDS_SWITCH,
        wiring=ACTS,
        ge=0,
    )
    profiler_active_steps: int = F(
        1,
        "Profiler: steps recorded in each cycle (one trace file per cycle)." + _NEEDS_SWITCH,
        wiring=ACTS,
        ge=1,
    )
    profiler_repeat: int = F(
        1,
        "Profiler: number of wait/warmup/active cycles; 0 repeats until training ends." + _NEEDS_SWITCH,
        wiring=ACTS,
        ge=0,
    )
    profiler_record_shapes: bool = F(
        True,
        "Profiler: record the input shapes of each operator." + _NEEDS_SWITCH,
        wiring=ACTS,
    )
    profiler_profile_memory: bool = F(
        True,
        "Profiler: track memory allocations." + _NEEDS_SWITCH,
        wiring=ACTS,
    )
    profiler_with_stack: bool = F(
        True,
        "Profiler: record Python stack traces of operators (larger traces)." + _NEEDS_SWITCH,
        wiring=ACTS,
    )
    profile_modules: str | None = F(
        None,
        "Comma-separated module-name patterns with fnmatch wildcards (e.g. '*.layers.0.self_attn,*.mlp'): log their "
        "forward and backward time per optimizer step at each logging step and append it to "
        "output_dir/module_times.jsonl. Independent of enable_torch_profiler.",
        wiring=ACTS,
    )
