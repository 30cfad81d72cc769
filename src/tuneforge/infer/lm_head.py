"""The LM head's matrix product over two CPU threads, used only while it measures faster than one.

With a large vocabulary (151,936 words for Qwen) the LM head is most of a batched decode step on CPU. A second
OpenMP thread for it stalls on a busy machine (the team spins at its barriers while a member waits for a core), so
here the engine thread computes one half of the vocabulary and a helper thread the other, each a one-thread
product, joined by one event. Every logit is the same dot product either way, so the logits are bit-identical to
the plain layer's. Whether the split pays depends on whether a second core is free, which changes with the
machine's load: per batch size a running average of each way's time picks the faster, and the other way is tried
again every `EXPLORE`-th step.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

MIN_ROWS = 4  # below this the product is bound by reading the weight, and a second thread hardly helps
EXPLORE = 16  # every 16th step of a batch size runs the way not in use, to follow the machine's load
SMOOTHING = 0.2  # weight of the newest timing in the running averages


class Chooser:
    """Per batch size: running average seconds of the plain (False) and split (True) product; picks the faster."""

    def __init__(self) -> None:
        self._average: dict[tuple[int, bool], float] = {}
        self._steps: dict[int, int] = {}

    def pick(self, rows: int) -> bool:
        """Whether this step of `rows` rows should split (each way is measured once before comparing)."""
        step = self._steps[rows] = self._steps.get(rows, 0) + 1
        plain, split = self._average.get((rows, False)), self._average.get((rows, True))
        if plain is None or split is None:
            return plain is not None
        faster = split < plain
        return not faster if step % EXPLORE == 0 else faster

    def record(self, rows: int, split: bool, seconds: float) -> None:
        """Fold one measured product into its running average."""
        key = (rows, split)
        old = self._average.get(key)
        self._average[key] = seconds if old is None else old + SMOOTHING * (seconds - old)


class SplitHead:
    """Replaces `head.forward` (a bias-free fp32 `nn.Linear` on CPU) for calls from the installing thread."""

    def __init__(self, head: Any) -> None:
        self.head = head
        self.chooser = Chooser()
        self.owner = threading.get_ident()
        self._plain = head.forward
        self._jobs: queue.SimpleQueue[tuple[torch.Tensor, torch.Tensor, int] | None] = queue.SimpleQueue()
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._helper = threading.Thread(target=self._work, name="tuneforge-lm-head", daemon=True)
        self._helper.start()
        head.forward = self.forward

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """The head's output; split over two threads when this batch size measures faster that way."""
        rows = hidden.numel() // hidden.shape[-1]
        if rows < MIN_ROWS or threading.get_ident() != self.owner:
            return self._plain(hidden)
        split = self.chooser.pick(rows)
        started = time.perf_counter()
        out = self.split(hidden) if split else self._plain(hidden)
        self.chooser.record(rows, split, time.perf_counter() - started)
        return out

    def split(self, hidden: torch.Tensor) -> torch.Tensor:
        """`head(hidden)`, the first half of the vocabulary here and the second on the helper thread."""
        import torch

        weight = self.head.weight
        flat = hidden.reshape(-1, hidden.shape[-1])
        out = torch.empty(flat.shape[0], weight.shape[0], dtype=weight.dtype, device=weight.device)
        cut = weight.shape[0] // 2
        self._done.clear()
        self._jobs.put((flat, out, cut))
        try:
            torch.mm(flat, weight[:cut].t(), out=out[:, :cut])
        finally:
            self._done.wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return out.view(*hidden.shape[:-1], weight.shape[0])

    def close(self) -> None:
        """Stop the helper thread and give the head its own forward back."""
        self._jobs.put(None)
        self.head.__dict__.pop("forward", None)

    def _work(self) -> None:
        import torch

        torch.set_num_threads(1)
        with torch.inference_mode():
            while (job := self._jobs.get()) is not None:
                flat, out, cut = job
                try:
                    torch.mm(flat, self.head.weight[cut:].t(), out=out[:, cut:])
                except BaseException as error:  # reported on the engine thread, which owns the step
                    self._error = error
                finally:
                    self._done.set()


def split_head(model: Any, threads: int | None, cores: int) -> SplitHead | None:
    """A `SplitHead` on the model's output layer when it qualifies: CPU, fp32, plain bias-free `nn.Linear`, the
    engine on one intra-op thread and at least two cores; else None (the layer is left as it is)."""
    import torch

    try:
        head = model.get_output_embeddings()
    except Exception:  # models without a standard output layer
        return None
    plain = type(head) is torch.nn.Linear and head.bias is None and head.weight.dtype == torch.float32
    if not plain or head.weight.device.type != "cpu" or threads != 1 or cores < 2:
        return None
    logger.info("LM head: split over two threads when it measures faster (batches of %d+ rows)", MIN_ROWS)
    return SplitHead(head)
