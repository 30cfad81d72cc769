"""Alignment stages end to end on a tiny model (slow): rm, dpo, kto on the LF demo data, PPO against a live reward
API, and behaviour: DPO raises the preference margin, GRPO raises an exact-match reward."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from server_helpers import running_api
from train_helpers import read_log

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")


def _config(model: Path, out: Path, shared: Path | None, **overrides: Any) -> Any:
    from tuneforge.config import load_config

    base = {
        "model_name_or_path": str(model),
        "finetuning_type": "lora",
        "template": "qwen",
        "dataset_dir": str(shared / "lf-data") if shared else None,
        "output_dir": str(out),
        "overwrite_output_dir": True,
        "max_samples": 4,
        "max_steps": 2,
        "cutoff_len": 64,
        "per_device_train_batch_size": 2,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "disable_gradient_checkpointing": True,
        "seed": 0,
    }
    base.update(overrides)
    return load_config({k: v for k, v in base.items() if v is not None})


def _train(cfg: Any) -> dict[str, Any]:
    from tuneforge.train import run_training

    return run_training(cfg)


@pytest.fixture(scope="module")
def reward_adapter(tiny_qwen2: Path, shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rm") / "out"
    _train(_config(tiny_qwen2, out, shared_dir, stage="rm", dataset="dpo_en_demo", plot_loss=True))
    return out


def test_rm_saves_adapter_and_value_head(reward_adapter: Path) -> None:
    from safetensors.torch import load_file

    head = load_file(str(reward_adapter / "value_head.safetensors"))
    assert sorted(head) == ["v_head.summary.bias", "v_head.summary.weight"]
    assert tuple(head["v_head.summary.weight"].shape) == (1, 64)
    assert (reward_adapter / "adapter_model.safetensors").is_file()
    assert (reward_adapter / "training_rewards_accuracies.png").is_file()
    records = [r for r in read_log(reward_adapter) if "loss" in r]
    assert [r["current_steps"] for r in records] == [1, 2]
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"} <= set(records[0])


@pytest.mark.parametrize(
    ("stage", "dataset", "extra", "keys"),
    [
        ("dpo", "dpo_en_demo", {"pref_loss": "sigmoid", "pref_ftx": 0.5}, {"rewards/margins", "loss/sft"}),
        ("dpo", "dpo_en_demo", {"pref_loss": "simpo", "finetuning_type": "full"}, {"rewards/accuracies"}),
        ("kto", "kto_en_demo", {}, {"objective/kl"}),
    ],
    ids=["dpo-sigmoid-ftx", "simpo-full", "kto"],
)
def test_stage_trains(stage: str, dataset: str, extra: dict, keys: set, tiny_qwen2, shared_dir, tmp_path) -> None:
    out = tmp_path / "out"
    metrics = _train(_config(tiny_qwen2, out, shared_dir, stage=stage, dataset=dataset, **extra))
    assert metrics["train_loss"] == pytest.approx(metrics["train_loss"])  # finite, not NaN
    records = [r for r in read_log(out) if "loss" in r]
    assert len(records) == 2 and keys <= set(records[-1])
    weights = "model.safetensors" if extra.get("finetuning_type") == "full" else "adapter_model.safetensors"
    assert (out / weights).is_file()


def test_wrong_dataset_kind_is_refused(tiny_qwen2: Path, shared_dir: Path, tmp_path: Path) -> None:
    from tuneforge.errors import TuneforgeError

    with pytest.raises(TuneforgeError, match="kto_tag"):
        _train(_config(tiny_qwen2, tmp_path / "o", shared_dir, stage="kto", dataset="alpaca_en_demo"))
    with pytest.raises(TuneforgeError, match="ranking"):
        _train(_config(tiny_qwen2, tmp_path / "o", shared_dir, stage="dpo", dataset="alpaca_en_demo"))


def _pair_margins(model: Any, rows: Any, tokenizer: Any) -> float:
    """Mean over pairs of (log pi(chosen) - log pi(rejected)) with the adapter, minus the same without it."""
    from tuneforge.data.collate import PairwiseCollator
    from tuneforge.train.dpo import pair_logps

    batch = PairwiseCollator(tokenizer.pad_token_id)([rows[i] for i in range(len(rows))])
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        policy = pair_logps(model(**inputs).logits, batch["labels"], None)["sum"]
        with model.disable_adapter():
            ref = pair_logps(model(**inputs).logits, batch["labels"], None)["sum"]
    chosen, rejected = (policy - ref).chunk(2)
    return float((chosen - rejected).mean())


def test_dpo_raises_the_margin_on_training_pairs(tiny_qwen2: Path, shared_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tuneforge.data.pipeline import prepare_dataset
    from tuneforge.models.loader import load_tokenizer

    cfg = _config(tiny_qwen2, tmp_path / "dpo", shared_dir, stage="dpo", dataset="dpo_en_demo", max_steps=6,
                  learning_rate=5e-3, per_device_train_batch_size=4)  # fmt: skip
    _train(cfg)
    tokenizer = load_tokenizer(cfg)
    rows = prepare_dataset(cfg, tokenizer, kind="pairwise").train
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_qwen2), str(tmp_path / "dpo"))
    margin = _pair_margins(model.eval(), rows, tokenizer)
    assert margin > 0.1  # 0 before training: the LoRA update starts at zero
    accuracies = [r["rewards/accuracies"] for r in read_log(tmp_path / "dpo") if "loss" in r]
    assert accuracies[-1] >= accuracies[0]


def _answer_probability(model: Any, prompt: list[int], answer: int, top_k: int) -> float:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt])).logits[0, -1]
    top = torch.topk(logits, top_k)
    probs = torch.softmax(top.values, -1)
    hits = (top.indices == answer).nonzero()
    return float(probs[hits[0, 0]]) if len(hits) else 0.0


def test_grpo_raises_an_exact_match_reward(tiny_qwen2: Path, tmp_path: Path) -> None:
    """Toy task: every prompt's answer is one fixed token among the model's own top 3. Sampling among the top 3
    tokens, exact match succeeds about a third of the time at first; GRPO should make it more likely."""
    from transformers import AutoModelForCausalLM

    from tuneforge.data.pipeline import prepare_dataset
    from tuneforge.models.loader import load_tokenizer

    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset_info.json").write_text(json.dumps({"toy": {"file_name": "toy.json"}}))
    (data / "toy.json").write_text(json.dumps([{"instruction": "Say the word.", "output": "x"}] * 4))
    overrides = {"stage": "grpo", "dataset": "toy", "dataset_dir": str(data), "num_generations": 8,
                 "reward_funcs": "tuneforge.train.rewards:exact_match", "grpo_beta": 0.0, "max_new_tokens": 1,
                 "top_k": 3, "top_p": 1.0, "temperature": 1.0, "max_steps": 4, "learning_rate": 5e-3,
                 "finetuning_type": "full"}  # fmt: skip
    probe = _config(tiny_qwen2, tmp_path / "probe", None, **overrides)
    tokenizer = load_tokenizer(probe)
    prompt = list(prepare_dataset(probe, tokenizer, kind="unsupervised").train[0]["input_ids"])
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2).eval()
    with torch.no_grad():
        top = torch.topk(base(input_ids=torch.tensor([prompt])).logits[0, -1], 3).indices.tolist()
    answer = next(t for t in top if tokenizer.decode([t]).strip())  # a visible word, not whitespace
    (data / "toy.json").write_text(
        json.dumps([{"instruction": "Say the word.", "output": tokenizer.decode([answer])}] * 4)
    )
    before = _answer_probability(base, prompt, answer, 3)

    out = tmp_path / "grpo"
    _train(_config(tiny_qwen2, out, None, **overrides, output_dir=str(out)))
    tuned = AutoModelForCausalLM.from_pretrained(out).eval()
    after = _answer_probability(tuned, prompt, answer, 3)
    assert after > before + 0.05, (before, after)
    rewards = [r["rewards/exact_match"] for r in read_log(out) if "loss" in r]
    assert len(rewards) == 4 and max(rewards) > 0


@pytest.fixture(scope="module")
def reward_api(tiny_qwen2: Path, reward_adapter: Path) -> Any:
    pytest.importorskip("uvicorn")
    from tuneforge.config import load_config

    cfg = load_config({"model_name_or_path": str(tiny_qwen2), "adapter_name_or_path": str(reward_adapter),
                       "template": "qwen"})  # fmt: skip
    with running_api(cfg) as url:
        yield url


def test_api_scores_match_the_local_reward_model(reward_api: str, reward_adapter: Path, tiny_qwen2: Path) -> None:
    from tuneforge.models.loader import load_tokenizer
    from tuneforge.train.rewards import ApiScorer, load_reward_model

    cfg = _config(tiny_qwen2, reward_adapter.parent / "x", None, stage="ppo", reward_model=str(reward_adapter))
    tokenizer = load_tokenizer(cfg)
    local = load_reward_model(cfg, tokenizer)
    ids = [tokenizer.encode("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>")]
    texts = [tokenizer.decode(ids[0])]
    assert ApiScorer(reward_api)(ids, texts) == pytest.approx(local(ids, texts), abs=1e-4)


def test_ppo_against_a_live_reward_api(reward_api: str, tiny_qwen2: Path, shared_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ppo"
    cfg = _config(tiny_qwen2, out, shared_dir, stage="ppo", dataset="alpaca_en_demo", reward_model=reward_api,
                  reward_model_type="api", max_new_tokens=4, ppo_epochs=2, ppo_score_norm=True)  # fmt: skip
    _train(cfg)
    records = [r for r in read_log(out) if "loss" in r]
    assert [r["current_steps"] for r in records] == [1, 2]
    assert {"rewards/reward_model", "objective/kl", "ppo/value_loss"} <= set(records[0])
    assert (out / "adapter_model.safetensors").is_file() and (out / "value_head.safetensors").is_file()
