"""The built-in Hugging Face backend: a worker thread that decodes queued requests together.

Continuous batching over a left-padded batch with a KV cache: each step the worker admits waiting requests (up to
`max_batch_size`), prefills them as their own left-padded batch, merges their cache into the running one (padding
the shorter side on the left), then decodes one token for every row with a single forward pass. Finished rows
leave the batch at once. Each request's tokens stream to its own `emit` callback.

Requests with media (images, videos, audios) pass their tensors at prefill (`infer/media.py::BatchMedia`). Models
with multimodal rotary positions (Qwen-VL's M-RoPE) get the prefill positions from the model's own rope index, and
each row keeps its position delta (media tokens take fewer positions than tokens), so text and media rows decode
together in one batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from tuneforge.errors import TuneforgeError
from tuneforge.infer.isolation import accept_token, pick_tokens
from tuneforge.infer.lean_step import decode_positions
from tuneforge.infer.media import BatchMedia
from tuneforge.infer.requests import Failed, GenerationRequest, RequestQueue
from tuneforge.infer.rows import Emitter, Row
from tuneforge.infer.sampling import pack_candidates, sample_batch, sample_candidates
from tuneforge.infer.stats import DecodeStats

if TYPE_CHECKING:
    import torch

    from tuneforge.infer.lean_step import LeanStep
    from tuneforge.infer.lm_head import SplitHead

logger = logging.getLogger(__name__)
T = TypeVar("T")


class _Batch:
    """Tensors of the running batch: token ids or KV cache, attention mask, last tokens, and (multimodal rotary
    positions only) each row's position delta."""

    def __init__(
        self, rows: list[Row], ids: torch.Tensor, mask: torch.Tensor, cache: Any, deltas: torch.Tensor | None = None
    ) -> None:
        self.rows, self.ids, self.mask, self.cache = rows, ids, mask, cache
        self.deltas = deltas

    def keep(self, indices: list[int]) -> None:
        """Drop every row not in `indices`."""
        import torch

        index = torch.tensor(indices, dtype=torch.long, device=self.ids.device)
        self.rows = [self.rows[i] for i in indices]
        self.ids, self.mask = self.ids[index], self.mask[index]
        if self.deltas is not None:
            self.deltas = self.deltas[index]
        if self.cache is not None:
            self.cache.batch_select_indices(index)


class HFBackend:
    """Decodes with a transformers model in a background thread; thread-safe `submit`.

    `plugin`: the media plugin of a multimodal model (its requests may carry media tensors), else None.
    """

    takes_media = True  # requests may carry media tensors (the engine refuses media for backends without this)

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch_size: int,
        max_queue_size: int,
        use_cache: bool,
        plugin: Any = None,
    ):
        self.model, self.tokenizer = model, tokenizer
        self.media = BatchMedia(model, plugin)
        self.max_batch_size = max(1, max_batch_size)
        self.use_cache = use_cache
        self.queue = RequestQueue(max_queue_size)
        self.model_lock = threading.Lock()
        self.context_len = int(getattr(model.config.get_text_config(), "max_position_embeddings", 0) or 1 << 30)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._can_merge = not any(getattr(layer, "is_sliding", False) for layer in _cache_layers(model))
        self._cache_kw = _cache_keyword(model)
        self.peak_batch = 0  # most rows decoded together so far (observability, tests)
        self.threads: int | None = None  # intra-op threads chosen on CPU (None: not measured)
        self.head: SplitHead | None = None  # the LM head over two threads, when it qualifies (CPU)
        self.lean: LeanStep | None = None  # text decode steps over the decoder's own layers, once verified
        self.decode_stats = DecodeStats()
        self._model_s = 0.0  # seconds of the last model call
        self.on_first_token: Callable[[float], None] | None = None  # gets each request's time to first token (s)
        self._submitted: dict[int, float] = {}
        self._stopped = threading.Event()
        self._outbox: list = []  # this step's messages for the emitter thread (text, Finished, Failed)
        self._emitter = Emitter()
        self._ready = threading.Event()  # set once the thread count is chosen (part of loading, not of a request)
        self._thread = threading.Thread(target=self._run, name="tuneforge-engine", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=120)

    # ---- public -----------------------------------------------------------------------------------------

    def submit(self, *requests: GenerationRequest) -> None:
        """Queue the requests, all or none (raises QueueFullError / ShuttingDownError)."""
        if not self.use_cache and any(r.media for r in requests):
            raise TuneforgeError("Requests with media need the KV cache; set `use_kv_cache: true`.")
        now = time.perf_counter()
        for request in requests:
            self._submitted[request.request_id] = now
        try:
            self.queue.put(*requests)
        except BaseException:
            for request in requests:
                self._submitted.pop(request.request_id, None)
            raise

    def pending(self) -> int:
        """Requests waiting to join the running batch."""
        return len(self.queue)

    def close(self, timeout: float | None = 30.0) -> None:
        """Refuse new requests, let queued and running ones finish (up to `timeout` s), stop the thread."""
        self.queue.close()
        self._stopped.set()
        self._thread.join(timeout)
        self._emitter.close(timeout)
        if self.head is not None:
            self.head.close()

    # ---- worker -----------------------------------------------------------------------------------------

    def _run(self) -> None:
        import torch

        batch: _Batch | None = None
        with torch.inference_mode():
            try:
                self._lean_step()
                self._tune_threads()
                self._split_head()
            finally:
                self._ready.set()
            while True:
                room = self.max_batch_size - (len(batch.rows) if batch else 0)
                may_admit = batch is None or self._can_merge
                wait = 0.05 if batch is None else None
                new = self.queue.take(room, wait) if room > 0 and may_admit else []
                if batch is None and not new:
                    if self._stopped.is_set() and len(self.queue) == 0:
                        return
                    continue
                batch = self._guarded_step(batch, new)
                if batch is None or self.head is None or new:  # first tokens at once (time to first token)
                    self._post_outbox()  # else the next step posts it once its LM head product is under way

    def _lean_step(self) -> None:
        """Use `LeanStep` for text decode steps when it gives the model's own logits (see `infer/lean_step.py`)."""
        if not self.use_cache:
            return
        from tuneforge.infer.lean_step import lean_step

        try:
            self.lean = lean_step(self.model, self._cache_kw, lambda: _new_cache(self.model), self.pad_id)
        except Exception:  # an optimisation: never let it stop the engine
            logger.exception("Checking the lean decode step failed; keeping the model's forward")

    def _tune_threads(self) -> None:
        """On CPU, time a decode step at each thread count and keep the fastest (see `tuneforge.threads`)."""
        if self.model.device.type != "cpu":
            return
        from tuneforge.threads import tune_threads

        try:
            self.threads = tune_threads(self._probe_step())
        except Exception:  # tuning is an optimisation: never let it stop the engine
            logger.exception("Measuring the CPU thread count failed; keeping torch's default")

    def _split_head(self) -> None:
        """On CPU with one intra-op thread, let the LM head use a second core when that measures faster."""
        if self.model.device.type != "cpu":
            return
        from tuneforge.infer.lm_head import split_head
        from tuneforge.threads import available_cores

        try:
            self.head = split_head(self.model, self.threads, available_cores())
        except Exception:  # an optimisation: never let it stop the engine
            logger.exception("Setting up the two-thread LM head failed; keeping the plain one")
        if self.head is not None:
            self.head.on_product = self._post_outbox

    def _post_outbox(self) -> None:
        """Hand the messages queued so far to the emitter thread.

        With the split LM head this runs as the head's product starts: the emitter's Python work (detokenising,
        waking the event loop) then overlaps the product, which holds no interpreter lock, instead of the decoder
        layers, whose many small ops each need it (posted at the end of a step, it cost the next step's first
        ops 0.1-0.25 ms of waiting for the lock, measured). A later token's text reaches clients one layer stack
        later; first tokens, errors and ends are posted at once.
        """
        if self._outbox:
            self._emitter.post(self._outbox[:])
            self._outbox.clear()

    def _probe_step(self) -> Any:
        """A function running one batch-1 decode step on a short prompt (the serving hot path)."""
        import torch

        ids = torch.full((1, 16), self.pad_id, dtype=torch.long, device=self.model.device)
        mask = torch.ones_like(ids)
        cache = _new_cache(self.model) if self.use_cache else None
        self._forward(ids, mask, cache)
        state = {"mask": mask}

        def step() -> None:
            if cache is None:
                self._forward(ids, mask, None)
                return
            state["mask"] = torch.cat([state["mask"], mask[:, -1:]], dim=1)
            self._forward(ids[:, -1:], state["mask"], cache)

        return step

    def _first_token(self, row: Row) -> None:
        submitted = self._submitted.pop(row.request.request_id, None)
        if submitted is not None and self.on_first_token is not None:
            self._outbox.append((self.on_first_token, time.perf_counter() - submitted))

    def _guarded_step(self, batch: _Batch | None, new: list[GenerationRequest]) -> _Batch | None:
        try:
            return self._step(batch, new)
        except Exception as error:  # a model failure must not kill the worker: report it to every request
            logger.exception("Generation step failed")
            for row in batch.rows if batch else []:
                self._submitted.pop(row.request.request_id, None)
                row.fail(error)
            for request in new:
                self._submitted.pop(request.request_id, None)
                self._outbox.append((request.emit, Failed(error)))
            return None

    def _step(self, batch: _Batch | None, new: list[GenerationRequest]) -> _Batch | None:
        if new:
            fresh = self._prefill(new)
            batch = fresh if batch is None else _merge(batch, fresh)
            self.peak_batch = max(self.peak_batch, len(batch.rows))
            return _prune(batch)
        if batch is None:
            return None
        started, cpu, rows = time.perf_counter(), time.thread_time(), len(batch.rows)
        forward = self._decode(batch)
        batch = _prune(batch)
        self.decode_stats.add(rows, time.perf_counter() - started, forward, time.thread_time() - cpu)
        return batch

    def _new_rows(self, requests: list[GenerationRequest]) -> list[Row]:
        vocab = self.model.config.get_text_config().vocab_size
        return [Row(r, self.tokenizer, vocab, self.context_len, self._outbox) for r in requests]

    def _prefill(self, requests: list[GenerationRequest]) -> _Batch:
        import torch

        rows = self._new_rows(requests)
        width = max(len(r.prompt_ids) for r in requests)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, request in enumerate(requests):
            ids[i, width - len(request.prompt_ids) :] = torch.tensor(request.prompt_ids)
            mask[i, width - len(request.prompt_ids) :] = 1
        ids, mask = ids.to(self.model.device), mask.to(self.model.device)
        cache = _new_cache(self.model) if self.use_cache else None
        media, positions, deltas = self.media.prefill([r.media for r in requests], ids, mask)
        logits = self._forward(ids, mask, cache, positions=positions, media=media)
        batch = _Batch(rows, ids, mask, cache, deltas)
        self._sample(batch, logits)
        return batch

    def _decode(self, batch: _Batch) -> float:
        """One token for every row; returns the seconds spent in the model forward."""
        inputs = batch.ids[:, -1:] if self.use_cache else batch.ids
        fused = self._fusable(batch)
        if fused and all(row.request.params.greedy for row in batch.rows):
            self._accept(batch, self._fused_step(inputs, batch.mask, batch.cache, self.head.greedy))
        elif fused and (width := _top_width(batch.rows, self.head.head.weight.shape[0])):
            top = self._fused_step(inputs, batch.mask, batch.cache, lambda hidden: self.head.top(hidden, width))
            self._accept(batch, pick_tokens(batch.rows, pack_candidates(*top), sample_candidates))
        else:
            self._sample(batch, self._forward(inputs, batch.mask, batch.cache, deltas=batch.deltas))
        return self._model_s

    def _fusable(self, batch: _Batch) -> bool:
        """Whether this step can end in the split head's own reduction (arg-max or top-k on each half's thread):
        lean step, split head, a text batch with a cache, no row counting tokens for penalties."""
        if self.lean is None or self.head is None or batch.cache is None or batch.deltas is not None:
            return False
        return all(row.sampling_state[1] is None for row in batch.rows)

    def _fused_step(self, ids: torch.Tensor, mask: torch.Tensor, cache: Any, finish: Callable[[Any], T]) -> T:
        """A text decode step whose final hidden state goes to `finish` (a reduction of the split head)."""
        positions = decode_positions(mask, 1)
        with self.model_lock:
            started = time.perf_counter()
            found = finish(self.lean.hidden(ids, mask, cache, positions))
            self._model_s = time.perf_counter() - started  # the model call, the head's reduction included
        return found

    def _forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        cache: Any,
        *,
        positions: torch.Tensor | None = None,
        deltas: torch.Tensor | None = None,
        media: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """Last-position logits; positions count the unpadded tokens (plus each row's delta) unless given."""
        if positions is None:
            positions = decode_positions(mask, ids.shape[1])
            positions = positions if deltas is None else positions + deltas
        lean = self.lean if cache is not None and ids.shape[1] == 1 and not media else None
        kwargs = {self._cache_kw: cache, "use_cache": cache is not None, **(media or {})}
        with self.model_lock:
            started = time.perf_counter()
            if lean is not None:
                logits = lean(ids, mask, cache, positions)
            else:
                out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1, **kwargs)
                logits = out.logits[:, -1, :]
            self._model_s = time.perf_counter() - started  # the model call alone (decode-step split)
        return logits

    def _sample(self, batch: _Batch, logits: torch.Tensor) -> None:
        """Pick one token per row, stream it, and append it to the batch tensors."""
        self._accept(batch, pick_tokens(batch.rows, logits, sample_batch))  # a failing row fails alone (None)

    def _accept(self, batch: _Batch, tokens: list[int | None]) -> None:
        """Stream each row's token (None: the row failed) and append the tokens to the batch tensors."""
        import torch

        for row, token in zip(batch.rows, tokens, strict=True):
            if token is not None:
                accept_token(row, token)
            if row.generated == 1 or (row.done and not row.generated):
                self._first_token(row)
        padded = [self.pad_id if token is None else token for token in tokens]
        column = torch.tensor(padded, dtype=torch.long, device=batch.ids.device)[:, None]
        batch.ids = torch.cat([batch.ids, column], dim=1)
        batch.mask = torch.cat([batch.mask, torch.ones_like(column)], dim=1)


def _top_width(rows: list[Row], vocab: int) -> int | None:
    """The widest top-k of `rows` when every one samples with a top-k (partial candidates serve them all)."""
    ks = [row.request.params.top_k for row in rows]
    if any(row.request.params.greedy for row in rows) or not all(0 < k < vocab for k in ks):
        return None
    return max(ks)


def _prune(batch: _Batch | None) -> _Batch | None:
    if batch is None:
        return None
    for row in batch.rows:
        if row.request.cancelled.is_set():
            row.finish("cancelled")
    keep = [i for i, row in enumerate(batch.rows) if not row.done]
    if not keep:
        return None
    if len(keep) < len(batch.rows):
        batch.keep(keep)
    return batch


def _cache_keyword(model: Any) -> str:
    """`cache` in transformers >= 5.x forward signatures, `past_key_values` before. Read from the model's class:
    an instance's forward may be wrapped in a `*args, **kwargs` function that names neither."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"


def _new_cache(model: Any) -> Any:
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def _cache_layers(model: Any) -> list[Any]:
    try:
        return list(_new_cache(model).layers)
    except Exception:  # models without a standard cache: treat as non-mergeable
        return [type("Sliding", (), {"is_sliding": True})()]


def _left_pad(tensor: torch.Tensor, width: int, dim: int, value: int = 0) -> torch.Tensor:
    import torch

    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([torch.full(shape, value, dtype=tensor.dtype, device=tensor.device), tensor], dim=dim)


def _merge(old: _Batch, new: _Batch) -> _Batch:
    """One batch holding both: ids, masks and every cache layer left-padded to the same length."""
    import torch

    width = max(old.ids.shape[1], new.ids.shape[1])
    ids = torch.cat([_left_pad(old.ids, width, 1), _left_pad(new.ids, width, 1)])
    mask = torch.cat([_left_pad(old.mask, width, 1), _left_pad(new.mask, width, 1)])
    deltas = _joined_deltas(old, new)
    if old.cache is not None:
        # the cache covers every position but the last token (fed at the next step)
        for a, b in zip(old.cache.layers, new.cache.layers, strict=True):
            a.keys = torch.cat([_left_pad(a.keys, width - 1, 2), _left_pad(b.keys, width - 1, 2)])
            a.values = torch.cat([_left_pad(a.values, width - 1, 2), _left_pad(b.values, width - 1, 2)])
    return _Batch(old.rows + new.rows, ids, mask, old.cache, deltas)


def _joined_deltas(old: _Batch, new: _Batch) -> torch.Tensor | None:
    """Both batches' position deltas (zero for rows without), or None when neither has any."""
    import torch

    if old.deltas is None and new.deltas is None:
        return None
    zeros = torch.zeros((len(old.rows) + len(new.rows), 1), dtype=torch.long, device=old.ids.device)
    parts = [b.deltas if b.deltas is not None else zeros[: len(b.rows)] for b in (old, new)]
    return torch.cat(parts)
