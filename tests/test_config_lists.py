"""List-valued keys: the comma form and a YAML list both load, components read lists, saved configs use commas."""

from __future__ import annotations

from pathlib import Path

import yaml


def test_comma_form_and_yaml_list_give_the_same_lists(tmp_path: Path) -> None:
    from tuneforge.config import load_config

    comma = load_config({"adapter_name_or_path": "a, b", "lora_target": "q_proj,v_proj", "reward_funcs": "m:f"})
    listed = load_config(
        {"adapter_name_or_path": ["a", "b"], "lora_target": ["q_proj", "v_proj"], "reward_funcs": ["m:f"]}
    )
    for cfg in (comma, listed):
        assert cfg.model.adapters == ["a", "b"]
        assert cfg.method.lora_targets == ["q_proj", "v_proj"]
        assert cfg.rlhf.reward_func_specs == ["m:f"]
    assert load_config({}).model.adapters == [] and load_config({}).method.lora_targets == ["all"]
    assert listed.flat(only_changed=True)["adapter_name_or_path"] == "a,b"  # LLaMA-Factory's form


def test_saved_config_writes_lists_in_comma_form(tmp_path: Path) -> None:
    from tuneforge.config import load_config
    from tuneforge.train.recipe import save_resolved_config

    cfg = load_config({"adapter_name_or_path": ["x", "y"], "additional_target": ["embed_tokens", "norm"]})
    saved = yaml.safe_load(save_resolved_config(cfg, tmp_path).read_text(encoding="utf-8"))
    assert saved["adapter_name_or_path"] == "x,y" and saved["additional_target"] == "embed_tokens,norm"
