"""What every tab of the web UI shares: the path jail, the job registry, the labeller, the form inputs."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError
from tuneforge.webui import forms
from tuneforge.webui.jobs import JobRegistry
from tuneforge.webui.labels import Labeller
from tuneforge.webui.locale import t
from tuneforge.webui.paths import PathJail

STATE_FOLDER = ".tuneforge-webui"


@dataclass
class Context:
    """Shared state of one server: allowed roots, jobs, the loaded chat engine, components by config key."""

    jail: PathJail
    jobs: JobRegistry
    labels: Labeller = field(default_factory=Labeller)
    form: dict[str, Any] = field(default_factory=dict)
    lang: Any = None  # the language dropdown (an input of handlers that write messages)
    engine: Any = None
    engine_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, *roots: str | Path) -> Context:
        """A context jailed to `roots`, keeping its job registry in `<first root>/.tuneforge-webui`."""
        jail = PathJail(*roots)
        return cls(jail=jail, jobs=JobRegistry(jail.home / STATE_FOLDER))

    @property
    def state_dir(self) -> Path:
        """Where the UI keeps its registry, run folders and generated files."""
        return self.jobs.state_dir

    def values(self, data: dict[Any, Any]) -> dict[str, Any]:
        """Form values by key, from the `{component: value}` dict Gradio passes for set inputs."""
        return {key: data[component] for key, component in self.form.items() if component in data}

    def config(self, values: dict[str, Any]) -> dict[str, Any]:
        """The validated flat config for these form values, with every path checked against the roots."""
        config = forms.form_to_config(values, self.state_dir)
        for key in ("dataset_dir", "output_dir", "export_dir"):
            if config.get(key):
                config[key] = str(self.jail.resolve(config[key]))
        model = config.get("model_name_or_path") or ""
        if model and (model.startswith((".", "/", "~")) or (self.jail.home / model).exists()):
            config["model_name_or_path"] = str(self.jail.resolve(model))
        forms.validate(config)
        return config


def message(lang: str, key: str, kind: str = "info", **values: Any) -> str:
    """A status line for the page: the localized text (values shown literally), bold for warnings and errors."""
    from tuneforge.console import markdown_literal

    text = t(lang, key, **{name: markdown_literal(value) for name, value in values.items()})
    return text if kind == "info" else f"**{text}**"


def error_message(lang: str, err: Exception) -> str:
    """A visible message for an error a user can act on (the error's own text names what to change)."""
    from tuneforge.console import markdown_literal

    if isinstance(err, TuneforgeError):
        return f"**{t(lang, 'msg.error')}:** {markdown_literal(err)}"
    return f"**{t(lang, 'msg.unexpected')}:** {type(err).__name__}: {markdown_literal(err)}"
