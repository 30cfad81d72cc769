"""Sampling settings for chat, API, prediction and RL rollouts."""

from __future__ import annotations

from typing import Literal

from tuneforge.config.fields import F, Section


class GenerationSection(Section):
    """Sampling settings for chat, API, prediction and RL rollouts."""

    do_sample: bool = F(True, "")
    temperature: float = F(0.95, "")
    top_p: float = F(0.7, "")
    top_k: int = F(50, "")
    num_beams: int = F(1, "")
    max_length: int = F(1024, "")
    max_new_tokens: int = F(1024, "")
    repetition_penalty: float = F(1.0, "")
    length_penalty: float = F(1.0, "")
    skip_special_tokens: bool = F(True, "")
