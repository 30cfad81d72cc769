"""Unit tests of the training components: argument mapping, loader choices, adapters, checkpoints, log, plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.config import load_config
from tuneforge.errors import TuneforgeError


def cfg_of(**values):
    return load_config(values, paths=False)


def test_training_args_map_lf_keys_and_drop_lf_only_ones(tmp_path: Path) -> None:
    from tuneforge.train.args import build_training_args

    cfg = cfg_of(output_dir=str(tmp_path), learning_rate=3e-4, save_steps=7, plot_loss=True, warmup_ratio=0.1)
    args, notes = build_training_args(cfg, cuda=False)
    assert args.learning_rate == 3e-4 and args.save_steps == 7 and args.output_dir == str(tmp_path)
    assert not hasattr(args, "plot_loss") and notes == []
    assert args.include_num_input_tokens_seen == "non_padding"


def test_bf16_on_cpu_falls_back_with_a_note(tmp_path: Path) -> None:
    from tuneforge.train.args import build_training_args

    args, notes = build_training_args(cfg_of(output_dir=str(tmp_path), bf16=True), cuda=False)
    assert args.bf16 is False and any("bf16" in n and "float32" in n for n in notes)


def test_attention_mapping() -> None:
    from tuneforge.models.loader import attn_implementation

    assert attn_implementation("disabled") == "eager"
    assert attn_implementation("sdpa") == "sdpa"
    assert attn_implementation("auto") is None
    with pytest.raises(TuneforgeError, match="sdpa"):
        attn_implementation("fa2")  # no CUDA / flash-attn here


def test_quantization_on_cpu_says_what_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CUDA and without a bitsandbytes CPU backend, QLoRA stops naming both ways out."""
    import importlib.util

    from tuneforge.models import quantization

    real = importlib.util.find_spec
    monkeypatch.setattr(quantization, "cuda_available", lambda: False)
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes.backends.cpu" else real(name, *a)
    )
    with pytest.raises(TuneforgeError, match="CUDA GPU, or a bitsandbytes release with a CPU backend"):
        quantization.quantization_config(cfg_of(quantization_bit=4))
    assert quantization.quantization_config(cfg_of()) is None


def test_rope_scaling_factor_from_cutoff_len() -> None:
    from types import SimpleNamespace

    from tuneforge.models.loader import rope_parameters

    def conf() -> SimpleNamespace:
        return SimpleNamespace(
            rope_parameters={"rope_type": "default", "rope_theta": 1e4}, max_position_embeddings=1024
        )

    linear = conf()
    assert rope_parameters(linear, "linear", 3000) == {"rope_type": "linear", "rope_theta": 1e4, "factor": 3.0}
    assert linear.max_position_embeddings == 3072  # enlarged by the factor, as LLaMA-Factory does
    assert rope_parameters(conf(), None, 4096) is None
    short = conf()
    assert rope_parameters(short, "linear", 1024) is None and short.max_position_embeddings == 1024  # fits: no scaling
    dynamic = rope_parameters(conf(), "dynamic", 4096)  # LLaMA-Factory's factor for dynamic too, not a fixed 2.0
    assert dynamic["factor"] == 4.0 and dynamic["original_max_position_embeddings"] == 1024


@pytest.fixture(scope="module")
def tiny_model(tiny_qwen2: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_qwen2)


def test_freeze_keeps_last_layers_and_named_modules(tiny_model) -> None:
    from tuneforge.models.adapters import freeze_trainable_names

    names = freeze_trainable_names(tiny_model, cfg_of(finetuning_type="freeze", freeze_trainable_layers=1))
    assert names and all(".layers.1." in n for n in names)
    names = freeze_trainable_names(
        tiny_model,
        cfg_of(
            finetuning_type="freeze",
            freeze_trainable_layers=-1,
            freeze_trainable_modules="mlp",
            freeze_extra_modules="norm",
        ),
    )
    assert any(".layers.0.mlp." in n for n in names) and "model.norm.weight" in names
    assert "model.layers.1.input_layernorm.weight" in names  # `norm` trains every matching norm, as LLaMA-Factory
    assert not any(n.endswith("proj.weight") and (".self_attn." in n or ".layers.1." in n) for n in names)


def test_freeze_trainable_layers_beyond_the_model_clamps_with_a_warning(
    tiny_model, caplog: pytest.LogCaptureFixture
) -> None:
    from tuneforge.models.adapters import freeze_trainable_names

    with caplog.at_level("WARNING", logger="tuneforge.models.adapters"):
        names = freeze_trainable_names(tiny_model, cfg_of(finetuning_type="freeze", freeze_trainable_layers=5))
    assert "has 2 layers" in caplog.text
    assert any(".layers.0." in n for n in names) and any(".layers.1." in n for n in names)
    with pytest.raises(TuneforgeError, match="freeze_trainable_layers: 0"):
        freeze_trainable_names(tiny_model, cfg_of(finetuning_type="freeze", freeze_trainable_layers=0))


def test_lora_target_all_is_every_linear_but_the_head(tiny_model) -> None:
    from tuneforge.models.adapters import linear_module_names, peft_config

    names = linear_module_names(tiny_model)
    assert set(names) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    conf = peft_config(tiny_model, cfg_of(lora_rank=4), "lora")
    assert conf.lora_alpha == 8 and set(conf.target_modules) == set(names)
    with pytest.raises(TuneforgeError, match="not modules"):
        peft_config(tiny_model, cfg_of(lora_target="wq"), "lora")


def test_loraplus_gives_b_matrices_a_larger_lr(tiny_qwen2: Path) -> None:
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from tuneforge.models.adapters import build_loraplus_optimizer, peft_config

    cfg = cfg_of(loraplus_lr_ratio=16.0, learning_rate=1e-4)
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    model = get_peft_model(base, peft_config(base, cfg, "lora"))
    opt = build_loraplus_optimizer(model, cfg, {"lr": 1e-4, "weight_decay": 0.0})
    lrs = sorted({g["lr"] for g in opt.param_groups if g["params"]})
    assert lrs[0] == pytest.approx(1e-4) and lrs[-1] == pytest.approx(1.6e-3)


def test_resume_choice_follows_lf(tmp_path: Path) -> None:
    from tuneforge.train.checkpoint import MARKER, resolve_resume

    out = tmp_path / "run"
    assert resolve_resume(str(out), None, False) is None  # nothing there yet
    out.mkdir()
    (out / "notes.txt").write_text("x")
    with pytest.raises(TuneforgeError, match="overwrite_output_dir"):
        resolve_resume(str(out), None, False)
    assert resolve_resume(str(out), None, True) is None
    for step in (2, 10):
        (out / f"checkpoint-{step}").mkdir()
        (out / f"checkpoint-{step}" / MARKER).write_text("{}")
    (out / "checkpoint-12").mkdir()  # incomplete: no marker
    assert resolve_resume(str(out), None, False) == str(out / "checkpoint-10")
    with pytest.raises(TuneforgeError, match="not a complete checkpoint"):
        resolve_resume(str(out), str(out / "checkpoint-12"), False)


def test_publish_is_all_or_nothing(tmp_path: Path) -> None:
    from tuneforge.train.checkpoint import MARKER, complete_checkpoints, publish

    staged = tmp_path / ".staging" / "checkpoint-3"
    staged.mkdir(parents=True)
    (staged / "weights.bin").write_bytes(b"123")
    assert complete_checkpoints(tmp_path) == []  # half-written saves never count
    publish(staged, tmp_path / "checkpoint-3", {"model": "m", "data": "d"})
    assert complete_checkpoints(tmp_path) == [tmp_path / "checkpoint-3"]
    assert json.loads((tmp_path / "checkpoint-3" / MARKER).read_text())["fingerprint"]["data"] == "d"
    assert not (tmp_path / ".staging").exists()


def test_changed_data_refuses_to_resume(tmp_path: Path) -> None:
    from tuneforge.train.checkpoint import check_fingerprint, dataset_hash, publish

    staged = tmp_path / ".staging" / "checkpoint-1"
    staged.mkdir(parents=True)
    old = {"model": "m", "data": dataset_hash([{"input_ids": [1, 2]}, {"input_ids": [3]}])}
    publish(staged, tmp_path / "checkpoint-1", old)
    check_fingerprint(str(tmp_path / "checkpoint-1"), old)
    new = {"model": "m", "data": dataset_hash([{"input_ids": [1, 2]}, {"input_ids": [4]}])}
    with pytest.raises(TuneforgeError, match="data changed"):
        check_fingerprint(str(tmp_path / "checkpoint-1"), new)


def test_trim_log_drops_steps_after_the_checkpoint(tmp_path: Path) -> None:
    from tuneforge.train.checkpoint import trim_log

    log = tmp_path / "trainer_log.jsonl"
    log.write_text("".join(json.dumps({"current_steps": s, "loss": 1.0}) + "\n" for s in range(1, 6)))
    trim_log(log, 3)
    assert [json.loads(x)["current_steps"] for x in log.read_text().splitlines()] == [1, 2, 3]


def test_plot_writes_training_and_eval_curves(tmp_path: Path) -> None:
    from tuneforge.train.plot import plot_losses, smooth

    records = [{"current_steps": s, "loss": 3.0 / s} for s in range(1, 20)] + [{"current_steps": 10, "eval_loss": 0.5}]
    paths = plot_losses(tmp_path, records)
    assert [p.name for p in paths] == ["training_loss.png", "training_eval_loss.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert smooth([1.0, 1.0, 1.0]) == pytest.approx([1.0, 1.0, 1.0])


def test_train_package_is_import_light() -> None:
    import subprocess
    import sys

    code = "import sys, tuneforge.train; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_every_configurable_stage_has_a_recipe() -> None:
    import importlib
    import typing

    from tuneforge.config.method import MethodSection
    from tuneforge.config.stages import STAGES

    assert set(typing.get_args(MethodSection.model_fields["stage"].annotation)) == set(STAGES)
    for row in STAGES.values():
        module, function = row.recipe.split(":")
        assert callable(getattr(importlib.import_module(module), function, None)), row


def test_outputs_summary_names_what_exists(tmp_path) -> None:
    from tuneforge.train.runner import outputs_summary

    (tmp_path / "adapter_model.safetensors").write_bytes(b"x")
    (tmp_path / "training_loss.png").write_bytes(b"x")
    text = outputs_summary(tmp_path)
    assert f"adapter        {tmp_path / 'adapter_model.safetensors'}" in text
    assert "loss plot" in text and "trainer_log.jsonl" not in text


def test_fractional_val_size_rounds_up_like_llamafactory() -> None:
    import pyarrow as pa

    from tuneforge.data.mixing import split_validation

    table = pa.table({"x": list(range(10))})
    train, evals = split_validation(table, 0.12, seed=0)  # 1.2 rows: LLaMA-Factory (train_test_split) takes 2
    assert (train.num_rows, evals.num_rows) == (8, 2)
    train, evals = split_validation(table, 3, seed=0)
    assert evals.num_rows == 3
