"""Per-request sampling settings, defaulting to the config's `generation` section."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from tuneforge.errors import TuneforgeError


@dataclass(frozen=True)
class SamplingParams:
    """How one request is decoded. `temperature == 0` or `do_sample=False` decodes greedily.

    `presence_penalty` / `frequency_penalty` follow OpenAI: subtract `presence` once from the logit of every token
    already generated and `frequency` times its count. `seed` makes sampling reproducible per request.
    """

    max_new_tokens: int = 1024
    do_sample: bool = True
    temperature: float = 0.95
    top_p: float = 0.7
    top_k: int = 50
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    skip_special_tokens: bool = True

    @property
    def greedy(self) -> bool:
        """True when the next token is the arg-max (no sampling)."""
        return not self.do_sample or self.temperature <= 1e-5

    def with_overrides(self, **overrides: Any) -> SamplingParams:
        """A copy with the given fields replaced; `None` values keep the current setting."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise TuneforgeError(f"Unknown sampling setting(s): {', '.join(sorted(unknown))}.")
        values = {k: v for k, v in overrides.items() if v is not None}
        for key in ("stop", "stop_token_ids"):
            if key in values:
                values[key] = tuple(values[key])
        if 0 < values.get("top_p", 1) < MIN_TOP_P:  # same choice (the top token only), but representable in fp32
            values["top_p"] = MIN_TOP_P
        return replace(self, **values).validated()

    def validated(self) -> SamplingParams:
        """Self, after checking the ranges that keep the sampling maths finite; raises TuneforgeError naming
        every bad setting and its allowed range."""
        bad = [f"{name}={getattr(self, name)} (allowed: {text})" for name, text, ok in _range_checks(self) if not ok]
        if bad:
            raise TuneforgeError(f"Sampling setting out of range: {', '.join(bad)}.")
        return self


MAX_SEED = 2**63 - 1
MIN_TOP_P = 1e-6  # any smaller top_p keeps only the most likely token too; 1e-300 would round to 0 in float32
REPETITION_PENALTY_RANGE = (0.01, 100.0)  # beyond this, logits / penalty overflows or every logit collapses


def _range_checks(p: SamplingParams) -> list[tuple[str, str, bool]]:
    """(setting, allowed range, ok) for each bounded setting; NaN fails every comparison, so it is refused."""
    low, high = REPETITION_PENALTY_RANGE
    return [
        ("max_new_tokens", ">= 1", p.max_new_tokens >= 1),
        ("temperature", "0 to 100", 0 <= p.temperature <= 100),
        ("top_p", "> 0 and <= 1", 0 < p.top_p <= 1),
        ("top_k", ">= 0", p.top_k >= 0),
        ("repetition_penalty", f"{low} to {high:g}", low <= p.repetition_penalty <= high),
        ("presence_penalty", "-2 to 2", -2 <= p.presence_penalty <= 2),
        ("frequency_penalty", "-2 to 2", -2 <= p.frequency_penalty <= 2),
        ("seed", f"0 to {MAX_SEED}", p.seed is None or 0 <= p.seed <= MAX_SEED),
    ]


@dataclass(frozen=True)
class GenerationDefaults:
    """The `generation` config section turned into a default `SamplingParams`."""

    params: SamplingParams = field(default_factory=SamplingParams)

    @classmethod
    def from_config(cls, generation: Any) -> GenerationDefaults:
        """Read `cfg.generation` (do_sample, temperature, top_p, top_k, max_new_tokens, ...).

        Beam search is refused rather than ignored: the streaming engine decodes one sequence per request.
        """
        if generation.num_beams > 1:
            raise TuneforgeError(
                f"`num_beams: {generation.num_beams}`: beam search is not supported by tuneforge's inference engine "
                "(it streams one sequence per request); remove `num_beams` or set it to 1."
            )
        params = SamplingParams(
            max_new_tokens=generation.max_new_tokens,
            do_sample=generation.do_sample,
            temperature=generation.temperature,
            top_p=generation.top_p,
            top_k=generation.top_k,
            repetition_penalty=generation.repetition_penalty,
            skip_special_tokens=generation.skip_special_tokens,
        )
        return cls(params.validated())
