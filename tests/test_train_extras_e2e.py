"""End-to-end runs (slow) of LLaMA-Factory's extras: the DFT/EAFT/ASFT losses learn, and LF's example configs for
DFT, EAFT, ASFT, mixture of depths, PiSSA and FP8 run through the CLI on tiny models (FP8 refuses on CPU).

The example configs below carry the keys of LLaMA-Factory 0.9.5's examples/extras/{dft,eaft,mod,pissa,fp8}
(ASFT has no example there: its entry is the DFT one with `use_asft_loss`); the model, template, dataset_dir and
the run length are overridden on the command line, as a user with a tiny model of the family would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from train_helpers import read_log, tiny_config

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")

COMMON = {
    "trust_remote_code": True,
    "stage": "sft",
    "do_train": True,
    "dataset": "identity,alpaca_en_demo",
    "cutoff_len": 2048,
    "max_samples": 1000,
    "overwrite_cache": True,
    "preprocessing_num_workers": 16,
    "dataloader_num_workers": 4,
    "logging_steps": 10,
    "save_steps": 500,
    "plot_loss": True,
    "overwrite_output_dir": True,
    "save_only_model": False,
    "report_to": "none",
    "per_device_train_batch_size": 1,
    "gradient_accumulation_steps": 8,
    "learning_rate": 1.0e-5,
    "num_train_epochs": 3.0,
    "lr_scheduler_type": "cosine",
    "warmup_ratio": 0.1,
    "bf16": True,
    "ddp_timeout": 180000000,
}
EXAMPLES = {
    "dft": {"model_name_or_path": "Qwen/Qwen2-1.5B-Instruct", "finetuning_type": "full", "use_dft_loss": True},
    "eaft": {"model_name_or_path": "Qwen/Qwen2.5-0.5B-Instruct", "finetuning_type": "full", "use_eaft_loss": True},
    "asft": {
        "model_name_or_path": "Qwen/Qwen2-1.5B-Instruct",
        "finetuning_type": "lora",
        "lora_target": "all",
        "use_asft_loss": True,
        "asft_alpha": 0.1,
    },
    "mod": {
        "model_name_or_path": "meta-llama/Meta-Llama-3-8B-Instruct",
        "finetuning_type": "full",
        "mixture_of_depths": "convert",
        "optim": "paged_adamw_8bit",
        "pure_bf16": True,
        "bf16": None,
    },
    "pissa": {
        "model_name_or_path": "meta-llama/Meta-Llama-3-8B-Instruct",
        "finetuning_type": "lora",
        "lora_rank": 8,
        "lora_target": "all",
        "pissa_init": True,
        "pissa_iter": 16,
        "pissa_convert": True,
        "learning_rate": 1.0e-4,
    },
    "fp8": {
        "model_name_or_path": "Qwen/Qwen2.5-7B-Instruct",
        "finetuning_type": "full",
        "fp8": True,
        "fp8_backend": "torchao",
        "fp8_enable_fsdp_float8_all_gather": True,
        "bf16": False,
    },
}
SHORT = ["max_samples=8", "max_steps=3", "cutoff_len=96", "logging_steps=1", "disable_tqdm=true"]
QUIET = ["preprocessing_num_workers=1", "dataloader_num_workers=0", "gradient_accumulation_steps=2"]


def write_example(name: str, folder: Path) -> Path:
    keys = {**COMMON, **EXAMPLES[name]}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in keys.items() if v is not None}), encoding="utf-8")
    return path


def run_example(name: str, model: Path, template: str, shared: Path, out: Path, *extra: str):
    config = write_example(name, out.parent)
    overrides = [f"model_name_or_path={model}", f"template={template}", f"dataset_dir={shared / 'lf-data'}"]
    cmd = [sys.executable, "-m", "tuneforge.cli", "train", str(config), *overrides, *SHORT, *QUIET, *extra]
    return subprocess.run([*cmd, f"output_dir={out}"], capture_output=True, text=True, timeout=300, cwd=out.parent)


def logged_losses(out: Path) -> list[float]:
    return [r["loss"] for r in read_log(out) if "loss" in r]


@pytest.mark.parametrize("name", ["dft", "eaft", "asft"])
def test_lf_loss_example_trains(name: str, shared_dir: Path, tiny_qwen2: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_example(name, tiny_qwen2, "qwen", shared_dir, out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"SFT loss: {name.upper()}" in result.stderr
    losses = logged_losses(out)
    assert len(losses) == 3 and all(loss == loss for loss in losses)  # finite, one per step
    if name == "asft":
        assert "adapter disabled" in result.stderr  # LoRA: the base model is the reference


def test_lf_mod_example_converts_trains_and_loads(shared_dir: Path, tiny_llama: Path, tmp_path: Path) -> None:
    out, cpu_optim = tmp_path / "out", "optim=adamw_torch"  # the example's paged_adamw_8bit needs bitsandbytes + CUDA
    result = run_example("mod", tiny_llama, "llama3", shared_dir, out, cpu_optim)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "config.json").read_text())["mod_layers"] == [1]

    again = tmp_path / "again"
    result = run_example("mod", out, "llama3", shared_dir, again, cpu_optim, "mixture_of_depths=load")
    assert result.returncode == 0, result.stderr[-3000:]
    assert logged_losses(again)[0] < logged_losses(out)[0]  # training went on from the trained weights


def test_lf_pissa_example_saves_a_converted_lora(shared_dir: Path, tiny_llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_example("pissa", tiny_llama, "llama3", shared_dir, out)
    assert result.returncode == 0, result.stderr[-3000:]
    trained = json.loads((out / "adapter_config.json").read_text())
    converted = json.loads((out / "pissa_converted" / "adapter_config.json").read_text())
    assert trained["init_lora_weights"] == "pissa_niter_16" and trained["r"] == 8
    assert converted["init_lora_weights"] is True and converted["r"] == 16
    assert (out / "pissa_init" / "adapter_model.safetensors").is_file()


def test_lf_fp8_example_refuses_on_cpu(shared_dir: Path, tiny_qwen2: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("the refusal is for machines without an FP8-capable GPU")
    result = run_example("fp8", tiny_qwen2, "qwen", shared_dir, tmp_path / "out")
    assert result.returncode == 2
    assert "compute capability 8.9" in result.stderr and "no CUDA GPU" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "trainer_log.jsonl").exists()


# ---- the losses learn -------------------------------------------------------------------------------------
# A 48-token vocabulary lets a random model reach high token probabilities in a few seconds: DFT's p * CE first
# rises (p starts near 1/48 and p * CE peaks at p = 1/e), then falls far below its start.


class SmallVocab:
    """The little a Trainer asks of a tokenizer: its size, a pad id, and saving (nothing to save)."""

    pad_token_id = 0

    def __len__(self) -> int:
        return 48

    def save_pretrained(self, *args, **kwargs) -> tuple:
        return ()


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=48,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    path = tmp_path_factory.mktemp("small_llama")
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def small_data(packed: bool = False):
    from datasets import Dataset

    from tuneforge.data.collate import PaddingCollator, PaddingFreeCollator
    from tuneforge.train.sft import TrainData

    gen = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(8):
        ids = torch.randint(1, 48, (12,), generator=gen).tolist()
        rows.append({"input_ids": ids, "labels": [-100] * 4 + ids[4:]})
    return TrainData(Dataset.from_list(rows), None, PaddingFreeCollator() if packed else PaddingCollator(0))


def train_small(model: Path, out: Path, packed: bool = False, **keys) -> list[float]:
    from tuneforge.train.sft import run_sft

    keys = {"max_steps": 100, "learning_rate": 1e-2, "per_device_train_batch_size": 8, "logging_steps": 5, **keys}
    if packed:  # padding-free rows with per-sample (varlen) attention, as neat packing trains
        keys.update(packing=True, neat_packing=True)
    run_sft(tiny_config(model, out, finetuning_type="full", **keys), small_data(packed), SmallVocab())
    return logged_losses(out)


@pytest.mark.parametrize("keys", [{"use_dft_loss": True}, {"use_eaft_loss": True}], ids=["dft", "eaft"])
def test_the_loss_falls(keys: dict, small_model: Path, tmp_path: Path) -> None:
    losses = train_small(small_model, tmp_path, **keys)
    assert losses[-1] < losses[0] / 10, losses
    if keys.get("use_dft_loss"):
        assert max(losses) > 2 * losses[0]  # the rise while p < 1/e, then the fall


def test_packed_and_accumulated_batches_give_the_same_losses(small_model: Path, tmp_path: Path) -> None:
    """Token weighting: 2 accumulated micro-batches of 4 packed rows train exactly as one padded batch of 8."""
    keys = {"use_eaft_loss": True, "eaft_alpha": 0.5, "max_steps": 30}
    padded = train_small(small_model, tmp_path / "padded", **keys)
    packed = train_small(
        small_model, tmp_path / "packed", True, per_device_train_batch_size=4, gradient_accumulation_steps=2, **keys
    )
    assert packed == pytest.approx(padded, rel=1e-3)
    assert padded[-1] < padded[0] / 2, padded


def test_asft_falls_towards_its_reference(small_model: Path, tmp_path: Path) -> None:
    """ASFT anchored to a reference that already knows the data (`ref_model`): DFT + alpha * KL(ref || policy)
    falls as the policy learns (anchored to its own random start it could not fall below the start). Packed rows
    give the same losses: policy and reference both keep the packed samples apart."""
    teacher = tmp_path / "teacher"
    train_small(small_model, teacher, use_eaft_loss=True)
    keys = {"use_asft_loss": True, "asft_alpha": 0.5, "ref_model": str(teacher)}
    padded = train_small(small_model, tmp_path / "padded", **keys)
    packed = train_small(small_model, tmp_path / "packed", True, **keys)
    assert padded[-1] < padded[0] / 20, padded
    assert packed == pytest.approx(padded, rel=1e-3)
