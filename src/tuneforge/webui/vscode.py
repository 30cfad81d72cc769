"""`debug_config_command(cfg_path)`: a VS Code launch configuration that debugs exactly one training run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError
from tuneforge.files import write_json_atomic


def launch_entry(config_path: Path, cwd: Path) -> dict[str, Any]:
    """The debugpy entry running `python -m tuneforge.cli train CONFIG` in `cwd`."""
    return {
        "name": f"tuneforge train {config_path.name}",
        "type": "debugpy",
        "request": "launch",
        "module": "tuneforge.cli",
        "args": ["train", str(config_path)],
        "cwd": str(cwd),
        "console": "integratedTerminal",
        "justMyCode": False,
    }


def merge_launch(existing: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """`existing` launch.json content with `entry` added, replacing an entry of the same name."""
    configurations = [c for c in existing.get("configurations", []) if c.get("name") != entry["name"]]
    return {**existing, "version": existing.get("version", "0.2.0"), "configurations": [*configurations, entry]}


def _read_launch(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise TuneforgeError(
            f"{path} is not plain JSON ({err.msg} at line {err.lineno}); remove its comments or trailing commas "
            "and retry, or add the entry by hand."
        ) from err
    if not isinstance(data, dict):
        raise TuneforgeError(f"{path} must hold a JSON object with a `configurations` list.")
    return data


def debug_config_command(cfg_path: str | os.PathLike, workspace: str | os.PathLike | None = None) -> Path:
    """`tuneforge debug-config CONFIG`: add (or refresh) a launch entry in `workspace/.vscode/launch.json`.

    `workspace` defaults to the current directory. Returns the launch.json path.
    """
    config = Path(cfg_path).expanduser().resolve()
    if not config.is_file():
        raise TuneforgeError(f"{cfg_path}: no such config file; pass the YAML you train with.")
    root = Path(workspace or os.getcwd()).resolve()
    path = root / ".vscode" / "launch.json"
    write_json_atomic(path, merge_launch(_read_launch(path), launch_entry(config, root)))
    return path
