"""Per-stage tokenization of canonical examples into Arrow tables of token ids.

Stages (`kind`): `pt` (texts + eos, concatenated and chunked to cutoff_len when packing), `sft`
(prompt tokens labelled -100 unless `train_on_prompt`; `mask_history` trains only the last turn),
`pairwise` (rm and the DPO family), `kto` (with a mismatched "KL" completion built here, as
LLaMA-Factory does: each prompt is paired with the next row's response) and `unsupervised` (prompt only,
`labels` holding the reference answer; for prediction, PPO and GRPO).

Rows are encoded in chunks, in two passes: a record pass renders each distinct conversation once and
collects its text, one batched encode handles all distinct texts, and a serve pass cuts the ids into turns.
"""

from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass
from itertools import chain
from typing import Any

from tuneforge.data.convert import RowError
from tuneforge.data.loading import RawRows
from tuneforge.data.report import RowReport
from tuneforge.data.tokens import MemoTokenizer
from tuneforge.data.turns import Turns
from tuneforge.gc_pause import collector_paused

IGNORE = -100
_MAX_DONE = 500_000  # distinct examples remembered for reuse
KINDS = ("pt", "sft", "pairwise", "kto", "unsupervised")
CHUNK_ROWS = 8192


@dataclass(frozen=True)
class ProcessOptions:
    """The data arguments that change token ids (all part of the cache key)."""

    kind: str
    cutoff_len: int = 2048
    train_on_prompt: bool = False
    mask_history: bool = False
    pt_chunking: bool = True  # pt with packing: concatenate documents and cut into cutoff_len blocks
    media_tokens: tuple[tuple[str, int], ...] = ()  # (text, id) of the media plugin's placeholder tokens


def infer_seqlen(source_len: int, target_len: int, cutoff_len: int) -> tuple[int, int]:
    """How many prompt and response tokens to keep within `cutoff_len` (LLaMA-Factory's rule).

    A short response is kept whole; a short prompt is kept whole and the response cut; when both are long
    they share the budget in proportion to their lengths.
    """
    if target_len * 2 < cutoff_len:
        max_target = cutoff_len
    elif source_len * 2 < cutoff_len:
        max_target = cutoff_len - source_len
    else:
        max_target = int(cutoff_len * target_len / (source_len + target_len))
    new_target = min(max_target, target_len)
    new_source = min(max(cutoff_len - new_target, 0), source_len)
    return new_source, new_target


def _cut(source: list[int], target: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Truncate a (prompt, response) pair: the prompt keeps its end (the assistant header), the response its start."""
    s_len, t_len = infer_seqlen(len(source), len(target), budget)
    return (source[len(source) - s_len :] if s_len else []), target[:t_len]


def _check_responses(messages: list[dict[str, Any]]) -> None:
    if not messages or messages[-1]["role"] != "assistant":
        raise RowError("the conversation does not end with an assistant response")
    for index, message in enumerate(messages, start=1):
        if message["role"] == "assistant" and not message["content"] and not message.get("tool_calls"):
            raise RowError(f"empty response (assistant turn {index})")


def encode_sft(ex: dict[str, Any], turns: Turns, opts: ProcessOptions) -> dict[str, Any]:
    """input_ids and labels for a supervised example."""
    _check_responses(ex["messages"])
    pairs = turns.pairs(ex["messages"], ex["system"], ex["tools"])
    if not pairs:
        raise RowError("the chat template produced no assistant turn")
    if turns.tok.recording:
        return {}
    ids, labels = _join_turns(pairs, opts, turns.eos)
    if labels.count(IGNORE) == len(labels):
        raise RowError(f"no response token left after truncation to cutoff_len={opts.cutoff_len}")
    return {"input_ids": ids, "labels": labels}


def _join_turns(pairs: list[tuple[list[int], list[int]]], opts: ProcessOptions, eos: int | None = None) -> tuple:
    """Concatenate turns within cutoff_len; with mask_history the last turn is kept first and alone trained.

    A turn cut down to prompt tokens only (no response token fits) is dropped rather than left as a stray
    fragment. With `eos` (efficient_eos templates) the input holds no eos between turns, exactly as the
    inference prompt; the eos is the label of the next prompt's first token and ends the sequence.
    """
    ordered = list(reversed(pairs)) if opts.mask_history else pairs
    parts: list[tuple[list[int], list[int]]] = []
    total = 0 if eos is None else 1
    for turn, (source, target) in enumerate(ordered):
        if total >= opts.cutoff_len:
            break
        source, target = _cut(source, target, opts.cutoff_len - total)
        if not target:
            break
        total += len(source) + len(target)
        source_labels = source if opts.train_on_prompt else [IGNORE] * len(source)
        target_labels = [IGNORE] * len(target) if opts.mask_history and turn else target
        parts.append((source + target, source_labels + target_labels))
    if opts.mask_history:
        parts.reverse()
    ids: list[int] = []
    labels: list[int] = []
    for part_ids, part_labels in parts:
        if eos is not None and labels and labels[-1] != IGNORE and part_labels[0] == IGNORE:
            part_labels = [eos, *part_labels[1:]]  # the previous response ends here
        ids += part_ids
        labels += part_labels
    if eos is not None:
        ids.append(eos)
        labels.append(eos if labels and labels[-1] != IGNORE else IGNORE)
    return ids, labels


def _prompt_and_response(ex: dict[str, Any], turns: Turns, reply: dict[str, Any]) -> tuple[list, list]:
    """The prompt (earlier turns and the generation prompt) and the reply's ids (plus eos for efficient_eos)."""
    pairs = turns.pairs([*ex["messages"], reply], ex["system"], ex["tools"])
    if not pairs:
        raise RowError("the chat template produced no assistant turn")
    prompt: list[int] = []
    for source, target in pairs[:-1]:
        prompt += source + target
    response = pairs[-1][1] if turns.eos is None else [*pairs[-1][1], turns.eos]
    return prompt + pairs[-1][0], response


def encode_pairwise(ex: dict[str, Any], turns: Turns, opts: ProcessOptions) -> dict[str, Any]:
    """chosen_* and rejected_* ids and labels for a preference example (rm, dpo, orpo, simpo)."""
    if ex["chosen"] is None or ex["rejected"] is None:
        raise RowError("a preference row needs both chosen and rejected responses (set ranking: true)")
    if ex["messages"] and ex["messages"][-1]["role"] != "user":
        raise RowError("the prompt of a preference row must end with a user turn")
    for what in ("chosen", "rejected"):
        if not ex[what]["content"] and not ex[what].get("tool_calls"):
            raise RowError(f"empty {what} response")
    prompt, chosen = _prompt_and_response(ex, turns, ex["chosen"])
    _, rejected = _prompt_and_response(ex, turns, ex["rejected"])
    if turns.tok.recording:
        return {}
    s_len, t_len = infer_seqlen(len(prompt), max(len(chosen), len(rejected)), opts.cutoff_len)
    prompt = prompt[len(prompt) - s_len :] if s_len else []
    prompt_labels = prompt if opts.train_on_prompt else [IGNORE] * len(prompt)
    out: dict[str, Any] = {}
    for what, response in (("chosen", chosen[:t_len]), ("rejected", rejected[:t_len])):
        out[f"{what}_input_ids"] = prompt + response
        out[f"{what}_labels"] = prompt_labels + response
    return out


def encode_kto_half(ex: dict[str, Any], turns: Turns, opts: ProcessOptions) -> dict[str, Any]:
    """Prompt and response ids of a KTO row; `finish_kto` adds the mismatched KL completions."""
    if ex["kto_tag"] is None:
        raise RowError("a KTO row needs a boolean kto_tag (set columns.kto_tag in dataset_info.json)")
    _check_responses(ex["messages"])
    *history, reply = ex["messages"]
    prompt, response = _prompt_and_response({**ex, "messages": history}, turns, reply)
    return {"_prompt": prompt, "_response": response, "kto_tags": ex["kto_tag"]}


def finish_kto(rows: list[dict[str, Any]], opts: ProcessOptions) -> list[dict[str, Any]]:
    """input_ids/labels plus kl_input_ids/kl_labels: each prompt with the previous row's response (the first
    row with the last one's), LLaMA-Factory's pairing, without its restart every `preprocessing_batch_size` rows
    (README, "Differences from LLaMA-Factory")."""
    out = []
    for i, row in enumerate(rows):
        item: dict[str, Any] = {"kto_tags": row["kto_tags"]}
        item.update({kind: row[kind] for kind in ("images", "videos", "audios") if kind in row})  # the prompt's media
        kl_response = rows[i - 1]["_response"]
        for prefix, response in (("", row["_response"]), ("kl_", kl_response)):
            prompt, response = _cut(row["_prompt"], response, opts.cutoff_len)
            item[f"{prefix}input_ids"] = prompt + response
            item[f"{prefix}labels"] = (prompt if opts.train_on_prompt else [IGNORE] * len(prompt)) + response
        out.append(item)
    return out


def encode_unsupervised(ex: dict[str, Any], turns: Turns, opts: ProcessOptions) -> dict[str, Any]:
    """Prompt ids (ending with the generation prompt) and the reference answer as labels."""
    messages = ex["messages"]
    if not messages:
        raise RowError("no prompt")
    if messages[-1]["role"] == "assistant" or ex["chosen"] is not None:
        history, reply = (
            (messages, ex["chosen"]) if messages[-1]["role"] != "assistant" else (messages[:-1], messages[-1])
        )
        prompt, response = _prompt_and_response({**ex, "messages": history}, turns, reply)
    else:
        prompt = turns.prompt(messages, ex["system"], ex["tools"])
        response = []
    prompt, response = _cut(prompt, response, opts.cutoff_len)
    return {"input_ids": prompt, "labels": response}


def encode_text(ex: dict[str, Any], tok: Any, opts: ProcessOptions) -> list[int]:
    """One pre-training document: [bos] + text + eos."""
    ids = tok.ids(ex["text"], False)
    bos = [tok.bos_token_id] if getattr(tok, "add_bos_token", False) and tok.bos_token_id is not None else []
    return bos + ids + [tok.eos_token_id]


ENCODERS = {"sft": encode_sft, "pairwise": encode_pairwise, "kto": encode_kto_half, "unsupervised": encode_unsupervised}


class Columns:
    """Accumulates processed rows; identical row objects (reused for duplicate examples) are stored once.

    Token columns become list<int32> Arrow columns built from flat int32 buffers; scalar columns
    (`kto_tags`) plain Arrow arrays.
    """

    def __init__(self) -> None:
        self.unique: list[dict[str, Any]] = []
        self.order: list[int] = []
        self._slot: dict[int, int] = {}

    def add(self, item: dict[str, Any]) -> None:
        """Append one processed row (the same object added twice is stored once)."""
        slot = self._slot.get(id(item))
        if slot is None:
            slot = self._slot[id(item)] = len(self.unique)
            self.unique.append(item)
        self.order.append(slot)

    def to_table(self) -> Any:
        """An Arrow table with one row per `add`, in order."""
        import pyarrow as pa

        if not self.unique:
            return pa.table({"input_ids": pa.array([], pa.list_(pa.int32()))})
        table = pa.table({key: _column([item[key] for item in self.unique]) for key in self.unique[0]})
        if self.order != list(range(len(self.unique))):
            table = table.take(pa.array(self.order, pa.int64()))
        return table


def _column(values: list[Any]) -> Any:
    import numpy as np
    import pyarrow as pa

    if not isinstance(values[0], list):
        return pa.array(values)
    if any(isinstance(v, str) for value in values for v in value[:1]):  # media paths
        return pa.array(values, type=pa.list_(pa.string()))
    offsets = np.zeros(len(values) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, values), np.int64, len(values)), out=offsets[1:])
    flat = np.fromiter(chain.from_iterable(values), np.int32, int(offsets[-1]))
    large = offsets[-1] >= 2**31
    list_type = pa.LargeListArray if large else pa.ListArray
    return list_type.from_arrays(_arrow(offsets if large else offsets.astype(np.int32)), _arrow(flat))


def _arrow(values: Any) -> Any:
    """A numpy int array as an Arrow array, zero-copy (`pa.array` on numpy would import pandas to check types)."""
    import pyarrow as pa

    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


class _Rejected(str):
    """The reason a row was rejected (memoised like a processed row)."""


def process_rows(examples: RawRows, template: Any, tokenizer: Any, opts: ProcessOptions, report: RowReport) -> Any:
    """Tokenize a dataset's canonical examples for `opts.kind`; invalid rows go to `report`.

    Identical examples are encoded once and share their output row.
    """
    tok = tokenizer if isinstance(tokenizer, MemoTokenizer) else MemoTokenizer(tokenizer)
    with collector_paused():
        if opts.kind == "pt":
            return _process_pretraining(examples, tok, opts)
        return _process_chats(examples, template, tok, opts, report)


def _process_chats(
    examples: RawRows, template: Any, tok: MemoTokenizer, opts: ProcessOptions, report: RowReport
) -> Any:
    """Chunk by chunk: a record pass (texts to encode), one batched encode, a serve pass (rows of ids)."""
    encoder, turns = ENCODERS[opts.kind], Turns(template, tok)
    columns, kto_rows, done, key_of = Columns(), [], {}, {}
    for start in _progress(range(0, len(examples), CHUNK_ROWS), examples.name):
        chunk = examples.rows[start : start + CHUNK_ROWS]
        keys = _keys(chunk, key_of)
        if len(done) > _MAX_DONE:
            done.clear()
        _record({k: ex for k, ex in zip(keys, chunk, strict=False) if k not in done}.values(), encoder, turns, opts)
        for number, key, example in zip(examples.numbers[start : start + CHUNK_ROWS], keys, chunk, strict=False):
            item = done.get(key)
            if item is None:
                item = done[key] = _encode_one(encoder, example, turns, opts)
            if isinstance(item, _Rejected):
                report.bad(examples.name, number, item)
            elif opts.kind == "kto":
                kto_rows.append(item)
            else:
                columns.add(item)
    for item in finish_kto(kto_rows, opts) if kto_rows else []:
        columns.add(item)
    return columns.to_table()


def _progress(chunks: range, name: str) -> Any:
    """A progress bar over chunks for large datasets, shown only on a terminal."""
    if len(chunks) < 4 or not sys.stderr.isatty():
        return chunks
    from tqdm.auto import tqdm

    return tqdm(chunks, desc=f"tokenizing {name}", unit="chunk", leave=False)


def _keys(chunk: list[dict[str, Any]], key_of: dict[int, bytes]) -> list[bytes]:
    """A content key per example; examples shared by identical rows are pickled once (by object id)."""
    keys = []
    for example in chunk:
        key = key_of.get(id(example))
        if key is None:
            key = key_of[id(example)] = pickle.dumps(example, 5)
        keys.append(key)
    return keys


def _encode_one(encoder: Any, example: dict[str, Any], turns: Turns, opts: ProcessOptions) -> Any:
    try:
        item = encoder(example, turns, opts)
        for kind in ("images", "videos", "audios"):  # multimodal rows keep their resolved media paths
            if kind in example:
                item[kind] = example[kind]
        if opts.media_tokens:
            check_media_kept(example, item, opts)
        return item
    except RowError as err:
        return _Rejected(err)
    except (ValueError, KeyError, TypeError) as err:
        return _Rejected(f"the chat template cannot encode this row ({type(err).__name__}: {err})")


def check_media_kept(example: dict[str, Any], item: dict[str, Any], opts: ProcessOptions) -> None:
    """A row error when truncation to `cutoff_len` cut through the row's media tokens (the model would find fewer
    placeholders than its media give features and stop mid-training)."""
    texts = [m["content"] for m in example.get("messages", []) if isinstance(m.get("content"), str)]
    expected = sum(text.count(token) for text in texts for token, _ in opts.media_tokens)
    ids = {token_id for _, token_id in opts.media_tokens}
    for key, values in item.items():
        kept = sum(1 for v in values if v in ids) if key.endswith("input_ids") else expected
        if kept != expected:
            raise RowError(
                f"cutoff_len={opts.cutoff_len} cuts through the row's media tokens ({kept} of {expected} kept); "
                "raise cutoff_len or lower image_max_pixels / video_max_pixels so the media fit"
            )


def _record(chunk: Any, encoder: Any, turns: Turns, opts: ProcessOptions) -> None:
    """Run the encoder once per row with a recording tokenizer, then encode all texts in one batch."""
    tok = turns.tok
    if tok.lookups > 1000 and tok.misses * 2 > tok.lookups:
        return  # this template bypasses the memo; recording would only cost time
    tok.recording = True
    try:
        for example in chunk:
            try:
                encoder(example, turns, opts)
            except Exception:  # the serve pass reports the same row with its reason
                continue
    finally:
        tok.recording = False
    tok.encode_pending()


def _process_pretraining(examples: RawRows, tok: MemoTokenizer, opts: ProcessOptions) -> Any:
    columns = Columns()
    buffer: list[int] = []
    for start in range(0, len(examples), CHUNK_ROWS):
        chunk = examples.rows[start : start + CHUNK_ROWS]
        tok.want([ex["text"] for ex in chunk])
        tok.encode_pending()
        for example in chunk:
            ids = encode_text(example, tok, opts)
            if not opts.pt_chunking:
                ids = ids[: opts.cutoff_len]
                columns.add({"input_ids": ids, "labels": ids})
                continue
            buffer += ids
            full = len(buffer) // opts.cutoff_len * opts.cutoff_len
            for begin in range(0, full, opts.cutoff_len):
                block = buffer[begin : begin + opts.cutoff_len]
                columns.add({"input_ids": block, "labels": block})
            del buffer[:full]
    if buffer:
        columns.add({"input_ids": buffer, "labels": buffer})
    return columns.to_table()
