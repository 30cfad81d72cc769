"""Pinned loss trajectories: the cases, their data and how a case is run (shared by the test and the script).

Each case trains a tiny random Qwen2 model (2 layers, hidden 64, seed 0) on CPU in fp32 with a fixed seed on a
few hand-written rows, through `tuneforge.train.run_training` (the whole path: data pipeline, recipe, Trainer),
and records the loss of each of its first steps. `scripts/pin_trajectories.py` writes them to
`tests/references/<case>.json`; `tests/test_trajectories.py` compares a fresh run with them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REFERENCES = Path(__file__).resolve().parent / "references"
STEPS = 4
PINNED = ("loss", "grad_norm")  # the per-step log values each reference holds
REL, ABS = 1e-3, 1e-5  # CPU fp32 kernels may differ in the last bits between machines; a real change moves more

COMMON = {
    "template": "qwen",
    "finetuning_type": "lora",
    "lora_rank": 4,
    "cutoff_len": 48,
    "per_device_train_batch_size": 2,
    "learning_rate": 5e-3,
    "max_steps": STEPS,
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": "none",
    "disable_tqdm": True,
    "disable_gradient_checkpointing": True,
    "overwrite_output_dir": True,
    "plot_loss": False,
    "seed": 0,
}

CASES: dict[str, dict[str, Any]] = {
    "pt": {"stage": "pt", "dataset": "text"},
    "sft_lora": {"stage": "sft", "dataset": "alpaca"},
    "sft_full": {"stage": "sft", "dataset": "alpaca", "finetuning_type": "full", "learning_rate": 1e-3},
    "rm": {"stage": "rm", "dataset": "pairs"},
    "dpo": {"stage": "dpo", "dataset": "pairs", "pref_loss": "sigmoid", "pref_ftx": 0.1},
    "kto": {"stage": "kto", "dataset": "kto"},
    "grpo": {"stage": "grpo", "dataset": "alpaca", "num_generations": 2, "max_new_tokens": 4, "grpo_beta": 0.1,
             "reward_funcs": "trajectory_cases:text_length", "top_k": 5, "temperature": 1.0},
}  # fmt: skip


def text_length(prompts: list[str], completions: list[str], answers: list[str], **kwargs: Any) -> list[float]:
    """A reward that varies within a group on a random model: the completion's length in characters / 10."""
    return [len(text) / 10 for text in completions]


def write_data(folder: Path) -> Path:
    """Small pt / sft / preference / KTO datasets and their `dataset_info.json` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    words = ["forge", "anvil", "hammer", "ember", "tongs", "bellows", "quench", "temper"]
    text = [{"text": " ".join(words[(i + j) % 8] for j in range(12 + i))} for i in range(8)]
    alpaca = [{"instruction": f"Name tool {i}.", "input": "", "output": f"The {words[i]}."} for i in range(8)]
    pairs = [{"instruction": f"Name tool {i}.", "input": "", "chosen": f"The {words[i]}.",
              "rejected": f"A {words[(i + 3) % 8]} maybe."} for i in range(8)]  # fmt: skip
    kto = [{"messages": [{"role": "user", "content": f"Name tool {i}."},
                         {"role": "assistant", "content": f"The {words[(i + i % 2) % 8]}."}],
            "label": i % 2 == 0} for i in range(8)]  # fmt: skip
    info = {
        "text": {"file_name": "text.json", "columns": {"prompt": "text"}},
        "alpaca": {"file_name": "alpaca.json"},
        "pairs": {"file_name": "pairs.json", "ranking": True,
                  "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}},
        "kto": {"file_name": "kto.json", "formatting": "sharegpt",
                "columns": {"messages": "messages", "kto_tag": "label"},
                "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                         "assistant_tag": "assistant"}},
    }  # fmt: skip
    for name, rows in (("text", text), ("alpaca", alpaca), ("pairs", pairs), ("kto", kto)):
        (folder / f"{name}.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    return folder


def make_model(folder: Path) -> Path:
    """The tiny model every case trains (the same one as the `tiny_qwen2` test fixture)."""
    from tuneforge.models.tiny import make_tiny

    return make_tiny("qwen2", folder, layers=2, hidden=64, seed=0)


def run_case(name: str, model: Path, data: Path, out: Path) -> dict[str, list[float]]:
    """Train case `name` and return its per-step training losses and gradient norms."""
    from tuneforge.config import load_config
    from tuneforge.train import run_training

    values = {**COMMON, **CASES[name], "model_name_or_path": str(model), "dataset_dir": str(data)}
    values["output_dir"] = str(out)
    run_training(load_config(values))
    records = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in records if "loss" in r]
    return {key: [float(r[key]) for r in steps] for key in PINNED}


def reference_path(name: str) -> Path:
    """Where case `name`'s pinned losses are stored."""
    return REFERENCES / f"{name}.json"


def load_reference(name: str) -> dict[str, list[float]]:
    """The pinned per-step values of case `name` (`PINNED` keys)."""
    return json.loads(reference_path(name).read_text(encoding="utf-8"))["values"]
