"""Helpers for the multimodal tests: LLaMA-Factory-style image and audio datasets written to a folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}


def write_media_dataset(folder: Path, rows: list[dict[str, Any]], name: str = "mm", kind: str = "images") -> Path:
    """A sharegpt dataset `name` with role/content tags and a `kind` media column, registered in `folder`."""
    (folder / f"{name}.json").write_text(json.dumps(rows))
    entry = {"file_name": f"{name}.json", "formatting": "sharegpt", "tags": _TAGS}
    entry["columns"] = {"messages": "messages", kind: kind}
    (folder / "dataset_info.json").write_text(json.dumps({name: entry}))
    return folder


def square_image(path: Path, colour: tuple[int, int, int], size: int = 56) -> None:
    """A white `size` x `size` PNG with a coloured square in the middle."""
    from PIL import Image

    image = Image.new("RGB", (size, size), (255, 255, 255))
    image.paste(colour, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def row(question: str, answer: str, images: list[str], kind: str = "images") -> dict[str, Any]:
    """A one-turn row with role/content messages and its media paths (images unless `kind` says otherwise)."""
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages, kind: images}


def tone(path: Path, hertz: float, seconds: float = 0.5, rate: int = 16000, channels: int = 1) -> Path:
    """A sine tone written as a sound file (the format from the suffix: .wav, .flac, ...)."""
    import numpy as np
    import soundfile

    samples = 0.5 * np.sin(2 * np.pi * hertz * np.arange(int(seconds * rate)) / rate).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.stack([samples] * channels, axis=1), rate)
    return path


def assert_matches_lf(rows: Any, fixture_rows: list[dict[str, Any]], tokenizer: Any) -> None:
    """tuneforge's encoded rows equal LLaMA-Factory's, but for the README-listed newline after each end of turn
    (LF trains it after an earlier turn and adds it after the last)."""
    newline, end = tokenizer.convert_tokens_to_ids(["Ċ", "<|im_end|>"])
    assert rows.num_rows == len(fixture_rows)
    for ours, theirs in zip(rows, fixture_rows, strict=True):
        size = len(ours["input_ids"])
        assert ours["input_ids"] == theirs["input_ids"][:size]
        assert tokenizer.decode(theirs["input_ids"][size:]) == "\n"
        for i, (label, lf_label) in enumerate(zip(ours["labels"], theirs["labels"], strict=False)):
            if label != lf_label:  # only LF's trained separator after an earlier end of turn
                assert (label, lf_label, theirs["input_ids"][i - 1]) == (-100, newline, end), i
