"""The preprocessing cache: tokenized splits stored as memory-mapped Arrow files under a content key.

The key hashes everything that changes the output: each data file's content (sha256, remembered per
path + size + mtime + inode so an unchanged file is not re-read), the tokenizer (class, name, vocabulary
size, added tokens, chat template and the ids of a probe text), the chat template's record, and every
data argument that affects tokenization, mixing, splitting or packing. Any change gives a new key. Media files
(images, videos, audios) are named by path inside the rows: an entry stores their size and mtime, and a hit whose
media changed is rebuilt.

Location: `$TUNEFORGE_CACHE`, else `<model.cache_dir>/tuneforge-data`, else
`$TUNEFORGE_CACHE_DIR/data`, else `~/.cache/tuneforge/data`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuneforge.config import TuneforgeConfig

FORMAT_VERSION = "2"  # bump when the stored layout or the processing semantics change (2: per-chunk encoding)
_PROBE = "Hello, 世界! 123 <|im_start|> \n\t naïve café — 😀 def f(x): return x**2"


def cache_root(model_cache_dir: str | None = None) -> Path:
    """Where tokenized datasets are stored."""
    if os.environ.get("TUNEFORGE_CACHE"):
        return Path(os.environ["TUNEFORGE_CACHE"]).expanduser()
    if model_cache_dir:
        return Path(model_cache_dir).expanduser() / "tuneforge-data"
    if os.environ.get("TUNEFORGE_CACHE_DIR"):
        return Path(os.environ["TUNEFORGE_CACHE_DIR"]).expanduser() / "data"
    return Path.home() / ".cache" / "tuneforge" / "data"


def file_digest(path: Path, root: Path) -> str:
    """sha256 of a file's content, remembered in `root/file-hashes.json` by path, size, mtime and inode."""
    stat = path.stat()
    stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
    index_path = root / "file-hashes.json"
    index = _read_json(index_path)
    key = str(path.resolve())
    entry = index.get(key)
    if entry and entry[:3] == stamp:
        return entry[3]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    index[key] = [*stamp, digest.hexdigest()]
    with contextlib.suppress(OSError):  # a read-only cache only costs re-hashing next time
        _write_json(index_path, index)
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> dict[str, Any]:
    """What identifies a tokenizer's behaviour, cheaply (no full-vocabulary hash)."""
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    backend = getattr(tokenizer, "backend_tokenizer", None)
    probe = backend.encode(_PROBE, add_special_tokens=False).ids if backend is not None else tokenizer.encode(_PROBE)
    return {
        "class": type(tokenizer).__name__,
        "name": str(getattr(tokenizer, "name_or_path", "")),
        "size": len(tokenizer),
        "added": sorted((int(i), str(t)) for i, t in added.items()),
        "special": {k: str(v) for k, v in sorted((getattr(tokenizer, "special_tokens_map", {}) or {}).items())},
        "chat_template": getattr(tokenizer, "chat_template", None),
        "split_special_tokens": bool(getattr(tokenizer, "split_special_tokens", False)),
        "add_bos": bool(getattr(tokenizer, "add_bos_token", False)),
        "probe": probe,
    }


def template_record(template: Any) -> Any:
    """A template's full record as plain data (None for pre-training)."""
    if template is None:
        return None
    parts = {}
    for attr in ("spec", "tool_format", "enable_thinking"):
        value = getattr(template, attr, None)
        parts[attr] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else repr(value)
    if not any(v not in (None, "None") for v in parts.values()):
        parts["repr"] = repr(template)
    from tuneforge.data.templates.template import ENCODING

    parts["encoding"] = ENCODING
    return parts


def make_key(parts: dict[str, Any]) -> str:
    """A stable hex key over JSON-serialisable parts."""
    blob = json.dumps({"version": FORMAT_VERSION, **parts}, sort_keys=True, default=repr, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "vocab.txt",
)


def quick_key(cfg: TuneforgeConfig, root: Path) -> str | None:
    """A key for a config's prepared data computed without loading the tokenizer, or None when it cannot be.

    It hashes the whole config, the local tokenizer files and the local data files (by content), so it is at
    least as specific as the full key; `remember` maps it to the full key's entry after a normal run, and
    `recall` finds that entry again without importing transformers (a warm `tuneforge data stats`).
    """
    from tuneforge.data.loading import data_files
    from tuneforge.data.registry import resolve_datasets
    from tuneforge.version import __version__

    d, model = cfg.data, Path(str(cfg.model.model_name_or_path or ""))
    if not model.is_dir() or d.streaming or d.overwrite_cache or getattr(d, "tokenized_path", None):
        return None
    attrs = [*resolve_datasets(d.dataset, d.dataset_dir), *resolve_datasets(d.eval_dataset, d.dataset_dir)]
    if not attrs or any(a.source != "file" for a in attrs):
        return None
    files = [[n, file_digest(model / n, root)] for n in _TOKENIZER_FILES if (model / n).is_file()]
    data = [[a.record(), [file_digest(p, root) for p in data_files(a)]] for a in attrs]
    parts = {"quick": __version__, "config": cfg.flat(), "tokenizer_files": files, "data": data}
    return make_key(parts)


def remember(root: Path, quick: str | None, folder: str | None, warnings: list[str]) -> None:
    """Note that the data of quick key `quick` is the cache entry `folder` (with the run's template warnings)."""
    if quick and folder:
        with contextlib.suppress(OSError):
            _write_json(root / "quick" / f"{quick}.json", {"folder": folder, "warnings": warnings})


def recall(root: Path, quick: str | None) -> tuple[dict[str, Any], list[str]] | None:
    """(meta.json of the entry remembered for `quick`, its warnings), or None when absent or incomplete."""
    note = _read_json(root / "quick" / f"{quick}.json") if quick else {}
    meta = _read_json(Path(note["folder"]) / "meta.json") if note.get("folder") else {}
    if not meta or not all((Path(note["folder"]) / f"{s}.arrow").is_file() for s in meta.get("splits", [])):
        return None
    if media_changed(meta):
        return None
    return {**meta, "folder": note["folder"]}, list(note.get("warnings", []))


MEDIA_COLUMNS = ("images", "videos", "audios")


def media_stamps(tables: dict[str, Any]) -> dict[str, list[int]]:
    """Size and mtime of every media file the tables' `images` / `videos` / `audios` columns name.

    Rows name their media by path, so the key cannot see a file replaced under the same name; the stamps are
    stored with the entry and `media_changed` checks them on every hit (a stat per file, no reading).
    """
    import pyarrow.compute as pc

    paths: set[str] = set()
    for table in tables.values():
        for column in MEDIA_COLUMNS:
            if column in table.column_names:
                paths.update(p for p in pc.unique(pc.list_flatten(table[column])).to_pylist() if p)
    return {path: _stamp(path) for path in sorted(paths)}


def media_changed(meta: dict[str, Any]) -> bool:
    """Whether a media file an entry was built from has changed (or gone) since (entries without media: never)."""
    return any(_stamp(path) != stamp for path, stamp in (meta.get("media") or {}).items())


def _stamp(path: str) -> list[int]:
    try:
        stat = os.stat(path)
    except OSError:
        return [-1, -1]
    return [stat.st_size, stat.st_mtime_ns]


def entry_dir(root: Path, key: str) -> Path:
    """The folder that holds one cached result."""
    return root / key[:2] / key


def save_entry(folder: Path, tables: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write tables (split name -> pyarrow Table) and meta.json atomically into `folder`."""
    import pyarrow as pa

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        for name, table in tables.items():
            with pa.OSFile(str(tmp / f"{name}.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
        _write_json(tmp / "meta.json", {**meta, "splits": sorted(tables)})
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / "meta.json").is_file():  # not another process having stored the same entry
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_entry(folder: Path, open_splits: bool = True) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(split name -> memory-mapped datasets.Dataset, meta) or None when absent or incomplete; with
    `open_splits=False` the splits are left unopened (an empty dict: no `datasets` import)."""
    meta = _read_json(folder / "meta.json")
    if not meta or not all((folder / f"{s}.arrow").is_file() for s in meta.get("splits", [])):
        return None
    if not open_splits:
        return {}, meta
    from datasets import Dataset

    return {s: Dataset.from_file(str(folder / f"{s}.arrow")) for s in meta["splits"]}, meta


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)
