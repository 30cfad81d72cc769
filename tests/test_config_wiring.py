"""The wiring contract: every config key acts, is refused with what to use instead, or warns it has no effect."""

from __future__ import annotations

import logging

import pytest

from tuneforge.config import load_config
from tuneforge.config.renames import RENAMED
from tuneforge.config.schema import markdown_reference
from tuneforge.config.wiring import all_wiring, wiring
from tuneforge.errors import ConfigError


def test_every_field_is_classified() -> None:
    unclassified = [key for key, w in all_wiring().items() if w is None]
    assert not unclassified, f"declare `wiring=` (ACTS, refused(...) or no_op(...)) for: {unclassified}"


def test_refused_and_no_op_keys_say_why() -> None:
    for key, w in all_wiring().items():
        assert w is not None
        assert w.kind in ("acts", "refused", "no-op")
        assert (w.kind == "acts") == (not w.text), key


@pytest.mark.parametrize("key", [k for k, w in all_wiring().items() if w is not None and w.kind == "refused"])
def test_each_refused_key_stops_naming_itself(key: str) -> None:
    from tuneforge.config.root import field_info

    default = field_info(key).default
    value = (not default) if isinstance(default, bool) else ("x" if default in (None, "auto") else 7)
    value = {"init_special_tokens": "desc_init", "mixture_of_depths": "convert"}.get(key, value)
    with pytest.raises(ConfigError) as err:
        load_config({key: value}, paths=False)
    assert f"`{key}" in str(err.value) and "not supported" in str(err.value)


def _load_with_a_non_default(key: str) -> None:
    """Load a config setting `key` to the first value, of a few kinds, that validates and is not the default."""
    from tuneforge.config.root import field_info

    default = field_info(key).default
    candidates = (
        True,
        2,
        0.5,
        "local",
        "ratio",
        "reverse_std",
        "svd",
        "left",
        "tensor",
        "descending",
        "scatter",
        "force_redownload",
        "x",
    )
    for value in (not default if isinstance(default, bool) else None, *candidates):
        if value is None or value == default:
            continue
        try:
            load_config({key: value}, paths=False)
            return
        except ConfigError:
            continue
    raise AssertionError(f"no non-default value of {key} validates")


@pytest.mark.parametrize("key", [k for k, w in all_wiring().items() if w is not None and w.kind == "no-op"])
def test_each_no_op_key_warns_naming_itself(key: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tuneforge.config"):
        _load_with_a_non_default(key)
    assert f"`{key}` (the config dict) has no effect" in caplog.text


def test_refused_key_at_its_default_loads() -> None:
    cfg = load_config({"use_mca": False, "ignore_pad_token_for_loss": True, "ray_num_workers": 1}, paths=False)
    assert cfg.method.use_mca is False


def test_no_op_key_warns_once_with_reason(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tuneforge.config"):
        load_config({"ms_hub_token": "abc", "hyper_parallel_args": "hp.json", "image_max_pixels": 589824}, paths=False)
    text = caplog.text
    assert "`ms_hub_token` (the config dict) has no effect" in text and "ModelScope" in text
    assert "`hyper_parallel_args` (the config dict) has no effect" in text
    assert "image_max_pixels" not in text  # left at its default: nothing to say


def test_issue_keys_are_classified_as_the_contract_says() -> None:
    acts = ["warmup_ratio", "early_stopping_steps", "include_effective_tokens_per_second", "logging_dir"]
    assert all(wiring(k).kind == "acts" for k in acts)
    assert wiring("use_mca").kind == "refused" and "Megatron" in wiring("use_mca").text
    assert all(wiring(k).kind == "acts" for k in ("use_galore", "galore_rank", "use_badam", "use_muon"))
    assert wiring("master_port").kind == "acts"  # the torchrun launcher reads it
    assert wiring("ray_num_workers").kind == "acts"  # Ray Train reads it under USE_RAY=1
    assert wiring("data_shared_file_system").kind == "acts"  # who builds the data cache on several nodes
    assert wiring("enable_torch_profiler").kind == wiring("profile_modules").kind == "acts"


def test_docs_and_help_show_the_class() -> None:
    from click.testing import CliRunner

    from tuneforge.cli import main_group

    assert "| `use_mca` | bool | `False` | refused: MCoreAdapter" in markdown_reference()
    out = CliRunner().invoke(main_group, ["help", "sortish_sampler"]).output
    assert "class: no-op" in out and "group_by_length" in out
    out = CliRunner().invoke(main_group, ["help", "evaluation_strategy"]).output
    assert "transformers 4 name of `eval_strategy`" in out and "class: acts" in out


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_transformers4_keys_are_translated(old: str, caplog: pytest.LogCaptureFixture) -> None:
    new, translate = RENAMED[old]
    value = {"evaluation_strategy": "steps", "no_cuda": True, "include_inputs_for_metrics": True}.get(old, 3)
    if old.startswith("push_to_hub"):
        value = "me/model"
    with caplog.at_level(logging.WARNING, logger="tuneforge.config"):
        cfg = load_config({old: value, "val_size": 2}, paths=False)
    assert cfg.get(new) == translate(value)
    assert f"`{old}` is the transformers 4 name of `{new}`" in caplog.text


def test_old_and_new_name_together_is_an_error() -> None:
    with pytest.raises(ConfigError, match="old name of `eval_strategy`"):
        load_config({"evaluation_strategy": "steps", "eval_strategy": "no"}, paths=False)


def test_yaml_on_off_reach_string_switches(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("fuse_micro_batches: on\nspeed_kernels: off\n")
    cfg = load_config(path, paths=False)
    assert cfg.training.fuse_micro_batches == "on" and cfg.training.speed_kernels == "off"
    path.write_text("fuse_micro_batches: off\n")
    assert load_config(path, paths=False).training.fuse_micro_batches == "off"
    assert load_config({"fuse_micro_batches": True}, paths=False).training.fuse_micro_batches == "on"
    with pytest.raises(ConfigError):
        load_config({"speed_kernels": True}, paths=False)  # no `on` value: still an error, not a guess


def test_preserve_thinking_needs_a_named_template(tmp_path) -> None:
    from tuneforge.config import load_config
    from tuneforge.data.templates import template_for_config
    from tuneforge.errors import ConfigError

    base = {"model_name_or_path": "m", "output_dir": str(tmp_path), "preserve_thinking": True}
    with pytest.raises(ConfigError, match=r"preserve_thinking.*needs a named `template:`"):
        load_config(base)
    cfg = load_config({**base, "template": "qwen3"})
    assert template_for_config(cfg.data, None).spec.thinking.keep == "all"
