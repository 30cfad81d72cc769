"""The LM head's matrix product over two CPU threads, used only while it measures faster than one.

With a large vocabulary (151,936 words for Qwen) the LM head is most of a decode step on CPU: with one row it is
bound by reading the weight (39 MB for a 64-wide fp32 head), which two cores do about twice as fast as one
(measured 0.68 vs 1.47 ms on an idle 2-core EPYC), with more rows by arithmetic. A second
OpenMP thread for it stalls on a busy machine (the team spins at its barriers while a member waits for a core), so
here the engine thread computes one half of the vocabulary and a helper thread the other, each a one-thread
product, joined by one event. Whether the split pays depends on whether a second core is free, which changes with the
machine's load: per batch size a running average of each way's time picks the faster, and the other way is tried
again every `EXPLORE`-th step.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

EXPLORE = 16  # every 16th step of a batch size runs the way not in use, to follow the machine's load
SMOOTHING = 0.2  # weight of the newest timing in the running averages
COPY_LIMIT = 256 << 20  # largest head weight held a second time, transposed (the copy costs as much memory)
WARMUP = 3  # timings of each way taken in turn before comparing; their fastest starts the average (the first
# calls of a way are slow: a helper thread's first product, cold caches; measured 1.6 ms against 0.8 ms after)


class Chooser:
    """Per batch size: running average seconds of the plain (False) and split (True) product; picks the faster."""

    def __init__(self) -> None:
        self._average: dict[tuple[Hashable, bool], float] = {}
        self._count: dict[tuple[Hashable, bool], int] = {}
        self._steps: dict[Hashable, int] = {}

    def pick(self, rows: Hashable) -> bool:
        """Whether this step of `rows` rows (or any other kind of call) should split (each way is timed `WARMUP`
        times before comparing)."""
        step = self._steps[rows] = self._steps.get(rows, 0) + 1
        plain, split = self._count.get((rows, False), 0), self._count.get((rows, True), 0)
        if min(plain, split) < WARMUP:
            return split < plain
        faster = self._average[(rows, True)] < self._average[(rows, False)]
        return not faster if step % EXPLORE == 0 else faster

    def record(self, rows: Hashable, split: bool, seconds: float) -> None:
        """Fold one measured product into its running average (the fastest one while warming up)."""
        key = (rows, split)
        old, count = self._average.get(key), self._count.get(key, 0)
        self._count[key] = count + 1
        if old is None or count < WARMUP:
            self._average[key] = seconds if old is None else min(old, seconds)
        else:
            self._average[key] = old + SMOOTHING * (seconds - old)


class SplitHead:
    """Replaces `head.forward` (a bias-free fp32 `nn.Linear` on CPU) for calls from the installing thread.

    The product runs as two halves of the vocabulary: on this thread one after the other (plain), or the second
    on the helper thread (split). Both ways compute the same two half products, so the logits never depend on
    the way picked. When the transposed copy of the weight is at most `COPY_LIMIT` bytes the halves read it as
    two contiguous `[hidden, vocab / 2]` blocks, which MKL multiplies by a few rows 1.2-1.4x faster than the
    layer's `[vocab, hidden]` weight (batch 8: 2.4 against 3.3 ms split, 64-wide head); the logits then equal
    the layer's to float rounding (at most 4e-7 apart measured) instead of bit for bit.
    """

    def __init__(self, head: Any) -> None:
        self.head = head
        self.chooser = Chooser()
        self.owner = threading.get_ident()
        self.cut = _cut(head.weight.shape[0])
        self._halves = _halves(head.weight, self.cut)
        self._jobs: queue.SimpleQueue[tuple[torch.Tensor, torch.Tensor, list[Any] | None] | None] = queue.SimpleQueue()
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._helper = threading.Thread(target=self._work, name="tuneforge-lm-head", daemon=True)
        self._helper.start()
        head.forward = self.forward

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """The head's output; split over two threads when this batch size measures faster that way."""
        if threading.get_ident() != self.owner:
            return self.plain(hidden)
        rows = hidden.numel() // hidden.shape[-1]
        split = self.chooser.pick(rows)
        started = time.perf_counter()
        out = self.split(hidden) if split else self.plain(hidden)
        self.chooser.record(rows, split, time.perf_counter() - started)
        return out

    def plain(self, hidden: torch.Tensor) -> torch.Tensor:
        """`head(hidden)`, both halves on this thread."""
        flat, out = self._buffers(hidden)
        for index in (0, 1):
            self._half(flat, out, index)
        return out.view(*hidden.shape[:-1], out.shape[-1])

    def split(self, hidden: torch.Tensor) -> torch.Tensor:
        """`head(hidden)`, the first half of the vocabulary here and the second on the helper thread."""
        flat, out = self._buffers(hidden)
        self._run_split(flat, out, None)
        return out.view(*hidden.shape[:-1], out.shape[-1])

    def _run_split(self, flat: torch.Tensor, out: torch.Tensor, found: list[Any] | None) -> None:
        """Half 0 here, half 1 on the helper; with `found`, each also searches its half (results into it)."""
        self._done.clear()
        self._jobs.put((flat, out, found))
        try:
            first = self._half(flat, out, 0, search=found is not None)
        finally:
            self._done.wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if found is not None:
            found[0] = first

    def close(self) -> None:
        """Stop the helper thread (joined: a thread still leaving torch at interpreter exit aborts the process)
        and give the head its own forward back."""
        self._jobs.put(None)
        self._helper.join(timeout=5)
        self.head.__dict__.pop("forward", None)

    def greedy(self, hidden: torch.Tensor) -> list[int]:
        """The arg-max token of `head(hidden)` per row (first index on ties, as `argmax`). Each half's thread
        searches its own half while it is still in that core's cache, so only two (max, index) pairs per row
        are compared here."""
        rows = hidden.numel() // hidden.shape[-1]
        key = (rows, "greedy")
        split = threading.get_ident() == self.owner and self.chooser.pick(key)
        started = time.perf_counter()
        flat, out = self._buffers(hidden)
        found: list[Any] = [None, None]
        if split:
            self._run_split(flat, out, found)
        else:
            for index in (0, 1):
                found[index] = self._half(flat, out, index, search=True)
        self.chooser.record(key, split, time.perf_counter() - started)
        (first_value, first), (second_value, second) = found
        second = second + self.cut
        return first.where(first_value >= second_value, second).tolist()

    def _buffers(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        weight = self.head.weight
        flat = hidden.reshape(-1, hidden.shape[-1])
        return flat, torch.empty(flat.shape[0], weight.shape[0], dtype=weight.dtype, device=weight.device)

    def _half(self, flat: torch.Tensor, out: torch.Tensor, index: int, search: bool = False) -> Any:
        """Write half `index` (0: vocabulary before `cut`, 1: the rest) of `flat @ weight.T` into `out`; with
        `search`, return that half's row-wise (max, arg-max within the half)."""
        import torch

        from tuneforge.infer.sampling import best

        columns = slice(0, self.cut) if index == 0 else slice(self.cut, None)
        if self._halves is not None:
            torch.mm(flat, self._halves[index], out=out[:, columns])
        else:
            torch.mm(flat, self.head.weight[columns].t(), out=out[:, columns])
        return best(out[:, columns]) if search else None

    def _work(self) -> None:
        import torch

        torch.set_num_threads(1)
        with torch.inference_mode():
            while (job := self._jobs.get()) is not None:
                flat, out, found = job
                try:
                    result = self._half(flat, out, 1, search=found is not None)
                    if found is not None:
                        found[1] = result
                except BaseException as error:  # reported on the engine thread, which owns the step
                    self._error = error
                finally:
                    self._done.set()


def _cut(vocab: int) -> int:
    """Where the halves meet: the middle rounded down to a multiple of 128 (each half keeps the block search)."""
    return vocab // 2 // 128 * 128 if vocab >= 256 else vocab // 2


def _halves(weight: torch.Tensor, cut: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The weight's two vocabulary halves, each transposed and contiguous, or None above `COPY_LIMIT` bytes."""
    if weight.numel() * weight.element_size() > COPY_LIMIT:
        return None
    return weight[:cut].t().contiguous(), weight[cut:].t().contiguous()


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
    logger.info("LM head: split over two threads when it measures faster")
    return SplitHead(head)
