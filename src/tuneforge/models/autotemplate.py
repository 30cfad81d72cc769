"""`template: auto`: pick the chat template from the model's own files and the model registry.

Evidence, strongest first: the model's name or hub id (or its folder's name) found in the registry; else the
templates the registry gives the model's architecture (`model_type` in config.json), kept when the model's own
chat template (tokenizer_config.json `chat_template` or chat_template.jinja) holds their special tokens and turn
markers (`[INST]`, `<|im_start|>`, `Human:`), and ranked by what else they share (more markers, the default system
prompt, a thinking block); equal ones are told apart only by how many registry models use each. Without the
architecture the chat template alone never decides. Nothing is downloaded: files come from the local folder or the
Hugging Face cache.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError
from tuneforge.models.registry import all_models, find_model

AUTO = "auto"
logger = logging.getLogger(__name__)
_FILES = ("config.json", "tokenizer_config.json", "chat_template.jinja")
_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
_TOKEN = re.compile(r"<[^<>\s]+>|\[[^\[\]\s]+\]")
_ROLES = ("user", "assistant", "system", "observation", "tool")


@dataclass(frozen=True)
class ModelFiles:
    """What `template: auto` reads of a model: its architecture and its own Jinja chat template."""

    model_type: str | None = None
    chat_template: str | None = None


def pick_template(model: str) -> tuple[str, str]:
    """(template name, why) for the model at `model` (a local folder or a hub id); raises `ConfigError` naming
    the candidates when the evidence does not single one out."""
    entry = find_model(model) or find_model(Path(model).name)
    if entry is not None and not entry.multimodal:
        return entry.template, f"{entry.name} ({entry.hub}) in the model registry"
    files = read_model_files(model)
    candidates = _architecture_templates(files.model_type)
    if candidates and files.chat_template:
        ranked = _rank(candidates, files.chat_template, tie_break=True)
        if len(ranked) == 1:
            return ranked[0], _why(files, "its chat template matches")
        candidates = ranked or candidates
    elif len(candidates) == 1:
        return candidates[0], _why(files, "the only template the registry gives this architecture")
    elif files.chat_template:  # without the architecture the chat template alone is too weak to decide
        candidates = _rank(_all_text_templates(), files.chat_template, tie_break=False)
    raise ConfigError(_undecided(model, files, candidates))


def read_model_files(model: str) -> ModelFiles:
    """config.json `model_type` and the chat template of a local model folder, or of a hub id in the HF cache."""
    found = {name: _locate(model, name) for name in _FILES}
    config = _json(found["config.json"])
    tokenizer_config = _json(found["tokenizer_config.json"])
    template = tokenizer_config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    if not template and found["chat_template.jinja"]:
        template = found["chat_template.jinja"].read_text(encoding="utf-8")
    return ModelFiles(config.get("model_type"), template or None)


def _locate(model: str, filename: str) -> Path | None:
    folder = Path(os.path.expanduser(model))
    if folder.is_dir():
        return folder / filename if (folder / filename).is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, filename)
    except Exception:  # not a valid repo id, no cache: nothing to read
        return None
    return Path(cached) if isinstance(cached, str) else None


def _json(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"template: auto could not read {path}: {err}") from None
    return data if isinstance(data, dict) else {}


def _architecture_templates(model_type: str | None) -> list[str]:
    """Templates the registry gives text models of this architecture, most used first."""
    if not model_type:
        return []
    found = {e.template for e in all_models() if e.architecture == model_type and not e.multimodal}
    return sorted(found, key=lambda name: -_usage()[name])


def _all_text_templates() -> list[str]:
    return sorted(_usage(), key=lambda name: -_usage()[name])


@cache
def _usage() -> dict[str, int]:
    """How many text models of the registry use each template."""
    return dict(Counter(e.template for e in all_models() if not e.multimodal))


def _rank(names: list[str], chat_template: str, *, tie_break: bool) -> list[str]:
    """The known templates among `names` (most used first) that `chat_template` could be, best first. Equally
    good ones are kept, unless `tie_break` and the first is more used by the registry than the next."""
    from tuneforge.data.templates.registry import get_spec, list_templates

    known = set(list_templates())
    scored = [(_score(get_spec(name), chat_template), name) for name in names if name in known]
    scored = [(s, n) for s, n in scored if s is not None]
    if not scored:
        return []
    best = max(s for s, _ in scored)
    top = [n for s, n in scored if s == best]
    counts = _usage()
    if tie_break and len(top) > 1 and counts.get(top[0], 0) > counts.get(top[1], 0):
        return top[:1]
    return top


def _score(spec: Any, text: str) -> int | None:
    """None when `text` lacks a special token or a marker of the template; else how much they share."""
    markers = _markers(spec)
    if not all(_present(piece, text) for piece in (*spec.special_tokens, *markers)):
        return None
    score = 2 * len(markers)
    if spec.default_system and spec.default_system.strip() in text:
        score += 3
    thinks = spec.thinking is not None and spec.thinking.open in text
    return score + (1 if thinks or (spec.thinking is None and "<think>" not in text) else 0)


def _present(piece: str, text: str) -> bool:
    """`piece` is in `text`, literally or with its role name written by Jinja (`<|{{ item['role'] }}|>`)."""
    if piece in text:
        return True
    for role in _ROLES:
        before, found, after = piece.partition(role)
        if found and (before or after):
            pattern = re.escape(before) + r"[^\n]{0,80}?role[^\n]{0,80}?" + re.escape(after)
            return re.search(pattern, text) is not None
    return False


def _markers(spec: Any) -> set[str]:
    """The fixed pieces of a user turn and an assistant turn: tokens like `[INST]` or `<|im_start|>` and words
    like `Human:`. Role names are left out: Jinja templates usually write them from `message.role`."""
    text = _PLACEHOLDER.sub(" ", f"{spec.user} {spec.assistant_start} {spec.assistant}")
    tokens = _TOKEN.findall(text)
    words = _TOKEN.sub(" ", text).split()
    return set(tokens) | {w for w in words if w.lower().strip(":") not in _ROLES and re.search(r"\w", w)}


def _why(files: ModelFiles, reason: str) -> str:
    return f"model_type {files.model_type or 'unknown'}; {reason}"


def _undecided(model: str, files: ModelFiles, candidates: list[str]) -> str:
    seen = []
    if files.model_type:
        seen.append(f"model_type {files.model_type!r}")
    if files.chat_template:
        seen.append("a chat template")
    what = " and ".join(seen) or "no config.json or tokenizer_config.json (locally or in the Hugging Face cache)"
    choice = f"candidates: {', '.join(candidates)}" if candidates else "no registry template fits"
    return (
        f"auto cannot decide the chat template of {model} (found {what}; {choice}). "
        "Set `template:` to one of them (`tuneforge data templates` lists all; `tuneforge models` shows each "
        "model's template)."
    )


def resolve_auto_template(cfg: Any) -> list[tuple[tuple[str, ...], str]]:
    """Replace `template: auto` in `cfg` by the picked template (logged once); return the problem when none."""
    if cfg.data.template != AUTO:
        return []
    model = cfg.model.model_name_or_path
    if not model:
        return [(("template",), "auto needs model_name_or_path to pick the template from.")]
    try:
        name, why = pick_template(model)
    except ConfigError as err:
        return [(("template",), str(err))]
    logger.warning("template: auto picked %r for %s (%s)", name, model, why)
    cfg.data.template = name
    return []
