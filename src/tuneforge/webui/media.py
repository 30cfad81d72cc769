"""Media in the web UI: which kinds a template's media plugin takes, the kind of an uploaded file, and dataset
rows' media for previews (image thumbnails, video and audio file names)."""

from __future__ import annotations

import hashlib
import mimetypes
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.data.mm import template_kinds
from tuneforge.errors import TuneforgeError

KINDS = ("images", "videos", "audios")
MIME_KINDS = {"image": "images", "video": "videos", "audio": "audios"}
UPLOAD_TYPES = {"images": "image", "videos": "video", "audios": "audio"}  # Gradio's file_types names
THUMB_SIZE = (160, 160)
THUMB_DIR = Path(tempfile.gettempdir()) / "tuneforge-webui-thumbs"  # Gradio serves files from the temp dir


def engine_kinds(engine: Any) -> tuple[str, ...]:
    """The media kinds a loaded engine takes: its plugin's own (`Engine.media_kinds`: e.g. Qwen-VL takes videos
    only where its video processor can be built), else its template's plugin's."""
    kinds = getattr(engine, "media_kinds", None)  # engines from before multimodal inference have none
    return tuple(kinds) if kinds is not None else template_kinds(getattr(engine, "template", None))


def refusal(engine: Any, kinds: set[str]) -> str | None:
    """Why the loaded engine cannot take media of `kinds` (None when it can), naming its template and plugin."""
    spec = getattr(engine.template, "spec", engine.template)
    name, plugin = getattr(spec, "name", str(spec)), getattr(spec, "mm_plugin", "")
    takes = engine_kinds(engine)
    missing = sorted(kinds - set(takes))
    if not missing:
        return None
    from tuneforge.data.mm import PLUGINS

    model = engine.model_name
    if takes:
        return f"{model} (template {name!r}, plugin {plugin!r}) takes {', '.join(takes)}, not {', '.join(missing)}."
    if not plugin:
        why = "is a text-only template"
    elif plugin not in PLUGINS:
        why = f"names media plugin {plugin!r}, which tuneforge does not implement yet"
    else:
        why = f"has media plugin {plugin!r}, but the loaded model takes no media"
    return (
        f"{model} cannot take attachments: its template {name!r} {why}. Load a multimodal model whose template "
        f"has plugin {', '.join(sorted(PLUGINS))} (e.g. Qwen2-VL), or send text only."
    )


def file_kind(path: str) -> str:
    """`images`, `videos` or `audios` for a file, by its type; a clear error for anything else."""
    mime = mimetypes.guess_type(str(path))[0] or ""
    kind = MIME_KINDS.get(mime.split("/")[0])
    if kind is None:
        raise TuneforgeError(f"{Path(path).name}: not an image, video or audio file; attach one of those.")
    return kind


def upload_types(kinds: tuple[str, ...]) -> list[str]:
    """Gradio `file_types` for uploads of `kinds`."""
    return [UPLOAD_TYPES[kind] for kind in kinds if kind in UPLOAD_TYPES]


@dataclass(frozen=True)
class MediaFile:
    """One media value of a row: the name to show (the path as written, or `(embedded)`) and the local file it
    reads as training reads it (None when there is none)."""

    name: str
    file: Path | None


def row_media(row: dict[str, Any], columns: dict[str, str | None], root: Path) -> dict[str, list[MediaFile]]:
    """A raw row's media per kind (`columns`: kind -> the row's column), each resolved as training does: a path
    under `root` (the media folder) or as written, or embedded bytes stored in the media cache."""
    from tuneforge.data.convert import RowError
    from tuneforge.data.media import _path_of  # the loader's own reading of a media value

    media: dict[str, list[MediaFile]] = {}
    for kind in KINDS:
        column = columns.get(kind)
        value = row.get(column) if column else None
        for item in value if isinstance(value, list) else [] if value is None else [value]:
            written = item.get("path") if isinstance(item, dict) else item
            name = written if isinstance(written, str) and written else "(embedded)"
            try:
                file: Path | None = Path(_path_of(item, column, kind, root))
            except RowError:
                file = None
            media.setdefault(kind, []).append(MediaFile(name, file))
    return media


def missing_media(rows: list[dict[str, Any]], columns: dict[str, str | None], root: Path) -> list[str]:
    """The media of `rows` (as written) that do not read as a file from `root` (or as an absolute / working-folder
    path)."""
    found = (row_media(row, columns, root) for row in rows)
    return [item.name for media in found for items in media.values() for item in items if item.file is None]


def thumbnail(path: Path) -> str | None:
    """A small JPEG copy of the image at `path` in the temp folder (its path), None when it cannot be read."""
    try:
        from PIL import Image

        stat = path.stat()
        key = hashlib.sha1(f"{path}:{stat.st_mtime_ns}:{stat.st_size}".encode()).hexdigest()[:20]
        out = THUMB_DIR / f"{key}.jpg"
        if not out.is_file():
            THUMB_DIR.mkdir(parents=True, exist_ok=True)
            with Image.open(path) as image:
                image.thumbnail(THUMB_SIZE)
                image.convert("RGB").save(out, "JPEG", quality=85)
        return str(out)
    except (ImportError, OSError, ValueError):
        return None


def preview_media(rows: list[dict[str, Any]], columns: dict[str, str | None], root: Path) -> tuple[list, str]:
    """(gallery items `(thumbnail, caption)` for the rows' images, Markdown naming every row's media files)."""
    from tuneforge.console import markdown_literal

    gallery, lines = [], []
    for index, row in enumerate(rows):
        media = row_media(row, columns, root)
        for kind, items in media.items():
            names = ", ".join(markdown_literal(Path(item.name).name) for item in items)
            missing = sum(1 for item in items if item.file is None)
            lines.append(f"- row {index} · {kind}: {names}" + (f" ({missing} not found)" if missing else ""))
        for item in media.get("images", []):
            thumb = thumbnail(item.file) if item.file else None
            if thumb:
                gallery.append((thumb, f"row {index}: {Path(item.name).name}"))
    return gallery, "\n".join(lines)
