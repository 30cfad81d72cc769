"""Images, videos and audios in LLaMA-Factory's dataset format, for multimodal models.

A row names its media in `images` / `videos` / `audios` columns (a list of paths, or one path) and marks where
each goes with `<image>` / `<video>` / `<audio>` in the message text. `attach_media` resolves the paths against
`media_dir` (default `dataset_dir`; a path that is not found there is kept as written, as LLaMA-Factory does),
checks per row that every file exists and that the marks match the files, and replaces each mark with the
model's own media tokens (`MediaPlugin.expand`, from the template's plugin in `data/mm/`: for Qwen2-VL
`<|vision_start|>` + one `<|image_pad|>` per merged patch + `<|vision_end|>`). The encoded rows keep the
resolved paths in their media columns; `MediaCollator` turns them per batch into the model's tensors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.data.convert import RowError
from tuneforge.data.loading import RawRows
from tuneforge.data.mm import MediaPlugin, MediaSettings, build_plugin
from tuneforge.data.mm.video import frames_value
from tuneforge.data.registry import DatasetAttr
from tuneforge.data.report import RowReport
from tuneforge.extras import require

if TYPE_CHECKING:
    from tuneforge.config.model import ModelSection

MEDIA_KINDS = ("images", "videos", "audios")
MARKS = {"images": "<image>", "videos": "<video>", "audios": "<audio>"}


def media_columns(attr: DatasetAttr) -> list[str]:
    """The media kinds (`images`, `videos`, `audios`) a dataset entry maps to columns."""
    return [kind for kind in MEDIA_KINDS if attr.columns.get(kind)]


def plugin_for_run(template: Any, model: ModelSection) -> MediaPlugin:
    """The media plugin of the run's template, sized by its model section's media limits."""
    return build_plugin(template, model.model_name_or_path, MediaSettings.from_model(model))


def media_tokens(plugin: MediaPlugin, tokenizer: Any) -> tuple[tuple[str, int], ...]:
    """(text, id) of every token the plugin counts as a media placeholder in the tokenizer's vocabulary."""
    import torch

    plugin.bind(tokenizer)
    ids = torch.arange(len(tokenizer))
    chosen = ids[plugin.token_inputs(ids)[0]].tolist()
    return tuple(zip(tokenizer.convert_ids_to_tokens(chosen), chosen, strict=True))


def attach_media(
    raw: RawRows, examples: RawRows, attr: DatasetAttr, root: Path, plugin: MediaPlugin, report: RowReport
) -> RawRows:
    """Examples with their media paths resolved and `<image>` marks expanded; bad rows go to `report`."""
    kinds = media_columns(attr)
    if "videos" in kinds:
        require("av", "a dataset with videos")
    by_number = dict(zip(raw.numbers, raw.rows, strict=True))
    rows, numbers = [], []
    for number, example in zip(examples.numbers, examples.rows, strict=True):
        try:
            media = {kind: _paths(by_number[number], attr.column(kind), kind, root) for kind in kinds}
            rows.append(_expanded(example, media, plugin))
        except RowError as err:
            report.bad(examples.name, number, str(err))
            continue
        numbers.append(number)
    return RawRows(examples.name, rows, numbers)


def _paths(row: dict[str, Any], column: str | None, kind: str, root: Path) -> list[str]:
    value = row.get(column) if column else None
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    return [
        _frames(v, column, root) if isinstance(v, list) and kind == "videos" else _path_of(v, column, kind, root)
        for v in values
    ]


def _frames(frames: list[Any], column: str | None, root: Path) -> str:
    """A video given as a list of frame image files, as one media value (see `data/mm/video.py`)."""
    if not frames:
        raise RowError(f"column {column!r} (videos): each video is a file or a non-empty list of frame image files")
    return frames_value([_path_of(f, column, "frames", root) for f in frames])


def _path_of(value: Any, column: str | None, kind: str, root: Path) -> str:
    """A media value as a local file: a path as written, or embedded bytes (a Parquet / Hugging Face `Image`
    column holds `{"bytes": ..., "path": ...}`) stored once under the media cache, as LLaMA-Factory reads them."""
    if isinstance(value, dict) and value.get("bytes") is not None:
        value = value["bytes"]
    elif isinstance(value, dict) and isinstance(value.get("path"), str):
        value = value["path"]
    if isinstance(value, bytes | bytearray):
        return store_embedded(bytes(value))
    if not isinstance(value, str):
        raise RowError(
            f"column {column!r} ({kind}) should hold paths, or embedded files ({{bytes, path}}), not "
            f"{type(value).__name__}"
        )
    return _resolve(value, root, kind)


def store_embedded(data: bytes) -> str:
    """Embedded media bytes as a file named by their SHA-256 in the media cache (written once, atomically)."""
    import hashlib
    import tempfile

    from tuneforge.data.cache import cache_root

    folder = cache_root() / "media"
    path = folder / hashlib.sha256(data).hexdigest()
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".part-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    return str(path)


def _resolve(path: str, root: Path, kind: str) -> str:
    if path.startswith(("http://", "https://", "data:")):
        raise RowError(
            f"{kind} {path[:60]!r}: a dataset names local files (or embeds their bytes); URLs and base64 text are "
            "not read, as in LLaMA-Factory: download the file and give its path"
        )
    under_root = root / path
    if under_root.is_file():
        return str(under_root)
    if os.path.isfile(path):
        return os.path.abspath(path)
    raise RowError(f"{kind[:-1]} file {path!r} not found (looked in {root} and the working folder)")


def _expanded(example: dict[str, Any], media: dict[str, list[str]], plugin: MediaPlugin) -> dict[str, Any]:
    return {**example, "messages": expand_marks(example["messages"], media, plugin), **media}


def expand_marks(messages: list[dict[str, Any]], media: dict[str, list[str]], plugin: MediaPlugin) -> list[dict]:
    """`messages` with each `<image>`/`<video>`/`<audio>` mark replaced by the plugin's media tokens for the next
    file of its kind; RowError when the model does not take a kind or, for each kind in `media`, marks and files
    do not match in number."""
    for kind, paths in media.items():
        if paths and kind not in plugin.kinds:
            raise RowError(f"this model's media plugin takes {', '.join(plugin.kinds)}, not {kind}; remove the {kind}")
        marks = sum(m["content"].count(MARKS[kind]) for m in messages)
        if marks != len(paths):
            raise RowError(f"{marks} {MARKS[kind]} marks in the messages but {len(paths)} {kind} in the row")
    texts = {kind: [plugin.expand(kind, p) for p in paths] for kind, paths in media.items()}
    out = []
    for message in messages:
        content = message["content"]
        for kind, pending in texts.items():  # one pass: LLaVA's image token is the mark itself
            head, *rest = content.split(MARKS[kind])
            content = head + "".join(pending.pop(0) + text for text in rest)
        out.append({**message, "content": content})
    return out


@dataclass
class MediaCollator:
    """Wraps a text collator: adds the batch's media tensors and the plugin's per-token inputs (e.g.
    `mm_token_type_ids`), and keeps media tokens out of the loss.

    Preference batches work too: a pairwise batch (chosen rows, then rejected rows) gets each row's media twice,
    in that order; a KTO batch's mismatched completions (`kl_` rows, each the same prompt with another response)
    share the media of their prompts and get their own `kl_` per-token inputs."""

    text: Any
    plugin: MediaPlugin

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        copies = 2 if features and "chosen_input_ids" in features[0] else 1
        media = {kind: [p for f in features for p in (f.get(kind) or [])] * copies for kind in MEDIA_KINDS}
        batch = self.text([{k: v for k, v in f.items() if k not in MEDIA_KINDS} for f in features])
        for prefix in ("", "kl_") if "kl_input_ids" in batch else ("",):
            is_media, per_token = self.plugin.token_inputs(batch[f"{prefix}input_ids"])
            batch.update({f"{prefix}{k}": v for k, v in per_token.items()})
            labels = batch.get(f"{prefix}labels")
            if labels is not None and labels.shape == is_media.shape:
                batch[f"{prefix}labels"] = labels.masked_fill(is_media, -100)
        batch.update(self.plugin.model_inputs(media))
        return batch


def media_collator(model: ModelSection, tokenizer: Any, template: Any, text_collator: Any) -> MediaCollator:
    """`text_collator` wrapped to add the media of each batch, for the model and template of the run."""
    plugin = plugin_for_run(template, model)
    plugin.bind(tokenizer)
    return MediaCollator(text_collator, plugin)


# an older processor keeps its chat template in chat_template.json (a newer one shares chat_template.jinja)
PROCESSOR_FILES = (
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "processor_config.json",
    "chat_template.json",
)


def copy_processor_files(model_path: str | None, out: Path) -> None:
    """Put the model's processor configs beside a trained model or adapter in `out` (as LLaMA-Factory saves the
    processor), so the output loads with its image processor like the base model."""
    import shutil

    if not model_path or not Path(model_path).is_dir():
        return
    for name in PROCESSOR_FILES:
        source = Path(model_path) / name
        if source.is_file():
            shutil.copyfile(source, out / name)


def with_media_columns(table: Any) -> Any:
    """`table` with `images`, `videos` and `audios` columns of string lists (empty where a row has none), last
    and in that order, so media and text datasets of any kinds mix."""
    import pyarrow as pa

    kind = pa.list_(pa.string())
    for name in MEDIA_KINDS:
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, table.column(name).cast(kind))
        else:
            table = table.append_column(name, pa.array([[]] * table.num_rows, type=kind))
    return table.select([c for c in table.column_names if c not in MEDIA_KINDS] + list(MEDIA_KINDS))
