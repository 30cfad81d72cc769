"""Write a model folder transformers can load: sharded weights + index, config, generation config, tokenizer.

`staged_dir(final)` gives the atomic-publish discipline every export format uses: files go to a hidden
temporary folder beside `final`, which is renamed into place only when everything is written, so a killed
export never leaves a folder that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.config.require import require
from tuneforge.errors import TuneforgeError
from tuneforge.files import fsync_dir

if TYPE_CHECKING:
    import torch

SAFE_NAME, SAFE_INDEX = "model.safetensors", "model.safetensors.index.json"
BIN_NAME, BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
VALUE_HEAD_FILES = ("value_head.safetensors", "value_head.bin")
STAGING_MARK = ".tuneforge-export-"


# ---- atomic output folder ------------------------------------------------------------------------------------


def check_export_dir(export_dir: str | None, overwrite: bool) -> Path:
    """The export folder as a Path; refuses a missing key or an existing non-empty folder (unless overwriting)."""
    require(export_dir, "export_dir")
    path = Path(export_dir)
    if path.exists() and not path.is_dir():
        raise TuneforgeError(f"`export_dir: {export_dir}` is a file; name a folder.")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise TuneforgeError(
            f"`export_dir: {export_dir}` exists and is not empty; choose another folder or set "
            "`overwrite_output_dir: true` to replace it."
        )
    return path


@contextlib.contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; on success it replaces `final`, on any error it is removed."""
    final = final.resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    clear_stale_staging(final)
    staging = final.parent / f"{STAGING_MARK}{final.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        _publish(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def clear_stale_staging(final: Path) -> None:
    """Remove temporary folders that a killed export of `final` left behind."""
    for leftover in final.parent.glob(f"{STAGING_MARK}{final.name}-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _publish(staging: Path, final: Path) -> None:
    old = final.parent / f"{STAGING_MARK}{final.name}-old-{os.getpid()}"
    if final.exists():
        final.rename(old)
    staging.rename(final)
    fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


# ---- weights -------------------------------------------------------------------------------------------------


def unique_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """The model's tensors, tied duplicates (e.g. lm_head tied to the embeddings) kept once, contiguous, on CPU."""
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    out = {}
    for name, tensor in model.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            continue
        seen.add(key)
        out[name] = tensor.detach().to("cpu").contiguous()
    return out


def plan_shards(sizes: dict[str, int], max_bytes: int) -> list[list[str]]:
    """Group tensor names into shards of at most `max_bytes` (a tensor larger than that gets its own shard)."""
    shards: list[list[str]] = [[]]
    used = 0
    for name, size in sizes.items():
        if shards[-1] and used + size > max_bytes:
            shards.append([])
            used = 0
        shards[-1].append(name)
        used += size
    return shards


def write_weights(tensors: dict[str, torch.Tensor], out: Path, max_shard_gb: float, legacy: bool = False) -> list[Path]:
    """Write `tensors` as shards of at most `max_shard_gb` GB (safetensors, or .bin when `legacy`) + index."""
    from tqdm.auto import tqdm

    sizes = {name: t.numel() * t.element_size() for name, t in tensors.items()}
    shards = plan_shards(sizes, int(max_shard_gb * 1e9))
    single, index_name = (BIN_NAME, BIN_INDEX) if legacy else (SAFE_NAME, SAFE_INDEX)
    stem, ext = single.rsplit(".", 1)
    names = (
        [single]
        if len(shards) == 1
        else [f"{stem}-{i:05d}-of-{len(shards):05d}.{ext}" for i in range(1, len(shards) + 1)]
    )
    weight_map = {}
    for file_name, shard in tqdm(list(zip(names, shards, strict=True)), desc="Writing weight shards", unit="shard"):
        _save_shard({n: tensors[n] for n in shard}, out / file_name, legacy)
        weight_map.update(dict.fromkeys(shard, file_name))
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(sizes.values())}, "weight_map": weight_map}
        (out / index_name).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return [out / n for n in names]


def _save_shard(tensors: dict[str, torch.Tensor], path: Path, legacy: bool) -> None:
    if legacy:
        import torch

        torch.save(tensors, path)
        return
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata={"format": "pt"})


# ---- config, generation config, tokenizer, value head --------------------------------------------------------


def write_model_config(model: Any, out: Path, dtype: torch.dtype) -> None:
    """config.json with the exported dtype and the KV cache on (training may have turned it off)."""
    config = model.config
    config.use_cache = True
    config.dtype = dtype
    config.save_pretrained(out)


def write_generation_config(model: Any, out: Path, stop_ids: list[int], pad_id: int | None) -> None:
    """generation_config.json whose eos_token_id lists the template's stop tokens, so generation ends per turn."""
    from transformers import GenerationConfig

    gen = getattr(model, "generation_config", None) or GenerationConfig.from_model_config(model.config)
    gen.eos_token_id = stop_ids[0] if len(stop_ids) == 1 else list(stop_ids)
    if pad_id is not None:
        gen.pad_token_id = pad_id
    gen.save_pretrained(out)


def write_tokenizer(tokenizer: Any, out: Path, chat_template: str | None) -> None:
    """The tokenizer files, carrying `chat_template` (the training template as Jinja) when given."""
    if chat_template:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(out)


def copy_value_head(sources: list[str], out: Path) -> Path | None:
    """Copy a reward model's value head found beside the last adapter (or the base model) into `out`."""
    for folder in reversed(sources):
        for name in VALUE_HEAD_FILES:
            path = Path(folder) / name
            if path.is_file():
                shutil.copy2(path, out / name)
                return out / name
    return None
