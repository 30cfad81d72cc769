"""Helpers for the multimodal tests: LLaMA-Factory-style image datasets written to a folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}


def write_media_dataset(folder: Path, rows: list[dict[str, Any]], name: str = "mm") -> Path:
    """A sharegpt dataset `name` with role/content tags and an `images` column, registered in `folder` (beside the
    datasets registered there already)."""
    (folder / f"{name}.json").write_text(json.dumps(rows))
    entry = {"file_name": f"{name}.json", "formatting": "sharegpt", "tags": _TAGS}
    entry["columns"] = {"messages": "messages", "images": "images"}
    info = folder / "dataset_info.json"
    registry = json.loads(info.read_text()) if info.is_file() else {}
    info.write_text(json.dumps({**registry, name: entry}))
    return folder


def square_image(path: Path, colour: tuple[int, int, int], size: int = 56) -> None:
    """A white `size` x `size` PNG with a coloured square in the middle."""
    from PIL import Image

    image = Image.new("RGB", (size, size), (255, 255, 255))
    image.paste(colour, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def row(question: str, answer: str, images: list[str]) -> dict[str, Any]:
    """A one-turn row with role/content messages and its image paths."""
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages, "images": images}


def random_vlm_engine(model_dir: Path, template: str) -> Any:
    """An inference engine over a tiny vision-language model whose weights are redrawn large (std 0.5), so greedy
    answers depend on every token, image and position (the tiny models' own small weights answer one token)."""
    import torch

    from tuneforge.config import load_config
    from tuneforge.infer import load_engine

    engine = load_engine(load_config({"model_name_or_path": str(model_dir), "template": template}))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in engine.backend.model.parameters():
            if param.dim() > 1:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return engine
