"""Sampling settings for chat, API, prediction and RL rollouts."""

from __future__ import annotations

from tuneforge.config.fields import F, Section


class GenerationSection(Section):
    """Sampling settings for chat, API, prediction and RL rollouts."""

    do_sample: bool = F(
        True,
        "Sample the next token from the distribution; false decodes greedily (or with beam search).",
    )
    temperature: float = F(0.95, "Softmax temperature when sampling; lower is more deterministic.")
    top_p: float = F(
        0.7,
        "Nucleus sampling: keep the smallest set of tokens whose probabilities add up to this value.",
    )
    top_k: int = F(50, "Sample only among the k most likely tokens.")
    num_beams: int = F(1, "Beams for beam search; 1 disables it.")
    max_length: int = F(
        1024,
        "Maximum total length in tokens (prompt plus completion); max_new_tokens takes precedence.",
    )
    max_new_tokens: int = F(1024, "Maximum number of tokens to generate, not counting the prompt.")
    repetition_penalty: float = F(
        1.0,
        "Penalty for tokens already generated; 1.0 means none, higher values discourage repeats.",
    )
    length_penalty: float = F(
        1.0,
        "Exponent on sequence length when ranking beams; above 1.0 favours longer outputs.",
    )
    skip_special_tokens: bool = F(
        True,
        "Drop special tokens such as end-of-turn markers when decoding generated text.",
    )
