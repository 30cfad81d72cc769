"""lm-evaluation-harness model over a tuneforge inference engine.

The engine is the one `tuneforge chat` uses (`load_engine`: dtype, attention, adapters merged, template), so a
benchmark scores exactly the model people chat with. Log-likelihoods come from batched forward passes over the
engine's model (requests sorted by length, left-padded, logits computed only where continuations are scored);
generation goes through the engine's own continuous batching with the task's stop strings;
`apply_chat_template` renders with the tuneforge template.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lm_eval.api.model import TemplateLM
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from tuneforge.infer.params import SamplingParams

Request = tuple[Any, list[int], list[int]]


class TuneforgeLM(TemplateLM):
    """An lm-eval `LM` scoring and generating with a tuneforge `Engine` (huggingface backend)."""

    def __init__(self, engine: Any, batch_size: int = 4, progress_dir: str | None = None) -> None:
        from tuneforge.train.predict import ProgressLog

        super().__init__()
        self.progress = ProgressLog(Path(progress_dir)) if progress_dir else None
        self.engine, self.tokenizer, self.template = engine, engine.tokenizer, engine.template
        self.model = engine.backend.model
        self.batch_size = max(1, batch_size)
        self._device = self.model.device

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.eot_token_id

    @property
    def max_length(self) -> int:
        return min(self.engine.context_len, 1 << 20)

    @property
    def tokenizer_name(self) -> str:
        return f"tuneforge-{self.template.name}"

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return f"tuneforge template {self.template.name}" if chat_template else None

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        return self.tokenizer.encode(string, add_special_tokens=bool(add_special_tokens))

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The conversation rendered by the tuneforge template; an unfinished assistant turn is a prefill."""
        messages = list(chat_history)
        system = messages.pop(0)["content"] if messages and messages[0]["role"] == "system" else None
        if not add_generation_prompt and messages and messages[-1]["role"] == "assistant":
            prefill = messages.pop()["content"]
            return self.template.render(messages, system, add_generation_prompt=True) + prefill
        return self.template.render(messages, system, add_generation_prompt=add_generation_prompt)

    # ---- scoring ----------------------------------------------------------------------------------------

    def _loglikelihood_tokens(self, requests: list[Request], disable_tqdm: bool = False, **kwargs: Any) -> list:
        """(sum of log-probabilities of the continuation, whether greedy decoding gives it) per request."""
        from tqdm import tqdm

        order = sorted(range(len(requests)), key=lambda i: -len(requests[i][1]) - len(requests[i][2]))
        answers: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
        bar = tqdm(total=len(order), desc="Scoring", disable=disable_tqdm or len(order) < 2 * self.batch_size)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            for index, answer in zip(chunk, self._score_batch([requests[i] for i in chunk]), strict=True):
                answers[index] = answer
                self.cache_hook.add_partial("loglikelihood", requests[index][0], answer)
            bar.update(len(chunk))
            if self.progress is not None:
                self.progress(min(start + self.batch_size, len(order)), len(order))
        bar.close()
        return answers

    def _score_batch(self, batch: list[Request]) -> Iterator[tuple[float, bool]]:
        """One left-padded forward pass; only the last positions' logits (the continuations) are computed."""
        import torch

        inputs = [(ctx + cont)[-(self.max_length + 1) :][:-1] for _, ctx, cont in batch]
        width, keep = max(len(ids) for ids in inputs), max(len(cont) for _, _, cont in batch)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([[pad] * (width - len(seq)) + seq for seq in inputs], device=self._device)
        mask = torch.tensor([[0] * (width - len(seq)) + [1] * len(seq) for seq in inputs], device=self._device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
        logprobs = logits.float().log_softmax(-1)
        for row, (_, _, cont) in enumerate(batch):
            scored = logprobs[row, keep - len(cont) :]
            target = torch.tensor(cont, device=self._device)
            total = scored.gather(-1, target.unsqueeze(-1)).sum().item()
            yield float(total), bool((scored.argmax(-1) == target).all())

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of whole texts, in disjoint windows of the model's context (perplexity tasks)."""
        results = []
        for request in requests:
            windows = get_rolling_token_windows(
                token_list=self.tok_encode(request.args[0]),
                prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length,
                context_len=1,
            )
            pieces = [(None, *make_disjoint_window(window)) for window in windows]
            results.append(sum(score for score, _ in self._loglikelihood_tokens(pieces)))
        return results

    # ---- generation -------------------------------------------------------------------------------------

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Greedy (or the task's sampling) answers, cut at the task's stop strings; batched by the engine."""
        from tuneforge.train.predict import generate_all

        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(repr(sorted(request.args[1].items())), []).append(index)
        answers = [""] * len(requests)
        for indices in groups.values():
            kwargs = requests[indices[0]].args[1]
            until = [kwargs["until"]] if isinstance(kwargs.get("until"), str) else list(kwargs.get("until") or [])
            self.engine.defaults = _sampling(kwargs, until)
            room = max(1, self.max_length - self.engine.defaults.max_new_tokens)  # long prompts keep their end
            prompts = [self.tok_encode(requests[i].args[0])[-room:] for i in indices]
            for index, text in zip(indices, generate_all(self.engine, prompts), strict=True):
                answers[index] = _cut(text, until)
                self.cache_hook.add_partial("generate_until", requests[index].args, answers[index])
        return answers


def _sampling(kwargs: dict[str, Any], until: list[str]) -> SamplingParams:
    """The engine's sampling settings for one lm-eval `gen_kwargs` group (greedy unless it asks to sample)."""
    sample = bool(kwargs.get("do_sample", False)) and float(kwargs.get("temperature", 1.0)) > 0
    return SamplingParams(
        max_new_tokens=int(kwargs.get("max_gen_toks", 256)),
        do_sample=sample,
        temperature=float(kwargs.get("temperature", 1.0)) if sample else 0.0,
        top_p=float(kwargs.get("top_p", 1.0)),
        top_k=int(kwargs.get("top_k", 0)),
        stop=tuple(until),
    )


def _cut(text: str, until: list[str]) -> str:
    """`text` up to the first stop string."""
    for stop in until:
        if stop:
            text = text.split(stop, 1)[0]
    return text
