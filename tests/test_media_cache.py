"""The data cache and media files: rows name images by path, so a replaced image must not reuse stale tokens."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from media_helpers import row, square_image, write_media_dataset
from train_helpers import tiny_config

PAD = 151655  # <|image_pad|>


def prepare(model: Path, folder: Path) -> Any:
    from tuneforge.data.pipeline import prepare_dataset
    from tuneforge.models.loader import load_tokenizer

    options = {"template": "qwen2_vl", "dataset": "mm", "dataset_dir": str(folder), "cache_dir": str(folder / "c")}
    cfg = tiny_config(model, folder / "out", cutoff_len=512, **options)
    return prepare_dataset(cfg, load_tokenizer(cfg))


def test_a_replaced_image_is_encoded_again(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    square_image(tmp_path / "a.png", (255, 0, 0), size=56)
    write_media_dataset(tmp_path, [row("<image>Colour?", "red", ["a.png"])])
    first = prepare(tiny_qwen2_vl, tmp_path)
    assert first.train[0]["input_ids"].count(PAD) == 4 and not first.stats.cache_hit
    assert prepare(tiny_qwen2_vl, tmp_path).stats.cache_hit  # nothing changed: the entry is reused
    stat = (tmp_path / "a.png").stat()
    square_image(tmp_path / "a.png", (255, 0, 0), size=112)  # same path, another size
    os.utime(tmp_path / "a.png", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old mtime
    again = prepare(tiny_qwen2_vl, tmp_path)
    assert not again.stats.cache_hit
    assert again.train[0]["input_ids"].count(PAD) == 16  # 112 px: 8x8 patches -> 16 tokens
    assert prepare(tiny_qwen2_vl, tmp_path).stats.cache_hit


def test_media_stamps_and_changes(tmp_path: Path) -> None:
    import pyarrow as pa

    from tuneforge.data.cache import media_changed, media_stamps

    (tmp_path / "x.png").write_bytes(b"abc")
    table = pa.table({"images": [[str(tmp_path / "x.png")], []], "videos": [[], []]})
    stamps = media_stamps({"train": table})
    assert list(stamps) == [str(tmp_path / "x.png")] and stamps[str(tmp_path / "x.png")][0] == 3
    assert not media_changed({"media": stamps}) and not media_changed({})
    (tmp_path / "x.png").unlink()
    assert media_changed({"media": stamps})


def test_recalled_stats_are_dropped_when_a_media_file_changed(tmp_path: Path) -> None:
    """`tuneforge data stats` without a tokenizer recalls an entry's meta: not once its images changed."""
    import pyarrow as pa

    from tuneforge.data import cache

    image = tmp_path / "x.png"
    image.write_bytes(b"abc")
    folder = tmp_path / "entry"
    tables = {"train": pa.table({"images": [[str(image)]]})}
    cache.save_entry(folder, tables, {"stats": {}, "media": cache.media_stamps(tables)})
    cache.remember(tmp_path, "quick", str(folder), [])
    assert cache.recall(tmp_path, "quick") is not None
    image.write_bytes(b"abcd")
    assert cache.recall(tmp_path, "quick") is None
