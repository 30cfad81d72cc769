"""Quantized exports: GPTQ (2/3/4/8 bits) through the `gptqmodel` library on a CUDA GPU.

`check_export_quantization(cfg)` runs before any model is loaded, so a missing GPU, library or calibration
dataset is reported at once with what to do. Exporting a bitsandbytes-quantized base (`quantization_bit`
without adapters) is handled by the loader; merging adapters into such a base is refused in `merge.py`.
"""

from __future__ import annotations

import importlib.util
import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import TuneforgeError

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

logger = logging.getLogger(__name__)

GPTQ_BITS = (2, 3, 4, 8)


def check_export_quantization(cfg: TuneforgeConfig, *, cuda: bool | None = None) -> None:
    """Refuse an export quantization this machine or config cannot do, naming the key and the fix."""
    e = cfg.export
    bits = e.export_quantization_bit
    if bits is None:
        return
    if bits not in GPTQ_BITS:
        raise TuneforgeError(f"`export_quantization_bit: {bits}` is not supported by GPTQ; use 2, 3, 4 or 8.")
    if e.export_format == "gguf":
        raise TuneforgeError(
            "`export_quantization_bit` (GPTQ) does not apply to `export_format: gguf`; pick a GGUF weight type "
            "with `export_gguf_type: q8_0` or `q4_0` instead."
        )
    if not e.export_quantization_dataset:
        raise TuneforgeError(
            f"`export_quantization_bit: {bits}` needs calibration text: set `export_quantization_dataset` to a "
            "dataset registered in dataset_info.json (e.g. c4_demo) or a local file whose rows have a `text` field."
        )
    if not (_cuda() if cuda is None else cuda):
        raise TuneforgeError(
            f"`export_quantization_bit: {bits}` (GPTQ) needs a CUDA GPU and this machine has none. Export "
            "unquantized (remove `export_quantization_bit`) and quantize on a GPU machine; on this machine, "
            "`quantization_bit: 4` or `8` (without adapters) exports a bitsandbytes-quantized model, and "
            "`export_format: gguf` with `export_gguf_type: q8_0` / `q4_0` a GGUF one."
        )
    if importlib.util.find_spec("gptqmodel") is None:
        raise TuneforgeError(
            f"`export_quantization_bit: {bits}` needs the `gptqmodel` package: pip install 'tuneforge[quantize]' "
            "(it builds CUDA kernels; see its README for the torch/CUDA versions it supports)."
        )


def calibration_samples(
    source: str, tokenizer: Any, nsamples: int, maxlen: int, seed: int = 42, dataset_dir: str = "data"
) -> list[dict]:
    """`nsamples` random windows of at most `maxlen` tokens from the calibration texts `source` names."""
    texts = calibration_texts(source, dataset_dir)
    rng = random.Random(seed)
    samples = []
    for _ in range(nsamples):
        ids = tokenizer(rng.choice(texts), add_special_tokens=False)["input_ids"]
        start = rng.randint(0, max(len(ids) - maxlen, 0))
        window = ids[start : start + maxlen]
        samples.append({"input_ids": window, "attention_mask": [1] * len(window)})
    return samples


def calibration_texts(source: str, dataset_dir: str) -> list[str]:
    """The `text` rows of a local data file, or of a dataset registered in `dataset_dir/dataset_info.json`
    (its `columns.prompt` column, `text` when unmapped; e.g. LLaMA-Factory's `c4_demo`)."""
    from tuneforge.data.loading import FILE_TYPES, read_dataset, read_file
    from tuneforge.data.registry import resolve_datasets
    from tuneforge.data.report import RowReport

    where = f"`export_quantization_dataset: {source}`"
    if Path(source).is_file():
        if Path(source).suffix.lower() not in FILE_TYPES:
            raise TuneforgeError(f"{where}: cannot read {source}; use one of {', '.join(sorted(FILE_TYPES))}.")
        rows, column = [row for _, row in read_file(Path(source), source, RowReport())], "text"
    else:
        try:
            (attr,) = resolve_datasets(source, dataset_dir)
        except (TuneforgeError, ValueError) as err:
            raise TuneforgeError(f"{where}: not a file, nor one registered dataset: {err}") from err
        rows, column = read_dataset(attr, RowReport()).rows, attr.column("prompt") or "text"
    texts = [row[column] for row in rows if isinstance(row.get(column), str) and row[column]]
    if not texts:
        raise TuneforgeError(f"{where} has no rows with a non-empty `{column}` field.")
    return texts


def quantize_gptq(merged_dir: Path, out_dir: Path, cfg: TuneforgeConfig, tokenizer: Any) -> None:
    """GPTQ-quantize the merged model in `merged_dir` into `out_dir` with the export settings."""
    from gptqmodel import GPTQModel, QuantizeConfig

    e = cfg.export
    samples = calibration_samples(
        e.export_quantization_dataset,
        tokenizer,
        e.export_quantization_nsamples,
        e.export_quantization_maxlen,
        dataset_dir=cfg.data.dataset_dir,
    )
    logger.info("GPTQ %d-bit quantization on %d calibration samples", e.export_quantization_bit, len(samples))
    model = GPTQModel.load(str(merged_dir), QuantizeConfig(bits=e.export_quantization_bit, group_size=128))
    model.quantize(samples, batch_size=1)
    model.save(str(out_dir))
    tokenizer.save_pretrained(out_dir)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
