"""Sampling settings for chat, API, prediction and RL rollouts."""

from __future__ import annotations

from tuneforge.config.fields import ACTS, F, Section


class GenerationSection(Section):
    """Sampling settings for chat, API, prediction and RL rollouts."""

    do_sample: bool = F(
        True, "Sample the next token from the distribution; false decodes greedily (or with beam search).", wiring=ACTS
    )
    temperature: float = F(0.95, "Softmax temperature when sampling; lower is more deterministic.", wiring=ACTS)
    top_p: float = F(
        0.7, "Nucleus sampling: keep the smallest set of tokens whose probabilities add up to this value.", wiring=ACTS
    )
    top_k: int = F(50, "Sample only among the k most likely tokens.", wiring=ACTS)
    num_beams: int = F(1, "Beams for beam search; 1 disables it.", wiring=ACTS)
    max_length: int = F(
        1024, "Maximum total length in tokens (prompt plus completion); max_new_tokens takes precedence.", wiring=ACTS
    )
    max_new_tokens: int = F(1024, "Maximum number of tokens to generate, not counting the prompt.", wiring=ACTS)
    repetition_penalty: float = F(
        1.0, "Penalty for tokens already generated; 1.0 means none, higher values discourage repeats.", wiring=ACTS
    )
    length_penalty: float = F(
        1.0, "Exponent on sequence length when ranking beams; above 1.0 favours longer outputs.", wiring=ACTS
    )
    skip_special_tokens: bool = F(
        True, "Drop special tokens such as end-of-turn markers when decoding generated text.", wiring=ACTS
    )
