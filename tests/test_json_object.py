"""The one reader of user-given JSON objects: syntax errors name the place, line and column; non-objects say
what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.errors import ConfigError, DataError
from tuneforge.files import json_object


def test_json_object_names_where_line_and_column() -> None:
    with pytest.raises(ConfigError, match=r"^ds\.json: not valid JSON \(line 2, column 1: .*\); give a thing\.$"):
        json_object('{"a": 1,\n}', "ds.json", "a thing")
    with pytest.raises(ConfigError, match=r"`x`: should be a mapping, not a JSON list\."):
        json_object("[1]", "`x`", "a mapping")
    assert json_object({"a": 1}, "`x`", "a mapping") == {"a": 1}


def test_each_reader_goes_through_it(tmp_path: Path) -> None:
    from tuneforge.data.registry import load_registry
    from tuneforge.infer.async_backend import merged_extra

    (tmp_path / "dataset_info.json").write_text('{"demo": {"file_name": "a.json"},}')
    with pytest.raises(DataError, match=rf"{tmp_path / 'dataset_info.json'}: not valid JSON \(line 1, column"):
        load_registry(tmp_path)
    (tmp_path / "dataset_info.json").write_text("[]")
    with pytest.raises(DataError, match="should be a JSON object mapping dataset names to attributes, not a JSON list"):
        load_registry(tmp_path)
    with pytest.raises(ConfigError, match="`vllm_config`: not valid JSON"):
        merged_extra("{gpu_memory_utilization: 0.5}", "vllm_config")
    assert merged_extra('{"enforce_eager": true}', "vllm_config") == {"enforce_eager": True}
