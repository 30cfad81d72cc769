"""Every shipped example config validates (with its tiny model in place)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tuneforge.config import load_config

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").rglob("*.yaml"))


def test_there_are_examples() -> None:
    assert EXAMPLES, "examples/ must hold at least the quickstart config"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates(path: Path, tiny_qwen2: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    if "dataset" in raw or "stage" in raw:  # data/info files under examples/ are not configs
        first = path.read_text().splitlines()[0]
        assert first.startswith("#"), "an example starts with a comment giving the command that runs it"
    overrides = [f"model_name_or_path={tiny_qwen2}"] if "model_name_or_path" in raw else []
    for key in ("adapter_name_or_path",):
        raw.pop(key, None)
    cfg = load_config(path, overrides, paths=False)
    assert cfg.method.stage
