"""Media (images, videos, audios) in inference requests, through the same `data/mm` plugin as training.

A request names its media as file paths per kind (`{"images": [...], "videos": [...], "audios": [...]}`, as
LLaMA-Factory's ChatModel takes them). Where no message holds a kind's `<image>`/`<video>`/`<audio>` mark, the
marks go at the start of the first user message (as LLaMA-Factory does); each mark is then replaced by the model's
media tokens (`expand_marks`, the dataset's code path), and the files become the model's tensors
(`MediaPlugin.model_inputs`) before the request is queued, so the decoding thread never reads a file.

`BatchMedia` is the decoding side: it joins the tensors of the requests prefilled together (in row order, as the
collator joins a training batch's) and, for models with multimodal rotary positions (Qwen-VL's 3-D M-RoPE), gives
the prefill positions and each row's position delta, so decode steps continue every row at its own positions.
"""

from __future__ import annotations

import os
from inspect import signature
from typing import TYPE_CHECKING, Any

from tuneforge.errors import TuneforgeError

if TYPE_CHECKING:
    import torch

    from tuneforge.config import TuneforgeConfig
    from tuneforge.data.mm import MediaPlugin

Media = dict[str, list[str]]
KINDS = ("images", "videos", "audios")  # = data/media.py's MEDIA_KINDS and MARKS (kept light: no data imports)
MARKS = {"images": "<image>", "videos": "<video>", "audios": "<audio>"}


def engine_plugin(cfg: TuneforgeConfig, template: Any, tokenizer: Any) -> MediaPlugin | None:
    """The media plugin of a multimodal (vision- or audio-language) model's template (None for a text model);
    refuses, before any weight is read, a multimodal model whose template names no plugin tuneforge has built."""
    from transformers import AutoConfig

    from tuneforge.data.media import plugin_for_run
    from tuneforge.data.mm import PLUGINS
    from tuneforge.models.multimodal import media_auto_class

    m = cfg.model
    model_config = AutoConfig.from_pretrained(m.model_name_or_path, trust_remote_code=m.trust_remote_code)
    if media_auto_class(model_config) is None:
        return None
    name = template.spec.mm_plugin
    if name not in PLUGINS:
        what = f"names media plugin {name!r}, which tuneforge has not built yet" if name else "is a text template"
        raise TuneforgeError(
            f"{m.model_name_or_path} is a multimodal model ({model_config.model_type}) but template "
            f"{template.name!r} {what}; chat, api, webchat and predict serve multimodal models whose template has "
            f"plugin {', '.join(sorted(PLUGINS))} (e.g. `template: qwen2_vl`)."
        )
    plugin = plugin_for_run(template, m)
    plugin.bind(tokenizer)
    return plugin


def media_kinds(plugin: MediaPlugin | None) -> tuple[str, ...]:
    """The media kinds a model takes (empty for a text model)."""
    return tuple(plugin.kinds) if plugin is not None else ()


def check_media(plugin: MediaPlugin | None, media: Media) -> Media:
    """The non-empty kinds of `media`, each file checked to exist and to be a kind the model takes."""
    media = {kind: list(paths) for kind, paths in (media or {}).items() if paths}
    for kind, paths in media.items():
        if kind not in KINDS:
            raise TuneforgeError(f"media: unknown kind {kind!r}; use {', '.join(KINDS)}.")
        if kind not in media_kinds(plugin):
            raise TuneforgeError(_not_taken(plugin, kind))
        for path in paths:
            if not os.path.isfile(path):
                raise TuneforgeError(f"{kind[:-1]} file {path!r} not found.")
    return media


def _not_taken(plugin: MediaPlugin | None, kind: str) -> str:
    if plugin is None:
        return f"This model is text-only: it takes no {kind}."
    return f"This model takes {', '.join(plugin.kinds)}, not {kind}."


def place_marks(messages: list[dict], media: Media) -> list[dict]:
    """Messages with, for each kind no message marks, one mark per file at the start of the first user message."""
    out = [dict(m) for m in messages]
    first = next((i for i, m in enumerate(out) if m.get("role") == "user"), 0)
    for kind in KINDS:  # each kind is put before the previous ones, as LLaMA-Factory does
        paths = media.get(kind) or []
        if out and paths and not any(MARKS[kind] in (m.get("content") or "") for m in out):
            out[first]["content"] = MARKS[kind] * len(paths) + (out[first].get("content") or "")
    return out


def media_messages(plugin: MediaPlugin | None, messages: list[dict], media: Media) -> list[dict]:
    """The messages with media marks placed and expanded into the model's media tokens (unchanged for a text
    model without media); TuneforgeError when marks and files do not match."""
    from tuneforge.data.convert import RowError
    from tuneforge.data.media import expand_marks

    if plugin is None:
        return messages
    placed = place_marks(messages, media)
    try:
        return expand_marks(placed, {kind: media.get(kind, []) for kind in plugin.kinds}, plugin)
    except RowError as error:
        raise TuneforgeError(f"Cannot attach the media: {error}.") from None


def model_inputs(plugin: MediaPlugin | None, media: Media) -> dict[str, Any] | None:
    """The model's tensors for one request's media (None without media)."""
    if plugin is None or not media:
        return None
    try:
        return plugin.model_inputs(media)
    except (OSError, ValueError) as error:
        raise TuneforgeError(f"Cannot read the media: {error}") from None


class BatchMedia:
    """Media tensors and multimodal positions of the rows prefilled together."""

    def __init__(self, model: Any, plugin: MediaPlugin | None) -> None:
        self.plugin = plugin
        self.rope_index = _rope_index(model) if plugin is not None else None
        self.dtype = getattr(model, "dtype", None)

    def prefill(
        self, parts: list[dict[str, Any] | None], ids: torch.Tensor, mask: torch.Tensor
    ) -> tuple[dict[str, Any], torch.Tensor | None, torch.Tensor | None]:
        """(model inputs, prefill position ids or None, per-row position deltas (rows, 1) or None) for a batch
        whose rows' media tensors are `parts` (None for a text row)."""
        given = [part for part in parts if part]
        if not given or self.plugin is None:
            return {}, None, None
        inputs = {key: self._on(value, ids.device) for key, value in joined(given).items()}
        inputs.update(self.plugin.token_inputs(ids)[1])
        if self.rope_index is None:
            return inputs, None, None
        positions, deltas = self.rope_index(ids, attention_mask=mask, **inputs)
        return inputs, positions, deltas.reshape(-1, 1).to(ids.device)

    def _on(self, value: Any, device: Any) -> Any:
        if not hasattr(value, "to"):
            return value
        if value.is_floating_point() and self.dtype is not None:
            return value.to(device=device, dtype=self.dtype)
        return value.to(device)


def joined(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One batch's media inputs from several requests' (tensors concatenated along the first axis, lists
    joined), in request order: the same layout the collator builds for a training batch."""
    import torch

    out: dict[str, Any] = {}
    for key in dict.fromkeys(key for part in parts for key in part):
        values = [part[key] for part in parts if key in part]
        out[key] = torch.cat(values) if hasattr(values[0], "shape") else [v for value in values for v in value]
    return out


def _rope_index(model: Any) -> Any:
    """The model's multimodal rotary-position function (`get_rope_index`, Qwen-VL's M-RoPE) or None."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for owner in (getattr(base, "model", None), base):
        function = getattr(owner, "get_rope_index", None)
        if function is not None:
            return _omni_rope_index(function) if "second_per_grids" in signature(function).parameters else function
    return None


def _omni_rope_index(function: Any) -> Any:
    """The Qwen2.5-Omni thinker's `get_rope_index` called with the batch's inputs (it takes no `**kwargs`, and reads
    audio lengths and seconds per video patch under its own names)."""

    def rope_index(ids: torch.Tensor, attention_mask: torch.Tensor, **inputs: Any) -> Any:
        audio_mask = inputs.get("feature_attention_mask")
        return function(
            ids,
            inputs.get("image_grid_thw"),
            inputs.get("video_grid_thw"),
            attention_mask,
            audio_seqlens=None if audio_mask is None else audio_mask.sum(-1),
            second_per_grids=inputs.get("video_second_per_grid"),
        )

    return rope_index
