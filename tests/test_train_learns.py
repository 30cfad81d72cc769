"""Proof that training learns (slow): a tiny random model memorises identity answers, and the saved adapter,
loaded by plain PEFT, reproduces a trained answer with greedy generation.

A random tiny model cannot learn with LoRA alone: after the final RMSNorm the hidden vector has norm ~8 and its
(tied, std 0.02) embedding rows ~0.16, so no logit can stand out from 151,936 near-zero ones (loss floor ~10.6).
`additional_target: embed_tokens` trains the tied embedding in full beside LoRA, as a user would on a new vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from train_helpers import chat_rows, read_log, tiny_config, tokenizer_of

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")

IDENTITY = [
    ("Who are you?", "I am Forge, a tiny model."),
    ("What is your name?", "My name is Forge."),
    ("Who made you?", "The tuneforge team made me."),
    ("你是谁？", "我是 Forge。"),
]


def test_lora_with_trained_embeddings_learns_and_plain_peft_reproduces(tiny_qwen2: Path, tmp_path: Path) -> None:
    from datasets import Dataset
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq

    from tuneforge.train.sft import TrainData, run_sft

    tokenizer = tokenizer_of(tiny_qwen2)
    cfg = tiny_config(
        tiny_qwen2,
        tmp_path,
        additional_target="embed_tokens",
        learning_rate=1e-2,
        max_steps=50,
        lr_scheduler_type="constant",
        logging_steps=10,
        lora_dropout=0.0,
    )
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, padding=True)
    run_sft(cfg, TrainData(Dataset.from_list(chat_rows(tokenizer, IDENTITY)), None, collator), tokenizer)
    losses = [r["loss"] for r in read_log(tmp_path) if "loss" in r]
    assert losses[0] > 5 and losses[-1] < 0.2, losses
    assert json.loads((tmp_path / "adapter_config.json").read_text())["ensure_weight_tying"] is True

    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    model = PeftModel.from_pretrained(base, tmp_path).eval()
    head = model.get_output_embeddings()
    assert head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()  # still tied after loading
    for question, expected in IDENTITY[1:]:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=16, do_sample=False)
        answer = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        assert answer.strip() == expected, (question, answer)
