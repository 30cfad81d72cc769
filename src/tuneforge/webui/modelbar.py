"""Model bar logic: known models, adapters found on disk, the template that fits a tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.models.registry import all_models, find_model

ADAPTER_FILE = "adapter_config.json"
SKIP_DIRS = {".git", "__pycache__", "node_modules", ".venv"}
MULTIMODAL_MARK = "multimodal"


def find_adapters(folder: str | Path, depth: int = 4) -> list[str]:
    """Folders under `folder` (at most `depth` levels) holding a LoRA adapter: runs and their checkpoints."""
    found: list[str] = []
    _walk(Path(folder), depth, found)
    return sorted(found)


def _walk(folder: Path, depth: int, found: list[str]) -> None:
    if depth < 0 or not folder.is_dir() or folder.name in SKIP_DIRS:
        return
    if (folder / ADAPTER_FILE).is_file():
        found.append(str(folder))
    try:
        children = [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return
    for child in children:
        _walk(child, depth - 1, found)


def picker_choices() -> list[str | tuple[str, str]]:
    """The model picker's list, in registry order: text models by name, and the multimodal models whose template's
    media plugin tuneforge builds as (`name (multimodal: images)`, name); other multimodal models are left out."""
    from tuneforge.data.mm import template_kinds

    choices: list[str | tuple[str, str]] = []
    for entry in all_models():
        if not entry.multimodal:
            choices.append(entry.name)
        elif kinds := template_kinds(entry.template):
            choices.append((f"{entry.name} ({MULTIMODAL_MARK}: {', '.join(kinds)})", entry.name))
    return choices


def suggest_template(model: str, tokenizer: Any = None) -> tuple[str, list[str]]:
    """(template to use, notes): a known model's template; else '' (the tokenizer's own Jinja) when it has one,
    else the first registered template whose special tokens the tokenizer has."""
    entry = find_model(model)
    if entry is not None:
        return entry.ui_template, []
    if tokenizer is None:
        return "", []
    from tuneforge.data.templates.mismatch import matching_templates

    matches = matching_templates(tokenizer)
    notes = [f"templates matching this tokenizer: {', '.join(matches[:8]) or 'none'}"]
    if getattr(tokenizer, "chat_template", None):
        return "", notes
    return (matches[0] if matches else ""), notes


def template_warnings(template: str, tokenizer: Any) -> list[str]:
    """`check_template_tokenizer` warnings for `template` on `tokenizer` (a missing token is one of them)."""
    if not template:
        return []
    from tuneforge.data.templates import get_template
    from tuneforge.data.templates.mismatch import check_template_tokenizer

    return check_template_tokenizer(get_template(template, tokenizer), tokenizer, allow=True)


def load_local_tokenizer(path: Path) -> Any:
    """The tokenizer of a local model folder, loaded as training does."""
    from tuneforge.config import load_config
    from tuneforge.models.loader import load_tokenizer

    return load_tokenizer(load_config({"model_name_or_path": str(path)}))
