"""Quantized exports: GPTQ (2/3/4/8 bits) through the `gptqmodel` library on a CUDA GPU.

`check_export_quantization(cfg)` runs before any model is loaded, so a missing GPU, library or calibration
dataset is reported at once with what to do. Exporting a bitsandbytes-quantized base (`quantization_bit`
without adapters) is handled by the loader; merging adapters into such a base is refused in `merge.py`.
"""

from __future__ import annotations

import importlib.util
import json
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
            "local .json/.jsonl file whose rows have a `text` field (e.g. data/c4_demo.jsonl)."
        )
    if not (_cuda() if cuda is None else cuda):
        raise TuneforgeError(
            f"`export_quantization_bit: {bits}` (GPTQ) needs a CUDA GPU and this machine has none. Export "
            "unquantized (remove `export_quantization_bit`) and quantize on a GPU machine, or use "
            "`export_format: gguf` with `export_gguf_type: q8_0` / `q4_0` for CPU-friendly quantization."
        )
    if importlib.util.find_spec("gptqmodel") is None:
        raise TuneforgeError(
            f"`export_quantization_bit: {bits}` needs the `gptqmodel` package: pip install 'tuneforge[quantize]' "
            "(it builds CUDA kernels; see its README for the torch/CUDA versions it supports)."
        )


def calibration_samples(path: str, tokenizer: Any, nsamples: int, maxlen: int, seed: int = 42) -> list[dict]:
    """`nsamples` random windows of at most `maxlen` tokens from the `text` rows of a local json/jsonl file."""
    texts = _read_texts(Path(path))
    rng = random.Random(seed)
    samples = []
    for _ in range(nsamples):
        ids = tokenizer(rng.choice(texts), add_special_tokens=False)["input_ids"]
        start = rng.randint(0, max(len(ids) - maxlen, 0))
        window = ids[start : start + maxlen]
        samples.append({"input_ids": window, "attention_mask": [1] * len(window)})
    return samples


def _read_texts(path: Path) -> list[str]:
    if not path.is_file():
        raise TuneforgeError(f"`export_quantization_dataset: {path}` is not a file; name a local .json or .jsonl file.")
    raw = path.read_text(encoding="utf-8")
    rows = (
        [json.loads(line) for line in raw.splitlines() if line.strip()] if path.suffix == ".jsonl" else json.loads(raw)
    )
    texts = [row["text"] for row in rows if isinstance(row, dict) and isinstance(row.get("text"), str) and row["text"]]
    if not texts:
        raise TuneforgeError(f"`export_quantization_dataset: {path}` has no rows with a non-empty `text` field.")
    return texts


def quantize_gptq(merged_dir: Path, out_dir: Path, cfg: TuneforgeConfig, tokenizer: Any) -> None:
    """GPTQ-quantize the merged model in `merged_dir` into `out_dir` with the export settings."""
    from gptqmodel import GPTQModel, QuantizeConfig

    e = cfg.export
    samples = calibration_samples(
        e.export_quantization_dataset, tokenizer, e.export_quantization_nsamples, e.export_quantization_maxlen
    )
    logger.info("GPTQ %d-bit quantization on %d calibration samples", e.export_quantization_bit, len(samples))
    model = GPTQModel.load(str(merged_dir), QuantizeConfig(bits=e.export_quantization_bit, group_size=128))
    model.quantize(samples, batch_size=1)
    model.save(str(out_dir))
    tokenizer.save_pretrained(out_dir)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
