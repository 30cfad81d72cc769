"""Helpers for the multimodal tests: LLaMA-Factory-style image, audio and video datasets written to a folder."""

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
    """A sharegpt dataset `name` with role/content tags and a `kind` media column, registered in `folder` (beside
    the datasets registered there already)."""
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


PITCHES = {"low": (110.0, 330.0), "high": (1500.0, 3500.0)}  # Hz ranges of the two answers


def pitch_rows(folder: Path, n: int, seed: int) -> list[dict[str, Any]]:
    """n rows "Is the tone high or low?" over half-second tones of random pitch in the answer's range, loudness
    and phase (alternating low, high)."""
    import numpy as np
    import soundfile

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        answer = list(PITCHES)[i % 2]
        hertz, rate = rng.uniform(*PITCHES[answer]), 16000
        t = np.arange(int(rng.uniform(0.4, 0.6) * rate)) / rate
        samples = rng.uniform(0.2, 0.8) * np.sin(2 * np.pi * hertz * t + rng.uniform(0, 2 * np.pi))
        path = f"wav/{seed}_{i}.wav"
        (folder / "wav").mkdir(parents=True, exist_ok=True)
        soundfile.write(folder / path, samples.astype(np.float32), rate)
        rows.append(row("<audio>Is the tone high or low?", answer, [path], kind="audios"))
    return rows


def train_pitch_model(model: Path, folder: Path, steps: int = 30) -> Path:
    """Fully fine-tune the tiny Qwen2-Audio at `model` (audio encoder and projector frozen, as by default) on 48
    pitch rows written to `folder`; returns the trained model folder, which answers "high" or "low" for a tone.
    Reused by the audio learning test and any chat / API test of the trained model."""
    from train_helpers import tiny_config
    from tuneforge.train.sft import run_sft

    write_media_dataset(folder, pitch_rows(folder, 48, seed=0), name="train", kind="audios")
    out = folder / "out"
    cfg = tiny_config(
        model,
        out,
        template="qwen2_audio",
        dataset="train",
        dataset_dir=str(folder),
        cache_dir=str(folder / "cache"),
        finetuning_type="full",
        learning_rate=1e-2,
        lr_scheduler_type="constant",
        per_device_train_batch_size=6,
        max_steps=steps,
    )
    run_sft(cfg)
    return out


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


def media_part(kind: str, path: Path) -> dict[str, Any]:
    """An OpenAI content part carrying the file at `path` inline: an image as a data: URL, an audio as
    `input_audio`, a video as LF's `video_url` with a data: URL."""
    import base64

    data = base64.b64encode(path.read_bytes()).decode()
    if kind == "audios":
        return {"type": "input_audio", "input_audio": {"data": data, "format": path.suffix.lstrip(".")}}
    if kind == "videos":
        return {"type": "video_url", "video_url": {"url": f"data:video/{path.suffix.lstrip('.')};base64,{data}"}}
    return {"type": "image_url", "image_url": {"url": f"data:image/{path.suffix.lstrip('.')};base64,{data}"}}


def api_answers(
    model: Path, template: str, kind: str, files: list[Path], question: str, greedy: dict[str, Any]
) -> list[str]:
    """The API's answers for `question` about each file, the file sent inline as a content part before it."""
    from fastapi.testclient import TestClient

    from tuneforge.config import load_config
    from tuneforge.infer import load_engine
    from tuneforge.serve.app import create_app
    from tuneforge.serve.deps import ServerSettings

    engine = load_engine(load_config({"model_name_or_path": str(model), "template": template, **greedy}))
    answers = []
    with TestClient(create_app(engine, ServerSettings(model_name="mm"))) as client:
        for path in files:
            parts = [media_part(kind, path), {"type": "text", "text": question}]
            body = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": parts}]})
            assert body.status_code == 200, body.text
            answers.append(body.json()["choices"][0]["message"]["content"].strip())
    return answers


def chat_answers(
    model: Path, template: str, kind: str, files: list[Path], question: str, greedy: dict[str, Any]
) -> list[str]:
    """`tuneforge chat` answers: the first file through --image/--video/--audio, the others through the REPL's
    /image (/video, /audio) after `clear`."""
    import subprocess
    import sys

    flag = kind[:-1]
    overrides = [f"model_name_or_path={model}", f"template={template}", *(f"{k}={v}" for k, v in greedy.items())]
    script = "".join(f"clear\n/{flag} {path}\n{question}\n" for path in files[1:])
    result = subprocess.run(
        [sys.executable, "-m", "tuneforge.cli", "chat", *overrides, f"--{flag}", str(files[0])],
        input=f"{question}\n{script}exit\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [line.split("Assistant: ", 1)[1].strip() for line in result.stdout.splitlines() if "Assistant: " in line]


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


def prepare_media(model: Path, folder: Path, work: Path, template: str, dataset: str = "mm", **overrides: Any) -> Any:
    """The tokenized splits of `dataset` in `folder` with `template` (outputs and cache under `work`), and the
    config; cutoff 2048 unless overridden."""
    from train_helpers import tiny_config
    from tuneforge.data.pipeline import prepare_dataset
    from tuneforge.models.loader import load_tokenizer

    options = {"template": template, "dataset": dataset, "dataset_dir": str(folder), "cutoff_len": 2048}
    options["cache_dir"] = str(work / "cache")
    cfg = tiny_config(model, work / "out", **{**options, **overrides})
    return prepare_dataset(cfg, load_tokenizer(cfg)), cfg


def collate_rows(cfg: Any, splits: Any) -> dict[str, Any]:
    """All rows of the train split as one batch through the run's media collator."""
    from tuneforge.data.collate import PaddingCollator
    from tuneforge.data.media import media_collator
    from tuneforge.models.loader import load_tokenizer

    tokenizer = load_tokenizer(cfg)
    collate = media_collator(cfg.model, tokenizer, splits.template, PaddingCollator(tokenizer.pad_token_id))
    return collate(list(splits.train))
