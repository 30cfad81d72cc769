"""The typed config: LLaMA-Factory compatibility, overrides, and errors a user can act on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.config import field_index, field_info, load_config
from tuneforge.config.schema import json_schema, markdown_reference
from tuneforge.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _lf_args(shared_dir: Path) -> dict:
    return json.loads((shared_dir / "compat" / "llamafactory-0.9.5-args.json").read_text())["args"]


def _normalise(value: object) -> object:
    """LLaMA-Factory prints some defaults as enum reprs (`DownloadMode.X`); compare their values."""
    if isinstance(value, str) and "." in value and value.split(".")[0][:1].isupper():
        return value.split(".", 1)[1].lower()
    return value


def test_every_llamafactory_key_is_accepted_with_its_default(shared_dir: Path) -> None:
    index = field_index()
    cfg = load_config({}, paths=False)
    mismatched = []
    for key, spec in _lf_args(shared_dir).items():
        assert key in index, f"LLaMA-Factory key {key} is not accepted"
        ours = cfg.get(key)
        extra = field_info(key).json_schema_extra or {}
        if _normalise(spec["default"]) == ours:
            continue
        if extra.get("why") and _normalise(extra.get("lf_default")) == _normalise(spec["default"]):
            continue  # a documented better default
        mismatched.append((key, spec["default"], ours))
    assert not mismatched, f"defaults differ without a documented reason: {mismatched}"


def test_every_key_has_a_description() -> None:
    missing = [key for key in field_index() if not (field_info(key).description or "").strip()]
    assert not missing


def test_each_llamafactory_key_round_trips_its_default_through_yaml(shared_dir: Path, tmp_path: Path) -> None:
    args = _lf_args(shared_dir)
    cfg = load_config({}, paths=False)
    flat = {k: cfg.get(k) for k in args}
    path = tmp_path / "all.yaml"
    import yaml

    path.write_text(yaml.safe_dump(flat, allow_unicode=True))
    again = load_config(path, paths=False)
    assert {k: again.get(k) for k in args} == flat


def test_misspelt_key_names_line_and_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("# 注释\nstage: sft\nlora_rnak: 8\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, paths=False)
    text = str(err.value)
    assert "line 3" in text and "`lora_rnak`" in text and "did you mean `lora_rank`" in text.lower()


def test_wrong_type_and_value_name_key_value_and_allowed(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("lora_rank: eight\nfinetuning_type: qlora\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, paths=False)
    text = str(err.value)
    assert "line 1" in text and "'eight'" in text and "int" in text
    assert "line 2" in text and "'qlora'" in text and "'lora'" in text and "'freeze'" in text


def test_yaml_syntax_error_gives_line(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("stage: sft\nlora_rank: [8\nlearning_rate: 1e-4\n")
    with pytest.raises(ConfigError, match=r"line \d+"):
        load_config(path)


def test_duplicate_key_is_reported_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("lora_rank: 8\nlora_rank: 16\n")
    with pytest.raises(ConfigError, match=r"line 2.*line 1"):
        load_config(path, paths=False)


@pytest.mark.parametrize(
    ("values", "keys"),
    [
        ({"quantization_bit": 4, "finetuning_type": "full"}, ["quantization_bit", "finetuning_type"]),
        ({"streaming": True}, ["streaming", "max_steps"]),
        ({"neat_packing": True, "stage": "dpo"}, ["neat_packing", "stage"]),
        ({"bf16": True, "fp16": True}, ["bf16", "fp16"]),
        ({"train_on_prompt": True, "mask_history": True}, ["train_on_prompt", "mask_history"]),
        ({"quantization_bit": 3, "quantization_method": "bitsandbytes"}, ["quantization_bit"]),
        ({"stage": "ppo"}, ["reward_model"]),
        ({"use_galore": True}, ["use_galore", "finetuning_type"]),
        ({"use_badam": True, "finetuning_type": "full", "use_muon": True}, ["use_badam", "use_muon"]),
        ({"use_adam_mini": True, "loraplus_lr_ratio": 4.0}, ["use_adam_mini", "loraplus_lr_ratio"]),
        (
            {"use_galore": True, "finetuning_type": "full", "galore_layerwise": True, "gradient_accumulation_steps": 2},
            ["galore_layerwise", "gradient_accumulation_steps"],
        ),
        ({"use_apollo": True, "finetuning_type": "full", "optim": "adafactor"}, ["use_apollo", "optim"]),
        ({"use_galore": True, "finetuning_type": "full", "deepspeed": "z2"}, ["use_galore", "deepspeed"]),
        ({"use_muon": True, "stage": "ppo", "reward_model": "r"}, ["use_muon", "stage"]),
        ({"use_badam": True, "finetuning_type": "full", "badam_switch_mode": "fixed"}, ["badam_start_block"]),
        ({"do_train": True, "eval_strategy": "steps"}, ["eval_dataset", "val_size"]),
        ({"do_predict": True}, ["do_predict", "predict_with_generate"]),
        ({"do_predict": True, "predict_with_generate": True, "stage": "dpo"}, ["do_predict", "stage"]),
    ],
)
def test_contradictions_name_both_keys(values: dict, keys: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(values, paths=False)
    for key in keys:
        assert f"`{key}`" in str(err.value)


def test_do_predict_with_generate_is_accepted() -> None:
    cfg = load_config({"do_predict": True, "predict_with_generate": True}, paths=False)
    assert cfg.training.do_predict and cfg.training.predict_with_generate


def test_overrides_apply_after_file_and_last_wins(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("lora_rank: 8\nlearning_rate: 1.0e-4\n")
    cfg = load_config(path, ["lora_rank=16", "--learning_rate", "5e-5", "--lora_rank=32", "--plot_loss"], paths=False)
    assert cfg.method.lora_rank == 32
    assert cfg.training.learning_rate == pytest.approx(5e-5)
    assert cfg.training.plot_loss is True


def test_grouped_sections_and_hf_passthrough() -> None:
    cfg = load_config({"method": {"lora_rank": 4}, "torch_empty_cache_steps": 3, "eval_do_concat_batches": False})
    assert cfg.method.lora_rank == 4
    assert cfg.get("eval_do_concat_batches") is False
    cfg = load_config({"dataloader_prefetch_factor": 2, "dataloader_in_order": True}, paths=False)
    assert cfg.training_args_extra == {"dataloader_in_order": True}


def test_llamafactory_value_aliases() -> None:
    cfg = load_config({"quantization_method": "bitsandbytes"}, paths=False)
    assert cfg.quantization.quantization_method == "bnb"


def test_windows_model_path_is_named(shared_dir: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(shared_dir / "compat" / "user-configs" / "qwen3_lora_sft.yaml")
    text = str(err.value)
    assert "Windows path" in text and "line 5" in text and "model_name_or_path" in text


def test_missing_local_model_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a local model folder nor a hub id"):
        load_config({"model_name_or_path": str(tmp_path / "nope" / "model")})
    assert load_config({"model_name_or_path": "Qwen/Qwen3-0.6B"}).model.model_name_or_path == "Qwen/Qwen3-0.6B"


@pytest.mark.parametrize("name", ["qwen3_lora_sft", "qwen3_infer_base", "qwen3_merge_lora", "llama3_bnb_4bit_infer"])
def test_user_configs_read_unchanged(shared_dir: Path, name: str) -> None:
    cfg = load_config(shared_dir / "compat" / "user-configs" / f"{name}.yaml", paths=False)
    assert cfg.model.model_name_or_path


def test_user_config_with_model_override_validates(shared_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    cfg = load_config(shared_dir / "compat/user-configs/qwen3_lora_sft.yaml", [f"model_name_or_path={model}"])
    assert cfg.method.lora_target == "all" and cfg.training.gradient_accumulation_steps == 8
    assert cfg.data.dataset == "identity,alpaca_zh_demo" and cfg.training.bf16 is True


def test_json_schema_is_valid_and_accepts_user_config(shared_dir: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    for path in sorted((shared_dir / "compat/user-configs").glob("*.yaml")):  # as users wrote them
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"lora_rank": "eight"}, schema)


def test_json_schema_accepts_what_the_loader_accepts_under_training(tmp_path: Path) -> None:
    """Profiler keys (their own section now) and TrainingArguments keys may still sit under `training:`."""
    jsonschema = pytest.importorskip("jsonschema")
    grouped = {"model_name_or_path": "m", "training": {"enable_torch_profiler": True, "dataloader_in_order": True}}
    jsonschema.validate(grouped, json_schema())
    cfg = load_config({**grouped, "output_dir": str(tmp_path)})
    assert cfg.profiler.enable_torch_profiler and cfg.training_args_extra["dataloader_in_order"] is True
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"training": {"profiler_wait_steps": -1}}, json_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"method": {"adam_beta1": 0.8}}, json_schema())


def test_readme_names_every_config_section_in_order() -> None:
    import re

    from pydantic import BaseModel

    from tuneforge.config.root import TuneforgeConfig

    text = " ".join((REPO / "README.md").read_text().split())
    listed = re.search(r"Keys are grouped in sections \(([^)]*)\)", text)
    assert listed, "README: the Configuration paragraph should list the config sections"
    fields = TuneforgeConfig.model_fields.items()
    sections = [
        name
        for name, field in fields
        if isinstance(field.default_factory, type) and issubclass(field.default_factory, BaseModel)
    ]
    assert [name.strip() for name in listed.group(1).split(",")] == sections


def test_docs_config_reference_is_up_to_date() -> None:
    assert (REPO / "docs" / "config.md").read_text() == markdown_reference() + "\n", (
        "regenerate with `tuneforge config docs > docs/config.md`"
    )
