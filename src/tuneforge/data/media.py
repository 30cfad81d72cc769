"""Images (and the slots for videos and audios) in LLaMA-Factory's dataset format, for vision-language models.

A row names its media in `images` / `videos` / `audios` columns (a list of paths, or one path) and marks where
each goes with `<image>` / `<video>` / `<audio>` in the message text. `attach_media` resolves the paths against
`media_dir` (default `dataset_dir`; a path that is not found there is kept as written, as LLaMA-Factory does),
checks per row that every file exists and that the marks match the files, and replaces each mark with the
model's own media tokens (`MediaPlugin.image_text`: for Qwen2-VL `<|vision_start|>` + one `<|image_pad|>` per
merged patch + `<|vision_end|>`, the count from the image processor for the image's size after
`image_max_pixels` / `image_min_pixels`). The encoded rows keep the resolved paths in an `images` column;
`MediaCollator` loads them per batch into `pixel_values` / `image_grid_thw` for the model.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.data.convert import RowError
from tuneforge.data.loading import RawRows
from tuneforge.data.registry import DatasetAttr
from tuneforge.data.report import RowReport
from tuneforge.errors import DataError

if TYPE_CHECKING:
    from tuneforge.config.model import ModelSection

MEDIA_KINDS = ("images", "videos", "audios")
MARKS = {"images": "<image>", "videos": "<video>", "audios": "<audio>"}
PLUGINS = ("qwen2_vl", "qwen3_vl")  # Qwen3-VL places images as Qwen2-VL does; other plugins are refused clearly
QWEN_MIN_SIDE = 28  # Qwen2-VL needs each side to hold one merged 2x2 block of 14-pixel patches


def media_columns(attr: DatasetAttr) -> list[str]:
    """The media kinds (`images`, `videos`, `audios`) a dataset entry maps to columns."""
    return [kind for kind in MEDIA_KINDS if attr.columns.get(kind)]


@dataclass(frozen=True)
class MediaOptions:
    """The settings that change media token counts or pixels (part of the data cache key)."""

    plugin: str
    image_token: str
    video_token: str
    image_max_pixels: int
    image_min_pixels: int
    vision_start: str = "<|vision_start|>"
    vision_end: str = "<|vision_end|>"


class MediaPlugin:
    """Media handling of one model family: token expansion while tokenizing, pixel tensors while collating."""

    def __init__(self, options: MediaOptions, image_processor: Any) -> None:
        self.options = options
        self.image_processor = image_processor

    def fingerprint(self) -> dict[str, Any]:
        """What decides token counts and pixels: the options and the image processor's settings."""
        from dataclasses import asdict

        return {"options": asdict(self.options), "processor": self.image_processor.to_dict()}

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """An image's size after LLaMA-Factory's `image_max_pixels` / `image_min_pixels` rescaling and the
        Qwen2-VL minimum side and aspect-ratio limits (the model's processor then fits it to its patch grid)."""
        o = self.options
        if width * height > o.image_max_pixels:
            width, height = _scaled(width, height, math.sqrt(o.image_max_pixels / (width * height)))
        if width * height < o.image_min_pixels:
            width, height = _scaled(width, height, math.sqrt(o.image_min_pixels / (width * height)))
        if min(width, height) < QWEN_MIN_SIDE:
            width, height = max(width, QWEN_MIN_SIDE), max(height, QWEN_MIN_SIDE)
        if width / height > 200:
            width = height * 180
        if height / width > 200:
            height = width * 180
        return width, height

    def image_tokens(self, width: int, height: int) -> int:
        """How many image tokens the model reads for an image of this (original) size."""
        width, height = self.target_size(width, height)
        patches = self.image_processor.get_number_of_image_patches(height, width, {})
        return patches // self.image_processor.merge_size**2

    def image_text(self, width: int, height: int) -> str:
        """The text that replaces one `<image>` mark: the model's image tokens between its vision markers."""
        o = self.options
        return o.vision_start + o.image_token * self.image_tokens(width, height) + o.vision_end

    def load_image(self, path: str) -> Any:
        """An image file as an RGB PIL image, rescaled as `target_size` says."""
        from PIL import Image

        with Image.open(path) as opened:
            image = opened.convert("RGB")
        size = self.target_size(*image.size)
        return image if size == image.size else image.resize(size)

    def pixel_inputs(self, paths: list[str]) -> dict[str, Any]:
        """`pixel_values` and `image_grid_thw` for the images at `paths`, in order."""
        if not paths:
            return {}
        batch = self.image_processor(images=[self.load_image(p) for p in paths], return_tensors="pt")
        return {"pixel_values": batch["pixel_values"], "image_grid_thw": batch["image_grid_thw"]}


def _scaled(width: int, height: int, factor: float) -> tuple[int, int]:
    return int(width * factor), int(height * factor)


def build_plugin(template: Any, model_path: str | None, image_max_pixels: int, image_min_pixels: int) -> MediaPlugin:
    """The media plugin of `template` with the image processor saved with the model at `model_path`."""
    from tuneforge.extras import require

    require("PIL", "a dataset with images")
    spec = template.spec
    if spec.mm_plugin not in PLUGINS:
        what = (
            f"names media plugin {spec.mm_plugin!r}, which tuneforge does not implement yet"
            if spec.mm_plugin
            else ("is a text-only template")
        )
        raise DataError(
            f"The dataset has images, videos or audios, but template {spec.name!r} {what}; use a vision-language "
            f"model with a template of plugin {', '.join(PLUGINS)} (e.g. `template: qwen2_vl`), or remove the media "
            "columns from the dataset entry to train on the text alone."
        )
    options = MediaOptions(spec.mm_plugin, spec.image_token, spec.video_token, image_max_pixels, image_min_pixels)
    return MediaPlugin(options, load_image_processor(model_path))


def load_image_processor(model_path: str | None) -> Any:
    """The image processor saved with the model (`preprocessor_config.json`), or a clear error."""
    from transformers import AutoImageProcessor

    if not model_path:
        raise DataError("Multimodal data needs `model_name_or_path`: its image processor sizes the image tokens.")
    try:
        return AutoImageProcessor.from_pretrained(model_path)
    except (OSError, ValueError) as err:
        raise DataError(
            f"No image processor found with model {model_path!r} ({err}); a vision-language model folder holds "
            "preprocessor_config.json."
        ) from err


def attach_media(
    raw: RawRows, examples: RawRows, attr: DatasetAttr, root: Path, plugin: MediaPlugin, report: RowReport
) -> RawRows:
    """Examples with their media paths resolved and `<image>` marks expanded; bad rows go to `report`."""
    kinds = media_columns(attr)
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
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise RowError(f"column {column!r} ({kind}) should be a path or a list of paths")
    return [_resolve(v, root, kind) for v in values]


def _resolve(path: str, root: Path, kind: str) -> str:
    if path.startswith(("http://", "https://", "data:")):
        raise RowError(f"{kind} {path[:60]!r}: URLs and base64 data are not supported yet; download the file")
    under_root = root / path
    if under_root.is_file():
        return str(under_root)
    if os.path.isfile(path):
        return os.path.abspath(path)
    raise RowError(f"{kind[:-1]} file {path!r} not found (looked in {root} and the working folder)")


def _expanded(example: dict[str, Any], media: dict[str, list[str]], plugin: MediaPlugin) -> dict[str, Any]:
    for kind, paths in media.items():
        if kind != "images" and paths:
            raise RowError(f"{kind} are not supported yet (images only); remove the {kind} column")
        marks = sum(m["content"].count(MARKS[kind]) for m in example["messages"])
        if marks != len(paths):
            raise RowError(f"{marks} {MARKS[kind]} marks in the messages but {len(paths)} {kind} in the row")
    paths = media.get("images", [])
    texts = [plugin.image_text(*_image_size(p)) for p in paths]
    messages = []
    for message in example["messages"]:
        content = message["content"]
        while MARKS["images"] in content:
            content = content.replace(MARKS["images"], texts.pop(0), 1)
        messages.append({**message, "content": content})
    return {**example, "messages": messages, "images": paths}


def _image_size(path: str) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError) as err:
        raise RowError(f"image {path!r} cannot be read ({err})") from err


@dataclass
class MediaCollator:
    """Wraps a text collator: adds `pixel_values`, `image_grid_thw` and `mm_token_type_ids` (1 at image tokens),
    and keeps image tokens out of the loss."""

    text: Any
    plugin: MediaPlugin
    image_token_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        paths = [p for f in features for p in (f.get("images") or [])]
        batch = self.text([{k: v for k, v in f.items() if k not in MEDIA_KINDS} for f in features])
        is_image = batch["input_ids"] == self.image_token_id
        batch["mm_token_type_ids"] = is_image.int()
        if "labels" in batch and batch["labels"].shape == is_image.shape:
            batch["labels"] = batch["labels"].masked_fill(is_image, -100)
        batch.update(self.plugin.pixel_inputs(paths))
        return batch


def media_collator(model: ModelSection, tokenizer: Any, template: Any, text_collator: Any) -> MediaCollator:
    """`text_collator` wrapped to add the images of each batch, for the model and template of the run."""
    plugin = build_plugin(template, model.model_name_or_path, int(model.image_max_pixels), int(model.image_min_pixels))
    return MediaCollator(text_collator, plugin, tokenizer.convert_tokens_to_ids(plugin.options.image_token))


PROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json", "processor_config.json")


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


def with_images_column(table: Any) -> Any:
    """`table` with an `images` column of string lists (empty for text rows), so media and text datasets mix."""
    import pyarrow as pa

    kind = pa.list_(pa.string())
    if "images" in table.column_names:
        index = table.column_names.index("images")
        return table.set_column(index, "images", table.column("images").cast(kind))
    return table.append_column("images", pa.array([[]] * table.num_rows, type=kind))
