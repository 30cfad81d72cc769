"""Media plugins: how one family of multimodal models turns images, videos and audios into tokens and tensors.

A template record names its plugin (`mm_plugin`, LLaMA-Factory's names). `build_plugin` looks the name up in
`PLUGINS` and builds the plugin with the processor saved beside the model. Each plugin implements `MediaPlugin`
(see `base.py`); a plugin module registers its names here. Datasets, the collator and the inference engine talk to
plugins only through that protocol, so adding a model family is one new module and one line below.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tuneforge.data.mm.base import MediaPlugin, MediaSettings
from tuneforge.data.mm.gemma3 import build_gemma3
from tuneforge.data.mm.intern_vl import build_intern_vl
from tuneforge.data.mm.llava import build_llava, build_llava_next
from tuneforge.data.mm.qwen2_audio import Qwen2AudioPlugin
from tuneforge.data.mm.qwen_omni import QwenOmniPlugin
from tuneforge.data.mm.qwen_vl import Qwen3VLPlugin, QwenVLPlugin
from tuneforge.errors import DataError

logger = logging.getLogger("tuneforge.data")
PluginFactory = Callable[[Any, str, MediaSettings], MediaPlugin]

# Qwen3-VL (and Qwen3.5) place images as Qwen2-VL does
PLUGINS: dict[str, PluginFactory] = {
    "qwen2_vl": QwenVLPlugin.build,
    "qwen3_vl": Qwen3VLPlugin.build,
    "llava": build_llava,
    "llava_next": build_llava_next,
    "gemma3": build_gemma3,
    "intern_vl": build_intern_vl,
    "qwen2_audio": Qwen2AudioPlugin.build,
    "qwen2_omni": QwenOmniPlugin.build,
}


def build_plugin(template: Any, model_path: str | None, settings: MediaSettings) -> MediaPlugin:
    """The media plugin `template` names, with the processor saved with the model at `model_path`."""
    from tuneforge.extras import require

    spec = template.spec
    factory = PLUGINS.get(spec.mm_plugin or "")
    if "images" in (plugin_kinds(spec.mm_plugin) or ("images",)):
        require("PIL", "a dataset with images")  # audio plugins check their own packages
    if factory is None:
        what = (
            f"names media plugin {spec.mm_plugin!r}, which tuneforge does not implement yet"
            if spec.mm_plugin
            else "is a text-only template"
        )
        raise DataError(
            f"The dataset has images, videos or audios, but template {spec.name!r} {what}; use a multimodal "
            f"model with a template of plugin {', '.join(sorted(PLUGINS))} (e.g. `template: qwen2_vl`), or remove "
            "the media columns from the dataset entry to train on the text alone."
        )
    if not model_path:
        raise DataError("Multimodal data needs `model_name_or_path`: its processor sizes the media tokens.")
    _warn_unused(spec.mm_plugin, settings)
    return factory(spec, model_path, settings)


ONE_FAMILY = {"image_do_pan_and_scan": "gemma3", "crop_to_patches": "intern_vl"}  # setting -> plugin that reads it


def _warn_unused(plugin: str, settings: MediaSettings) -> None:
    for name, owner in ONE_FAMILY.items():
        if getattr(settings, name) and plugin != owner:
            logger.warning("`%s` has no effect with media plugin %r: only %s models read it.", name, plugin, owner)


def plugin_kinds(plugin: str) -> tuple[str, ...]:
    """The media kinds plugin `plugin` (an `mm_plugin` name) takes, from its class's `kinds` (images when its
    factory does not say: a loaded engine knows better, see `engine_kinds`); () when tuneforge has no such plugin."""
    factory = PLUGINS.get(plugin or "")
    if factory is None:
        return ()
    owner = getattr(factory, "__self__", factory)  # a plugin class's `build` classmethod
    return tuple(getattr(owner, "kinds", ("images",)))


def template_kinds(template: Any) -> tuple[str, ...]:
    """The media kinds of a template (a Template, a TemplateSpec or a template name)."""
    spec = getattr(template, "spec", template)
    if isinstance(spec, str):
        from tuneforge.data.templates import get_spec

        spec = get_spec(spec)
    return plugin_kinds(getattr(spec, "mm_plugin", ""))


__all__ = ["PLUGINS", "MediaPlugin", "MediaSettings", "build_plugin", "plugin_kinds", "template_kinds"]
