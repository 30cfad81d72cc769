"""`tuneforge data preview` and `tuneforge data stats`: look at the tokenized data before training.

Preview prints samples with trained tokens in green and masked (label -100) tokens dimmed, token counts,
the chat template in use and any template/tokenizer warning. Stats prints rows kept and dropped (and
why), length percentiles and packing fill.
"""

from __future__ import annotations

import atexit
import gc
import json
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

from tuneforge.console import line, literal

IGNORE = -100
_PAIRS = (("input_ids", "labels"), ("chosen_input_ids", "chosen_labels"), ("rejected_input_ids", "rejected_labels"))
_PAIRS += (("kl_input_ids", "kl_labels"),)


def _console() -> Any:
    from tuneforge.console import make_console

    return make_console()


def _tokenizer(cfg: TuneforgeConfig) -> Any:
    from tuneforge.models.loader import load_tokenizer

    _skip_exit_collection()
    return load_tokenizer(cfg)


@cache
def _skip_exit_collection() -> None:
    """Leave out the garbage collection Python runs when the process exits (about 1 s after a data run: it walks
    every object the tokenizer and transformers left alive, and the system frees the memory anyway). Objects are
    only frozen at exit, so a longer-lived process (tests, the web UI) still collects as usual until then."""
    atexit.register(gc.freeze)


def preview_command(
    cfg: TuneforgeConfig, n: int = 3, jsonl: str | None = None, tokenizer: Any = None
) -> list[dict[str, Any]]:
    """Print the first `n` training samples; with `jsonl`, also write every shown sample as a JSON line.

    Returns the samples shown (dicts of token-id lists).
    """
    from tuneforge.data.pipeline import prepare_dataset

    tokenizer = tokenizer or _tokenizer(cfg)
    splits = prepare_dataset(cfg, tokenizer)
    console = _console()
    stats = splits.stats
    show_header(console, stats)
    data = splits.train if splits.train is not None else _first_eval(splits.eval)
    samples = [data[i] for i in range(min(n, len(data)))] if data is not None else []
    for index, sample in enumerate(samples):
        console.rule(f"sample {index}")
        show_sample(console, tokenizer, sample, stats.kind)
    if jsonl:
        write_jsonl(Path(jsonl), samples)
        console.print(line(f"wrote {len(samples)} sample(s) to {jsonl}"))
    return samples


def _first_eval(value: Any) -> Any:
    if isinstance(value, dict):
        return next(iter(value.values()), None)
    return value


def show_header(console: Any, stats: Any) -> None:
    """The template and stage in use, then every template/tokenizer warning (printed literally)."""
    template = stats.template or "(none: pre-training)"
    console.print(line(("template", "bold"), f": {template}   ", ("stage", "bold"), f": {stats.kind}"))
    for warning in stats.warnings:
        console.print(line(("warning", "yellow"), ": ", warning))


def show_sample(console: Any, tokenizer: Any, sample: dict[str, Any], kind: str) -> None:
    """One processed sample: token counts and its decoded text, trained tokens green, masked ones dimmed."""
    for ids_key, labels_key in _PAIRS:
        if ids_key not in sample:
            continue
        ids, labels = sample[ids_key], sample.get(labels_key, [])
        if kind == "unsupervised":
            console.print(line((ids_key, "bold"), f": {len(ids)} prompt tokens, {len(labels)} reference tokens"))
            console.print(marked_text(tokenizer, ids, [IGNORE] * len(ids)))
            console.print(marked_text(tokenizer, labels, labels))
            continue
        trained = sum(1 for label in labels if label != IGNORE)
        console.print(line((ids_key, "bold"), f": {len(ids)} tokens, {trained} trained, {len(ids) - trained} masked"))
        console.print(marked_text(tokenizer, ids, labels))
    for kind in ("images", "videos", "audios"):
        if sample.get(kind):
            console.print(line((kind, "bold"), f": {', '.join(sample[kind])}"))
    if "kto_tags" in sample:
        console.print(line(("kto_tag", "bold"), f": {'desirable' if sample['kto_tags'] else 'undesirable'}"))
    if "position_ids" in sample:
        starts = sum(1 for p in sample["position_ids"] if p == 0)
        console.print(line(("packed", "bold"), f": {starts} sample(s) in this row (position ids restart at each)"))


def marked_text(tokenizer: Any, ids: list[int], labels: list[int]) -> Any:
    """Rich Text of `ids` decoded in runs: trained tokens green, masked tokens dimmed."""
    from rich.text import Text

    text = Text()
    run: list[int] = []
    masked: bool | None = None
    for token, label in zip(ids, labels, strict=False):
        is_masked = label == IGNORE
        if run and is_masked != masked:
            text.append_text(_piece(tokenizer, run, bool(masked)))
            run = []
        run.append(token)
        masked = is_masked
    if run:
        text.append_text(_piece(tokenizer, run, bool(masked)))
    return text


def _piece(tokenizer: Any, run: list[int], masked: bool) -> Any:
    return literal(compact_runs(tokenizer.decode(run, skip_special_tokens=False)), "dim" if masked else "bold green")


# One special token as models spell their media tokens: `<|image_pad|>`, `<image>`, `<IMG_CONTEXT>`,
# `<image_soft_token>`, `[IMG]`; three or more in a row are shown once with a count.
_REPEATED_SPECIAL = re.compile(r"(<\|?[\w.:\-]{1,40}\|?>|\[[A-Z_]{1,20}\])\1{2,}")


def compact_runs(text: str) -> str:
    """Runs of one special token (a media placeholder's image tokens) shown once with a count: `<|image_pad|>×16`
    (any model's spelling: `<image>×576`, `<IMG_CONTEXT>×256`, `[IMG]×64`). The CLI and web UI previews use it."""
    return _REPEATED_SPECIAL.sub(lambda m: f"{m.group(1)}×{len(m.group(0)) // len(m.group(1))}", text)


def write_jsonl(path: Path, samples: list[dict[str, Any]]) -> None:
    """One JSON object per sample: its token columns, plus attention_mask when it has no position_ids."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for sample in samples:
            row = dict(sample)
            if "input_ids" in row and "position_ids" not in row:
                row["attention_mask"] = [1] * len(row["input_ids"])
            handle.write(json.dumps(row) + "\n")


def _recalled_stats(cfg: TuneforgeConfig) -> Any:
    """The stats of data a previous `data stats` prepared with this exact config and files (no tokenizer load)."""
    from tuneforge.data import cache
    from tuneforge.data.pipeline import DataStats
    from tuneforge.errors import TuneforgeError

    root = cache.cache_root(getattr(cfg.model, "cache_dir", None))
    try:
        found = cache.recall(root, cache.quick_key(cfg, root))
    except (OSError, ValueError, KeyError, TuneforgeError):  # the normal path below reports the problem
        return None
    if found is None:
        return None
    meta, warnings = found
    stats = DataStats.from_dict(meta["stats"])
    stats.cache_hit, stats.cache_path, stats.warnings = True, meta["folder"], warnings
    return stats


def stats_command(cfg: TuneforgeConfig, tokenizer: Any = None) -> Any:
    """Print rows kept and dropped (and why), length percentiles, packing fill, and where the time went."""
    from tuneforge.timing import Breakdown

    timing = Breakdown()
    with timing.part("cache lookup"):
        stats = _recalled_stats(cfg) if tokenizer is None else None
    if stats is None:
        stats = _prepared_stats(cfg, tokenizer, timing)
    console = _console()
    show_stats(console, stats)
    console.print(line(f"time: {timing}"))
    return stats


def _prepared_stats(cfg: TuneforgeConfig, tokenizer: Any, timing: Any) -> Any:
    """Prepare (or load from the cache) the data with the tokenizer, and remember its stats for next time."""
    with timing.part("imports"):
        import transformers  # noqa: F401  (timed apart from loading the tokenizer)

        from tuneforge.data import cache
        from tuneforge.data.pipeline import prepare_dataset
    with timing.part("tokenizer"):
        tokenizer = tokenizer or _tokenizer(cfg)
    with timing.part("data"):
        stats = prepare_dataset(cfg, tokenizer, open_splits=False).stats
    root = cache.cache_root(getattr(cfg.model, "cache_dir", None))
    cache.remember(root, cache.quick_key(cfg, root), stats.cache_path, stats.warnings)
    return stats


def show_stats(console: Any, stats: Any) -> None:
    """The stats report: per-dataset counts, drop reasons, problems, lengths, packing, warnings, cache."""
    from rich.table import Table

    table = Table(title=literal(f"datasets (stage {stats.kind}, template {stats.template})"))
    for column in ("dataset", "rows read", "kept", "dropped"):
        table.add_column(column, justify="left" if column == "dataset" else "right")
    for item in stats.datasets:
        table.add_row(literal(item.name), str(item.rows_read), str(item.rows_kept), str(item.rows_dropped))
    console.print(table)
    for reason, count in sorted(stats.drop_reasons.items(), key=lambda kv: -kv[1]):
        console.print(line(f"dropped {count}: ", reason))
    for problem in stats.problems:
        console.print(line(problem))
    console.print(f"train rows: {stats.train_rows}   eval rows: {stats.eval_rows}")
    if stats.length_percentiles:
        lengths = "  ".join(f"{k} {v}" for k, v in stats.length_percentiles.items())
        console.print(f"lengths (tokens): {lengths}")
    if stats.packing_fill is not None:
        console.print(f"packing: {stats.packed_rows} rows, {stats.packing_fill:.1%} filled")
    for warning in stats.warnings:
        console.print(line(("warning", "yellow"), ": ", warning))
    console.print(line(f"cache: {'hit' if stats.cache_hit else 'built'} {stats.cache_path or ''}"))
