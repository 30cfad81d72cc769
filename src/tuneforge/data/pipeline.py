"""One entry point: `prepare_dataset(cfg, tokenizer, kind=None) -> DatasetSplits`.

Steps: resolve the datasets (registry, inline entries, plain paths) -> read rows -> `num_samples` /
`max_samples` -> convert to canonical examples -> tokenize for the stage -> mix -> split off `val_size`
-> pack the training split. The result is cached on disk (see `cache.py`); an identical second run only
memory-maps the stored Arrow files.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.config.stages import DataKind, stage
from tuneforge.data import cache
from tuneforge.data.convert import convert_rows
from tuneforge.data.loading import data_files, read_dataset, sample_rows
from tuneforge.data.media import attach_media, media_columns, media_tokens, plugin_for_run, with_media_columns
from tuneforge.data.mixing import mix_tables, parse_probs, split_validation
from tuneforge.data.packing import pack_table
from tuneforge.data.parallel import parallel_workers, process_parallel
from tuneforge.data.process import ProcessOptions, process_rows
from tuneforge.data.registry import DatasetAttr, resolve_datasets
from tuneforge.data.report import RowReport
from tuneforge.data.splits import DatasetSplits, DatasetStat, DataStats, Plan
from tuneforge.data.tokens import MemoTokenizer
from tuneforge.errors import DataError
from tuneforge.train.dist import preprocesses_first

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig
    from tuneforge.data.templates.template import Template

logger = logging.getLogger("tuneforge.data")

MEDIA_STAGES = ("sft", "dpo", "kto")  # stages whose losses pass the media inputs to the model

__all__ = ["DataStats", "DatasetSplits", "DatasetStat", "Plan", "make_plan", "prepare_dataset"]


def build_template(cfg: TuneforgeConfig, tokenizer: Any) -> tuple[Template, list[str]]:
    """The chat template named by `cfg.data.template` and the warnings from checking it against the tokenizer."""
    from tuneforge.data.templates import checked_template

    return checked_template(cfg.data, tokenizer)


def make_plan(cfg: TuneforgeConfig, tokenizer: Any, kind: DataKind | None = None) -> Plan:
    """Resolve the data kind (default: the configured stage's), template, datasets and options from the config.
    Combinations of keys were judged by the config checks when the config was loaded."""
    d = cfg.data
    kind = kind or stage(cfg.method.stage).data_kind
    packs = kind in ("pt", "sft")  # prompt-only, pairwise and KTO rows are never packed
    pack = packs and (bool(d.packing) or bool(d.neat_packing) or (d.packing is None and kind == "pt"))
    opts = ProcessOptions(
        kind=kind,
        cutoff_len=int(d.cutoff_len),
        train_on_prompt=bool(d.train_on_prompt),
        mask_history=bool(d.mask_history),
        pt_chunking=pack and not d.neat_packing and kind == "pt",
    )
    train_attrs = resolve_datasets(d.dataset, d.dataset_dir)
    eval_attrs = resolve_datasets(d.eval_dataset, d.dataset_dir)
    if not train_attrs and not eval_attrs:
        raise DataError("No dataset given: set `dataset` (and optionally `eval_dataset`) in the config.")
    if eval_attrs and d.val_size:
        raise DataError("Set either val_size or eval_dataset, not both.")
    check_stage_fit(train_attrs + eval_attrs, kind)
    template, warnings = (None, []) if kind == "pt" else build_template(cfg, tokenizer)
    seed = int(cfg.training.data_seed or cfg.training.seed)
    media = _media_plugin(cfg, train_attrs + eval_attrs, template, kind, pack)
    if media is not None:
        opts = replace(opts, media_tokens=media_tokens(media, tokenizer))
    return Plan(kind, template, warnings, opts, train_attrs, eval_attrs, d, seed, pack, bool(d.neat_packing), media)


def _media_plugin(cfg: TuneforgeConfig, attrs: list[DatasetAttr], template: Any, kind: str, pack: bool) -> Any:
    """The media plugin when a dataset maps images/videos/audios columns (None for text data), or a clear refusal."""
    names = [a.name for a in attrs if media_columns(a)]
    if not names:
        return None
    if cfg.method.stage not in MEDIA_STAGES:
        raise DataError(
            f"Dataset {names[0]!r} has media columns: multimodal data serves stages sft, dpo and kto (and "
            f"prediction) in tuneforge so far, not stage {cfg.method.stage}; remove the media columns or use "
            "`stage: sft`, `dpo` or `kto`."
        )
    if pack:
        raise DataError(
            f"Dataset {names[0]!r} has media columns and `packing`/`neat_packing` is on: packing multimodal rows "
            "is not supported; remove `packing` / `neat_packing`."
        )
    return plugin_for_run(template, cfg.model)


def check_stage_fit(attrs: list[DatasetAttr], kind: str) -> None:
    """Reject datasets that cannot serve the stage (preference data for sft, prompts without preferences)."""
    for attr in attrs:
        if attr.ranking and kind in ("sft", "kto", "pt"):
            raise DataError(
                f"Dataset {attr.name!r} is preference data (ranking: true); it serves stages rm, dpo (and "
                f"ppo/grpo prompts), not {kind}."
            )
        if kind == "pairwise" and attr.formatting is not None and not attr.ranking:
            raise DataError(
                f"Stage needs preference data but dataset {attr.name!r} has no `ranking: true` "
                "(with `chosen` and `rejected` columns) in its entry."
            )


def prepare_dataset(
    cfg: TuneforgeConfig, tokenizer: Any, kind: DataKind | None = None, *, open_splits: bool = True
) -> DatasetSplits:
    """Load, convert, tokenize (as rows of `kind`, default the configured stage's), mix, split and pack the config's
    datasets (cached on disk). `open_splits=False` (statistics only) leaves the cached splits unopened (None)."""
    start = time.perf_counter()
    plan = make_plan(cfg, tokenizer, kind)
    if plan.data.streaming:
        from tuneforge.data.streaming import prepare_streaming

        return prepare_streaming(plan, tokenizer)
    tokenized = plan.data.tokenized_path
    if tokenized and Path(tokenized).exists() and any(Path(tokenized).iterdir()):
        return _load_tokenized(Path(tokenized), plan)
    root = cache.cache_root(cfg.model.cache_dir)
    folder = cache.entry_dir(root, cache.make_key(_key_parts(plan, tokenizer, root)))
    splits, stats = _cached_or_built(plan, tokenizer, folder, open_splits or bool(tokenized))
    result = _splits(splits, stats, plan)
    result.stats.seconds = time.perf_counter() - start
    if tokenized:
        _save_tokenized(Path(tokenized), result)
    return result


def _cached_or_built(plan: Plan, tokenizer: Any, folder: Path, open_splits: bool) -> tuple[dict[str, Any], DataStats]:
    """Split datasets from the cache entry `folder`, building and storing it first when needed."""
    rebuild = plan.data.overwrite_cache and preprocesses_first(plan.data.data_shared_file_system)  # others read it
    hit = None if rebuild else cache.load_entry(folder, open_splits)
    if hit is not None and cache.media_changed(hit[1]):
        logger.info("A media file of the cached data at %s changed; encoding again.", folder)
        hit = None
    cached = hit is not None
    if hit is None:
        tables, stats = build_tables(plan, tokenizer)
        stats.cache_path = str(folder)
        try:
            cache.save_entry(folder, tables, {"stats": stats.to_dict(), "media": cache.media_stamps(tables)})
            hit = cache.load_entry(folder, open_splits)
        except OSError as err:
            logger.warning(
                "Could not write the preprocessing cache at %s (%s); keeping the data in memory.", folder, err
            )
        if hit is None:
            from datasets import Dataset

            hit = {name: Dataset(table) for name, table in tables.items()}, {"stats": stats.to_dict()}
    splits, meta = hit
    stats = DataStats.from_dict(meta["stats"])
    stats.cache_hit, stats.warnings = cached, plan.warnings
    if cached and stats.problems:
        logger.warning(
            "Invalid rows were skipped when this data was cached (%s):\n%s", folder, "\n".join(stats.problems)
        )
    return splits, stats


def _key_parts(plan: Plan, tokenizer: Any, root: Path) -> dict[str, Any]:
    d = plan.data
    return {
        "train": [_attr_key(a, root) for a in plan.train_attrs],
        "eval": [_attr_key(a, root) for a in plan.eval_attrs],
        "tokenizer": cache.tokenizer_fingerprint(tokenizer),
        "template": cache.template_record(plan.template),
        "opts": asdict(plan.opts),
        "args": {
            "max_samples": d.max_samples,
            "val_size": d.val_size,
            "mix_strategy": d.mix_strategy,
            "interleave_probs": d.interleave_probs,
            "eval_on_each_dataset": d.eval_on_each_dataset,
        },
        "seed": plan.seed,
        "pack": [plan.pack, plan.neat],
        "strict": d.strict_data,
        "media": None if plan.media is None else plan.media.fingerprint(),
    }


def _attr_key(attr: DatasetAttr, root: Path) -> dict[str, Any]:
    record = attr.record()
    if attr.source == "file":
        record["files"] = [[str(p), cache.file_digest(p, root)] for p in data_files(attr)]
    return record


def build_tables(plan: Plan, tokenizer: Any) -> tuple[dict[str, Any], DataStats]:
    """Run the whole preprocessing; returns split tables (train, eval or eval-<name>) and stats."""
    report = RowReport(strict=plan.data.strict_data)
    stats = DataStats(kind=plan.kind, template=plan.template_name)
    tok = MemoTokenizer(tokenizer)
    d = plan.data
    probs = parse_probs(d.interleave_probs, len(plan.train_attrs)) if plan.train_attrs else None
    train_parts = [_one_dataset(a, plan, tok, report, stats) for a in plan.train_attrs]
    train = mix_tables(train_parts, d.mix_strategy, probs, plan.seed)
    tables: dict[str, Any] = {}
    eval_parts = {a.name: _one_dataset(a, plan, tok, report, stats) for a in plan.eval_attrs}
    if eval_parts and d.eval_on_each_dataset:
        tables.update({f"eval-{name}": table for name, table in eval_parts.items() if table.num_rows})
    elif eval_parts:
        tables["eval"] = mix_tables(list(eval_parts.values()), "concat", None, plan.seed)
    elif train is not None and d.val_size:
        train, tables["eval"] = split_validation(train, float(d.val_size), plan.seed)
    report.log_summary()
    stats.drop_reasons = dict(report.reasons())
    stats.problems = report.summary_lines()[:60]
    if train is not None:
        tables["train"] = _finish_train(train, plan, stats)
    tables = {k: v for k, v in tables.items() if v is not None}
    stats.eval_rows = sum(t.num_rows for k, t in tables.items() if k.startswith("eval"))
    return tables, stats


def _one_dataset(attr: DatasetAttr, plan: Plan, tok: MemoTokenizer, report: RowReport, stats: DataStats) -> Any:
    raw = sample_rows(read_dataset(attr, report), attr.num_samples, plan.data.max_samples, plan.seed)
    examples = convert_rows(raw, attr, report, pretrain=plan.kind == "pt")
    if plan.media is not None and media_columns(attr):
        root = Path(plan.data.media_dir or plan.data.dataset_dir)
        examples = attach_media(raw, examples, attr, root, plan.media, report)
    workers = parallel_workers(examples, plan.opts, plan.data.preprocessing_num_workers)
    if workers > 1:
        table = process_parallel(examples, plan.template, tok.tokenizer, plan.opts, report, workers)
    else:
        table = process_rows(examples, plan.template, tok, plan.opts, report)
    if plan.media is not None:
        table = with_media_columns(table)
    kept = len(examples) if plan.kind == "pt" else table.num_rows
    dropped = report.dropped(attr.name)
    stats.datasets.append(DatasetStat(attr.name, len(raw) + _unread(report, attr.name, raw), kept, dropped))
    if table.num_rows == 0:
        raise DataError(_no_rows_message(attr.name, report, plan.kind))
    return table


def _unread(report: RowReport, name: str, raw: Any) -> int:
    """Rows rejected while reading the file (not JSON objects, bad JSON lines)."""
    numbers = set(raw.numbers)
    return sum(1 for p in report.problems if p.dataset == name and p.row not in numbers)


def _no_rows_message(name: str, report: RowReport, kind: str) -> str:
    mine = [p for p in report.problems if p.dataset == name]
    if not mine:
        return f"Dataset {name!r} is empty."
    reasons = RowReport(problems=mine).reasons().most_common(3)
    listed = "; ".join(f"{reason} ({count} rows)" for reason, count in reasons)
    return (
        f"Dataset {name!r} has no valid row for stage {kind}: all {len(mine)} rows were rejected. "
        f"Reasons: {listed}. First: row {mine[0].row}: {mine[0].reason}. Check `formatting`, `columns` and "
        "`ranking` in its dataset_info.json entry."
    )


def _finish_train(train: Any, plan: Plan, stats: DataStats) -> Any:
    import numpy as np
    import pyarrow.compute as pc

    column = "input_ids" if "input_ids" in train.column_names else "chosen_input_ids"
    chunks = pc.list_value_length(train[column]).chunks  # DLPack: `to_numpy` would import pandas (~0.5 s)
    lengths = np.concatenate([np.from_dlpack(c) if not c.null_count else c.to_numpy(False) for c in chunks] or [[]])
    stats.train_rows = int(train.num_rows)
    if len(lengths):
        stats.length_percentiles = {f"p{q}": int(np.percentile(lengths, q)) for q in (50, 90, 99)} | {
            "max": int(lengths.max()),
            "mean": int(lengths.mean()),
        }
    if plan.pack and not plan.opts.pt_chunking:
        packed = pack_table(train, plan.opts.cutoff_len, plan.neat)
        stats.packed_rows, stats.packing_fill = packed.rows_out, round(packed.fill, 4)
        return packed.table
    if plan.kind == "pt" and plan.opts.pt_chunking and len(lengths):
        stats.packed_rows, stats.packing_fill = (
            int(train.num_rows),
            round(float(lengths.mean()) / plan.opts.cutoff_len, 4),
        )
    return train


def _splits(splits: dict[str, Any], stats: DataStats, plan: Plan) -> DatasetSplits:
    evals = {k[len("eval-") :]: v for k, v in splits.items() if k.startswith("eval-")}
    return DatasetSplits(splits.get("train"), evals or splits.get("eval"), stats, plan.template)


def _load_tokenized(path: Path, plan: Plan) -> DatasetSplits:
    from datasets import DatasetDict, load_from_disk

    logger.warning("Loading the tokenized dataset from tokenized_path=%s; data arguments are ignored.", path)
    try:
        loaded = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as err:
        raise DataError(f"tokenized_path {path} does not hold a saved dataset: {err}") from err
    stats = DataStats(kind=plan.kind, template=plan.template_name, cache_path=str(path))
    stats.cache_hit = True
    if not isinstance(loaded, DatasetDict):
        stats.train_rows = len(loaded)
        return DatasetSplits(loaded, None, stats, plan.template)
    evals = {k[len("eval-") :]: v for k, v in loaded.items() if k.startswith("eval-")}
    eval_split = evals or loaded.get("validation") or loaded.get("eval")
    stats.train_rows = len(loaded["train"]) if "train" in loaded else 0
    return DatasetSplits(loaded.get("train"), eval_split, stats, plan.template)


def _save_tokenized(path: Path, result: DatasetSplits) -> None:
    from datasets import DatasetDict

    parts = {"train": result.train} if result.train is not None else {}
    if isinstance(result.eval, dict):
        parts.update({f"eval-{k}": v for k, v in result.eval.items()})
    elif result.eval is not None:
        parts["validation"] = result.eval
    DatasetDict(parts).save_to_disk(str(path))
    logger.info("Tokenized dataset saved to %s; later runs with tokenized_path load it directly.", path)
