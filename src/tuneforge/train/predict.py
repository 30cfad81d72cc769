"""Prediction with generation (`do_predict` + `predict_with_generate`), as LLaMA-Factory's sft workflow does it.

The prompts of the evaluation data (`eval_dataset`, else `dataset`) go through the data pipeline as unsupervised
rows (prompt ids, reference answer as labels), all of them are queued on the inference engine at once so it
batches them (`per_device_eval_batch_size` rows decode together), and the answers are written to
`output_dir/generated_predictions.jsonl` (`prompt`, `predict`, `label`) with `predict_results.json` beside it.
Rows with images, videos or audios generate with them (their media tensors are made as rows are queued, a few
batches ahead of the engine, so they are never all in memory at once).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.train.callbacks import hms

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "generated_predictions.jsonl"
RESULTS_FILE = "predict_results.json"


def check_predict(cfg: TuneforgeConfig) -> None:
    """Refuse prediction settings that cannot work, naming the keys to change."""
    if cfg.method.stage != "sft":
        raise ConfigError(
            f"`do_predict` generates answers for `stage: sft` only, not `stage: {cfg.method.stage}`; "
            "remove `do_predict` or set `stage: sft`."
        )
    if not cfg.training.predict_with_generate:
        raise ConfigError(
            "`do_predict: true` needs `predict_with_generate: true` (prediction generates answers and scores "
            "them against the references); set both, or remove `do_predict`."
        )
    if not cfg.training.output_dir:
        raise ConfigError("`output_dir` is not set; name the folder that receives generated_predictions.jsonl.")
    from tuneforge.eval.text_metrics import require_metric_packages

    require_metric_packages()


def predict_config(cfg: TuneforgeConfig) -> TuneforgeConfig:
    """The config to generate with: after training, the trained adapter or model in `output_dir`."""
    pcfg = cfg.model_copy(deep=True)
    if cfg.data.eval_dataset:  # only the evaluation data is predicted; the training set is not processed again
        pcfg.data.dataset, pcfg.data.val_size = None, 0.0
    if not cfg.training.do_train:
        return pcfg
    out = str(cfg.training.output_dir)
    if cfg.method.finetuning_type in ("lora", "oft"):
        earlier = cfg.model.adapters  # already inside `adapter_folder`; the trained adapter in `out` is not
        kept = earlier if cfg.method.create_new_adapter else earlier[:-1]  # the last one was trained further
        pcfg.model.adapter_name_or_path = ",".join([*kept, out])
        pcfg.model.adapter_folder = None
    else:
        pcfg.model.model_name_or_path = out
        pcfg.model.adapter_name_or_path = None
    return pcfg


def prediction_rows(cfg: TuneforgeConfig, tokenizer: Any) -> Any:
    """Unsupervised rows (input_ids = prompt, labels = reference) of the evaluation data, else the dataset."""
    from datasets import concatenate_datasets

    from tuneforge.data.pipeline import prepare_dataset

    splits = prepare_dataset(cfg, tokenizer, kind="unsupervised")
    rows = splits.eval if splits.eval is not None else splits.train
    if isinstance(rows, dict):
        rows = concatenate_datasets(list(rows.values()))
    if rows is None or len(rows) == 0:
        raise TuneforgeError("No rows to predict: set `eval_dataset` (or `dataset`) to data with prompts.")
    return rows


def generate_all(
    engine: Any, prompts: list[list[int]], progress: Any = None, media: list[dict[str, list[str]]] | None = None
) -> list[str]:
    """The engine's answer to every prompt, queued so the engine batches them; order kept.

    `media`: each prompt's media files per kind (its marks already expanded, as in dataset rows); prompts with
    media are queued a few batches ahead of the engine rather than all at once, to bound the tensors held.
    """
    from tuneforge.infer.requests import Failed, Finished

    params = engine.sampling()
    texts: list[list[str]] = [[] for _ in prompts]
    errors: list[BaseException] = []
    done = threading.Semaphore(0)

    def sink(index: int) -> Any:
        def emit(event: Any) -> None:
            if isinstance(event, Failed):
                errors.append(event.error)
            if isinstance(event, (Finished, Failed)):
                done.release()
            else:
                texts[index].append(event.text)

        return emit

    queued = iter(range(len(prompts)))

    def submit_next() -> None:
        index = next(queued, None)
        if index is not None:
            files = media[index] if media else None
            engine.submit(prompts[index], params, sink(index), engine.media_inputs(files) if files else None)

    ahead = len(prompts) if not media else 4 * getattr(engine.backend, "max_batch_size", 1)
    for _ in range(ahead):
        submit_next()
    for finished in range(1, len(prompts) + 1):
        done.acquire()
        submit_next()
        if progress is not None:
            progress(finished, len(prompts))
    if errors:
        raise errors[0]
    return ["".join(parts) for parts in texts]


def run_predict(cfg: TuneforgeConfig) -> dict[str, Any]:
    """Generate answers for the evaluation prompts and write predictions and metrics to `output_dir`."""
    from tuneforge.infer import load_engine
    from tuneforge.models.loader import load_tokenizer

    check_predict(cfg)
    pcfg = predict_config(cfg)
    rows = prediction_rows(pcfg, load_tokenizer(pcfg))
    pcfg.server.max_batch_size = max(1, cfg.training.per_device_eval_batch_size)
    pcfg.server.max_queue_size = max(pcfg.server.max_queue_size, len(rows))  # every prompt is queued at once
    engine = load_engine(pcfg)
    try:
        start = time.perf_counter()
        progress = ProgressLog(Path(str(cfg.training.output_dir)))
        predictions = generate_all(engine, [list(ids) for ids in rows["input_ids"]], progress, row_media(rows))
        runtime = time.perf_counter() - start
    finally:
        engine.close()
    out = Path(str(cfg.training.output_dir))
    out.mkdir(parents=True, exist_ok=True)
    records = prediction_records(engine.tokenizer, rows, predictions)
    write_predictions(out / PREDICTIONS_FILE, records)
    metrics = predict_metrics(records, runtime)
    (out / RESULTS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    logger.info("Predictions written to %s; metrics to %s", out / PREDICTIONS_FILE, out / RESULTS_FILE)
    return metrics


def row_media(rows: Any) -> list[dict[str, list[str]]] | None:
    """Each row's media files per kind (None when no row has media)."""
    from tuneforge.data.media import MEDIA_KINDS

    kinds = [kind for kind in MEDIA_KINDS if kind in rows.column_names]
    if not kinds:
        return None
    columns = {kind: rows[kind] for kind in kinds}
    media = [{kind: list(columns[kind][i] or []) for kind in kinds} for i in range(len(rows))]
    return media if any(any(files.values()) for files in media) else None


class ProgressLog:
    """Logs prediction progress and appends it to `trainer_log.jsonl` (as LF does), where the web UI reads it."""

    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.path, self.start = out / "trainer_log.jsonl", time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.perf_counter() - self.start
        if done == total or done % max(1, total // 10) == 0:
            logger.info("Predicted %d/%d rows", done, total)
        record = {
            "current_steps": done,
            "total_steps": total,
            "percentage": round(100 * done / total, 2),
            "elapsed_time": hms(elapsed),
            "remaining_time": hms(elapsed / done * (total - done)),
        }
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def prediction_records(tokenizer: Any, rows: Any, predictions: list[str]) -> list[dict[str, str]]:
    """One `{"prompt", "predict", "label"}` dict per row (prompt keeps its special tokens, as LF writes it)."""
    prompts = tokenizer.batch_decode(list(rows["input_ids"]), skip_special_tokens=False)
    labels = tokenizer.batch_decode([[i for i in ids if i >= 0] for ids in rows["labels"]], skip_special_tokens=True)
    return [
        {"prompt": prompt, "predict": predict, "label": label}
        for prompt, predict, label in zip(prompts, predictions, labels, strict=True)
    ]


def write_predictions(path: Path, records: list[dict[str, str]]) -> None:
    """Write one JSON object per line (UTF-8, non-ASCII kept readable)."""
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def predict_metrics(records: list[dict[str, str]], runtime: float) -> dict[str, float]:
    """Runtime, throughput and the averaged BLEU-4 / ROUGE scores (as LF computes them), under LF's names."""
    from tuneforge.eval.text_metrics import average_scores

    scores = average_scores([r["predict"] for r in records], [r["label"] for r in records])
    metrics = {f"predict_{name}": round(value, 4) for name, value in scores.items()}
    metrics["predict_runtime"] = round(runtime, 4)
    metrics["predict_samples_per_second"] = round(len(records) / runtime, 3) if runtime > 0 else 0.0
    return metrics
