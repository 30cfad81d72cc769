"""Helpers for the multimodal tests: LLaMA-Factory-style image and video datasets written to a folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# How the learning tests train a tiny VLM: full fine-tuning (vision tower and projector frozen, as by default)
LEARNING_RECIPE = {
    "finetuning_type": "full",
    "learning_rate": 1e-2,
    "lr_scheduler_type": "constant",
    "per_device_train_batch_size": 6,
    "max_steps": 30,
}
_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}


def write_media_dataset(folder: Path, rows: list[dict[str, Any]], name: str = "mm", kind: str = "images") -> Path:
    """A sharegpt dataset `name` with role/content tags and an `images` (or `kind`) column, registered in `folder`
    (beside the datasets registered there already)."""
    (folder / f"{name}.json").write_text(json.dumps(rows))
    entry = {"file_name": f"{name}.json", "formatting": "sharegpt", "tags": _TAGS}
    entry["columns"] = {"messages": "messages", kind: kind}
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


def row(question: str, answer: str, images: list[Any], kind: str = "images") -> dict[str, Any]:
    """A one-turn row with role/content messages and its image (or `kind`) paths."""
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages, kind: images}


def clip_file(path: Path, frames: list[Any], fps: int = 2) -> Path:
    """An MPEG-4 video of `frames` (RGB uint8 arrays of one even size) at `fps` frames per second, made with PyAV."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def square_frames(
    colours: list[tuple[int, int, int]], size: int = 56, box: tuple[int, int, int] | None = None
) -> list[Any]:
    """One frame per colour: a white `size` x `size` frame with a square of that colour, in the middle (half the
    side) or at `box` = (x, y, side)."""
    import numpy as np

    x, y, side = box or (size // 4, size // 4, size // 2)
    frames = []
    for colour in colours:
        frame = np.full((size, size, 3), 255, dtype=np.uint8)
        frame[y : y + side, x : x + side] = colour
        frames.append(frame)
    return frames


def assert_matches_llamafactory(rows: Any, lf_rows: list[dict[str, Any]], tokenizer: Any) -> None:
    """Encoded rows equal LLaMA-Factory's (a fixture's rows) except for the differences README lists: LF adds a
    newline after the last end of turn and trains the newline after each earlier one."""
    assert rows.num_rows == len(lf_rows)
    newline, end = tokenizer.convert_tokens_to_ids(["Ċ", "<|im_end|>"])
    for ours, theirs in zip(rows, lf_rows, strict=True):
        size = len(ours["input_ids"])
        assert ours["input_ids"] == theirs["input_ids"][:size]
        assert tokenizer.decode(theirs["input_ids"][size:]) == "\n"
        for i, (label, lf_label) in enumerate(zip(ours["labels"], theirs["labels"], strict=False)):
            if label != lf_label:  # only LF's trained separator after an earlier end of turn
                assert (label, lf_label, theirs["input_ids"][i - 1]) == (-100, newline, end), i


def held_out_answers(model_dir: Path, cfg: Any) -> tuple[list[str], list[str]]:
    """(expected, generated) answers of the rows of `cfg`'s dataset, through tuneforge's data path and media collator
    (left padding) and plain `generate` of the trained folder `model_dir` (3 new tokens, greedy)."""
    import torch
    from transformers import AutoModelForImageTextToText

    from tuneforge.data.collate import PaddingCollator
    from tuneforge.data.media import media_collator
    from tuneforge.data.pipeline import prepare_dataset
    from tuneforge.models.loader import load_tokenizer

    tokenizer = load_tokenizer(cfg)
    splits = prepare_dataset(cfg, tokenizer, kind="unsupervised")
    left = PaddingCollator(tokenizer.pad_token_id, padding_side="left")
    batch = media_collator(cfg.model, tokenizer, splits.template, left)([r for r in splits.train])
    expected = [tokenizer.decode(r["labels"], skip_special_tokens=True).strip() for r in splits.train]
    batch.pop("labels")
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    with torch.no_grad():
        generated = model.generate(**batch, max_new_tokens=3, do_sample=False)
    answers = tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    return expected, [a.strip() for a in answers]


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
