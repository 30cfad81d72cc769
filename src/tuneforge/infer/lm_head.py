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

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from tuneforge.infer.head_screen import MOST_ROWS, Part, Rows, Screen, build, quantise, whole_best
from tuneforge.infer.head_screen import best as screened_best

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)
Reduce = Callable[["torch.Tensor"], Any]  # what a half's thread makes of its half of the logits
Job = Callable[[int, "torch.Tensor"], Any]  # what a half's thread computes: (half index, rows) -> result

EXPLORE = 16  # every 16th step of a batch size runs the way not in use, to follow the machine's load
SMOOTHING = 0.2  # weight of the newest timing in the running averages
COPY_LIMIT = 256 << 20  # largest head weight copied (held twice more: transposed for MKL, packed for oneDNN)
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
    on the helper thread (split). Both ways compute the same two half products (see `half_products`), so the
    logits never depend on the way picked.
    """

    def __init__(self, head: Any) -> None:
        self.head = head
        self.chooser = Chooser()
        self.owner = threading.get_ident()
        self.cut = _cut(head.weight.shape[0])
        self.products = half_products(head.weight, self.cut)
        self.screens = _screens(head.weight, self.cut, self.products)
        self._jobs: queue.SimpleQueue[tuple[torch.Tensor, Job] | None] = queue.SimpleQueue()
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self._helper = threading.Thread(target=self._work, name="tuneforge-lm-head", daemon=True)
        self._helper.start()
        self.on_product: Callable[[], None] | None = None  # run on the installing thread as each product starts
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
        return self._joined(hidden, self._each(_flat(hidden), self._product))

    def split(self, hidden: torch.Tensor) -> torch.Tensor:
        """`head(hidden)`, the first half of the vocabulary here and the second on the helper thread."""
        return self._joined(hidden, self._both(_flat(hidden), self._product))

    def greedy(self, hidden: torch.Tensor) -> list[int]:
        """The arg-max token of `head(hidden)` per row (first index on ties, as `argmax`). Each half's thread
        searches its own half while it is still in that core's cache, so only two (max, index) pairs per row
        are compared here and the whole logits are never joined. Where the halves have int8 screens (see
        `infer/head_screen.py`), a few rows are screened first (each half's block tops on its thread) and only
        the candidate blocks multiplied exactly."""
        flat = _flat(hidden)
        if all(self.screens) and flat.shape[0] <= MOST_ROWS and (rows := quantise(flat)) is not None:
            tops = self._reduced(flat, functools.partial(self._tops, rows), "screen")
            found = screened_best(
                [Part(s, t, o) for s, t, o in zip(self.screens, tops, (0, self.cut), strict=True)], rows
            )
            if found is not None:
                return found[1]
        (first_values, first), (second_values, second) = self._reduced(flat, self._reducing(whole_best), "greedy")
        pairs = zip(first_values, first, second_values, second, strict=True)
        return [one if value >= other else two + self.cut for value, one, other, two in pairs]

    def top(self, hidden: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The `k` largest logits of `head(hidden)` per row, largest first, and their words: the values of
        `torch.topk(head(hidden), k)` (tied values may list other words). Each half's thread takes its own
        half's top `k` in cache; only `2k` candidates per row are merged here."""
        import torch

        from tuneforge.infer.sampling import topk

        reduce = functools.partial(topk, k=k)
        (first_values, first), (second_values, second) = self._reduced(_flat(hidden), self._reducing(reduce), "top")
        values, where = torch.cat([first_values, second_values], dim=1).topk(k, dim=1)
        return values, torch.cat([first, second + self.cut], dim=1).gather(1, where)

    def _reduced(self, flat: torch.Tensor, job: Job, kind: str) -> list[Any]:
        """`job` of each half, computed on that half's thread; split when it measures faster."""
        key = (flat.shape[0], kind)
        split = threading.get_ident() == self.owner and self.chooser.pick(key)
        started = time.perf_counter()
        found = self._both(flat, job) if split else self._each(flat, job)
        self.chooser.record(key, split, time.perf_counter() - started)
        return found

    def close(self) -> None:
        """Stop the helper thread (joined: a thread still leaving torch at interpreter exit aborts the process)
        and give the head its own forward back."""
        self._jobs.put(None)
        self._helper.join(timeout=5)
        self.head.__dict__.pop("forward", None)

    def _starting(self) -> None:
        """Run `on_product` (on the installing thread only) as a product starts."""
        if self.on_product is not None and threading.get_ident() == self.owner:
            self.on_product()

    def _each(self, flat: torch.Tensor, job: Job) -> list[Any]:
        """Both halves' results, one after the other on this thread."""
        self._starting()
        return [job(index, flat) for index in (0, 1)]

    def _both(self, flat: torch.Tensor, job: Job) -> list[Any]:
        """Both halves' results: half 0 on this thread, half 1 on the helper."""
        self._done.clear()
        self._jobs.put((flat, job))
        try:
            self._starting()  # after the helper's job: its thread takes the lock first, then holds none
            first = job(0, flat)
        finally:
            self._done.wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return [first, self._result]

    def _product(self, index: int, flat: torch.Tensor) -> torch.Tensor:
        """Half `index` of the logits (0: vocabulary before `cut`)."""
        return self.products[index](flat)

    def _reducing(self, reduce: Reduce) -> Job:
        """The job computing `reduce` of a half's logits."""
        return lambda index, flat: reduce(self.products[index](flat))

    def _tops(self, rows: Rows, index: int, flat: torch.Tensor) -> torch.Tensor:
        """Half `index`'s screened block tops for `rows` (`flat` is the rows themselves)."""
        return self.screens[index].tops(rows)

    def _joined(self, hidden: torch.Tensor, halves: list[torch.Tensor]) -> torch.Tensor:
        import torch

        return torch.cat(halves, dim=1).view(*hidden.shape[:-1], self.head.weight.shape[0])

    def _work(self) -> None:
        import torch

        torch.set_num_threads(1)
        with torch.inference_mode():
            while (job := self._jobs.get()) is not None:
                try:
                    self._result = job[1](1, job[0])
                except BaseException as error:  # reported on the engine thread, which owns the step
                    self._error = error
                finally:
                    self._done.set()


Product = Callable[["torch.Tensor"], "torch.Tensor"]
PACKED_FROM = 2  # fewest rows for which oneDNN's packed product is considered (one row: MKL reads the weight faster)


class HalfProduct:
    """`flat @ half.T` for one half of the vocabulary: MKL on a transposed contiguous copy of the half, and for
    row counts where oneDNN's packed product has been seen to give the very same bits, that product instead.

    MKL multiplies 2-16 rows by the `[hidden, vocab / 2]` copy 1.2-1.4x faster than by the layer's own
    `[vocab, hidden]` weight; its products equal the layer's to float rounding (at most 4e-7 apart measured, the
    size of the difference the layer itself shows between batch sizes). oneDNN's packed product is 1.8x faster
    than MKL's for 4-8 rows and keeps every row's bits whatever the batch around it, but is 1.8x slower for one
    row; MKL gives a few rows (1-3 on an AVX-512 EPYC) other bits than larger batches. So the first call with a
    given row count computes both and compares them: oneDNN takes over that row count only where they are equal,
    and the logits are those of the MKL product in every case (measured and reasoned in benchmarks/RESULTS.md,
    "Serving, round 5").
    """

    def __init__(self, half: torch.Tensor) -> None:
        import torch

        self.columns = half.t().contiguous()
        self.packed = _packed(half)
        self.verified: dict[int, bool] = {}  # row count -> oneDNN's product equals MKL's
        self._mkl = functools.partial(torch.mm, mat2=self.columns)

    def __call__(self, flat: torch.Tensor) -> torch.Tensor:
        rows = flat.shape[0]
        verified = self.verified.get(rows)
        if verified:
            return self._onednn(flat)
        ours = self._mkl(flat)
        if verified is None and self.packed is not None and rows >= PACKED_FROM:
            self.verified[rows] = bool(ours.equal(self._onednn(flat)))
        return ours

    def _onednn(self, flat: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.ops.mkldnn._linear_pointwise(flat, self.packed, None, "none", [], "")


def _packed(half: torch.Tensor) -> torch.Tensor | None:
    """The half reordered for oneDNN's packed product, or None where this torch build has no oneDNN."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._reorder_linear_weight(half, None)
    except (RuntimeError, AttributeError) as error:  # a build or CPU without the packed kernels
        logger.debug("LM head: no oneDNN packed product (%s)", error)
        return None


def half_products(weight: torch.Tensor, cut: int) -> tuple[Product, Product]:
    """The two half products `flat @ weight[half].T`: each a `HalfProduct` (copies of the half), or on the layer's
    weight itself when the copies would exceed `COPY_LIMIT`."""
    halves = (weight[:cut], weight[cut:])
    if weight.numel() * weight.element_size() > COPY_LIMIT:
        return tuple(_viewed(half) for half in halves)  # type: ignore[return-value]
    return tuple(HalfProduct(half) for half in halves)  # type: ignore[return-value]


def _screens(weight: torch.Tensor, cut: int, products: tuple[Product, Product]) -> tuple[Screen | None, ...]:
    """An int8 `Screen` per half where both check out and pay (see `infer/head_screen.py`), else Nones (the
    second half is not built once the first fails)."""
    screens = []
    for half, product in zip((weight[:cut], weight[cut:]), products, strict=True):
        screen = build(half, _columns(half, product), product)
        if screen is None:
            return (None, None)
        screens.append(screen)
    return tuple(screens)


def _columns(half: torch.Tensor, product: Product) -> torch.Tensor:
    """The `[hidden, words]` operand `product` multiplies by: a `HalfProduct`'s copy, else the half's view."""
    return product.columns if isinstance(product, HalfProduct) else half.t()


def _viewed(half: torch.Tensor) -> Product:
    import torch

    return lambda flat: torch.mm(flat, half.t())


def _flat(hidden: torch.Tensor) -> torch.Tensor:
    return hidden.reshape(-1, hidden.shape[-1])


def _cut(vocab: int) -> int:
    """Where the halves meet: the middle rounded down to a multiple of 128 (each half keeps the block search)."""
    return vocab // 2 // 128 * 128 if vocab >= 256 else vocab // 2


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
