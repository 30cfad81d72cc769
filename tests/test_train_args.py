"""Training arguments across transformers versions: removed keys are translated, unknown ones never dropped."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from tuneforge.config import load_config
from tuneforge.config.training import TrainingSection
from tuneforge.train.args import TRANSLATED_KEYS, TUNEFORGE_KEYS, build_training_args


def _args(tmp_path: Path, **values: object):
    cfg = load_config({"output_dir": str(tmp_path), "report_to": "none", **values}, paths=False)
    return build_training_args(cfg, cuda=False)


def test_every_training_key_reaches_the_trainer_or_is_accounted_for() -> None:
    """Against the installed transformers: no training key may fall through the cracks."""
    from transformers import Seq2SeqTrainingArguments

    from tuneforge.config.wiring import wiring

    hf = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments) if f.init}
    lost = [
        key
        for key in TrainingSection.model_fields
        if key not in hf and key not in TUNEFORGE_KEYS | TRANSLATED_KEYS and wiring(key).kind == "acts"
    ]
    assert not lost, f"acting keys the installed transformers does not know and tuneforge does not read: {lost}"


@pytest.mark.parametrize(("ratio", "total", "expected"), [(0.5, 4, 2), (0.1, 30, 3), (0.1, 25, 3), (1.0, 7, 7)])
def test_warmup_ratio_becomes_fractional_warmup_steps(tmp_path: Path, ratio: float, total: int, expected: int) -> None:
    args, _ = _args(tmp_path, warmup_ratio=ratio)
    assert args.get_warmup_steps(total) == expected  # ceil(total * ratio), as transformers 4 did


def test_warmup_steps_wins_over_warmup_ratio(tmp_path: Path) -> None:
    args, notes = _args(tmp_path, warmup_ratio=0.5, warmup_steps=1)
    assert args.get_warmup_steps(10) == 1
    assert any("takes precedence" in n for n in notes)


def test_logging_dir_is_where_tensorboard_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    _args(tmp_path, logging_dir=str(tmp_path / "tb"))
    assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(tmp_path / "tb")


def test_an_unknown_acting_key_is_an_error_not_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneforge.errors import TuneforgeError
    from tuneforge.train import args as args_module

    fields = dict(args_module._hf_fields())
    fields.pop("adam_beta1")  # as if the installed transformers had removed it
    monkeypatch.setattr(args_module, "_hf_fields", lambda: fields)
    with pytest.raises(TuneforgeError, match="`adam_beta1` is not a training argument of the installed"):
        _args(tmp_path, adam_beta1=0.8)


def test_warmup_ratio_is_validated() -> None:
    from tuneforge.errors import ConfigError

    with pytest.raises(ConfigError, match="warmup_ratio"):
        load_config({"warmup_ratio": 1.5}, paths=False)


@pytest.mark.slow
def test_users_qwen3_lora_sft_config_warms_up(shared_dir: Path, tiny_qwen3: Path, tmp_path: Path) -> None:
    """The users' file says `warmup_ratio: 0.1`: the logged rate rises 0 -> peak in 2 of 20 steps."""
    from train_helpers import read_log
    from tuneforge.train.runner import run

    cfg = load_config(
        shared_dir / "compat/user-configs/qwen3_lora_sft.yaml",
        [
            f"model_name_or_path={tiny_qwen3}",
            "template=qwen3",
            f"dataset_dir={shared_dir / 'lf-data'}",
            f"output_dir={tmp_path / 'out'}",
            "max_steps=20",
            "max_samples=8",
            "cutoff_len=64",
            "gradient_accumulation_steps=1",
            "logging_steps=1",
            "save_steps=100",
            "plot_loss=false",
            "disable_tqdm=true",
        ],
    )
    run(cfg)
    lrs = [r["lr"] if "lr" in r else r["learning_rate"] for r in read_log(tmp_path / "out") if "loss" in r]
    assert lrs[:3] == pytest.approx([0.0, 0.5e-4, 1e-4]), lrs[:4]  # as LLaMA-Factory logs it: 0, half, peak
    assert lrs[3] < lrs[2]
